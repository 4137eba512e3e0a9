"""Croppers: choose the square crop of an image that the network sees.

full (centred square), roi (fixed region), track (previous frame's hands) and detect (the
hand front end's detections, in the release's training-crop convention).
"""
from __future__ import annotations

from typing import Any, Optional, Protocol, Sequence

import numpy as np

from dir_ros.common import geometry as geo
from dir_ros.common.results import FrameResult

CROP_MODES = ("detect", "full", "roi", "track")


class Cropper(Protocol):
    """Chooses the square two-hand crop of an image; a hand detector plugs in here."""

    def __call__(self, rgb: np.ndarray, previous: Optional[FrameResult]) -> geo.CropBox:
        """rgb (H,W,3) uint8; previous = last FrameResult of this stream (or None)."""
        ...


class FullFrameCropper:
    """The centred square over the whole frame (short side padded)."""

    def __call__(self, rgb: np.ndarray, previous: Optional[FrameResult]) -> geo.CropBox:
        return geo.full_frame_box(rgb.shape[1], rgb.shape[0])


class RoiCropper:
    """A fixed region of interest [x, y, w, h] px, made square around its centre."""

    def __init__(self, roi: Sequence[float]) -> None:
        self.box = geo.roi_box(roi)

    def __call__(self, rgb: np.ndarray, previous: Optional[FrameResult]) -> geo.CropBox:
        return self.box


class TrackCropper:
    """Box around the previous frame's valid hands' keypoints; full frame when none."""

    def __init__(self, fill: float = geo.DEFAULT_CROP_FILL) -> None:
        self.fill = fill
        self.fallback = FullFrameCropper()

    def __call__(self, rgb: np.ndarray, previous: Optional[FrameResult]) -> geo.CropBox:
        if previous is not None:
            pts = [h.keypoints_2d for h in previous.hands() if h.valid]
            if pts:
                box = geo.box_from_points(np.concatenate(pts), self.fill)
                full = self.fallback(rgb, previous)
                if box.size <= full.size:  # a box larger than the frame helps nobody
                    return box
        return self.fallback(rgb, previous)


# --- the detector crop ------------------------------------------------------------------

# Ratio of the projected mesh's extent to the projected 21 keypoints' extent for two hands
# (the longer side of each bounding box): the keypoints lie inside the mesh silhouette
# (joint centres, fingertip vertices on the nail side), so a crop cut around detected
# landmarks must grow by this factor to match the release's crop, which is cut around the
# projected meshes. Calibrated by benchmarks/calibrate_detect_crop.py on the open hand model
# (2000 random two-hand frames: random poses, shapes, orientations, 0.3-1.2 m): median 1.039,
# 10-90 % range 1.015-1.096 (small: the fingertip keypoints are mesh vertices); with the
# median the crop side is within 5.1 % of the mesh-based side for 90 % of the frames (median
# 1.7 %) and its centre within 3.0 % of the side (median 1.1 %).
LANDMARK_TO_MESH_EXTENT = 1.04


def release_box_from_points(points: np.ndarray, fill: float = geo.DEFAULT_CROP_FILL) -> geo.CropBox:
    """The release's training crop (DIR_ARCHITECTURE.md "Input") around projected mesh
    vertices (N,2) px: square, centred on their bounding box, side = longer extent / fill."""
    return geo.box_from_points(points, fill)


def detect_box(landmarks_px: Sequence[np.ndarray],
               extent_factor: float = LANDMARK_TO_MESH_EXTENT,
               fill: float = geo.DEFAULT_CROP_FILL) -> geo.CropBox:
    """The release's crop estimated from detected landmarks: the square around the hands'
    21-keypoint sets (each (21,2) px), grown by extent_factor to the mesh extent."""
    box = geo.box_from_points(np.concatenate([np.asarray(p).reshape(-1, 2) for p in landmarks_px]),
                              fill)
    return geo.CropBox(box.cx, box.cy, max(box.size * extent_factor, geo.MIN_CROP_PX))


class DetectCropper:
    """Crop from the hand front end (crop mode 'detect', the DIR backend's default): the
    release's two-hand crop around the detected hands; falls back to tracking the previous
    frame's hands, then to the full frame."""

    def __init__(self, detector: Any, extent_factor: float = LANDMARK_TO_MESH_EXTENT) -> None:
        self.detector = detector
        self.extent_factor = extent_factor
        self.fallback = TrackCropper()

    def __call__(self, rgb: np.ndarray, previous: Optional[FrameResult]) -> geo.CropBox:
        detections = self.detector(rgb)
        if detections:
            box = detect_box([d.landmarks_px for d in detections.values()], self.extent_factor)
            if box.size <= geo.full_frame_box(rgb.shape[1], rgb.shape[0]).size:
                return box
        return self.fallback(rgb, previous)


def make_cropper(mode: str, roi: Optional[Sequence[float]] = None,
                 detector: Optional[Any] = None) -> Cropper:
    """Cropper for mode 'detect' (needs the hand front end) | 'full' | 'roi' (needs
    roi [x, y, w, h]) | 'track'."""
    if mode == "detect":
        if detector is None:
            raise ValueError("crop mode 'detect' needs a hand detector")
        return DetectCropper(detector)
    if mode == "full":
        return FullFrameCropper()
    if mode == "roi":
        if roi is None or len(roi) != 4:
            raise ValueError(f"crop mode 'roi' needs roi = [x, y, w, h], got {roi}")
        return RoiCropper(roi)
    if mode == "track":
        return TrackCropper()
    raise ValueError(f"crop mode '{mode}' is not one of {', '.join(CROP_MODES)}")
