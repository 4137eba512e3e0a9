"""Synthetic hands of known pose from the hand model (open flat hand, pinch, fist), placed
anywhere in the camera frame: the known inputs of the robot-interface tests, the grasp
threshold measurement and the retargeting benchmark.

Poses are written for the right hand in the hand model's frame (tools/make_open_hand.py:
fingers -x, thumb side +z, palm -y; a positive rotation about +z flexes a finger) and
mirrored per joint for the left hand as the model does (axis-angle (a, b, c) -> (a, -b, -c)).
"""
from __future__ import annotations

import functools
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from dir_ros.common import geometry as geo
from dir_ros.common.results import NUM_SHAPE, SIDES, HandsResult

POSES = ("open", "pinch", "fist")
# MANO finger joints (1-based, MANO order) of each finger, base to tip.
_FINGER_MANO = {"index": (1, 2, 3), "middle": (4, 5, 6), "pinky": (7, 8, 9),
                "ring": (10, 11, 12), "thumb": (13, 14, 15)}
# Contract keypoints of the thumb, base to tip (its flexion axes are built from them).
_THUMB_KEYPOINTS = (1, 2, 3, 4)
# Thumb flexion turns each thumb bone toward this mix of (medial, palmar) directions, the
# open hand model's own convention (make_open_hand.py THUMB_FLEX_TOWARD).
_THUMB_FLEX_TOWARD = (0.45, 1.0)
_PALMAR = np.array([0.0, -1.0, 0.0])  # right model's palm faces -y
_MEDIAL = np.array([0.0, 0.0, -1.0])  # toward the little finger (-z) on the right model
# Thumb CMC roll that turns the thumb palmar (opposition), make_open_hand.py OPPOSITION_AXIS.
_OPPOSITION_AXIS = np.array([1.0, 0.0, 0.0])
# Right-hand poses: finger (MCP, PIP, DIP) flexion (rad), thumb (CMC, MCP, IP) flexion (rad)
# and CMC opposition (rad).
#   open: the zero pose, a flat hand with straight fingers;
#   fist: make_open_hand.py's preview fist (fingers curled into the palm, thumb over them);
#   pinch: index flexed and thumb opposed until the two distal pads touch: the surfaces of the
#     thumb's and index's distal segments are 0.7 mm apart, fingertip keypoints 11.7 mm apart
#     (found on a grid of index flexion x thumb flexion x opposition, see grasp.py).
_POSE_SPECS: Dict[str, Dict[str, Sequence[float]]] = {
    "open": {},
    "fist": {"index": (1.4, 1.6, 1.0), "middle": (1.4, 1.6, 1.0), "ring": (1.4, 1.6, 1.0),
             "pinky": (1.4, 1.6, 1.0), "thumb": (0.5, 0.6, 0.6), "opposition": (0.9,)},
    "pinch": {"index": (0.8, 1.0, 0.6), "thumb": (0.15, 0.18, 0.18), "opposition": (0.9,)},
}
# Per-joint axis-angle mirror of the left model: (a, b, c) -> (a, -b, -c).
_LEFT_MIRROR = np.array([1.0, -1.0, -1.0])
DEFAULT_WRIST_M = (0.0, 0.0, 0.5)  # half a metre in front of the camera


@functools.lru_cache(maxsize=None)
def _layers() -> Dict[str, object]:
    """The bundled open hand model's layers (loaded once)."""
    from dir_ros import hand_model as hm

    return hm.build_hand_layers()


def _thumb_flex_axes(rest_joints: np.ndarray) -> np.ndarray:
    """(3,3) right-model axes flexing thumb CMC, MCP, IP toward the palm, from the rest
    keypoints (21,3): each bone turned toward the (medial, palmar) mix."""
    axes = []
    for k in range(3):
        a, b = rest_joints[_THUMB_KEYPOINTS[k]], rest_joints[_THUMB_KEYPOINTS[k + 1]]
        t = (b - a) / np.linalg.norm(b - a)
        want = _THUMB_FLEX_TOWARD[0] * _MEDIAL + _THUMB_FLEX_TOWARD[1] * _PALMAR
        want = want - t * (want @ t)
        axis = np.cross(t, want / np.linalg.norm(want))
        axes.append(axis / np.linalg.norm(axis))
    return np.stack(axes)


def finger_pose(pose: str, side: str, amount: float = 1.0) -> np.ndarray:
    """(45,) axis-angle rad of MANO finger joints 1..15 for a named pose and side, every angle
    scaled by `amount` (0 = the flat hand, 1 = the pose: a continuous path between them)."""
    import torch

    if pose not in _POSE_SPECS:
        raise ValueError(f"pose must be one of {POSES}, got {pose!r}")
    layer = _layers()["right"]
    with torch.no_grad():
        rest = layer(torch.tensor([[1.0, 0, 0, 0, 1, 0]]), _pca(layer, np.zeros(45)),
                     torch.zeros(1, NUM_SHAPE)).joints[0].double().numpy()
    thumb_axes = _thumb_flex_axes(rest)
    spec = _POSE_SPECS[pose]
    aa = np.zeros(45)
    for finger in ("index", "middle", "ring", "pinky"):
        for j, angle in zip(_FINGER_MANO[finger], spec.get(finger, (0.0, 0.0, 0.0))):
            aa[3 * (j - 1) + 2] += angle
    for k, j in enumerate(_FINGER_MANO["thumb"]):
        aa[3 * (j - 1): 3 * j] += spec.get("thumb", (0.0, 0.0, 0.0))[k] * thumb_axes[k]
    cmc = _FINGER_MANO["thumb"][0]
    aa[3 * (cmc - 1): 3 * cmc] += spec.get("opposition", (0.0,))[0] * _OPPOSITION_AXIS
    if side == "left":
        aa = aa * np.tile(_LEFT_MIRROR, 15)
    return aa * float(amount)


def _pca(layer, aa: np.ndarray):
    """PCA coefficients (1,45) giving the finger axis-angle aa (45,)."""
    import torch

    full = torch.tensor(aa, dtype=torch.float64)[None]
    pca = (full - layer.th_hands_mean.double()) @ torch.linalg.pinv(layer.th_comps.double())
    return pca.float()


def synthetic_hand(side: str, pose: str, rotation: Optional[np.ndarray] = None,
                   wrist: Sequence[float] = DEFAULT_WRIST_M,
                   betas: Optional[np.ndarray] = None, amount: float = 1.0) -> HandsResult:
    """A valid, metric HandsResult of the open hand model in a named pose (its angles scaled by
    `amount`): root rotation `rotation` (3,3) (identity: the model's frame), wrist at `wrist`
    (3,) m, camera frame."""
    import torch

    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    layer = _layers()[side]
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    b = np.zeros(NUM_SHAPE) if betas is None else np.asarray(betas, dtype=np.float64)
    aa = finger_pose(pose, side, amount)
    r6 = torch.tensor(np.concatenate([rot[:, 0], rot[:, 1]]), dtype=torch.float32)[None]
    with torch.no_grad():
        out = layer(r6, _pca(layer, aa), torch.tensor(b, dtype=torch.float32)[None])
    root = out.rotmats[0, 0].double().numpy()
    offset = np.asarray(wrist, dtype=np.float64)
    joints = out.joints[0].double().numpy() + offset
    verts = out.vertices[0].double().numpy() + offset
    return HandsResult(
        side=side, valid=True, confidence=1.0, vertices=verts.astype(np.float32),
        joints=joints.astype(np.float32), wrist_position=offset.copy(),
        wrist_quat=geo.matrix_to_quat(root), metric=True,
        pose=np.concatenate([geo.matrix_to_axis_angle(root), aa]).astype(np.float32),
        shape=b.astype(np.float32), keypoints_2d=np.zeros((21, 2), np.float32),
        faces=layer.faces.numpy())


def pose_names() -> Tuple[str, ...]:
    """The named poses synthetic_hand() builds."""
    return POSES
