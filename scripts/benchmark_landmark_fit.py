#!/usr/bin/env python3
"""Benchmark the landmark backend's hand fit (dir_ros.landmark_fit.HandFitter) on the CPU.

Prints, for B = 1 and B = 2 hands, the median wall time of HandFitter.fit and the keypoint
errors against the ground truth, for the full fit and for baselines run in the same process:
  * "closed-form root": Kabsch root rotation only (mean finger pose, zero betas),
  * "+ swing init": closed-form root and the bone-by-bone swing initialisation (0 LM steps),
  * "full fit": initialisation + Levenberg-Marquardt steps (the default HandFitter).
Targets: 21 keypoints of random plausible hands of the open hand model (or --model DIR),
noiseless and with Gaussian noise (--noise-mm). Also a warm start from the previous fit.

  python scripts/benchmark_landmark_fit.py [--model weights/open_hand] [--iters 50]
         [--noise-mm 3] [--samples 64] [--seed 0] [--json out/benchmark_landmark_fit.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np
import torch
from scipy.spatial.transform import Rotation

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dir_ros.hand_model import build_hand_layers, HandLayer  # noqa: E402
from dir_ros.landmark_fit import HandFitter  # noqa: E402

WARMUP_ITERS = 3  # untimed calls before each measurement (allocator, lazy init)
# Random plausible poses: the open hand model's leading PCA rows are hand synergies (grasp,
# hook, spread, thumb opposition, thumb flexion, pointing, ulnar/radial; make_open_hand.py),
# sampled in +-SYNERGY_RANGE; the other rows add small independent joint deviations.
NUM_SYNERGIES = 7
SYNERGY_RANGE = 1.5  # rad (rows are unit vectors over the 45 axis-angle values)
OTHER_PCA_RANGE = 0.3  # rad
BETA_RANGE = 1.0  # shape coefficients in +-1
M_TO_MM = 1e3
FAST_PERCENTILE = 10  # reported next to the median: timing on a machine shared with others


def random_hands(layer: HandLayer, n: int, rng: np.random.Generator) -> np.ndarray:
    """Keypoints (n,21,3) m of random plausible hands (random root rotation) at 0.5 m depth."""
    rot = Rotation.random(n, random_state=rng).as_matrix()
    rot6d = np.concatenate([rot[:, :, 0], rot[:, :, 1]], 1)
    pca = np.concatenate([rng.uniform(-SYNERGY_RANGE, SYNERGY_RANGE, (n, NUM_SYNERGIES)),
                          rng.uniform(-OTHER_PCA_RANGE, OTHER_PCA_RANGE, (n, 45 - NUM_SYNERGIES))],
                         1)
    betas = rng.uniform(-BETA_RANGE, BETA_RANGE, (n, 10))
    with torch.no_grad():
        out = layer(*(torch.tensor(x, dtype=torch.float32) for x in (rot6d, pca, betas)))
    return out.joints.double().numpy() + np.array([0.0, 0.0, 0.5])


def timed_ms(fn: Callable[[], object], iters: int) -> Tuple[float, float]:
    """(median, 10th percentile) wall time of fn() in ms over `iters` calls after warm-up;
    the percentile shows the uncontended cost on a shared machine."""
    for _ in range(WARMUP_ITERS):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(M_TO_MM * (time.perf_counter() - t))
    return statistics.median(times), float(np.percentile(times, FAST_PERCENTILE))


def errors_mm(joints: np.ndarray, truth: np.ndarray) -> Dict[str, float]:
    """Mean per-joint error, mean over hands of the max-joint error, worst joint (mm)."""
    err = np.linalg.norm(joints - truth, axis=-1) * M_TO_MM
    return {"mean_joint_mm": float(err.mean()), "max_joint_mean_mm": float(err.max(1).mean()),
            "worst_joint_mm": float(err.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="MANO-format folder (default: open hand)")
    ap.add_argument("--side", default="right", choices=("left", "right"))
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--samples", type=int, default=64, help="hands for the accuracy figures")
    ap.add_argument("--noise-mm", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads (0 = leave the process's setting)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    layer = build_hand_layers(args.model)[args.side]
    full = HandFitter(layer)
    variants = {"closed-form root": (HandFitter(layer, steps=0), False),
                "+ swing init": (HandFitter(layer, steps=0), True),
                "full fit": (full, True)}
    report: Dict[str, object] = {
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "fitter": {"steps": full.steps, "lr": full.lr, "pose_reg": full.pose_reg,
                   "shape_reg": full.shape_reg}}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fitter steps<="
          f"{full.steps}, pose_reg {full.pose_reg:g}, shape_reg {full.shape_reg:g}")
    truth = random_hands(layer, args.samples, rng)
    noisy = truth + rng.normal(0.0, args.noise_mm / M_TO_MM, truth.shape)
    for name, (fitter, swing) in variants.items():
        fitter.swing_init = swing
        row: Dict[str, object] = {}
        for bsz in (1, 2):
            row[f"ms_B{bsz}"], row[f"ms_B{bsz}_p10"] = timed_ms(lambda: fitter.fit(truth[:bsz]),
                                                                args.iters)
            row[f"steps_B{bsz}"] = fitter.fit(truth[:bsz]).steps
        clean = fitter.fit(truth)
        row["noiseless"] = {**errors_mm(clean.joints, truth), "steps": clean.steps}
        noisy_fit = fitter.fit(noisy)
        row[f"noise_{args.noise_mm:g}mm_vs_truth"] = {**errors_mm(noisy_fit.joints, truth),
                                                      "residual_mm": float(
                                                          noisy_fit.residual_mm.mean())}
        report[name] = row
        nl = row["noiseless"]
        nz = row[f"noise_{args.noise_mm:g}mm_vs_truth"]
        print(f"{name:17s} B=1 {row['ms_B1']:5.2f} ms ({row['steps_B1']} steps)  B=2 "
              f"{row['ms_B2']:5.2f} ms ({row['steps_B2']} steps; p10 {row['ms_B2_p10']:.2f}) | "
              f"noiseless B={args.samples}: "
              f"mean {nl['mean_joint_mm']:5.2f}, max-joint mean {nl['max_joint_mean_mm']:5.2f}, "
              f"worst {nl['worst_joint_mm']:5.2f} mm, steps {nl['steps']} | "
              f"{args.noise_mm:g} mm noise: mean {nz['mean_joint_mm']:5.2f} mm vs truth, "
              f"residual {nz['residual_mm']:5.2f} mm")
    # Warm start: the previous frame's fit, the hand moved a little (small finger motion).
    prev = full.fit(truth[:2])
    moved = truth[:2] + rng.normal(0.0, 1e-3, truth[:2].shape)
    cold, warm = full.fit(moved), full.fit(moved, init=prev.params)
    warm_ms, _ = timed_ms(lambda: full.fit(moved, init=prev.params), args.iters)
    report["warm_start_B2"] = {"cold_steps": cold.steps, "warm_steps": warm.steps,
                               "cold_residual_mm": float(cold.residual_mm.mean()),
                               "warm_residual_mm": float(warm.residual_mm.mean()),
                               "warm_ms": warm_ms}
    print(f"warm start B=2: {warm_ms:.2f} ms, steps {warm.steps} (cold {cold.steps}), residual "
          f"{warm.residual_mm.mean():.2f} mm (cold {cold.residual_mm.mean():.2f})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
