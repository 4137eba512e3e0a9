"""FrameResult <-> TwoHandMesh field values as plain Python / numpy (no ROS imports).

The dict form mirrors msg/TwoHandMesh.msg and msg/HandMesh.msg field names: the rclpy node
(dir_ros.ros.messages) fills its messages from it, and `fields_to_hand` / `fields_to_result`
read rclpy or rosbags messages back (the demo, evaluation of recordings). The ground-truth
bags of dir_ros.eval.bag are written from dataset records instead:

  {"left": hand, "right": hand}, hand = {
     "side": int (LEFT=0 / RIGHT=1), "valid": bool, "confidence": float,
     "wrist_pose": {"position": (3,) float64 m, "orientation": (4,) float64 xyzw},
     "metric": bool, "joints": (21,3) float64 m, "vertices": (V*3,) float32 m,
     "faces": (F*3,) uint32, "pose": (48,) float32 rad, "shape": (10,) float32,
     "keypoints_2d": (42,) float32 px, "placement": int (PLACEMENT_NONE / _HAND_SIZE /
     _DEPTH of dir_ros.common.results; 0 for an invalid hand)}

An invalid hand keeps side, faces and confidence (so a user can tune min_confidence); every
other field is zero, as HandMesh.msg documents (vertices: V*3 zeros, orientation identity).
The header is not part of the dict: the caller copies the input image's header.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from dir_ros.common import geometry as geo
from dir_ros.common.results import (NUM_KEYPOINTS, NUM_POSE, NUM_SHAPE, PLACEMENT_HAND_SIZE,
                             PLACEMENT_NONE, FrameResult, HandsResult)

SIDE_CODES = {"left": 0, "right": 1}  # HandMesh.LEFT / HandMesh.RIGHT
IDENTITY_QUAT = np.array([0.0, 0.0, 0.0, 1.0])


def hand_to_fields(hand: HandsResult) -> dict[str, Any]:
    """One HandsResult -> HandMesh field values (see module docstring)."""
    valid = bool(hand.valid)

    def keep(x: np.ndarray, dtype: type) -> np.ndarray:
        arr = np.asarray(x, dtype=dtype)
        return arr if valid else np.zeros_like(arr)

    return {
        "side": SIDE_CODES[hand.side],
        "valid": valid,
        "confidence": float(hand.confidence),
        "wrist_pose": {
            "position": keep(hand.wrist_position, np.float64).reshape(3),
            "orientation": (np.asarray(hand.wrist_quat, np.float64).reshape(4) if valid
                            else IDENTITY_QUAT.copy()),
        },
        "metric": bool(hand.metric) and valid,
        "joints": keep(hand.joints, np.float64).reshape(NUM_KEYPOINTS, 3),
        "vertices": keep(hand.vertices, np.float32).reshape(-1),
        "faces": np.asarray(hand.faces, dtype=np.uint32).reshape(-1),
        "pose": keep(hand.pose, np.float32).reshape(NUM_POSE),
        "shape": keep(hand.shape, np.float32).reshape(NUM_SHAPE),
        "keypoints_2d": keep(hand.keypoints_2d, np.float32).reshape(2 * NUM_KEYPOINTS),
        "placement": int(hand.placement) if valid else PLACEMENT_NONE,
    }


def result_to_fields(result: FrameResult) -> dict[str, dict[str, Any]]:
    """FrameResult -> {"left": HandMesh fields, "right": HandMesh fields}."""
    return {"left": hand_to_fields(result.left), "right": hand_to_fields(result.right)}


def _getter(fields: Any) -> Callable[[str], Any]:
    """Field access by name on a dict (the form above) or a message-like object."""
    if isinstance(fields, Mapping):
        return fields.__getitem__
    return lambda k: getattr(fields, k)


def fields_to_hand(fields: Mapping[str, Any]) -> HandsResult:
    """HandMesh field values (dict, or any object with those attributes) -> HandsResult."""
    get = _getter(fields)
    side = {v: k for k, v in SIDE_CODES.items()}[int(get("side"))]
    pose = get("wrist_pose")
    if isinstance(pose, Mapping):
        position, quat = pose["position"], pose["orientation"]
    else:  # geometry_msgs/Pose-like
        p, o = pose.position, pose.orientation
        position, quat = (p.x, p.y, p.z), (o.x, o.y, o.z, o.w)
    joints = get("joints")
    if len(joints) and not isinstance(joints[0], (np.ndarray, list, tuple)) \
            and hasattr(joints[0], "x"):
        joints = [(j.x, j.y, j.z) for j in joints]
    return HandsResult(
        side=side, valid=bool(get("valid")), confidence=float(get("confidence")),
        vertices=np.asarray(get("vertices"), np.float32).reshape(-1, 3),
        joints=np.asarray(joints, np.float32).reshape(NUM_KEYPOINTS, 3),
        wrist_position=np.asarray(position, np.float64).reshape(3),
        wrist_quat=np.asarray(quat, np.float64).reshape(4), metric=bool(get("metric")),
        pose=np.asarray(get("pose"), np.float32).reshape(NUM_POSE),
        shape=np.asarray(get("shape"), np.float32).reshape(NUM_SHAPE),
        keypoints_2d=np.asarray(get("keypoints_2d"), np.float32).reshape(NUM_KEYPOINTS, 2),
        faces=np.asarray(get("faces"), np.int64).reshape(-1, 3),
        placement=_placement(get, bool(get("metric"))))


def _placement(get: Callable[[str], Any], metric: bool) -> int:
    """HandMesh.placement; messages recorded before the field existed: from `metric`."""
    try:
        return int(get("placement"))
    except (KeyError, AttributeError):
        return PLACEMENT_HAND_SIZE if metric else PLACEMENT_NONE


def fields_to_result(fields: Mapping[str, Any],
                     image_size: tuple[int, int] = (0, 0)) -> FrameResult:
    """{"left": ..., "right": ...} (or a TwoHandMesh-like object) -> FrameResult.

    The crop box is not part of the message: a full-frame box of image_size stands in.
    """
    get = _getter(fields)
    return FrameResult(left=fields_to_hand(get("left")), right=fields_to_hand(get("right")),
                       box=geo.full_frame_box(*image_size), image_size=image_size)
