"""Fill rclpy messages (TwoHandMesh, TFMessage, Image, PointCloud2) from dir_ros results."""
from __future__ import annotations

import array
from typing import Any, Mapping, Optional

import numpy as np
from geometry_msgs.msg import Point, TransformStamped
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header

from dir_ros.hands_msg import result_to_fields
from dir_ros.msg import HandMesh, TwoHandMesh
from dir_ros.pointcloud import cloud_fields, hand_points
from dir_ros.results import FrameResult


def fill_hand(msg: HandMesh, f: Mapping[str, Any]) -> HandMesh:
    """Copy HandMesh field values (dir_ros.hands_msg dict form) into an rclpy HandMesh."""
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
    """Both metric hands' vertices -> PointCloud2 (layout: dir_ros.pointcloud)."""
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


def wrist_transforms(result: FrameResult, header: Header, prefix: str) -> list[TransformStamped]:
    """TransformStamped `<prefix>{left,right}_wrist` under the header frame for valid hands."""
    out = []
    for hand in result.hands():
        if not hand.valid:
            continue
        t = TransformStamped()
        t.header = header
        t.child_frame_id = f"{prefix}{hand.side}_wrist"
        tr, rot = t.transform.translation, t.transform.rotation
        tr.x, tr.y, tr.z = (float(v) for v in hand.wrist_position)
        rot.x, rot.y, rot.z, rot.w = (float(v) for v in hand.wrist_quat)
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
