"""TF-ready frames of a fitted hand's keypoints: fingertips, or every keypoint but the wrist.

Names (without the node's frame prefix): ``<side>_<finger>_<joint>`` with finger thumb, index,
middle, ring, pinky and joint, base to tip, ``cmc, mcp, ip, tip`` for the thumb and ``mcp, pip,
dip, tip`` for the fingers (MediaPipe's keypoint names), e.g. ``right_index_tip``,
``left_thumb_cmc``. The wrist (keypoint 0) is left out: the node already publishes
``<side>_wrist`` (the hand model's root orientation).

Each frame sits exactly at its keypoint. Orientation convention:
  * x: along the bone that ends at the keypoint, from its parent keypoint to it (for a
    fingertip: DIP/IP -> tip; for a finger base: wrist -> base), i.e. pointing distally;
  * the frames of a finger are the hand's wrist frame carried along the finger without twist
    (parallel transport): each bone's frame is its parent's turned by the smallest rotation
    that takes the parent's x onto this bone; the first bone's parent is the wrist frame
    (x toward the fingers, z out of the back of the hand, y = z cross x: toward the thumb on
    a right hand, toward the little finger on a left hand, from the fitted root orientation);
  * so for a finger flexing in its plane, z stays on the nail (dorsal) side and y stays the
    hand's lateral axis, and the frames change continuously with the keypoints: the only
    singular pose is a bone folded straight back onto its parent (180 degrees), which a hand
    model cannot reach; there the turn is taken about the parent's z (documented, finite).
Both backends (DIR and landmarks) give the same inputs (joints, wrist_quat), so one convention.

Pure numpy: the hand's keypoints (21,3) m in the camera frame and its root orientation (4,)
xyzw in; names, positions (N,3) m and orientations (N,4) xyzw in the same frame out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import numpy as np

from dir_ros.common import geometry as geo
from dir_ros.common.results import NUM_KEYPOINTS, SIDES

__all__ = ["JOINT_TF_MODES", "FINGERS", "KEYPOINT_NAMES", "TIP_KEYPOINTS", "KeypointFrames",
           "keypoint_frame_names", "keypoint_frames", "hand_keypoint_frames"]

# `publish_joint_tf` values: none, fingertip frames only, or every keypoint frame but the wrist.
JOINT_TF_MODES = ("none", "fingertips", "all")
FINGERS = ("thumb", "index", "middle", "ring", "pinky")
# Keypoint names base to tip (MediaPipe's naming): thumb CMC/MCP/IP, fingers MCP/PIP/DIP.
_THUMB_JOINTS = ("cmc", "mcp", "ip", "tip")
_FINGER_JOINTS = ("mcp", "pip", "dip", "tip")
_PER_FINGER = 4  # keypoints per finger (contract order: 1 + 4 f .. 4 + 4 f)
# Names of keypoints 1..20 (index k-1), contract order.
KEYPOINT_NAMES: Tuple[str, ...] = tuple(
    f"{finger}_{joint}" for finger in FINGERS
    for joint in (_THUMB_JOINTS if finger == "thumb" else _FINGER_JOINTS))
TIP_KEYPOINTS: Tuple[int, ...] = tuple(_PER_FINGER * (f + 1) for f in range(len(FINGERS)))
# Wrist frame axes in hand-model coordinates (columns x, y, z; dir_ros.hand_model's frame:
# right fingers -x, left fingers +x, thumb side +z, back of the hand +y): x toward the
# fingers, z out of the back of the hand, y = z cross x.
_WRIST_AXES = {
    "right": np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).T,
    "left": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]).T,
}
# 1 + cos(angle) below which a bone counts as folded back onto its parent (the smallest
# rotation is then not unique): the turn is taken about the parent's z axis instead.
_FOLDED_EPS = 1e-9
# Bones shorter than this (m) have no direction (coincident keypoints): their frame keeps the
# parent's orientation.
_MIN_BONE_M = 1e-9


@dataclass
class KeypointFrames:
    """Frames of one hand: names (N,), positions (N,3) m and orientations (N,4) xyzw, all in
    the frame of the input keypoints (the camera frame for the node)."""

    names: List[str]
    positions: np.ndarray
    quaternions: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


def keypoint_frame_names(side: str, mode: str) -> List[str]:
    """Frame names (no prefix) a mode publishes for one side, in keypoint order."""
    return [f"{side}_{KEYPOINT_NAMES[k - 1]}" for k in _mode_keypoints(mode)]


def _mode_keypoints(mode: str) -> Tuple[int, ...]:
    """Contract keypoint indices a `publish_joint_tf` mode covers."""
    if mode not in JOINT_TF_MODES:
        raise ValueError(f"publish_joint_tf must be one of {', '.join(JOINT_TF_MODES)}, "
                         f"got {mode!r}")
    if mode == "none":
        return ()
    return TIP_KEYPOINTS if mode == "fingertips" else tuple(range(1, NUM_KEYPOINTS))


def _turn(frame: np.ndarray, x_new: np.ndarray) -> np.ndarray:
    """frames (F,3,3) (columns x, y, z) turned by the smallest rotation taking each x onto the
    unit x_new (F,3); folded-back bones turn half a turn about their z."""
    x_old = frame[:, :, 0]
    v = np.cross(x_old, x_new)
    c = np.einsum("fi,fi->f", x_old, x_new)
    vx = np.zeros(frame.shape)
    vx[:, 0, 1], vx[:, 0, 2] = -v[:, 2], v[:, 1]
    vx[:, 1, 0], vx[:, 1, 2] = v[:, 2], -v[:, 0]
    vx[:, 2, 0], vx[:, 2, 1] = -v[:, 1], v[:, 0]
    folded = 1.0 + c < _FOLDED_EPS
    scale = np.where(folded, 0.0, 1.0 / np.maximum(1.0 + c, _FOLDED_EPS))
    rot = np.eye(3)[None] + vx + (vx @ vx) * scale[:, None, None]  # Rodrigues, a -> b
    if np.any(folded):  # half turn about the frame's own z
        z = frame[folded][:, :, 2]
        rot[folded] = 2.0 * z[:, :, None] * z[:, None, :] - np.eye(3)[None]
    out = rot @ frame
    # re-orthonormalise (the Rodrigues form is exact in maths; keep rounding from piling up)
    x = x_new
    y = out[:, :, 1] - x * np.einsum("fi,fi->f", out[:, :, 1], x)[:, None]
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return np.stack([x, y, np.cross(x, y)], axis=2)



def checked_hand_pose(joints: np.ndarray, wrist_quat: np.ndarray,
                      side: str) -> tuple[np.ndarray, np.ndarray]:
    """(joints (21,3), wrist_quat (4,) xyzw) as float64 after checking the side, the shapes
    and that both are finite (the quaternion non-zero); ValueError naming what is wrong."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    j = np.asarray(joints, dtype=np.float64)
    q = np.asarray(wrist_quat, dtype=np.float64)
    if j.shape != (NUM_KEYPOINTS, 3) or q.shape != (4,):
        raise ValueError(f"need joints ({NUM_KEYPOINTS},3) and wrist_quat (4,), got "
                         f"{j.shape} and {q.shape}")
    if not (np.all(np.isfinite(j)) and np.all(np.isfinite(q))) or np.linalg.norm(q) == 0.0:
        raise ValueError("joints and wrist_quat must be finite (and the quaternion non-zero)")
    return j, q

def keypoint_frames(joints: np.ndarray, wrist_quat: np.ndarray, side: str,
                    mode: str = "all") -> KeypointFrames:
    """Frames of keypoints (21,3) m with the hand model's root orientation (4,) xyzw (same
    frame), for `mode` fingertips | all (none: empty); ValueError on bad input."""
    j, q = checked_hand_pose(joints, wrist_quat, side)
    keep = _mode_keypoints(mode)
    if not keep:
        return KeypointFrames([], np.zeros((0, 3)), np.zeros((0, 4)))
    wrist = geo.quat_to_matrix(q / np.linalg.norm(q)) @ _WRIST_AXES[side]
    nf = len(FINGERS)
    frames = np.empty((NUM_KEYPOINTS, 3, 3))
    frames[0] = wrist
    parent = np.repeat(wrist[None], nf, axis=0)  # (5,3,3)
    prev = np.repeat(j[0][None], nf, axis=0)  # parent keypoint of each finger's next bone
    for level in range(_PER_FINGER):
        ids = np.arange(nf) * _PER_FINGER + 1 + level
        bone = j[ids] - prev
        length = np.linalg.norm(bone, axis=1)
        ok = length > _MIN_BONE_M
        x_new = np.where(ok[:, None], bone / np.maximum(length, _MIN_BONE_M)[:, None],
                         parent[:, :, 0])
        parent = _turn(parent, x_new)
        frames[ids] = parent
        prev = j[ids]
    idx = np.asarray(keep)
    return KeypointFrames(names=[f"{side}_{KEYPOINT_NAMES[k - 1]}" for k in keep],
                          positions=j[idx].copy(), quaternions=geo.matrix_to_quat(frames[idx]))


def hand_keypoint_frames(hand: Any, mode: str) -> Optional[KeypointFrames]:
    """Frames of a HandsResult-like hand (side, valid, metric, joints, wrist_quat) for `mode`;
    None for a hand that must not be placed in TF (invalid, or not metric: wrist-relative
    geometry), for mode none, or for non-finite keypoints."""
    if not _mode_keypoints(mode) or not (hand.valid and hand.metric):
        return None
    try:
        return keypoint_frames(hand.joints, hand.wrist_quat, hand.side, mode)
    except ValueError:
        return None
