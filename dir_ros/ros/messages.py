"""Fill rclpy messages (TwoHandMesh, TFMessage, Image, PointCloud2) from dir_ros results.

The node's per-frame TwoHandMesh and TFMessage are written as CDR bytes straight from the
result's arrays (two_hand_mesh_cdr, tf_message_cdr; FastMessages checks at startup that rclpy
reads them back as the messages to_two_hand_mesh / wrist_transforms build, and uses those
otherwise): no geometry_msgs/Point objects, no per-field Python conversions.
"""
from __future__ import annotations

import array
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
from geometry_msgs.msg import Point, TransformStamped
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header

from dir_ros.common import geometry as geo
from dir_ros.output.hands_msg import result_to_fields
from dir_ros.msg import HandMesh, TwoHandMesh
from dir_ros.output.pointcloud import cloud_fields, hand_points
from dir_ros.common.results import (NUM_KEYPOINTS, NUM_POSE, NUM_SHAPE, PLACEMENT_DEPTH, FrameResult,
                             HandsResult)
from dir_ros.ros.cdr import CdrWriter, check_against_rclpy


def fill_hand(msg: HandMesh, f: Mapping[str, Any]) -> HandMesh:
    """Copy HandMesh field values (dir_ros.output.hands_msg dict form) into an rclpy HandMesh."""
    msg.side = int(f["side"])
    msg.valid = bool(f["valid"])
    msg.confidence = float(f["confidence"])
    p, q = f["wrist_pose"]["position"], f["wrist_pose"]["orientation"]
    msg.wrist_pose.position.x, msg.wrist_pose.position.y, msg.wrist_pose.position.z = \
        (float(v) for v in p)
    o = msg.wrist_pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in q)
    msg.metric = bool(f["metric"])
    msg.placement = int(f.get("placement", 0))
    msg.joints = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in f["joints"]]
    msg.vertices = array.array("f", np.ascontiguousarray(f["vertices"], np.float32).tobytes())
    msg.faces = array.array("I", np.ascontiguousarray(f["faces"], np.uint32).tobytes())
    msg.pose = np.asarray(f["pose"], np.float32)
    msg.shape = np.asarray(f["shape"], np.float32)
    msg.keypoints_2d = np.asarray(f["keypoints_2d"], np.float32)
    return msg


def to_two_hand_mesh(result: FrameResult, header: Header) -> TwoHandMesh:
    """FrameResult -> TwoHandMesh with the given (input image) header."""
    fields = result_to_fields(result)
    msg = TwoHandMesh()
    msg.header = header
    fill_hand(msg.left, fields["left"])
    fill_hand(msg.right, fields["right"])
    return msg


def to_point_cloud(result: FrameResult, header: Header) -> PointCloud2:
    """Both metric hands' vertices -> PointCloud2 (layout: dir_ros.output.pointcloud)."""
    f = cloud_fields(hand_points(result))
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = f["height"], f["width"]
    msg.fields = [PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in f["fields"]]
    msg.is_bigendian, msg.point_step, msg.row_step = f["is_bigendian"], f["point_step"], \
        f["row_step"]
    msg.data = array.array("B", f["data"])
    msg.is_dense = f["is_dense"]
    return msg


# One extra TF frame: (child frame id, translation (3,) m, rotation (4,) xyzw), in the
# header frame (dir_ros.ros.robot_outputs: the keypoint frames of publish_joint_tf).
Frame = tuple[str, np.ndarray, np.ndarray]


def _tf_entries(result: FrameResult, prefix: str, wrists: bool,
                frames: Sequence[Frame]) -> list[Frame]:
    """The frames of one TFMessage: `<prefix>{left,right}_wrist` of the valid hands (when
    `wrists`), then `frames` as given."""
    out: list[Frame] = []
    if wrists:
        out = [(f"{prefix}{h.side}_wrist", h.wrist_position, h.wrist_quat)
               for h in result.hands() if h.valid]
    return out + list(frames)


def wrist_transforms(result: FrameResult, header: Header, prefix: str, wrists: bool = True,
                     frames: Sequence[Frame] = ()) -> list[TransformStamped]:
    """TransformStamped `<prefix>{left,right}_wrist` under the header frame for valid hands
    (when `wrists`), then one per extra frame (child id, translation m, rotation xyzw)."""
    out = []
    for child, position, quat in _tf_entries(result, prefix, wrists, frames):
        t = TransformStamped()
        t.header = header
        t.child_frame_id = child
        tr, rot = t.transform.translation, t.transform.rotation
        tr.x, tr.y, tr.z = (float(v) for v in np.reshape(position, 3))
        rot.x, rot.y, rot.z, rot.w = (float(v) for v in np.reshape(quat, 4))
        out.append(t)
    return out


def rgb_to_image(rgb: np.ndarray, header: Optional[Header] = None) -> Image:
    """RGB uint8 (H,W,3) -> sensor_msgs/Image rgb8."""
    h, w = rgb.shape[:2]
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding, msg.step = h, w, "rgb8", w * 3
    msg.data = array.array("B", np.ascontiguousarray(rgb, np.uint8).tobytes())
    return msg


# ---- CDR fast path ----------------------------------------------------------------------

def _hand_cdr(w: CdrWriter, f: Mapping[str, Any]) -> None:
    """One HandMesh in msg/HandMesh.msg field order, from its dir_ros.output.hands_msg field values
    (the values fill_hand copies into an rclpy message)."""
    w.pack("B?", f["side"], f["valid"])
    w.pack("f", f["confidence"])
    w.array(f["wrist_pose"]["position"], "<f8")  # geometry_msgs/Point
    w.array(f["wrist_pose"]["orientation"], "<f8")  # geometry_msgs/Quaternion
    w.pack("?B", f["metric"], f.get("placement", 0))
    w.array(np.reshape(f["joints"], (NUM_KEYPOINTS, 3)), "<f8")  # Point[21]: x y z float64
    w.sequence(f["vertices"], "<f4")
    w.sequence(f["faces"], "<u4")
    w.array(np.reshape(f["pose"], NUM_POSE), "<f4")
    w.array(np.reshape(f["shape"], NUM_SHAPE), "<f4")
    w.array(np.reshape(f["keypoints_2d"], 2 * NUM_KEYPOINTS), "<f4")


def two_hand_mesh_cdr(result: FrameResult, header: Header) -> bytes:
    """FrameResult -> serialised TwoHandMesh with the given header (the content of
    to_two_hand_mesh's message, without rclpy objects)."""
    fields = result_to_fields(result)
    w = CdrWriter()
    w.header(header)
    _hand_cdr(w, fields["left"])
    _hand_cdr(w, fields["right"])
    return w.bytes()


def tf_message_cdr(result: FrameResult, header: Header, prefix: str, wrists: bool = True,
                   frames: Sequence[Frame] = ()) -> Optional[bytes]:
    """Serialised tf2_msgs/TFMessage of wrist_transforms' transforms (the valid hands'
    wrists when `wrists`, then `frames`); None when that is no frame (nothing to publish)."""
    entries = _tf_entries(result, prefix, wrists, frames)
    if not entries:
        return None
    w = CdrWriter()
    w.pack("I", len(entries))
    for child, position, quat in entries:
        w.header(header)
        w.string(child)
        w.array(np.reshape(position, 3), "<f8")  # translation x y z
        w.array(np.reshape(quat, 4), "<f8")  # rotation x y z w
    return w.bytes()


def _check_sample() -> tuple[FrameResult, Header]:
    """A small deterministic frame for the startup checks: a valid metric left hand with
    every field non-zero, an invalid right hand (zeroed fields, kept faces); a header."""
    rng = np.random.default_rng(0)
    num_verts, num_faces = 7, 5
    faces = rng.integers(0, num_verts, (num_faces, 3))
    left = HandsResult(
        side="left", valid=True, confidence=0.8125, vertices=rng.normal(size=(num_verts, 3)),
        joints=rng.normal(size=(NUM_KEYPOINTS, 3)), wrist_position=rng.normal(size=3),
        wrist_quat=np.array([0.5, -0.5, 0.5, 0.5]), metric=True,
        pose=rng.normal(size=NUM_POSE), shape=rng.normal(size=NUM_SHAPE),
        keypoints_2d=rng.uniform(0, 640, (NUM_KEYPOINTS, 2)), faces=faces,
        placement=PLACEMENT_DEPTH)
    right = HandsResult.invalid("right", faces, num_verts)
    right.confidence = 0.25
    header = Header(frame_id="check_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 1234, 567_890_123
    return FrameResult(left, right, geo.full_frame_box(640, 480)), header


class FastMessages:
    """The node's TwoHandMesh and TFMessage as CDR bytes (two_hand_mesh_cdr, tf_message_cdr)
    where a startup check shows rclpy reads them back as the messages of the rclpy path
    (to_two_hand_mesh, wrist_transforms), else as those rclpy messages."""

    def __init__(self, tf_message_type: Optional[type] = None) -> None:
        self._tf_type = tf_message_type
        result, header = _check_sample()
        self.mesh_enabled = check_against_rclpy(two_hand_mesh_cdr(result, header),
                                                to_two_hand_mesh(result, header))
        extra = [("check/left_index_tip", np.array([0.25, -0.5, 1.5]),
                  np.array([0.0, 0.6, 0.0, 0.8]))]  # a keypoint frame (publish_joint_tf)
        self.tf_enabled = tf_message_type is not None and check_against_rclpy(
            tf_message_cdr(result, header, "check/", True, extra) or b"",
            tf_message_type(transforms=wrist_transforms(result, header, "check/", True, extra)))

    def mesh(self, result: FrameResult, header: Header) -> Union[bytes, TwoHandMesh]:
        """TwoHandMesh of one frame: CDR bytes, or the rclpy message (fallback)."""
        if self.mesh_enabled:
            return two_hand_mesh_cdr(result, header)
        return to_two_hand_mesh(result, header)

    def tf(self, result: FrameResult, header: Header, prefix: str, wrists: bool = True,
           frames: Sequence[Frame] = ()) -> Optional[Any]:
        """TFMessage of the valid hands' wrists (when `wrists`) and the extra `frames` (bytes
        or the rclpy message); None when that is no frame or tf2_msgs is missing."""
        if self.tf_enabled:
            return tf_message_cdr(result, header, prefix, wrists, frames)
        transforms = wrist_transforms(result, header, prefix, wrists, frames)
        if not transforms or self._tf_type is None:
            return None
        return self._tf_type(transforms=transforms)
