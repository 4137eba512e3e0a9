#!/usr/bin/env python3
"""Calibrate crop.LANDMARK_TO_MESH_EXTENT: how much larger two hands' projected meshes are
than their 21 projected keypoints (longer side of the bounding boxes), on the open hand model.

Random two-hand frames: PCA pose coefficients ~ N(0, POSE_STD), shapes ~ N(0, 1), random root
orientations, the two wrists 4-14 cm apart, at 0.3-1.2 m in front of a 640x480 camera with a
60 degree horizontal field of view. Prints the ratio's median and spread and how well a crop
cut around the keypoints with the median ratio matches the release's crop around the meshes.
Usage: tools/ros_env.sh python benchmarks/calibrate_detect_crop.py [--frames 2000] [--seed 0]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from dir_ros.common import geometry as geo
from dir_ros.frontend.crop import detect_box, release_box_from_points
from dir_ros.hand_model import NUM_BETAS, NUM_POSE_COMPS, build_hand_layers

POSE_STD = 1.0  # PCA coefficient spread (the PCA basis is scaled to unit-ish variance)
DEPTH_RANGE_M = (0.3, 1.2)
WRIST_GAP_RANGE_M = (0.04, 0.14)
WIDTH, HEIGHT, HFOV_DEG = 640, 480, 60.0


def intrinsics() -> np.ndarray:
    """K of the synthetic camera (pixel centres at integers)."""
    f = WIDTH / 2 / np.tan(np.radians(HFOV_DEG) / 2)
    return np.array([[f, 0, WIDTH / 2 - 0.5], [0, f, HEIGHT / 2 - 0.5], [0, 0, 1.0]])


def sample_frames(n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """n two-hand frames -> (mesh px (2V,2), keypoints px (2,21,2)) per frame."""
    rng = np.random.default_rng(seed)
    layers = build_hand_layers()
    K = intrinsics()
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for side, layer in layers.items():
        rot = Rotation.random(n, random_state=rng.integers(1 << 31)).as_matrix()
        rot6d = torch.tensor(rot[:, :, :2].transpose(0, 2, 1).reshape(n, 6), dtype=torch.float32)
        pca = torch.tensor(rng.normal(0, POSE_STD, (n, NUM_POSE_COMPS)), dtype=torch.float32)
        betas = torch.tensor(rng.normal(0, 1, (n, NUM_BETAS)), dtype=torch.float32)
        with torch.no_grad():
            o = layer(rot6d, pca, betas)
        out[side] = (o.vertices.numpy().astype(np.float64), o.joints.numpy().astype(np.float64))
    depth = rng.uniform(*DEPTH_RANGE_M, n)
    gap = rng.uniform(*WRIST_GAP_RANGE_M, n)
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    meshes, keypoints = [], []
    for i in range(n):
        centre = np.array([rng.uniform(-0.1, 0.1) * depth[i], rng.uniform(-0.1, 0.1) * depth[i],
                           depth[i]])
        offs = {"left": centre - gap[i] / 2 * direction[i], "right": centre + gap[i] / 2 * direction[i]}
        v = np.concatenate([out[s][0][i] + offs[s] for s in out])
        j = np.stack([out[s][1][i] + offs[s] for s in out])
        if np.any(v[:, 2] < 0.05):
            continue
        meshes.append(geo.project_points(v, K))
        keypoints.append(geo.project_points(j, K))
    return meshes, keypoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    meshes, keypoints = sample_frames(args.frames, args.seed)
    ratios = np.array([np.ptp(m, axis=0).max() / np.ptp(k.reshape(-1, 2), axis=0).max()
                       for m, k in zip(meshes, keypoints)])
    factor = float(np.median(ratios))
    side_err, centre_err = [], []
    for m, k in zip(meshes, keypoints):
        ref = release_box_from_points(m)
        est = detect_box(list(k), factor)
        side_err.append(abs(est.size - ref.size) / ref.size)
        centre_err.append(np.hypot(est.cx - ref.cx, est.cy - ref.cy) / ref.size)
    p10, p90 = np.percentile(ratios, [10, 90])
    print(f"frames {len(ratios)}: mesh/keypoint extent ratio median {factor:.3f}, "
          f"10-90% {p10:.3f}-{p90:.3f}")
    print(f"with factor {factor:.2f}: crop side error median {100 * np.median(side_err):.1f}%, "
          f"90th pct {100 * np.percentile(side_err, 90):.1f}%; centre error median "
          f"{100 * np.median(centre_err):.1f}%, 90th pct {100 * np.percentile(centre_err, 90):.1f}% "
          f"of the side")


if __name__ == "__main__":
    main()
