#!/usr/bin/env python3
"""Steadiness and contact of the landmark backend (issue 19), before and after, in one run.

Steadiness: each photo (../shared/images, optionally ../shared/samples) becomes a clip
(dir_ros.data.clips.DriftingClip: the photo in a 640x480 frame drifting 0.5 px per frame, 60
frames, K from a 60 degree field of view: a near-constant motion, so any second difference is
the pipeline's own). Per frame each variant's own hand front end (the same configuration;
its own tracking state, which the after variant's refinement of new hands changes) and its
landmark backend run, as the node runs them (predict(); then the smoother with t = frame
index / 30 Hz):
  * before: the behaviour before issue 19: hands fitted and placed alone, each frame's size
    (scale_hold false, hand_contact false), the front end's first landmarks of a new hand
    (refine_new_hands false), the single-coefficient One-Euro filter with its old defaults
    (smoothing one_euro_single);
  * after: the defaults (held hand size, coupling of meeting hands, the finger step of
    interlocked fingers in its default mode 'onset': run on the frame where the interlock
    appears, its turns carried to the later frames; a new hand's landmarks refined by a
    tracking pass on its first frame (LandmarkPredictor.refine: one more front-end call on
    that frame), per-signal One-Euro); per clip also the frames the finger step ran on.
Per clip and hand: frames with the hand found (valid, metric), mean wrist jitter and mean
root-relative joint jitter (||x[t+1] - 2 x[t] + x[t-1]||, mm/frame^2, over the frames whose
three samples have the hand; dir_ros.data.clips.second_difference_norm).
Contact: each photo as a single frame (its own size, K from a 60 degree field of view, a
fresh backend state): the deepest vertex of one hand inside the other (nearest-surface-normal
test, both ways; dir_ros.backends.landmarks.contact.contact_report), how many are inside, the smallest
vertex distance, the keypoints' mean distance from the image landmarks and the coupling's
cost, before, after, and for comparison the after variant with the finger step's other
modes: 'off' (the default before the 'onset' mode) and 'always' (every frame).
Writes the figures to --out (JSON) and a line plot of the wrist depth over the frames
(before/after, every clip and hand) to --plot; prints the tables and `cat /proc/loadavg`.
Usage: tools/ros_env.sh python benchmarks/benchmark_steadiness.py [--samples]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the source tree's dir_ros

from dir_ros.data.clips import CLIP_RATE_HZ, DriftingClip, second_difference_norm  # noqa: E402
from dir_ros.common.geometry import pinhole_K, project_points  # noqa: E402
from dir_ros.backends.landmarks.contact import contact_report  # noqa: E402
from dir_ros.common.results import SIDES  # noqa: E402
from dir_ros.post.smoothing import make_smoother  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
M_TO_MM = 1e3
# The variants compared: predictor config overrides and smoothing mode.
VARIANTS = {
    "before": ({"scale_hold": False, "hand_contact": False, "finger_step": "off"},
               "one_euro_single"),
    "after": ({}, "one_euro"),
}
# The contact figures' extra runs: the after variant with the finger step of interlocked
# fingers in its other modes (LandmarkPredictor.finger_step; the default is 'onset'): 'off'
# is the default before it, 'always' runs it on every frame (on one frame: as 'onset').
FINGER_VARIANTS = {"after/step off": "off", "after/always": "always"}
# LandmarkPredictor attributes of the variants beyond the predictor config.
VARIANT_ATTRIBUTES = {"before": {"refine_new_hands": False}, "after": {}}
# Issue 19's targets (mm/frame^2, mm, share of frames).
TARGET_WRIST_JITTER_MM = 3.0
TARGET_JOINT_JITTER_MM = 1.5
TARGET_PENETRATION_MM = 3.0
TARGET_CONTACT_DISTANCE_MM = 20.0
TARGET_FOUND = 0.95
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_rgb(path: Path) -> np.ndarray:
    """(H,W,3) uint8 RGB of an image file; SystemExit naming it when unreadable."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"benchmark_steadiness: cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def build_predictors() -> dict[str, Any]:
    """One landmark backend per variant, each with its own hand front end."""
    from dir_ros.backends.landmarks.predictor import LandmarkPredictor

    preds: dict[str, Any] = {}
    for name, (overrides, _) in VARIANTS.items():
        pred = LandmarkPredictor.from_config(overrides)
        for key, value in VARIANT_ATTRIBUTES[name].items():
            setattr(pred, key, value)
        preds[name] = pred
    return preds


def jitter_mm(x: np.ndarray) -> float:
    """Mean second-difference norm (mm/frame^2) of a (T, ..., 3) m series with NaN gaps."""
    d2 = second_difference_norm(x)
    return float(M_TO_MM * np.nanmean(d2)) if np.isfinite(d2).any() else float("nan")


def run_clip(photo: np.ndarray, preds: dict[str, Any], bar: Any) -> dict[str, Any]:
    """Run one drifting clip through every variant: per variant and side the figures and the
    wrist depth series (m, NaN where not found); plus the after-variant's stage timings."""
    clip = DriftingClip(photo)
    smoothers = {name: make_smoother(VARIANTS[name][1]) for name in preds}
    for pred in preds.values():
        pred.reset()
    joints = {n: {s: np.full((clip.n_frames, 21, 3), np.nan) for s in SIDES} for n in preds}
    timings: dict[str, list[float]] = {"detect_ms": [], "fit_ms": [], "contact_ms": []}
    import time

    step_frames: list[int] = []  # the after variant's frames where the finger step ran
    after = preds["after"]
    finger_step = after._separate_fingers
    after._separate_fingers = lambda hands, K: (step_frames.append(i), finger_step(hands, K))

    for i, frame in enumerate(clip.frames()):
        for name, pred in preds.items():
            t0 = time.perf_counter()
            detections = pred.detect(frame)  # the after variant refines new hands
            if name == "after":
                timings["detect_ms"].append(1e3 * (time.perf_counter() - t0))
            result = pred.hands_from_detections(detections, clip.size_wh, clip.K)
            if name == "after":
                timings["fit_ms"].append(result.timings["fit_ms"])
                if "contact_ms" in result.timings:  # the frames where the coupling ran
                    timings["contact_ms"].append(result.timings["contact_ms"])
            result = smoothers[name](result, i / CLIP_RATE_HZ)
            for side in SIDES:
                hand = result.hand(side)
                if hand.valid and hand.metric:
                    joints[name][side][i] = hand.joints
        bar.update(1)
    del after._separate_fingers  # the method again
    out: dict[str, Any] = {"variants": {}, "timings_median_ms": {
        k: statistics.median(v) for k, v in timings.items() if v},
        "coupled_frames": len(timings["contact_ms"]),
        "finger_step_frames": sorted(set(step_frames))}
    for name in preds:
        per_side = {}
        for side in SIDES:
            j = joints[name][side]
            per_side[side] = {
                "found": int(np.isfinite(j[:, 0, 0]).sum()), "frames": clip.n_frames,
                "wrist_jitter_mm": jitter_mm(j[:, 0]),
                "joint_jitter_mm": jitter_mm(j[:, 1:] - j[:, :1]),
                "wrist_depth_m": [None if not np.isfinite(z) else float(z) for z in j[:, 0, 2]]}
        out["variants"][name] = per_side
    return out


def reprojection_px(hand: Any, K: np.ndarray) -> float:
    """Mean distance (px) of a hand's 21 keypoints, projected through K, from its image
    landmarks (the 2D evidence)."""
    px = project_points(np.asarray(hand.joints, np.float64), K)
    return float(np.linalg.norm(px - np.asarray(hand.keypoints_2d, np.float64), axis=1).mean())


def contact_figures(photo: np.ndarray, preds: dict[str, Any]) -> dict[str, Any]:
    """Per variant (and the after variant with the finger step's other modes,
    FINGER_VARIANTS):
    penetration (mm), vertices inside, smallest vertex distance (mm), wrist depth gap (mm),
    the keypoints' mean reprojection distance from the landmarks (px, per side) and the
    coupling's cost (ms) of the photo as one frame (None when not both hands are found)."""
    h, w = photo.shape[:2]
    K = pinhole_K(w, h)
    runs = [(name, pred, pred.finger_step) for name, pred in preds.items()] \
        + [(name, preds["after"], mode) for name, mode in FINGER_VARIANTS.items()]
    out = {}
    for name, pred, mode in runs:
        default = pred.finger_step
        pred.finger_step = mode
        pred.reset()
        try:
            result = pred.predict(photo, K)
        finally:
            pred.finger_step = default
        left, right = result.left, result.right
        if not (left.valid and right.valid and left.metric and right.metric):
            out[name] = None
            continue
        rep = contact_report(left.vertices, left.faces, right.vertices, right.faces)
        out[name] = {"penetration_mm": M_TO_MM * rep.max_penetration_m,
                     "inside_vertices": rep.inside_count,
                     "min_distance_mm": M_TO_MM * rep.min_distance_m,
                     "wrist_depth_gap_mm": M_TO_MM * abs(float(left.wrist_position[2]
                                                              - right.wrist_position[2])),
                     "reprojection_px": {s: reprojection_px(result.hand(s), K) for s in SIDES},
                     "contact_ms": result.timings.get("contact_ms")}
    return out


def plot_depths(clips: dict[str, Any], path: Path) -> None:
    """Line plot of the wrist depth over the frames, before (dashed) and after (solid)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(clips), 1, figsize=(8, 2.6 * len(clips)), squeeze=False)
    for ax, (clip_name, fig_data) in zip(axes[:, 0], clips.items()):
        for side, colour in zip(SIDES, ("tab:blue", "tab:red")):
            for name, style in (("before", "--"), ("after", "-")):
                z = np.array([np.nan if v is None else v for v in
                              fig_data["variants"][name][side]["wrist_depth_m"]])
                ax.plot(M_TO_MM * z, style, color=colour, label=f"{side} {name}")
        ax.set_title(clip_name)
        ax.set_ylabel("wrist depth (mm)")
        ax.legend(fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("frame (30 Hz)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "images")
    parser.add_argument("--samples", action="store_true",
                        help="also the photos of ../shared/samples")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "docs" / "figures" / "benchmark_steadiness.json")
    parser.add_argument("--plot", type=Path,
                        default=ROOT / "docs" / "figures" / "benchmark_steadiness.png")
    args = parser.parse_args()
    folders = [args.images] + ([ROOT.parent / "shared" / "samples"] if args.samples else [])
    photos = sorted(p for f in folders if f.is_dir() for p in f.iterdir()
                    if p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise SystemExit(f"benchmark_steadiness: no photos in {', '.join(map(str, folders))}")
    from tqdm import tqdm

    try:  # MediaPipe's C++ log lines off the console, where the package has the filter
        from dir_ros.common.native_log import quiet_native_logs
    except ImportError:
        pass
    else:
        quiet_native_logs()
    preds = build_predictors()
    clips, contacts = {}, {}
    bar = tqdm(total=len(photos) * DriftingClip(read_rgb(photos[0])).n_frames, unit="frame",
               leave=False, disable=None)
    for path in photos:
        photo = read_rgb(path)
        clips[path.stem] = run_clip(photo, preds, bar)
        contacts[path.stem] = contact_figures(photo, preds)
    bar.close()
    load = os.getloadavg()
    print(f"steadiness (mm/frame^2; targets: wrist <= {TARGET_WRIST_JITTER_MM}, joints <= "
          f"{TARGET_JOINT_JITTER_MM}, found >= {TARGET_FOUND:.0%}):")
    print(f"{'clip':<28} {'hand':<6} {'found b/a':>10} {'wrist before':>13} {'wrist after':>12} "
          f"{'joints before':>14} {'joints after':>13}")
    for clip_name, data in clips.items():
        for side in SIDES:
            b, a = data["variants"]["before"][side], data["variants"]["after"][side]
            print(f"{clip_name:<28} {side:<6} {b['found']:>4}/{a['found']:<5} "
                  f"{b['wrist_jitter_mm']:>13.2f} {a['wrist_jitter_mm']:>12.2f} "
                  f"{b['joint_jitter_mm']:>14.2f} {a['joint_jitter_mm']:>13.2f}")
    print(f"\ncontact, photos as single frames (targets: penetration <= {TARGET_PENETRATION_MM} "
          f"mm; in contact smallest distance < {TARGET_CONTACT_DISTANCE_MM} mm):")
    print(f"{'photo':<28} {'variant':<14} {'penetr. mm':>10} {'inside':>7} "
          f"{'min dist mm':>12} {'wrist dz mm':>12} {'reproj px L/R':>14} {'contact ms':>10}")
    for photo_name, data in contacts.items():
        for name, fig_data in data.items():
            if fig_data is None:
                print(f"{photo_name:<28} {name:<14} {'(not both hands found)':>40}")
                continue
            ms = fig_data["contact_ms"]
            reproj = fig_data["reprojection_px"]
            print(f"{photo_name:<28} {name:<14} {fig_data['penetration_mm']:>10.1f} "
                  f"{fig_data['inside_vertices']:>7d} {fig_data['min_distance_mm']:>12.1f} "
                  f"{fig_data['wrist_depth_gap_mm']:>12.1f} "
                  f"{reproj['left']:>6.1f}/{reproj['right']:<7.1f} "
                  f"{'-' if ms is None else f'{ms:.1f}':>10}")
    timing = {k: statistics.median(c["timings_median_ms"][k] for c in clips.values()
                                   if k in c["timings_median_ms"])
              for k in ("detect_ms", "fit_ms", "contact_ms")
              if any(k in c["timings_median_ms"] for c in clips.values())}
    coupled = {name: c["coupled_frames"] for name, c in clips.items()}
    print("\nmedian per 640x480 frame (after; the median over the clips of each clip's "
          "median): " + ", ".join(f"{k[:-3]} {v:.1f} ms" for k, v in timing.items())
          + f"; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores)")
    print("coupling ran on (frames per clip; its cost is over those): "
          + ", ".join(f"{k} {v}" for k, v in coupled.items()))
    print("finger step ran on (frames of each clip, 'onset'): " + ", ".join(
        f"{k} {c['finger_step_frames']}" for k, c in clips.items()))
    report = {"clips": clips, "contact": contacts, "timings_median_ms": timing,
              "loadavg": list(load), "variants": {k: {"predictor": v[0], "smoothing": v[1]}
                                                  for k, v in VARIANTS.items()},
              "finger_variants": FINGER_VARIANTS,
              "targets": {"wrist_jitter_mm": TARGET_WRIST_JITTER_MM,
                          "joint_jitter_mm": TARGET_JOINT_JITTER_MM,
                          "penetration_mm": TARGET_PENETRATION_MM,
                          "contact_distance_mm": TARGET_CONTACT_DISTANCE_MM,
                          "found": TARGET_FOUND}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    plot_depths(clips, args.plot)
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
