#!/usr/bin/env python3
"""Benchmark the landmark backend's hand fit (dir_ros.backends.landmarks.fit.HandFitter) on the CPU.

Prints, for B = 1 and B = 2 hands, the median wall time of HandFitter.fit (cold start on
noiseless and on noisy targets, warm start from the previous fit) and the keypoint errors
against the ground truth, for the default fit and for baselines run in the same process:
  * "closed-form root": Kabsch root rotation only (mean finger pose, zero betas),
  * "+ swing init": closed-form root and the bone-by-bone swing initialisation (0 LM steps),
  * "full fit": initialisation + Levenberg-Marquardt steps (the default HandFitter),
  * "run to convergence": the same without the relative stop (rel_tol 0, up to
    CONVERGED_STEPS steps; the stopping rule of the previous version, uncapped): what the
    early stop costs in accuracy,
  * with --compare-with FILE, "previous version": HandFitter of another landmark_fit.py
    (e.g. `git show f07212c:dir_ros/landmark_fit.py > /tmp/landmark_fit_old.py`; a later
    dir_ros/backends/landmarks/fit.py also loads alone, its sibling modules by name), with
    the speed-up of the default fit over it.
Targets: 21 keypoints of random plausible hands of the open hand model (or --model DIR),
noiseless and with Gaussian noise (--noise-mm); warm start: the previous fit of the same
hands, the targets moved by WARM_MOTION_MM of noise. With --images, also real MediaPipe
world landmarks of the hands on those photos (each letterboxed into 640x480 and detected
--photo-frames times in video mode, rotated into the camera's view as the landmark backend
does), fitted frame by frame as the backend does (both hands in one call; the previous
version one call per hand, as its backend did): cold, and warm from the previous frame;
time per frame, steps and fit residual (no ground truth there). Timing rounds alternate between the
variants, so a shared machine's load hits all alike; one torch thread by default, as the
landmark backend runs the fit (landmark_backend.FIT_TORCH_THREADS).

  python benchmarks/benchmark_landmark_fit.py [--model weights/open_hand] [--rounds 10]
         [--calls 5] [--noise-mm 3] [--samples 64] [--seed 0] [--threads 1]
         [--images ../shared/images] [--compare-with /tmp/landmark_fit_old.py]
         [--json docs/figures/benchmark_landmark_fit.json]
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
from scipy.spatial.transform import Rotation

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dir_ros.hand_model import build_hand_layers, HandLayer  # noqa: E402
from dir_ros.backends.landmarks.predictor import FIT_TORCH_THREADS  # noqa: E402
from dir_ros.backends.landmarks.fit import NUM_FIT_PARAMS, HandFitter  # noqa: E402
from dir_ros.common.machine import machine_info, write_figures  # noqa: E402

WARMUP_CALLS = 3  # untimed calls per case before the rounds (allocator, lazy init)
# Random plausible poses: the open hand model's leading PCA rows are hand synergies (grasp,
# hook, spread, thumb opposition, thumb flexion, pointing, ulnar/radial; make_open_hand.py),
# sampled in +-SYNERGY_RANGE; the other rows add small independent joint deviations.
NUM_SYNERGIES = 7
SYNERGY_RANGE = 1.5  # rad (rows are unit vectors over the 45 axis-angle values)
OTHER_PCA_RANGE = 0.3  # rad
BETA_RANGE = 1.0  # shape coefficients in +-1
DEPTH_M = 0.5  # targets' distance from the camera
WARM_MOTION_MM = 1.0  # per-coordinate noise between the previous frame and this one
CONVERGED_STEPS = 50  # step limit of the "run to convergence" baseline
M_TO_MM = 1e3
FAST_PERCENTILE = 10  # reported next to the median: timing on a machine shared with others
BATCHES = (1, 2)
PHOTO_SIZE = (640, 480)  # frame the photos are letterboxed into, px (the backend benchmark's)
PHOTO_HFOV_DEG = 60.0  # horizontal field of view of that virtual camera


def random_hands(layer: HandLayer, n: int, rng: np.random.Generator) -> np.ndarray:
    """Keypoints (n,21,3) m of random plausible hands (random root rotation) at DEPTH_M."""
    rot = Rotation.random(n, random_state=rng).as_matrix()
    rot6d = np.concatenate([rot[:, :, 0], rot[:, :, 1]], 1)
    pca = np.concatenate([rng.uniform(-SYNERGY_RANGE, SYNERGY_RANGE, (n, NUM_SYNERGIES)),
                          rng.uniform(-OTHER_PCA_RANGE, OTHER_PCA_RANGE, (n, 45 - NUM_SYNERGIES))],
                         1)
    betas = rng.uniform(-BETA_RANGE, BETA_RANGE, (n, 10))
    with torch.no_grad():
        out = layer(*(torch.tensor(x, dtype=torch.float32) for x in (rot6d, pca, betas)))
    return out.joints.double().numpy() + np.array([0.0, 0.0, DEPTH_M])


def errors_mm(joints: np.ndarray, truth: np.ndarray) -> Dict[str, float]:
    """Mean per-joint error, mean over hands of the max-joint error, worst joint (mm)."""
    err = np.linalg.norm(joints - truth, axis=-1) * M_TO_MM
    return {"mean_joint_mm": float(err.mean()), "max_joint_mean_mm": float(err.max(1).mean()),
            "worst_joint_mm": float(err.max())}


def load_module(path: Path) -> ModuleType:
    """Import a landmark_fit.py of another version under a private name."""
    spec = importlib.util.spec_from_file_location("landmark_fit_compared", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--compare-with: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def photo_frames(images: Path, frames: int) -> List[List[Dict[str, np.ndarray]]]:
    """Per photo, `frames` frames of side -> target (21,3) m: MediaPipe world landmarks,
    wrist-relative, rotated into the camera's view along the hand's ray (as
    landmark_backend.LandmarkPredictor does before its fit)."""
    import cv2

    from dir_ros.common.geometry import pinhole_K, ray_rotation
    from dir_ros.cli.infer import expand_inputs, letterbox
    from dir_ros.config import make_detector

    K = pinhole_K(*PHOTO_SIZE, PHOTO_HFOV_DEG)
    detector = make_detector({"mirrored_input": False})
    sequences = []
    for photo in expand_inputs([images]):
        rgb = cv2.cvtColor(letterbox(cv2.imread(str(photo)), *PHOTO_SIZE), cv2.COLOR_BGR2RGB)
        detector.reset()
        seq = []
        for _ in range(frames):
            frame = {}
            for side, det in detector(rgb).items():
                px = np.asarray(det.landmarks_px, dtype=np.float64)
                world = np.asarray(det.world, dtype=np.float64)
                frame[side] = (world - world[0]) @ ray_rotation(K, px.mean(axis=0)).T
            seq.append(frame)
        sequences.append(seq)
    return sequences


FrameFit = Callable[[Dict[str, np.ndarray], Dict[str, np.ndarray]],
                    Dict[str, Tuple[np.ndarray, int, float]]]


def frame_fitter(make: Callable[..., object], layers: Dict[str, HandLayer],
                 batched: bool) -> FrameFit:
    """fit(targets side -> (21,3), previous side -> params (61,)) -> side -> (params, steps,
    residual mm) for one frame: both hands in one call with a side -> layer fitter (the
    landmark backend's way; a hand without a previous fit gets a NaN init row), or one call
    per hand (batched False: the previous version's backend)."""
    if batched:
        fitter = make(layers)

        def fit(targets: Dict[str, np.ndarray], prev: Dict[str, np.ndarray]):
            sides = list(targets)
            init = None if not prev else np.stack(
                [prev.get(s, np.full(NUM_FIT_PARAMS, np.nan)) for s in sides])
            res = fitter.fit(np.stack([targets[s] for s in sides]), init=init, sides=sides)
            return {s: (res.params[i], res.steps, float(res.residual_mm[i]))
                    for i, s in enumerate(sides)}
        return fit
    fitters = {side: make(lay) for side, lay in layers.items()}

    def fit_each(targets: Dict[str, np.ndarray], prev: Dict[str, np.ndarray]):
        out = {}
        for side, target in targets.items():
            init = prev[side][None] if side in prev else None
            res = fitters[side].fit(target[None], init=init)
            out[side] = (res.params[0], res.steps, float(res.residual_mm[0]))
        return out
    return fit_each


def photo_run(fit: FrameFit, sequences: List[List[Dict[str, np.ndarray]]], warm: bool
              ) -> Tuple[List[float], List[int], List[float]]:
    """Fit every frame of every sequence: per frame the wall time (ms) and the steps (the
    most of its hands), per hand the residual (mm); warm = each hand from its previous
    frame's fit."""
    times, steps, resid = [], [], []
    for seq in sequences:
        prev: Dict[str, np.ndarray] = {}
        for targets in seq:
            if not targets:
                continue
            t = time.perf_counter()
            out = fit(targets, prev if warm else {})
            times.append(M_TO_MM * (time.perf_counter() - t))
            steps.append(max(v[1] for v in out.values()))
            resid += [v[2] for v in out.values()]
            prev = {side: v[0] for side, v in out.items()}
    return times, steps, resid


def time_rounds(cases: Dict[str, Callable[[], object]], rounds: int, calls: int
                ) -> Dict[str, Tuple[float, float]]:
    """(median, FAST_PERCENTILE percentile) ms per call of each case; each round times
    `calls` calls of every case in turn."""
    for fn in cases.values():
        for _ in range(WARMUP_CALLS):
            fn()
    times: Dict[str, List[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            for _ in range(calls):
                t = time.perf_counter()
                fn()
                times[name].append(M_TO_MM * (time.perf_counter() - t))
    return {name: (statistics.median(v), float(np.percentile(v, FAST_PERCENTILE)))
            for name, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="MANO-format folder (default: open hand)")
    ap.add_argument("--side", default="right", choices=("left", "right"))
    ap.add_argument("--rounds", type=int, default=10, help="alternating timing rounds")
    ap.add_argument("--calls", type=int, default=5, help="timed calls per case and round")
    ap.add_argument("--samples", type=int, default=64, help="hands for the accuracy figures")
    ap.add_argument("--noise-mm", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=FIT_TORCH_THREADS,
                    help="torch.set_num_threads (0 = leave the process's setting)")
    ap.add_argument("--images", type=Path, default=None,
                    help="photos whose MediaPipe landmarks to fit as well (e.g. ../shared/images)")
    ap.add_argument("--photo-frames", type=int, default=5, help="detections per photo")
    ap.add_argument("--compare-with", type=Path, default=None,
                    help="landmark_fit.py of another version to time and score alongside")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    layers = build_hand_layers(args.model)
    layer = layers[args.side]
    makers: Dict[str, Callable[..., object]] = {
        "closed-form root": lambda lay: HandFitter(lay, steps=0, swing_init=False),
        "+ swing init": lambda lay: HandFitter(lay, steps=0),
        "full fit": HandFitter,
        "run to convergence": lambda lay: HandFitter(lay, steps=CONVERGED_STEPS, rel_tol=0.0)}
    if args.compare_with is not None:
        makers["previous version"] = load_module(args.compare_with).HandFitter
    variants = {name: make(layer) for name, make in makers.items()}
    full = variants["full fit"]
    noise_key = f"noise_{args.noise_mm:g}mm_vs_truth"
    report: Dict[str, object] = {
        **machine_info(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "fitter": {"steps": full.steps, "lr": full.lr, "pose_reg": full.pose_reg,
                   "shape_reg": full.shape_reg, "rel_tol": full.rel_tol},
        "samples": args.samples, "noise_mm": args.noise_mm, "warm_motion_mm": WARM_MOTION_MM,
        "timing": {"rounds": args.rounds, "calls_per_round": args.calls}}
    print(f"{report['cpu']}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"fitter steps<={full.steps}, rel_tol {full.rel_tol:g}, pose_reg {full.pose_reg:g}, "
          f"shape_reg {full.shape_reg:g}")
    truth = random_hands(layer, args.samples, rng)
    noisy = truth + rng.normal(0.0, args.noise_mm / M_TO_MM, truth.shape)
    moved = noisy + rng.normal(0.0, WARM_MOTION_MM / M_TO_MM, truth.shape)
    # Timed cases: cold start (noiseless, noisy) and warm start (previous fit of the noisy
    # targets, the hands then moved), per variant and batch size.
    cases: Dict[str, Callable[[], object]] = {}
    steps: Dict[str, int] = {}
    for name, fitter in variants.items():
        for bsz in BATCHES:
            prev = fitter.fit(noisy[:bsz]).params
            runs = {"cold": (truth[:bsz], None), "cold_noisy": (noisy[:bsz], None),
                    "warm": (moved[:bsz], prev)}
            for kind, (tgt, init) in runs.items():
                key = f"{name}|{kind}_B{bsz}"
                cases[key] = (lambda f=fitter, t=tgt, i=init: f.fit(t, init=i))
                steps[key] = fitter.fit(tgt, init=init).steps
    timed = time_rounds(cases, args.rounds, args.calls)
    rows: Dict[str, Dict[str, object]] = {}
    for name, fitter in variants.items():
        row: Dict[str, object] = {}
        for key, (median, fast) in timed.items():
            if key.startswith(name + "|"):
                case = key.split("|", 1)[1]
                row[f"{case}_ms"], row[f"{case}_ms_p{FAST_PERCENTILE}"] = median, fast
                row[f"{case}_steps"] = steps[key]
        clean = fitter.fit(truth)
        row["noiseless"] = {**errors_mm(clean.joints, truth), "steps": clean.steps}
        noisy_fit = fitter.fit(noisy)
        row[noise_key] = {**errors_mm(noisy_fit.joints, truth),
                          "residual_mm": float(noisy_fit.residual_mm.mean()),
                          "steps": noisy_fit.steps}
        rows[name] = row
        nl, nz = row["noiseless"], row[noise_key]
        times = "  ".join(f"B={b} cold {row[f'cold_B{b}_ms']:5.2f} ({row[f'cold_B{b}_steps']}) "
                          f"noisy {row[f'cold_noisy_B{b}_ms']:5.2f} "
                          f"({row[f'cold_noisy_B{b}_steps']}) warm {row[f'warm_B{b}_ms']:5.2f} "
                          f"({row[f'warm_B{b}_steps']})" for b in BATCHES)
        print(f"{name:18s} ms (steps): {times}")
        print(f"{'':18s} B={args.samples} noiseless: mean {nl['mean_joint_mm']:5.2f}, max-joint "
              f"mean {nl['max_joint_mean_mm']:5.2f}, worst {nl['worst_joint_mm']:5.2f} mm "
              f"({nl['steps']} steps) | {args.noise_mm:g} mm noise: mean "
              f"{nz['mean_joint_mm']:5.2f}, worst {nz['worst_joint_mm']:5.2f} mm vs truth, "
              f"residual {nz['residual_mm']:5.2f} mm ({nz['steps']} steps)")
    report["variants"] = rows
    if args.images is not None:
        report["photos"] = photo_figures(args, layers, makers)
    if "previous version" in rows:  # synthetic targets
        old, new = rows["previous version"], rows["full fit"]
        speedup = {f"{case}_B{b}": old[f"{case}_B{b}_ms"] / new[f"{case}_B{b}_ms"]
                   for case in ("cold", "cold_noisy", "warm") for b in BATCHES}
        report["speedup_over_previous"] = speedup
        print("speed-up of the full fit over the previous version: " + ", ".join(
            f"{k} {v:.2f}x" for k, v in speedup.items()))
        if "photos" in report:
            photo = report["photos"]
            ratio = {kind: photo["previous version"][f"{kind}_ms"]
                     / photo["full fit"][f"{kind}_ms"] for kind in ("cold", "warm")}
            report["speedup_over_previous_photos"] = ratio
            print(f"per frame of the photos' landmarks: cold {ratio['cold']:.2f}x, warm "
                  f"{ratio['warm']:.2f}x")
    if args.json:
        write_figures(Path(args.json), report)


def photo_figures(args: argparse.Namespace, layers: Dict[str, HandLayer],
                  makers: Dict[str, Callable[..., object]]) -> Dict[str, object]:
    """Fit figures on real MediaPipe landmarks of --images, per fitting variant (only those
    that iterate): median and mean ms per frame, mean and max steps, mean residual, cold and
    warm; timed in alternating rounds (one round = every sequence once)."""
    sequences = photo_frames(args.images, args.photo_frames)
    names = [n for n in makers if n not in ("closed-form root", "+ swing init")]
    fits = {n: frame_fitter(makers[n], layers, batched=n != "previous version") for n in names}
    runs = [(n, warm) for n in names for warm in (False, True)]
    stats = {run: photo_run(fits[run[0]], sequences, run[1]) for run in runs}  # + warm-up
    times: Dict[Tuple[str, bool], List[float]] = {run: [] for run in runs}
    for _ in range(args.rounds):
        for run in runs:
            times[run] += photo_run(fits[run[0]], sequences, run[1])[0]
    hands = sum(len(f) for seq in sequences for f in seq)
    out: Dict[str, object] = {"photos_dir": str(args.images), "photos": len(sequences),
                              "frames_per_photo": args.photo_frames, "hands": hands}
    print(f"photos: {len(sequences)} x {args.photo_frames} frames, {hands} hands of MediaPipe "
          f"landmarks from {args.images}; per frame (both hands: one batched call, the "
          f"previous version one call per hand)")
    for n in names:
        row = {}
        for warm, kind in ((False, "cold"), (True, "warm")):
            _, steps, resid = stats[(n, warm)]
            row[f"{kind}_ms"] = statistics.median(times[(n, warm)])
            row[f"{kind}_ms_mean"] = float(np.mean(times[(n, warm)]))
            row[f"{kind}_steps_mean"] = float(np.mean(steps))
            row[f"{kind}_steps_max"] = int(max(steps))
            row[f"{kind}_residual_mm"] = float(np.mean(resid))
        out[n] = row
        print(f"{n:18s} " + "  ".join(
            f"{kind} {row[f'{kind}_ms']:5.2f} ms (mean {row[f'{kind}_ms_mean']:5.2f}), steps "
            f"{row[f'{kind}_steps_mean']:.2f} (max {row[f'{kind}_steps_max']}), residual "
            f"{row[f'{kind}_residual_mm']:.3f} mm" for kind in ("cold", "warm")))
    return out


if __name__ == "__main__":
    main()
