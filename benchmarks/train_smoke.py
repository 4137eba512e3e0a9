#!/usr/bin/env python3
"""Training smoke run on this machine's CPUs: the light network on the synthetic source
(config/train/synthetic_light.yaml) for a few minutes, then the checkpoint in the node's
predictor (dir_ros.backends.dir.HandsPredictor, backend dir, full-frame crop, CPU).

Prints the figures (loss at the first step and averaged at the start / end, validation loss
and MPJPE before and after, time, CPU, threads) and writes them to OUT/smoke.json; exits 1
when the training loss did not fall to at most half of its first-step value or the
predictor does not give two finite hands.

    tools/ros_env.sh python benchmarks/train_smoke.py [--epochs 10] [--threads 1] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dir_ros.common.machine import cpu_name  # noqa: E402
from dir_ros.train.trainer import train  # noqa: E402

CONFIG = ROOT / "config" / "train" / "synthetic_light.yaml"
# Pass criterion of issue 12: the light config's loss falls by at least half.
TARGET_RATIO = 0.5
# Steps averaged for the start/end figures.
WINDOW = 10


def check_predictor(summary: dict) -> dict:
    """Load the trained checkpoint in the node's predictor and run it on a validation frame
    of the synthetic source (full-frame crop, as the node with crop 'full')."""
    from dir_ros.hand_model import load_hand_model, open_hand_dir
    from dir_ros.backends.dir import HandsPredictor
    from dir_ros.train.recipe import resolve_train_config
    from dir_ros.data.synthetic import SyntheticConfig, SyntheticHands

    cfg = resolve_train_config(CONFIG)
    s = cfg["data"]["synthetic"]
    gen = SyntheticHands(load_hand_model(open_hand_dir()), SyntheticConfig(
        seed=s["seed"], width=s["width"], height=s["height"], rotation_deg=s["rotation_deg"],
        pca_std=s["pca_std"], betas_std=s["betas_std"]))
    frame = gen.frame(int(s["train_frames"]))               # the first validation frame
    t0 = time.perf_counter()
    pred = HandsPredictor.from_config({"backend": "dir", "model_config": summary["model_config"],
                                       "weights": summary["checkpoint"], "crop": "full",
                                       "device": "cpu"})
    load_s = time.perf_counter() - t0
    result = pred.predict(frame.rgb, frame.K)
    hands = {side: getattr(result, side) for side in ("left", "right")}
    finite = all(np.isfinite(h.joints).all() and np.isfinite(h.vertices).all()
                 for h in hands.values())
    err = {}
    for side, h in hands.items():
        gt = frame.hands[side].joints
        err[side] = float(np.linalg.norm((h.joints - h.joints[0]) - (gt - gt[0]), axis=1).mean()
                          * 1000.0)
    return {"load_s": load_s, "network_ms": result.timings["network_ms"], "finite": bool(finite),
            "confidence": {s: float(h.confidence) for s, h in hands.items()},
            "wrist_relative_error_mm": err}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "train_smoke")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    summary = train(CONFIG, {"out_dir": str(args.out), "epochs": args.epochs,
                             "threads": args.threads, "val_at_start": True},
                    progress=not args.no_progress)
    wall = time.perf_counter() - t0
    history = json.loads((args.out / "history.json").read_text())
    loss = np.asarray(history["loss"])
    val = history["val"]
    fig = {
        "cpu": cpu_name(), "cpus_visible": os.cpu_count(), "torch_threads": args.threads,
        "torch": torch.__version__, "epochs": args.epochs, "steps": int(loss.size),
        "train_time_s": summary["time_s"], "wall_time_s": wall,
        "s_per_step": summary["time_s"] / max(loss.size, 1),
        "loss_first_step": float(loss[0]),
        f"loss_first_{WINDOW}_mean": float(loss[:WINDOW].mean()),
        f"loss_last_{WINDOW}_mean": float(loss[-WINDOW:].mean()),
        "val_start": {k: val[0][k] for k in ("loss", "mpjpe_mm", "mpvpe_mm", "mrrpe_mm")},
        "val_end": {k: val[-1][k] for k in ("loss", "mpjpe_mm", "mpvpe_mm", "mrrpe_mm")},
        "checkpoint": summary["checkpoint"],
    }
    fig["train_loss_ratio"] = fig[f"loss_last_{WINDOW}_mean"] / fig["loss_first_step"]
    fig["val_loss_ratio"] = fig["val_end"]["loss"] / fig["val_start"]["loss"]
    fig["predictor"] = check_predictor(summary)
    (args.out / "smoke.json").write_text(json.dumps(fig, indent=1))
    print(json.dumps(fig, indent=1))
    ok = fig["train_loss_ratio"] <= TARGET_RATIO and fig["predictor"]["finite"]
    print(f"training loss {fig['loss_first_step']:.2f} (first step) -> "
          f"{fig[f'loss_last_{WINDOW}_mean']:.2f} (mean of the last {WINDOW}) = "
          f"{100 * fig['train_loss_ratio']:.0f} %; validation loss {fig['val_start']['loss']:.2f}"
          f" -> {fig['val_end']['loss']:.2f} = {100 * fig['val_loss_ratio']:.0f} %; "
          f"{fig['steps']} steps in {fig['train_time_s']:.0f} s on {fig['cpu']} "
          f"({args.threads} thread(s)); predictor "
          f"{'OK' if fig['predictor']['finite'] else 'FAILED'}"
          f" -> {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
