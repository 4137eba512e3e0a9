#!/usr/bin/env python3
"""Choose the One-Euro defaults (smoothing.py): jitter on a still hand against lag on a moving one.

Synthetic 30 Hz sequences of one metric hand (21 keypoints of the open hand model at 0.5 m):
  * static: the hand still, every keypoint with independent Gaussian noise (--noise-mm per
    axis, about MediaPipe's frame-to-frame jitter on a still hand);
  * moving: the same hand sliding at --speed m/s, same noise.
For each (min_cutoff, beta) of a grid it prints the RMS keypoint error against the truth on
both (static = residual jitter, moving = lag plus jitter), next to the unfiltered error and
the EMA, and marks the chosen pair: the steadiest (smallest static error) among those whose
moving error is at most MAX_MOVING_RATIO times the unfiltered one (a bounded lag).
Usage: tools/ros_env.sh python scripts/tune_smoothing.py [--frames 300]
"""
from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

from dir_ros import geometry as geo
from dir_ros.hand_model import build_hand_layers
from dir_ros.results import FrameResult, HandsResult
from dir_ros.smoothing import EmaSmoother, OneEuroSmoother

FPS = 30.0
DEPTH_M = 0.5
MIN_CUTOFFS_HZ = (0.25, 0.5, 1.0, 2.0, 4.0)
BETAS = (0.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
SETTLE_FRAMES = 15  # the first frames (filter start-up) are not scored
# Lag budget of the choice: the moving hand's error may grow by a third over the unfiltered
# error (at 0.5 m/s about 2 mm of lag: well under a finger's width).
MAX_MOVING_RATIO = 1.35


def hand_keypoints() -> np.ndarray:
    """(21,3) m keypoints of the open right hand in its mean pose, 0.5 m in front."""
    layer = build_hand_layers()["right"]
    with torch.no_grad():
        out = layer(torch.tensor([[1.0, 0, 0, 0, 1, 0]]), torch.zeros(1, 45), torch.zeros(1, 10))
    return out.joints[0].numpy().astype(np.float64) + np.array([0.0, 0.0, DEPTH_M])


def frame(joints: np.ndarray) -> FrameResult:
    """A FrameResult with one valid metric right hand at joints (21,3) (vertices = joints)."""
    def hand(side: str, valid: bool) -> HandsResult:
        return HandsResult(side=side, valid=valid, confidence=1.0, vertices=joints.astype(np.float32),
                           joints=joints.astype(np.float32), wrist_position=joints[0].copy(),
                           wrist_quat=np.array([0, 0, 0, 1.0]), metric=True,
                           pose=np.zeros(48, np.float32), shape=np.zeros(10, np.float32),
                           keypoints_2d=np.zeros((21, 2), np.float32), faces=np.zeros((0, 3), np.int64))
    return FrameResult(left=hand("left", False), right=hand("right", True),
                       box=geo.CropBox(0, 0, 1))


def rms_error(smoother, truth: np.ndarray, noisy: np.ndarray) -> float:
    """RMS keypoint error (mm) of the filtered sequence against the truth, after settling."""
    errs = []
    for i, (t, n) in enumerate(zip(truth, noisy)):
        out = frame(n) if smoother is None else smoother(frame(n), i / FPS)
        if i >= SETTLE_FRAMES:
            errs.append(np.linalg.norm(out.right.joints - t, axis=1))
    return 1e3 * float(np.sqrt(np.mean(np.square(errs))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--noise-mm", type=float, default=3.0)
    parser.add_argument("--speed", type=float, default=0.5, help="m/s of the moving hand")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    base = hand_keypoints()
    n = args.frames
    static = np.repeat(base[None], n, axis=0)
    moving = static + (np.arange(n) / FPS * args.speed)[:, None, None] * np.array([1.0, 0, 0])
    noise = rng.normal(0, args.noise_mm * 1e-3, (2, n, 21, 3))
    seqs = {"static": (static, static + noise[0]), "moving": (moving, moving + noise[1])}
    raw = {k: rms_error(None, *v) for k, v in seqs.items()}
    print(f"unfiltered: static {raw['static']:.2f} mm, moving {raw['moving']:.2f} mm")
    rows = []
    for mc, beta in itertools.product(MIN_CUTOFFS_HZ, BETAS):
        res = {k: rms_error(OneEuroSmoother(mc, beta), *v) for k, v in seqs.items()}
        rows.append((res["static"], mc, beta, res))
    best = min(r for r in rows if r[3]["moving"] <= MAX_MOVING_RATIO * raw["moving"])
    print(f"{'min_cutoff':>10} {'beta':>6} {'static mm':>10} {'moving mm':>10}")
    for _, mc, beta, res in rows:
        mark = "  <- chosen" if (mc, beta) == best[1:3] else ""
        print(f"{mc:>10.2f} {beta:>6.1f} {res['static']:>10.2f} {res['moving']:>10.2f}{mark}")
    # The EMA with the same static jitter as the chosen One-Euro, for comparison.
    for factor in (0.1, 0.2, 0.3, 0.5):
        res = {k: rms_error(EmaSmoother(factor), *v) for k, v in seqs.items()}
        print(f"ema factor {factor:.1f}: static {res['static']:.2f} mm, moving {res['moving']:.2f} mm")


if __name__ == "__main__":
    main()
