"""What the hand front end returns: the Detection type (one hand of the person, its side,
landmarks, source), the candidate hand of one MediaPipe pass, and when two landmark sets are
one hand. No ROS, no MediaPipe here.

Conventions (those of dir_ros.common.geometry):
  * landmarks_px: image pixels, origin at the top-left *corner* of the top-left pixel.
    MediaPipe's normalised landmarks span the image extent [0, 1] (x * width is a
    corner-origin coordinate), so landmarks_px = (x * W, y * H).
  * Landmark order: MediaPipe's = the contract's (wrist, thumb 1-4, index, middle, ring,
    pinky, each base to tip).
  * side: the person's own hand. MediaPipe labels handedness as if the image were mirrored
    (a selfie view), so for an ordinary camera (mirrored_input False) its "Right" is the
    person's left hand; with mirrored_input True the label is taken as it is.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dir_ros.common import geometry as geo

SIDES = ("left", "right")
NUM_LANDMARKS = 21
# MediaPipe landmark indices used here (hand_landmark model, MediaPipe order).
WRIST = 0
MIDDLE_MCP = 9

# --- one hand or two ------------------------------------------------------------------------
# Same hand as an accepted one if the wrists are closer than this (x its size) ...
DUP_WRIST_FRACTION = 0.5
# ... or the mean landmark distance is below this (x its size). Interlocked hands overlap
# in the image but their wrists lie about a hand size apart (0.9-1.2 on the photos).
DUP_MEAN_FRACTION = 0.3

# Recovery routes (dir_ros.frontend.recovery), in the order of the full ladder, and the
# default ladder.
RECOVERY_ROUTES = ("track", "pair", "pose", "pose_masked", "mirror")
DEFAULT_RECOVERY_ROUTES = ("track", "pair", "pose", "pose_masked")

# Every source a Detection can name (route_counts keys): the full-frame palm pass, the
# landmark tracking step, and the recovery routes.
SOURCES = ("palm", "follow") + RECOVERY_ROUTES


@dataclass
class Detection:
    """One detected hand: the person's side, confidence, 2D landmarks (px), 3D world landmarks.

    score: MediaPipe's handedness score in [0, 1] (for 'follow' and for a hand placed beside a
    followed one: the probability of this side; the hand-presence score is not returned,
    hands under the detection/tracking thresholds are dropped). landmarks_px (21,2) float64
    image pixels, corner-origin, MediaPipe order; world (21,3) float64 metres, MediaPipe
    world landmarks (origin near the hand's centre, axes of the camera: x right, y down, z
    forward). source: 'palm' (the full-frame MediaPipe graph: palm detector, and with
    track_landmarks off in video mode its own tracking), 'follow' (the landmark model alone
    on the region of the previous frame's hand), or the recovery route that found it
    ('track', 'pair', 'pose', 'pose_masked', 'mirror').
    """

    side: str
    score: float
    landmarks_px: np.ndarray
    world: np.ndarray
    source: str

    def box(self, fill: float = geo.DEFAULT_CROP_FILL) -> geo.CropBox:
        """Square box around the landmarks, side = their longer extent / fill (pixels)."""
        return geo.box_from_points(self.landmarks_px, fill)

    @property
    def size(self) -> float:
        """Hand size in pixels: the longer side of the landmarks' bounding box."""
        return _hand_size(self.landmarks_px)


@dataclass
class _Candidate:
    """A hand from one MediaPipe pass, mapped back to the full image.

    label: MediaPipe's handedness label ('Left'/'Right', mirrored-image convention) for the
    image as given (already swapped back when the pass ran on a mirrored view)."""

    label: str
    score: float
    landmarks_px: np.ndarray  # (21,2) px, corner-origin
    world: np.ndarray  # (21,3) m
    presence: float = float("nan")  # hand-presence score in [0, 1] where the graph gives it


def _hand_size(points: np.ndarray) -> float:
    """Longer side (px) of the bounding box of points (N,2): the hand-size unit used here."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return max(float(np.max(np.ptp(pts, axis=0))), geo.MIN_CROP_PX)


def _is_same_hand(a: np.ndarray, b: np.ndarray) -> bool:
    """True when landmark sets a, b (21,2) px are one hand (close wrists or landmarks)."""
    size = max(_hand_size(a), _hand_size(b))
    wrist_dist = float(np.linalg.norm(a[WRIST] - b[WRIST]))
    mean_dist = float(np.mean(np.linalg.norm(a - b, axis=1)))
    return wrist_dist < DUP_WRIST_FRACTION * size or mean_dist < DUP_MEAN_FRACTION * size


def _swap_label(label: str) -> str:
    """MediaPipe 'Left' <-> 'Right'."""
    return "Right" if label == "Left" else "Left"


def _other(side: str) -> str:
    """'left' <-> 'right'."""
    return "right" if side == "left" else "left"
