"""Synthetic RGB-D frames for tests and the depth benchmark: posed open-hand meshes (the
bundled open hand model's template, flat open hand) rendered at a known K into a depth image
with noise, holes and flying pixels, beside a colour image. No ROS, no torch."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from dir_ros.common import geometry as geo
from dir_ros import hand_model as hm
from dir_ros.post.depth import render_zbuffer
from dir_ros.common.results import (NUM_KEYPOINTS, NUM_POSE, NUM_SHAPE, PLACEMENT_HAND_SIZE,
                             FrameResult, HandsResult)

# Colours of the synthetic colour image (RGB uint8).
BACKGROUND_RGB = (40, 60, 90)
HAND_RGB = {"left": (220, 170, 140), "right": (200, 150, 120)}


def open_hand(side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open hand of `side`, wrist at the origin: vertices (V,3) m, 21 joints (21,3) m (wrist
    first, then the model's 15 joints and 5 fingertips; not the contract order), faces (F,3)."""
    arrays = hm.load_hand_model(hm.open_hand_dir())[side]
    verts = np.asarray(arrays.v_template, np.float64)
    joints16 = np.asarray(arrays.J_regressor, np.float64) @ verts
    joints = np.concatenate([joints16, verts[np.asarray(arrays.tip_ids)]])
    return verts - joints[0], joints - joints[0], np.asarray(arrays.faces, np.int64)


def posed_hand(side: str, rotvec: Sequence[float], wrist: Sequence[float]) -> HandsResult:
    """Valid, metric (size-placed) HandsResult: the open hand rotated by rotvec (3,) rad about
    its wrist and put at wrist (3,) m in the camera frame."""
    verts, joints, faces = open_hand(side)
    rot = geo.axis_angle_to_matrix(np.asarray(rotvec, np.float64))
    w = np.asarray(wrist, np.float64)
    return HandsResult(
        side=side, valid=True, confidence=1.0,
        vertices=(verts @ rot.T + w).astype(np.float32),
        joints=(joints @ rot.T + w).astype(np.float32), wrist_position=w.copy(),
        wrist_quat=geo.matrix_to_quat(rot), metric=True,
        pose=np.zeros(NUM_POSE, np.float32), shape=np.zeros(NUM_SHAPE, np.float32),
        keypoints_2d=np.zeros((NUM_KEYPOINTS, 2), np.float32), faces=faces,
        placement=PLACEMENT_HAND_SIZE)


def frame(left: HandsResult, right: HandsResult, size: tuple[int, int]) -> FrameResult:
    """FrameResult of two hands for an image of size (width, height)."""
    return FrameResult(left=left, right=right, box=geo.full_frame_box(*size), image_size=size)


def render_rgbd(hands: Sequence[HandsResult], K: np.ndarray, size: tuple[int, int],
                noise_frac: float = 0.0, hole_frac: float = 0.0, flying_frac: float = 0.0,
                background_m: Optional[float] = 1.8,
                rng: Optional[np.random.Generator] = None) -> tuple[np.ndarray, np.ndarray]:
    """Render hands at K into (H,W,3) uint8 RGB and (H,W) float32 depth m (NaN = hole).

    background_m: depth of a wall behind the hands (None: no wall, NaN). noise_frac: relative
    Gaussian depth noise (0.01 = 1 %). hole_frac: fraction of pixels set to NaN. flying_frac:
    fraction of silhouette pixels (hand next to another surface) replaced by a random mix of
    the two depths, as time-of-flight and stereo cameras produce at edges.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    w, h = size
    zbuf, ids = render_zbuffer([(hd.vertices, hd.faces) for hd in hands], K, size)
    wall = np.nan if background_m is None else float(background_m)
    depth = np.where(np.isfinite(zbuf), zbuf, wall)
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[:] = BACKGROUND_RGB
    for index, hd in enumerate(hands):
        rgb[ids == index] = HAND_RGB[hd.side]
    if flying_frac > 0:
        edge = np.zeros_like(ids, bool)
        edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
        edge[1:, :] |= ids[1:, :] != ids[:-1, :]
        pick = edge & (rng.random(ids.shape) < flying_frac)
        far = np.maximum(depth, np.roll(depth, 1, axis=1))
        far = np.where(np.isfinite(far), far, depth)
        mix = rng.random(ids.shape)
        depth = np.where(pick, depth + mix * (far - depth), depth)
    if noise_frac > 0:
        depth = depth * (1.0 + noise_frac * rng.standard_normal(depth.shape))
    if hole_frac > 0:
        depth[rng.random(depth.shape) < hole_frac] = np.nan
    return rgb, depth.astype(np.float32)


def to_16uc1(depth_m: np.ndarray) -> np.ndarray:
    """Depth (H,W) m with NaN holes -> (H,W) uint16 mm with 0 holes (16UC1)."""
    mm = np.where(np.isfinite(depth_m), np.round(depth_m * 1e3), 0)
    return np.clip(mm, 0, np.iinfo(np.uint16).max).astype(np.uint16)
