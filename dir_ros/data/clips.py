"""Synthetic video clips made from one still photo: the steadiness and tracking test bench.

A photo pasted into a fixed-size frame that drifts sideways by a fraction of a pixel per frame
is a clip whose true motion is known and almost constant (its second difference is ~0), so
any frame-to-frame jitter of the reconstructed hands is the pipeline's own. This is the clip
of issue 19's measurements: 640x480 frames, 0.5 px per frame to the right, 60 frames, K from a
60 degree horizontal field of view (geometry.DEFAULT_HFOV_DEG).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from dir_ros.common.geometry import DEFAULT_HFOV_DEG, pinhole_K

# The clip of the issue-19 measurements (see module docstring).
CLIP_SIZE_WH = (640, 480)  # frame width, height (pixels): a VGA camera
CLIP_FRAMES = 60  # 2 s at 30 Hz
CLIP_DRIFT_PX = 0.5  # sideways motion per frame (pixels, to the right)
CLIP_RATE_HZ = 30.0  # nominal frame rate of the clip (stamps, per-second units)
CLIP_BACKGROUND = 114  # grey of the frame outside the photo (uint8, every channel)


@dataclass(frozen=True)
class DriftingClip:
    """A photo drifting across a fixed frame: frames are made on demand (see frames())."""

    photo: np.ndarray  # (h, w, 3) uint8 source photo (any channel order; kept as given)
    size_wh: tuple[int, int] = CLIP_SIZE_WH
    n_frames: int = CLIP_FRAMES
    drift_px: float = CLIP_DRIFT_PX
    fov_deg: float = DEFAULT_HFOV_DEG

    def __post_init__(self) -> None:
        if self.photo.ndim != 3 or self.photo.shape[2] != 3 or self.photo.dtype != np.uint8:
            raise ValueError(f"photo must be (h, w, 3) uint8, got {self.photo.shape} "
                             f"{self.photo.dtype}")
        if self.n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {self.n_frames}")

    @property
    def K(self) -> np.ndarray:
        """(3, 3) intrinsics of every frame (pinhole, principal point at the centre)."""
        return pinhole_K(self.size_wh[0], self.size_wh[1], self.fov_deg)

    def placement(self) -> tuple[float, float, float]:
        """(scale, x0, y0): the photo is resized by `scale` and its top-left corner sits at
        (x0, y0) pixels in frame 0; it fits the frame with room for the whole drift."""
        w, h = self.size_wh
        travel = abs(self.drift_px) * (self.n_frames - 1)
        ph, pw = self.photo.shape[:2]
        scale = min((w - travel) / pw, h / ph)
        x0 = (w - travel - scale * pw) / 2.0 + (travel if self.drift_px < 0 else 0.0)
        y0 = (h - scale * ph) / 2.0
        return scale, x0, y0

    def frame(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 frame `index`: the photo shifted by index * drift_px (bilinear)."""
        import cv2

        if not 0 <= index < self.n_frames:
            raise IndexError(f"frame {index} outside 0..{self.n_frames - 1}")
        scale, x0, y0 = self.placement()
        A = np.array([[scale, 0.0, x0 + index * self.drift_px], [0.0, scale, y0]])
        return cv2.warpAffine(self.photo, A, self.size_wh, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT,
                              borderValue=(CLIP_BACKGROUND,) * 3)

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame in order."""
        for i in range(self.n_frames):
            yield self.frame(i)


def second_difference_norm(x: np.ndarray) -> np.ndarray:
    """||x[t+1] - 2 x[t] + x[t-1]|| over the last axis: (T, ..., D) -> (T-2, ...).

    The jitter of video hand-reconstruction papers (mean of this, in the units of x per
    frame^2); NaN rows (a hand missing in one of the three frames) stay NaN."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] < 3:
        return np.zeros((0,) + x.shape[1:-1])
    return np.linalg.norm(x[2:] - 2.0 * x[1:-1] + x[:-2], axis=-1)
