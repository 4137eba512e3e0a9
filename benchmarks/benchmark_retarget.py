#!/usr/bin/env python3
"""Benchmark what a robot consumes (dir_ros.robot) beside the landmark backend, in one run.

On each photo (samples/*.jpg by default), --frames frames in a row as a still video (the
predictor and the retargeters reset between photos): the landmark backend's frame time
(predict(rgb, K), K from a 60 degree field of view), then per valid hand the robot-hand joint
commands (dex-retargeting, --robot allegro | leap), the fingertip / all keypoint frames and
the grasp state. Prints the median and 90th percentile of each, the retargeting cost per
hand per frame as a fraction of the backend's frame time, the first-frame (cold) retargeting
cost, and checks every command is finite and within the URDF limits. Also:
  * grasp figures behind the pinch thresholds (dir_ros/robot/grasp.py): thumb-index / thumb-
    middle distances and aperture of the synthetic poses and of every photo's hands; with
    --grasp the contact scan (thumb and index distal segments touching) and a noise test:
    flips of the pinch flag of a hand held at the enter threshold with --noise-mm of keypoint
    noise per axis, with the hysteresis band and without it (enter = exit);
  * with --figure PNG, the picture of the README: a photo's fitted hand (its keypoint frames,
    in dex-retargeting's wrist frame) beside the retargeted Allegro and LEAP hands' link
    frames.

  python benchmarks/benchmark_retarget.py [--images samples] [--frames 20] [--robot allegro]
         [--grasp] [--json docs/figures/benchmark_retarget.json]
         [--figure docs/robot_hand_retarget.png --figure-photo samples/person_room.jpg]
Report the machine's load (printed) beside the figures: the CPU is shared.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dir_ros.common import geometry as geo  # noqa: E402
from dir_ros.common.machine import machine_info, write_figures  # noqa: E402
from dir_ros.common.results import SIDES  # noqa: E402
from dir_ros.robot import grasp as gr  # noqa: E402
from dir_ros.robot import joint_frames as jf  # noqa: E402
from dir_ros.robot import retarget as rt  # noqa: E402
from dir_ros.robot.synthetic import synthetic_hand  # noqa: E402

HFOV_DEG = 60.0  # the field of view the samples are run with (no calibration)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MS = 1e3
# Contact scan of --grasp (right hand): index flexion scale, thumb flexion scale and thumb
# opposition (rad) grids; distal segments "touch" when their surfaces are closer than this.
SCAN_INDEX = np.linspace(0.0, 1.2, 13)
SCAN_THUMB = np.linspace(0.0, 1.5, 16)
SCAN_OPPOSITION = np.linspace(0.0, 1.5, 16)
TOUCH_M = 0.003
# Skinning weight above which a vertex belongs to a segment (the MANO joint that moves it).
SEGMENT_WEIGHT = 0.5
THUMB_DISTAL_JOINT, INDEX_DISTAL_JOINT = 15, 3  # MANO joints of the two distal segments
NOISE_FRAMES = 3000  # frames of the pinch-flag noise test
FIGURE_ROBOTS = ("allegro", "leap")
TRIAD_M = 0.012  # length of the drawn frame axes (m, human scale)
# 3D view of the hand panels: from the palm side (+x of the wrist frame), fingers (+z) up,
# turned a little to show depth (matplotlib elevation / azimuth, degrees).
VIEW_ELEV_DEG, VIEW_AZIM_DEG = 12.0, 30.0


def _pct(values: List[float], q: float) -> float:
    """q-th percentile of values (NaN when empty)."""
    return float(np.percentile(values, q)) if values else float("nan")


def _photos(folders: List[str]) -> List[Path]:
    """Image files of the given folders (or files), sorted."""
    out: List[Path] = []
    for item in folders:
        p = Path(item)
        out += [p] if p.is_file() else sorted(f for f in p.iterdir()
                                               if f.suffix.lower() in IMAGE_SUFFIXES)
    return out


def _read_rgb(path: Path) -> np.ndarray:
    """RGB uint8 (H,W,3) of an image file."""
    import cv2

    bgr = cv2.imread(str(path))
    if bgr is None:
        raise SystemExit(f"benchmark_retarget: cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def run_photos(photos: List[Path], frames: int, robot: str) -> Tuple[dict, dict]:
    """Timings over the photos and the last frame's hands per photo."""
    from dir_ros.predictor import build_predictor

    predictor = build_predictor(str(ROOT / "config" / "hands.yaml"))
    group = rt.HandRetargeters.from_spec(robot)
    tracker = gr.GraspTracker()
    t: Dict[str, List[float]] = {k: [] for k in ("backend", "retarget", "retarget_cold",
                                                 "frames_tips", "frames_all", "grasp")}
    hands_per_frame: List[int] = []
    within_limits = True
    last: dict = {}
    for photo in photos:
        rgb = _read_rgb(photo)
        K = geo.pinhole_K(rgb.shape[1], rgb.shape[0], HFOV_DEG)
        predictor.reset()
        group.reset()
        tracker.reset()
        for i in range(frames):
            t0 = time.perf_counter()
            result = predictor.predict(rgb, K)
            t["backend"].append((time.perf_counter() - t0) * MS)
            valid = [h for h in result.hands() if h.valid]
            hands_per_frame.append(len(valid))
            for hand in valid:
                r = group.retargeters[hand.side]
                t0 = time.perf_counter()
                q = r.retarget(hand.joints, hand.wrist_quat)
                t["retarget_cold" if i == 0 else "retarget"].append((time.perf_counter() - t0) * MS)
                within_limits &= bool(np.all(np.isfinite(q)) and np.all(q >= r.lower)
                                      and np.all(q <= r.upper))
                for mode in ("fingertips", "all"):
                    t0 = time.perf_counter()
                    jf.hand_keypoint_frames(hand, mode)
                    t["frames_tips" if mode == "fingertips" else "frames_all"].append(
                        (time.perf_counter() - t0) * MS)
                t0 = time.perf_counter()
                state = tracker.update(hand)
                t["grasp"].append((time.perf_counter() - t0) * MS)
                if i == frames - 1:
                    last[(photo.name, hand.side)] = (hand, q, state)
    timing = {f"{k}_ms_median": statistics.median(v) if v else float("nan")
              for k, v in t.items()}
    timing.update({f"{k}_ms_p90": _pct(v, 90) for k, v in t.items()})
    timing["hands_per_frame_mean"] = float(np.mean(hands_per_frame))
    timing["retarget_per_frame_over_backend"] = (
        timing["retarget_ms_median"] * timing["hands_per_frame_mean"]
        / timing["backend_ms_median"])
    timing["commands_finite_within_urdf_limits"] = within_limits
    return timing, last


def grasp_figures(last: dict) -> dict:
    """Thumb-index / thumb-middle distances and aperture (mm) of the synthetic poses and of
    each photo's hands."""
    out: dict = {"synthetic": {}, "photos": {}}
    for pose in ("open", "pinch", "fist"):
        ti, tm, ap = gr.grasp_measures(synthetic_hand("right", pose).joints)
        out["synthetic"][pose] = {"thumb_index_mm": ti * MS, "thumb_middle_mm": tm * MS,
                                  "aperture_mm": ap * MS}
    for (photo, side), (_, _, s) in sorted(last.items()):
        out["photos"][f"{photo} {side}"] = {
            "thumb_index_mm": s.thumb_index_m * MS, "thumb_middle_mm": s.thumb_middle_m * MS,
            "aperture_mm": s.aperture_m * MS, "pinch": s.pinch}
    return out


def contact_scan() -> dict:
    """Fingertip keypoint distance where the thumb's and index's distal segments touch, over
    a grid of index flexion x thumb flexion x opposition (right hand)."""
    import torch

    from dir_ros.robot import synthetic as syn

    layer = syn._layers()["right"]
    weights = layer.th_weights.numpy()
    thumb = weights[:, THUMB_DISTAL_JOINT] > SEGMENT_WEIGHT
    index = weights[:, INDEX_DISTAL_JOINT] > SEGMENT_WEIGHT
    spec = syn._POSE_SPECS
    saved = dict(spec["pinch"])
    tips: List[float] = []
    try:
        for si in SCAN_INDEX:
            for st in SCAN_THUMB:
                for so in SCAN_OPPOSITION:
                    spec["pinch"] = {"index": (0.8 * si, 1.0 * si, 0.6 * si),
                                     "thumb": (0.5 * st, 0.6 * st, 0.6 * st),
                                     "opposition": (so,)}
                    aa = syn.finger_pose("pinch", "right")
                    with torch.no_grad():
                        out = layer(torch.tensor([[1.0, 0, 0, 0, 1, 0]]), syn._pca(layer, aa),
                                    torch.zeros(1, 10))
                    v = out.vertices[0].double().numpy()
                    j = out.joints[0].double().numpy()
                    gap = np.linalg.norm(v[thumb][:, None] - v[index][None], axis=-1).min()
                    if gap < TOUCH_M:
                        tips.append(float(np.linalg.norm(j[4] - j[8])))
    finally:
        spec["pinch"] = saved
    poses = len(SCAN_INDEX) * len(SCAN_THUMB) * len(SCAN_OPPOSITION)
    return {"poses": poses, "touching": len(tips), "tip_mm_min": min(tips) * MS,
            "tip_mm_median": statistics.median(tips) * MS, "tip_mm_max": max(tips) * MS}


def noise_flips(noise_mm: float, seed: int = 0) -> dict:
    """Pinch-flag flips per 100 frames of a still hand whose thumb-index distance is the enter
    threshold, with noise_mm of Gaussian noise per axis on every keypoint: with the band and
    without it (one threshold)."""
    rng = np.random.default_rng(seed)
    base = synthetic_hand("right", "open")
    j0 = base.joints.astype(np.float64)
    d = j0[4] - j0[8]
    j0[4] = j0[8] + d / np.linalg.norm(d) * gr.PINCH_ENTER_M
    out = {}
    for name, tracker in (("with_band", gr.GraspTracker()),
                          ("one_threshold", gr.GraspTracker(gr.PINCH_ENTER_M,
                                                            gr.PINCH_ENTER_M + 1e-9))):
        flags = []
        for _ in range(NOISE_FRAMES):
            hand = base.__class__(**{**base.__dict__,
                                     "joints": j0 + rng.normal(0, noise_mm / MS, j0.shape)})
            flags.append(tracker.update(hand).pinch)
        out[name] = 100.0 * float(np.count_nonzero(np.diff(flags))) / NOISE_FRAMES
    return out


def _urdf_tree(path: Path) -> List[Tuple[str, str]]:
    """(parent link, child link) of every URDF joint."""
    root = ET.parse(path).getroot()
    return [(j.find("parent").get("link"), j.find("child").get("link"))
            for j in root.findall("joint")]


def _triad(ax, origin: np.ndarray, rot: np.ndarray, length: float) -> None:
    """Draw a frame's x (red), y (green), z (blue) axes."""
    for k, colour in enumerate(("#d62728", "#2ca02c", "#1f77b4")):
        end = origin + rot[:, k] * length
        ax.plot(*zip(origin, end), color=colour, linewidth=1.2)


def _equal_axes(ax, pts: np.ndarray) -> None:
    """Equal scale on the three axes around pts (N,3), palm-side view, light ticks."""
    centre = (pts.max(0) + pts.min(0)) / 2
    half = (pts.max(0) - pts.min(0)).max() / 2 * 1.1
    for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre):
        setter(c - half, c + half)
    ax.view_init(elev=VIEW_ELEV_DEG, azim=VIEW_AZIM_DEG)
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_ticklabels([])
    ax.set_xlabel("x", labelpad=-12)
    ax.set_ylabel("y", labelpad=-12)
    ax.set_zlabel("z", labelpad=-12)


def draw_figure(path: Path, photo: Path, side: str, frames: int) -> dict:
    """Photo (fitted keypoints drawn over it) | fitted hand with its keypoint frames, in
    dex-retargeting's wrist frame | retargeted Allegro | retargeted LEAP (link frames)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dir_ros.predictor import build_predictor

    predictor = build_predictor(str(ROOT / "config" / "hands.yaml"))
    rgb = _read_rgb(photo)
    K = geo.pinhole_K(rgb.shape[1], rgb.shape[0], HFOV_DEG)
    robots = {name: rt.Retargeter(rt.resolve_retarget_config(name, side), side)
              for name in FIGURE_ROBOTS}
    hand, qs = None, {}
    for _ in range(frames):  # a still video: let the fit and the optimisers settle
        hand = predictor.predict(rgb, K).hand(side)
        if not hand.valid:
            raise SystemExit(f"benchmark_retarget: no valid {side} hand on {photo}")
        qs = {name: r.retarget(hand.joints, hand.wrist_quat) for name, r in robots.items()}
    assert hand is not None
    # keypoints and keypoint frames in dex-retargeting's wrist frame (x palmar, z fingers)
    to_wrist = geo.quat_to_matrix(hand.wrist_quat) @ rt.HAND_TO_RETARGET_FRAME[side].T
    kp = rt.retarget_frame_keypoints(hand.joints, hand.wrist_quat, side)
    kf = jf.keypoint_frames(hand.joints, hand.wrist_quat, side, "all")
    frame_rots = to_wrist.T @ geo.quat_to_matrix(kf.quaternions)

    fig = plt.figure(figsize=(16, 4.6))
    ax = fig.add_subplot(1, 4, 1)
    ax.imshow(rgb)
    px = hand.keypoints_2d
    parents = [0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19]
    for k in range(1, 21):
        ax.plot(*zip(px[parents[k - 1]], px[k]), color="#ffcc00", linewidth=1.5)
    pad = 0.6 * (px.max(0) - px.min(0)).max()
    lo, hi = px.min(0) - pad, px.max(0) + pad
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(hi[1], lo[1])
    ax.set_title(f"{photo.name}: {side} hand (landmark backend)", fontsize=9)
    ax.axis("off")

    ax = fig.add_subplot(1, 4, 2, projection="3d")
    for k in range(1, 21):
        ax.plot(*zip(kp[parents[k - 1]], kp[k]), color="0.2", linewidth=2.0)
    ax.scatter(*kp.T, color="#e6a100", s=10)
    for k in range(20):
        _triad(ax, kp[k + 1], frame_rots[k], TRIAD_M)
    _triad(ax, kp[0], np.eye(3), 2 * TRIAD_M)
    _equal_axes(ax, kp)
    ax.set_title("fitted hand and its keypoint frames\n(wrist frame: x out of the palm, z "
                 "fingers)", fontsize=9)

    for n, (name, r) in enumerate(robots.items()):
        ax = fig.add_subplot(1, 4, 3 + n, projection="3d")
        poses = r.link_poses(qs[name])
        for parent, child in _urdf_tree(r.urdf_path):
            if parent in poses and child in poses:
                ax.plot(*zip(poses[parent][:3, 3], poses[child][:3, 3]), color="0.2",
                        linewidth=2.0)
        for pose in poses.values():
            _triad(ax, pose[:3, 3], pose[:3, :3], 1.6 * TRIAD_M)
        _equal_axes(ax, np.array([p[:3, 3] for p in poses.values()]))
        ax.set_title(f"{name} hand ({side}) retargeted:\nlink frames, base frame", fontsize=9)
    fig.suptitle("What a robot consumes: the fitted hand (left) drives robot hands through "
                 "dex-retargeting on the hand's own wrist frame (x red, y green, z blue)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")
    return {name: dict(zip(robots[name].joint_names, np.round(q, 4).tolist()))
            for name, q in qs.items()}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", action="append", default=None,
                    help="photo folder or file (repeatable; default samples/)")
    ap.add_argument("--frames", type=int, default=20, help="frames per photo (still video)")
    ap.add_argument("--robot", default="allegro", choices=list(rt.ROBOT_CONFIG_FILES))
    ap.add_argument("--grasp", action="store_true",
                    help="also the contact scan and the pinch-flag noise test")
    ap.add_argument("--noise-mm", type=float, default=3.0,
                    help="keypoint noise per axis of the pinch-flag noise test (mm)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--figure", type=Path, default=None, help="write the README picture here")
    ap.add_argument("--figure-photo", type=Path, default=ROOT / "samples" / "person_room.jpg")
    ap.add_argument("--figure-side", default="right", choices=list(SIDES))
    args = ap.parse_args(argv)
    if args.frames < 2:
        ap.error("--frames must be at least 2 (the first frame is the cold start)")
    photos = _photos(args.images or [str(ROOT / "samples")])
    load_before = os.getloadavg()
    timing, last = run_photos(photos, args.frames, args.robot)
    figures = {**machine_info(), "load_average_1_5_15": list(os.getloadavg()),
               "load_average_before": list(load_before), "photos": [p.name for p in photos],
               "frames_per_photo": args.frames, "robot": args.robot, **timing,
               "grasp": grasp_figures(last),
               "pinch_thresholds_mm": [gr.PINCH_ENTER_M * MS, gr.PINCH_EXIT_M * MS]}
    print(f"machine: {figures['cpu']}, {figures['cores']} cores; load average "
          f"{' '.join(f'{x:.2f}' for x in figures['load_average_1_5_15'])}")
    print(f"{len(photos)} photos x {args.frames} frames, {timing['hands_per_frame_mean']:.2f} "
          f"valid hands per frame, robot {args.robot}")
    print(f"  landmark backend frame   {timing['backend_ms_median']:8.2f} ms median "
          f"({timing['backend_ms_p90']:.2f} p90)")
    print(f"  retarget per hand, warm  {timing['retarget_ms_median']:8.2f} ms median "
          f"({timing['retarget_ms_p90']:.2f} p90) = "
          f"{100 * timing['retarget_per_frame_over_backend']:.1f} % of the backend frame for "
          "all hands of a frame")
    print(f"  retarget per hand, cold  {timing['retarget_cold_ms_median']:8.2f} ms median "
          "(first frame of a hand: the optimiser starts mid-range)")
    print(f"  keypoint frames per hand {timing['frames_tips_ms_median']:8.3f} ms fingertips, "
          f"{timing['frames_all_ms_median']:.3f} ms all")
    print(f"  grasp state per hand     {timing['grasp_ms_median']:8.3f} ms")
    print(f"  every joint command finite and within the URDF limits: "
          f"{timing['commands_finite_within_urdf_limits']}")
    print("grasp measures (mm): thumb-index, thumb-middle, aperture")
    for group, rows in figures["grasp"].items():
        for name, row in rows.items():
            print(f"  {group:9s} {name:28s} {row['thumb_index_mm']:6.1f} "
                  f"{row['thumb_middle_mm']:6.1f} {row['aperture_mm']:6.1f}"
                  + (f"  pinch {row['pinch']}" if "pinch" in row else ""))
    if args.grasp:
        scan = contact_scan()
        flips = noise_flips(args.noise_mm)
        figures["contact_scan"] = scan
        figures["pinch_flag_flips_per_100_frames"] = {"noise_mm_per_axis": args.noise_mm,
                                                      **flips}
        print(f"contact scan: {scan['touching']} of {scan['poses']} poses touch (distal "
              f"segments < {TOUCH_M * MS:.0f} mm apart): fingertips {scan['tip_mm_min']:.1f}-"
              f"{scan['tip_mm_max']:.1f} mm apart, median {scan['tip_mm_median']:.1f}")
        print(f"pinch flag of a still hand at the enter threshold, {args.noise_mm} mm noise per "
              f"axis: {flips['with_band']:.2f} flips per 100 frames with the band, "
              f"{flips['one_threshold']:.2f} with one threshold")
    if args.figure is not None:
        figures["figure"] = {"photo": args.figure_photo.name, "side": args.figure_side,
                             "commands": draw_figure(args.figure, args.figure_photo,
                                                     args.figure_side, args.frames)}
    if args.json is not None:
        write_figures(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
