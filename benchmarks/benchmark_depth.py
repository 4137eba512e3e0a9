#!/usr/bin/env python3
"""Median wrist position error of depth placement vs the hand-size placement, on the same
synthetic RGB-D frames (issue 11's "must show").

Frames: two open hands (the bundled open hand model), random orientation about a palm-to-
camera pose, wrists 0.4-1.5 m from a 640x480 camera (fx = fy = 600), rendered into a depth
image with 1 % Gaussian depth noise, 20 % holes and flying pixels at half the silhouette
pixels, over a wall 0.5 m behind the hands.

Error model of the estimate both placements start from (stated, not measured from a
network): the hand size is off by a uniform random +-10 % (SIZE_ERROR): the mesh is scaled
by (1 + e) about its wrist and the wrist lies (1 + e) times as far along its ray (Z = 2 fx /
(s * crop_px) turns a size error into the same relative depth error); the hand's
orientation is off by a random rotation of about ORIENTATION_ERROR_RAD. Depth placement
only translates the hand, so the mesh's own size and orientation errors remain. Errors
are 3D wrist distances to the truth.

Run: tools/ros_env.sh python benchmarks/benchmark_depth.py [--frames 100] [--seed 0]
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from dir_ros.post import depth as D
from dir_ros.common import geometry as geo
from dir_ros.data import depth_synthetic as syn
from dir_ros.common.results import PLACEMENT_DEPTH

WIDTH, HEIGHT = 640, 480
K = np.array([[600.0, 0.0, 319.5], [0.0, 600.0, 239.5], [0.0, 0.0, 1.0]])
DEPTH_RANGE_M = (0.4, 1.5)  # wrist distances of the frames
NOISE_FRAC = 0.01  # 1 % depth noise (sigma, relative)
HOLE_FRAC = 0.2  # 20 % of pixels without depth
FLYING_FRAC = 0.5  # share of silhouette pixels mixed with the surface behind
WALL_BEHIND_M = 0.5  # background wall distance behind the hands
SIZE_ERROR = 0.10  # size-based estimate off by a uniform random +-10 %
ORIENTATION_SIGMA_RAD = 0.3  # random tilt about the palm-to-camera pose
HAND_GAP_AT_06_M = 0.2  # each wrist's lateral offset from the optical axis at 0.6 m
ORIENTATION_ERROR_RAD = 0.1  # per-axis sigma of the estimate's orientation error (~10 deg)


def make_frame(rng: np.random.Generator) -> tuple[list, np.ndarray]:
    """Two true hands at a random distance and their rendered depth (H,W) m."""
    z = rng.uniform(*DEPTH_RANGE_M)
    hands = []
    for side, sign in (("left", -1.0), ("right", 1.0)):
        rot = np.array([np.pi / 2, 0.0, 0.0]) + ORIENTATION_SIGMA_RAD * rng.standard_normal(3)
        wrist = (sign * HAND_GAP_AT_06_M * z / 0.6, rng.uniform(-0.05, 0.05) * z,
                 z + rng.uniform(-0.05, 0.05))
        hands.append(syn.posed_hand(side, rot, wrist))
    _, depth = syn.render_rgbd(hands, K, (WIDTH, HEIGHT), NOISE_FRAC, HOLE_FRAC, FLYING_FRAC,
                               background_m=z + WALL_BEHIND_M, rng=rng)
    return hands, depth


def perturb(hand: Any, size_error: float, rotvec: np.ndarray) -> None:
    """The estimate of a true hand, in place: mesh scaled by (1 + size_error) and rotated by
    rotvec (3,) rad about the wrist, wrist moved to (1 + size_error) times its distance."""
    w = hand.wrist_position.astype(np.float64)
    rot = geo.axis_angle_to_matrix(rotvec) * (1.0 + size_error)
    new_w = w * (1.0 + size_error)
    hand.vertices = ((hand.vertices - w) @ rot.T + new_w).astype(np.float32)
    hand.joints = ((hand.joints - w) @ rot.T + new_w).astype(np.float32)
    hand.wrist_position = new_w


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    size_err, depth_err, used, ms = [], [], 0, []
    for _ in range(args.frames):
        hands, depth = make_frame(rng)
        truth = {h.side: h.wrist_position.copy() for h in hands}
        for h in hands:
            perturb(h, rng.uniform(-SIZE_ERROR, SIZE_ERROR),
                    ORIENTATION_ERROR_RAD * rng.standard_normal(3))
        estimate = {h.side: h.wrist_position.copy() for h in hands}
        result = syn.frame(hands[0], hands[1], (WIDTH, HEIGHT))
        t0 = time.perf_counter()
        D.apply_depth(result, depth, K)
        ms.append(1e3 * (time.perf_counter() - t0))
        for h in result.hands():
            size_err.append(np.linalg.norm(estimate[h.side] - truth[h.side]))
            depth_err.append(np.linalg.norm(h.wrist_position - truth[h.side]))
            used += h.placement == PLACEMENT_DEPTH
    size_mm, depth_mm = 1e3 * np.array(size_err), 1e3 * np.array(depth_err)
    print(f"frames {args.frames} ({len(size_mm)} hands), {WIDTH}x{HEIGHT}, wrists "
          f"{DEPTH_RANGE_M[0]}-{DEPTH_RANGE_M[1]} m, noise {NOISE_FRAC:.0%}, holes "
          f"{HOLE_FRAC:.0%}, size error +-{SIZE_ERROR:.0%}")
    print(f"hand-size placement: median wrist error {np.median(size_mm):.1f} mm "
          f"(p90 {np.percentile(size_mm, 90):.1f} mm)")
    print(f"depth placement:     median wrist error {np.median(depth_mm):.1f} mm "
          f"(p90 {np.percentile(depth_mm, 90):.1f} mm); depth used for {used}/{len(depth_mm)} "
          f"hands (the others keep the hand-size estimate)")
    print(f"depth placement time per frame: median {np.median(ms):.0f} ms")


if __name__ == "__main__":
    main()
