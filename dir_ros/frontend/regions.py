"""Where the hand models look: square crop affines (image px -> crop px, turned and
mirrored), the hand's upright angle, and the region a hand of the previous frame is followed
in (MediaPipe's tracking rule). Pure geometry on landmarks (21,2) px, corner-origin."""
from __future__ import annotations

import numpy as np

from dir_ros.common import geometry as geo
from dir_ros.frontend.detection import MIDDLE_MCP, WRIST

# Side of the square crops fed to the hand model (px): above the palm detector's 192 px
# and the landmark model's 224 px input; 512 px crops found the same hands, slower.
CROP_OUT_PX = 256

# --- landmark tracking ('follow', video mode with track_landmarks) ------------------------
# The region fed to the landmark model for a hand seen in the previous frame, the rule of
# MediaPipe's own hand tracking (its HandLandmarkLandmarksToRoi subgraph; the numbers are
# MediaPipe's): the bounding box, in the hand's upright frame (wrist -> middle-finger base
# pointing up), of the wrist, thumb and finger-base landmarks below ...
FOLLOW_ROI_LANDMARKS = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)
# ... made square on its longer side and scaled by this ...
FOLLOW_ROI_SCALE = 2.0
# ... and moved this fraction of its side towards the fingers.
FOLLOW_ROI_SHIFT = 0.1


def _crop_affine(centre: np.ndarray, side_px: float, angle_rad: float, mirror: bool,
                 out_px: int) -> np.ndarray:
    """(2,3) affine taking image px to crop px (both corner-origin): a square of side_px
    centred at centre (px), turned by angle_rad (the image direction at angle_rad from 'up',
    clockwise, becomes the crop's up), optionally mirrored left-right, scaled to out_px."""
    s = out_px / side_px
    c, si = np.cos(angle_rad), np.sin(angle_rad)
    # Rotation taking direction (sin a, -cos a) (angle a clockwise from up) to (0, -1).
    rot = np.array([[c, si], [-si, c]])
    lin = s * rot
    if mirror:
        lin = np.diag([-1.0, 1.0]) @ lin
    offset = np.array([out_px / 2.0, out_px / 2.0]) - lin @ np.asarray(centre, dtype=np.float64)
    return np.hstack([lin, offset[:, None]])


def _upright_angle(points: np.ndarray) -> float:
    """Angle (rad, clockwise from image 'up') of the hand's wrist -> middle-finger-base
    direction in points (21,2) px: turning the image by it makes the hand point up."""
    pointing = points[MIDDLE_MCP] - points[WRIST]
    return float(np.arctan2(pointing[0], -pointing[1]))


def follow_region(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The region where the landmark model looks for a hand of the previous frame, from its
    landmarks points (21,2) px: (centre (2,) px, side px, angle rad clockwise from up);
    MediaPipe's tracking rule (FOLLOW_ROI_* constants)."""
    pts = np.asarray(points, dtype=np.float64)
    angle = _upright_angle(pts)
    c, s = np.cos(angle), np.sin(angle)
    to_hand = np.array([[c, s], [-s, c]])  # image offsets -> the hand's upright frame
    q = (pts[list(FOLLOW_ROI_LANDMARKS)] - pts[WRIST]) @ to_hand.T
    lo, hi = q.min(axis=0), q.max(axis=0)
    side = max(float(np.max(hi - lo)) * FOLLOW_ROI_SCALE, geo.MIN_CROP_PX)
    centre_hand = (lo + hi) / 2.0 + np.array([0.0, -FOLLOW_ROI_SHIFT * side])  # up = fingers
    return pts[WRIST] + centre_hand @ to_hand, side, angle
