#!/usr/bin/env python3
"""Choose the per-signal smoothing defaults (smoothing.DEFAULT_SIGNAL_PARAMS, DEFAULT_DEPTH_PARAMS)
on measured noise.

1. Noise (--measure): the landmark backend (the defaults: held hand size, coupling of
   meeting hands; no smoothing) runs on the drifting clips of ../shared/images
   (dir_ros.data.clips.DriftingClip: near-constant motion), and each signal's frame-to-frame
   noise is printed: sd = RMS second difference / sqrt(6) (white noise of sd s has second
   differences of sd sqrt(6) s), the median over the clips' hands, for the four signals the
   smoother filters apart: plane (the wrist across its ray, m at its depth), depth (as a
   fraction of the depth: its noise grows with it), orientation (rad) and pose (hand-frame
   keypoints, m RMS). Without --measure the figures recorded in MEASURED_NOISE (from such a
   run) are used.
2. Tuning: per signal, synthetic 30 Hz sequences with that noise: still, and moving at the
   signal's test speed (TEST_SPEED). For each (min_cutoff, beta) of a grid it prints the RMS
   error against the truth on both (still = residual jitter, moving = lag plus jitter) and
   marks the chosen pair: the steadiest (smallest still error) among those whose moving error
   is within the lag budget (MAX_MOVING_RATIO times the unfiltered one, or the motion in
   LAG_BUDGET_S, whichever is larger). beta is listed as the
   cutoff increase it gives at the test speed (beta = that / speed). The depth's Kalman
   filter (noise ratio = the measured one) is tuned the same way over its acceleration sd,
   on a still hand and one that starts moving in depth (see DEPTH_ONSET_S), with the same lag
   budget as the other signals.
Usage: tools/ros_env.sh python benchmarks/tune_smoothing.py [--measure] [--frames 300]
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the source tree's dir_ros

from dir_ros.post.smoothing import SIGNALS, DepthKalman, DepthParams, EuroParams, _Euro  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FPS = 30.0
# Frame-to-frame noise sd of each signal, measured with --measure on the three photos of
# ../shared/images (landmark backend defaults, 640x480 drifting clips; median over the six
# hands): plane m, depth m, orientation rad, pose m (RMS per keypoint).
# (depth: sd / depth).
MEASURED_NOISE = {"plane": 1.49e-3, "depth": 0.0134, "orientation": 0.0231, "pose": 1.59e-3}
# Depth test: a hand at DEPTH_TEST_M (the clips' hands: 0.17-0.36 m), still, or still for
# DEPTH_ONSET_S, moving along its ray at TEST_SPEED["depth"] for DEPTH_MOVE_S and still again
# (a start and a stop: a constant-velocity filter lags there, a steady ramp it follows);
# acceleration sds tried (m/s^2).
DEPTH_TEST_M = 0.35
DEPTH_ONSET_S = 1.0
DEPTH_MOVE_S = 1.0  # then it stops again (25 cm farther)
DEPTH_ACCELS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
# Test motion of each signal (units per second): a hand sliding across the image at 0.5 m/s,
# moving toward the camera at 0.25 m/s, the wrist turning at 2 rad/s (a quarter turn in
# 0.8 s), the fingers closing with keypoints moving at 0.3 m/s (RMS).
TEST_SPEED = {"plane": 0.5, "depth": 0.25, "orientation": 2.0, "pose": 0.3}
# Dimensions of each signal: plane (2), depth (1), orientation (3, rotation vector), pose
# (21 keypoints x 3: the speed is the RMS over the 21).
DIMS = {"plane": (2,), "depth": (1,), "orientation": (3,), "pose": (21, 3)}
MIN_CUTOFFS_HZ = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
# beta grid, as the cutoff increase (Hz) at the test speed
CUTOFF_GAINS_HZ = (0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
# derivative cutoffs tried: the paper's recommended 1 Hz, and half of it (a steadier speed
# estimate on noisy signals, at the cost of a later reaction to a start of motion)
D_CUTOFFS_HZ = (0.5, 1.0)
SETTLE_FRAMES = 15  # the first frames (filter start-up) are not scored
# Lag budget of the choice: the moving signal's error may grow by a third over the unfiltered
# error (the single-coefficient filter's budget before issue 19), or be as large as the
# signal's motion in LAG_BUDGET_S, whichever is larger: one 30 Hz frame of delay at the test
# speed (with noise of a millimetre or two against a test motion of 17 mm per frame, the
# ratio alone would allow no filtering at all).
MAX_MOVING_RATIO = 1.35
LAG_BUDGET_S = 1.0 / 30.0


def measure_noise(images: Path) -> dict[str, float]:
    """Median per-hand frame-to-frame noise sd of each signal on the drifting clips."""
    import cv2
    from tqdm import tqdm

    from dir_ros.common import geometry as geo
    from dir_ros.data.clips import DriftingClip, second_difference_norm
    from dir_ros.backends.landmarks.predictor import LandmarkPredictor
    from dir_ros.common.results import SIDES

    pred = LandmarkPredictor.from_config({})
    photos = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    if not photos:
        raise SystemExit(f"tune_smoothing: no photos in {images}")
    noise: dict[str, list[float]] = {s: [] for s in SIGNALS + ("depth",)}
    for path in tqdm(photos, unit="clip", leave=False, disable=None):
        clip = DriftingClip(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
        pred.reset()
        series = {side: {s: [] for s in SIGNALS + ("depth",)} for side in SIDES}
        for frame in clip.frames():
            result = pred.predict(frame, clip.K)
            for side in SIDES:
                h = result.hand(side)
                ok = h.valid and h.metric
                rot = geo.quat_to_matrix(h.wrist_quat)
                w = np.asarray(h.joints[0], np.float64)
                values = {"plane": w[:2] / w[2] if ok else None,  # x/z, y/z
                          "depth": w[2:] if ok else None,  # m (a ratio below)
                          "orientation": geo.matrix_to_axis_angle(rot) if ok else None,
                          "pose": (np.asarray(h.joints, np.float64) - w) @ rot if ok else None}
                for s, v in values.items():  # depth: (1,)
                    series[side][s].append(np.full(DIMS[s], np.nan) if v is None else v)
        for side in SIDES:
            z = np.array(series[side]["depth"])
            d2 = second_difference_norm(z)
            if np.isfinite(d2).any():
                noise["depth"].append(float(np.sqrt(np.nanmean(d2 ** 2) / 6.0)
                                            / np.nanmedian(z)))
            for s in SIGNALS:
                x = np.array(series[side][s])
                x = x.reshape(len(x), -1, 3) if s == "pose" else x
                if s == "plane":  # across the ray, in m at the hand's depth
                    x = x * np.nanmedian(np.array(series[side]["depth"])[:, 0])
                d2 = second_difference_norm(x)
                if s == "pose":  # RMS over the keypoints
                    d2 = np.sqrt(np.nanmean(d2 ** 2, axis=1))
                d2 = d2[np.isfinite(d2)]
                if len(d2):
                    # per component: the norm of a dim-vector of white noise / sqrt(dim)
                    per_axis = np.sqrt(np.mean(d2 ** 2) / (1 if s == "pose" else x.shape[-1]))
                    noise[s].append(float(per_axis / np.sqrt(6.0)))
    return {s: float(np.median(v)) for s, v in noise.items()}


def rms_error(params: EuroParams | None, truth: np.ndarray, noisy: np.ndarray,
              groups: int) -> float:
    """RMS error norm (per keypoint for pose: groups parts) of the filtered sequence against
    the truth, after settling."""
    f = _Euro(noisy[0])
    errs = []
    for i in range(1, len(noisy)):
        out = noisy[i] if params is None else f.step(noisy[i], 1.0 / FPS, params, groups=groups)
        if i >= SETTLE_FRAMES:
            errs.append(np.square(out - truth[i]).sum() / groups)
    return float(np.sqrt(np.mean(errs)))


def tune(signal: str, sigma: float, frames: int, rng: np.random.Generator) -> EuroParams:
    """Print the grid of one signal and return the chosen parameters."""
    dims = DIMS[signal]
    groups = dims[0] if len(dims) == 2 else 1
    still = np.zeros((frames,) + dims)
    direction = np.ones(dims) / np.sqrt(np.prod(dims)) * np.sqrt(groups)  # RMS speed 1 per part
    moving = still + (np.arange(frames) / FPS * TEST_SPEED[signal])[
        (slice(None),) + (None,) * len(dims)] * direction
    noise = rng.normal(0.0, sigma, (2, frames) + dims)
    seqs = {"still": (still, still + noise[0]), "moving": (moving, moving + noise[1])}
    raw = {k: rms_error(None, *v, groups) for k, v in seqs.items()}
    rows = []
    for mc, gain, dc in itertools.product(MIN_CUTOFFS_HZ, CUTOFF_GAINS_HZ, D_CUTOFFS_HZ):
        p = EuroParams(mc, gain / TEST_SPEED[signal], dc)
        res = {k: rms_error(p, *v, groups) for k, v in seqs.items()}
        rows.append((res["still"], mc, gain, res, p))
    budget = max(MAX_MOVING_RATIO * raw["moving"], LAG_BUDGET_S * TEST_SPEED[signal])
    ok = [r for r in rows if r[3]["moving"] <= budget]
    best = min(ok or rows, key=lambda r: r[0])
    print(f"\n{signal}: noise sd {sigma:.3g}, test speed {TEST_SPEED[signal]} /s; unfiltered "
          f"still {raw['still']:.3g}, moving {raw['moving']:.3g}")
    print(f"{'min_cutoff':>10} {'+Hz@v':>6} {'beta':>8} {'d_cutoff':>8} {'still':>10} "
          f"{'moving':>10}")
    for _, mc, gain, res, p in rows:
        mark = "  <- chosen" if p == best[4] else ""
        print(f"{mc:>10.2f} {gain:>6.2f} {p.beta:>8.3g} {p.d_cutoff:>8.2f} "
              f"{res['still']:>10.3g} {res['moving']:>10.3g}{mark}")
    return best[4]


def tune_depth(ratio: float, frames: int, rng: np.random.Generator) -> DepthParams:
    """Print the depth Kalman filter's acceleration grid and return the chosen parameters."""
    t = np.arange(frames) / FPS
    still = np.full(frames, DEPTH_TEST_M)
    swing = DEPTH_TEST_M + TEST_SPEED["depth"] * np.clip(t - DEPTH_ONSET_S, 0.0, DEPTH_MOVE_S)
    seqs = {name: (z, z * (1.0 + rng.normal(0.0, ratio, frames)))
            for name, z in (("still", still), ("moving", swing))}

    def rms(params: DepthParams | None, truth: np.ndarray, noisy: np.ndarray) -> float:
        f = DepthKalman(float(noisy[0]), params or DepthParams(ratio, 1.0))
        out = [noisy[i] if params is None else f.step(float(noisy[i]), 1.0 / FPS)
               for i in range(1, frames)]
        err = np.array(out[SETTLE_FRAMES - 1:]) - truth[SETTLE_FRAMES:]
        return float(np.sqrt(np.mean(err ** 2)))

    raw = {k: rms(None, *v) for k, v in seqs.items()}
    budget = max(MAX_MOVING_RATIO * raw["moving"], LAG_BUDGET_S * TEST_SPEED["depth"])
    rows = [(DepthParams(ratio, a), {k: rms(DepthParams(ratio, a), *v) for k, v in seqs.items()})
            for a in DEPTH_ACCELS]
    ok = [r for r in rows if r[1]["moving"] <= budget]
    best = min(ok or rows, key=lambda r: r[1]["still"])
    print(f"\ndepth (Kalman): noise {ratio:.3g} x depth at {DEPTH_TEST_M} m; unfiltered still "
          f"{raw['still']:.3g} m, moving {raw['moving']:.3g} m (budget {budget:.3g} m)")
    print(f"{'accel m/s^2':>11} {'still':>10} {'moving':>10}")
    for p, res in rows:
        mark = "  <- chosen" if p == best[0] else ""
        print(f"{p.accel:>11.3g} {res['still']:>10.3g} {res['moving']:>10.3g}{mark}")
    return best[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true",
                        help="measure the noise on the drifting clips first")
    parser.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "images")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    noise = dict(MEASURED_NOISE)
    if args.measure:
        noise = measure_noise(args.images)
        print("measured noise sd: " + ", ".join(f"{k} {v:.3g}" for k, v in noise.items()))
    rng = np.random.default_rng(args.seed)
    chosen = {s: tune(s, noise[s], args.frames, rng) for s in SIGNALS}
    depth = tune_depth(noise["depth"], args.frames, rng)
    print("\nchosen: " + ", ".join(f"{s} min_cutoff {p.min_cutoff:g} Hz, beta {p.beta:.3g}, "
                                   f"d_cutoff {p.d_cutoff:g} Hz" for s, p in chosen.items())
          + f"; depth noise ratio {depth.noise_ratio:.3g}, accel {depth.accel:g} m/s^2")


if __name__ == "__main__":
    main()
