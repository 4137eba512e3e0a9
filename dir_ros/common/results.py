"""Result types shared by every backend: one hand (HandsResult) and one frame (FrameResult).

Pure numpy: no torch, no ROS. All 3D is in the camera optical frame, metres.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dir_ros.common import geometry as geo

SIDES = ("left", "right")
NUM_KEYPOINTS = 21  # contract keypoint order
NUM_POSE = 48  # axis-angle: root (3) + 15 finger joints (45)
NUM_SHAPE = 10  # MANO betas
# How a hand was placed in the camera frame (HandMesh.placement): wrist-relative (not
# metric), from the predicted hand size (Z = 2 fx / (s * crop_px)), or from a depth image.
PLACEMENT_NONE = 0
PLACEMENT_HAND_SIZE = 1
PLACEMENT_DEPTH = 2
PLACEMENT_NAMES = {PLACEMENT_NONE: "none", PLACEMENT_HAND_SIZE: "hand_size",
                   PLACEMENT_DEPTH: "depth"}
# HandsResult.placement default: resolved from `metric` (NONE or HAND_SIZE) on creation.
PLACEMENT_FROM_METRIC = -1


@dataclass
class HandsResult:
    """One hand. V vertices, F faces; camera optical frame, metres (wrist-relative if not metric).

    vertices (V,3) float32; joints (21,3) float32; wrist_position (3,) float64 (zeros when not
    metric); wrist_quat (4,) xyzw root orientation; pose (48,) axis-angle rad (mean pose
    included); shape (10,); keypoints_2d (21,2) input-image px (corner-origin); faces (F,3) int64.
    fit_residual_mm: RMS keypoint residual of the landmark backend's hand-model fit (nan for
    DIR); source: how the hand was found ('' = network on the crop; else the detector route).
    placement: PLACEMENT_NONE / _HAND_SIZE / _DEPTH (default: from `metric`); placement_note:
    why depth was not used for a size-placed hand ('' when it was, or was not asked for).
    """

    side: str
    valid: bool
    confidence: float
    vertices: np.ndarray
    joints: np.ndarray
    wrist_position: np.ndarray
    wrist_quat: np.ndarray
    metric: bool
    pose: np.ndarray
    shape: np.ndarray
    keypoints_2d: np.ndarray
    faces: np.ndarray
    fit_residual_mm: float = float("nan")
    source: str = ""
    placement: int = PLACEMENT_FROM_METRIC
    placement_note: str = ""

    def __post_init__(self) -> None:
        """Resolve the default placement from `metric` (backends need not set it)."""
        if self.placement == PLACEMENT_FROM_METRIC:
            self.placement = PLACEMENT_HAND_SIZE if self.metric else PLACEMENT_NONE

    @classmethod
    def invalid(cls, side: str, faces: np.ndarray, num_verts: int) -> "HandsResult":
        """An all-zero, invalid hand (identity orientation) keeping the faces."""
        return cls(side=side, valid=False, confidence=0.0,
                   vertices=np.zeros((num_verts, 3), np.float32),
                   joints=np.zeros((NUM_KEYPOINTS, 3), np.float32),
                   wrist_position=np.zeros(3), wrist_quat=np.array([0.0, 0.0, 0.0, 1.0]),
                   metric=False, pose=np.zeros(NUM_POSE, np.float32),
                   shape=np.zeros(NUM_SHAPE, np.float32),
                   keypoints_2d=np.zeros((NUM_KEYPOINTS, 2), np.float32),
                   faces=np.asarray(faces, np.int64))


@dataclass
class FrameResult:
    """Both hands of one image, the crop used (image px) and per-step timings (ms)."""

    left: HandsResult
    right: HandsResult
    box: geo.CropBox
    image_size: tuple[int, int] = (0, 0)  # (width, height) px
    timings: dict[str, float] = field(default_factory=dict)

    def hand(self, side: str) -> HandsResult:
        """The hand of side 'left' or 'right'."""
        return {"left": self.left, "right": self.right}[side]

    def hands(self) -> tuple[HandsResult, HandsResult]:
        """(left, right)."""
        return (self.left, self.right)


def require_rgb(rgb: np.ndarray) -> np.ndarray:
    """rgb as an array, checked to be what predict() takes: RGB uint8 (H,W,3); ValueError
    naming what it got otherwise."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"predict() needs an RGB uint8 (H,W,3) image, got {rgb.dtype} {rgb.shape}")
    return rgb
