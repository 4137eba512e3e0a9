#!/usr/bin/env python3
"""Landmark backend speed on 640x480 frames: the hand front end alone (baseline) against the
whole backend (detector + hand-model fit + placement), in one process on the same frames.

Frames: each photo of --images letterboxed into 640x480, repeated --repeat times in a row
(a still camera: the detector tracks in video mode), photos one after another. Prints the
median and 90th percentile per frame of both, the fit's share, and writes --json.
Usage: tools/ros_env.sh python scripts/benchmark_landmarks.py [--images ../shared/images]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from dir_ros.geometry import pinhole_K
from dir_ros.infer import expand_inputs, letterbox
from dir_ros.machine import cpu_name
from dir_ros.predictor import build_predictor, make_detector

WIDTH, HEIGHT = 640, 480
HFOV_DEG = 60.0
WARMUP_FRAMES = 3  # graph start-up and first-call costs are not counted


def time_frames(run, frames: list[np.ndarray]) -> list[float]:
    """Per-frame wall times (ms) of run(frame), after WARMUP_FRAMES untimed calls."""
    for f in frames[:WARMUP_FRAMES]:
        run(f)
    out = []
    for f in frames:
        t0 = time.perf_counter()
        run(f)
        out.append(1e3 * (time.perf_counter() - t0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/images"))
    parser.add_argument("--repeat", type=int, default=20, help="frames per photo")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    photos = [p for p in expand_inputs([args.images])]
    frames = [cv2.cvtColor(letterbox(cv2.imread(str(p)), WIDTH, HEIGHT), cv2.COLOR_BGR2RGB)
              for p in photos for _ in range(args.repeat)]
    K = pinhole_K(WIDTH, HEIGHT, HFOV_DEG)
    cfg = {"backend": "landmarks", "mirrored_input": False}
    detector = make_detector(cfg)
    det_ms = time_frames(detector, frames)
    predictor = build_predictor(cfg)
    found = []

    def full(frame: np.ndarray) -> None:
        res = predictor.predict(frame, K)
        found.append(sum(h.valid for h in res.hands()))
        fit_ms.append(res.timings["fit_ms"])

    fit_ms: list[float] = []
    all_ms = time_frames(full, frames)
    fit_ms = fit_ms[WARMUP_FRAMES:]
    found = found[WARMUP_FRAMES:]
    med = {k: float(np.median(v)) for k, v in (("detector", det_ms), ("backend", all_ms),
                                               ("fit", fit_ms))}
    p90 = {k: float(np.percentile(v, 90)) for k, v in (("detector", det_ms), ("backend", all_ms))}
    figures = {
        "cpu": cpu_name(), "torch_threads": torch.get_num_threads(),
        "frame": f"{WIDTH}x{HEIGHT}", "frames": len(frames), "photos": len(photos),
        "detector_ms_median": med["detector"], "detector_ms_p90": p90["detector"],
        "backend_ms_median": med["backend"], "backend_ms_p90": p90["backend"],
        "fit_ms_median": med["fit"], "backend_over_detector": med["backend"] / med["detector"],
        "hands_found_per_frame_mean": float(np.mean(found)),
    }
    print(f"{cpu_name()}, {torch.get_num_threads()} torch threads, {len(frames)} frames "
          f"{WIDTH}x{HEIGHT} ({len(photos)} photos x {args.repeat})")
    print(f"  detector alone (baseline): median {med['detector']:.1f} ms, p90 {p90['detector']:.1f} ms")
    print(f"  landmark backend (detector + fit + placement): median {med['backend']:.1f} ms, "
          f"p90 {p90['backend']:.1f} ms ({figures['backend_over_detector']:.2f}x the detector; "
          f"fit median {med['fit']:.1f} ms)")
    print(f"  hands found per frame: {figures['hands_found_per_frame_mean']:.2f}")
    per_photo = {}
    for i, photo in enumerate(photos):  # frames are grouped by photo, --repeat each
        sl = slice(i * args.repeat, (i + 1) * args.repeat)
        per_photo[photo.name] = {"detector_ms_median": float(np.median(det_ms[sl])),
                                 "backend_ms_median": float(np.median(all_ms[sl]))}
        print(f"  {photo.name}: detector {per_photo[photo.name]['detector_ms_median']:.1f} ms, "
              f"backend {per_photo[photo.name]['backend_ms_median']:.1f} ms (medians)")
    figures["per_photo"] = per_photo
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
