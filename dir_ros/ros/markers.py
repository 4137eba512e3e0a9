"""RViz MarkerArray of both hands: mesh (TRIANGLE_LIST), joints (SPHERE_LIST), bones (LINE_LIST).

Namespaces `<side>/mesh`, `<side>/joints`, `<side>/bones`, each with id 0 (stable); header =
input image header; a short lifetime plus an explicit DELETE makes a lost hand disappear.

Speed: a hand mesh is F*3 (about 4600) points; building and serialising that many rclpy
Point objects costs about 70 ms per hand in Python. So the markers are described as plain
numpy data (MarkerData) and serialised straight to CDR bytes (publisher.publish(bytes));
FastMarkerSerializer checks once at startup that rclpy reads its bytes back as the same
message (and that the lengths agree) and otherwise falls back to the rclpy message path
(e.g. a distro with another Marker layout).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from dir_ros.hand_model import BONE_PARENTS
from dir_ros.output.overlay import HAND_COLOURS
from dir_ros.common.results import FrameResult, HandsResult
from dir_ros.ros.cdr import CdrWriter, check_against_rclpy

MESH_ALPHA = 0.8  # mesh opacity, as the interface proposes
JOINT_DIAMETER_M = 0.008  # sphere size of the keypoints
BONE_WIDTH_M = 0.003  # line width of the skeleton
# A marker not refreshed within this many seconds disappears (e.g. the node stopped).
# Longer than a frame of the release network on a CPU (0.4-0.6 s) so meshes do not
# flicker between frames; a hand that is lost is removed at once by an explicit DELETE.
LIFETIME_S = 2.0
MARKER_ID = 0  # one marker per namespace
_NO_POINTS = np.zeros((0, 3))
_NS_PER_S = 1_000_000_000
# (child, parent) keypoint index pairs of the skeleton, flattened: the LINE_LIST order
_BONE_PAIRS = np.array([(c, p) for c, p in enumerate(BONE_PARENTS, start=1)]).reshape(-1)


@dataclass
class MarkerData:
    """One marker as plain data: points (N,3) float64 m; colour rgba 0..1; scale xyz."""

    ns: str
    type: int
    action: int
    color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    points: Optional[np.ndarray] = None


def hand_marker_data(hand: HandsResult) -> list[MarkerData]:
    """Mesh, joints, bones of a valid hand; three DELETEs for an invalid one."""
    side = hand.side
    names = (f"{side}/mesh", f"{side}/joints", f"{side}/bones")
    types = (Marker.TRIANGLE_LIST, Marker.SPHERE_LIST, Marker.LINE_LIST)
    if not hand.valid:
        return [MarkerData(n, t, Marker.DELETE) for n, t in zip(names, types)]
    r, g, b = HAND_COLOURS[side]
    joints = np.asarray(hand.joints, np.float64)
    return [
        MarkerData(names[0], types[0], Marker.ADD, (r, g, b, MESH_ALPHA), (1.0, 1.0, 1.0),
                   np.asarray(hand.vertices, np.float64)[np.asarray(hand.faces).reshape(-1)]),
        MarkerData(names[1], types[1], Marker.ADD, (0.5 * r, 0.5 * g, 0.5 * b, 1.0),
                   (JOINT_DIAMETER_M,) * 3, joints),
        MarkerData(names[2], types[2], Marker.ADD, (1.0, 1.0, 1.0, 1.0),
                   (BONE_WIDTH_M, 0.0, 0.0), joints[_BONE_PAIRS]),
    ]


def frame_marker_data(result: FrameResult) -> list[MarkerData]:
    """The 6 markers of one frame (left then right)."""
    return hand_marker_data(result.left) + hand_marker_data(result.right)


def _lifetime() -> Duration:
    return Duration(sec=int(LIFETIME_S), nanosec=int(round((LIFETIME_S % 1) * _NS_PER_S)))


def to_marker(d: MarkerData, header: Header) -> Marker:
    """MarkerData -> rclpy Marker (slow for large point lists)."""
    m = Marker()
    m.header = header
    m.ns, m.id, m.type, m.action = d.ns, MARKER_ID, d.type, d.action
    m.pose.orientation.w = 1.0
    m.lifetime = _lifetime()
    if d.action != Marker.DELETE:
        m.scale.x, m.scale.y, m.scale.z = (float(v) for v in d.scale)
        m.color = ColorRGBA(r=d.color[0], g=d.color[1], b=d.color[2], a=d.color[3])
        if d.points is not None:
            m.points = [Point(x=x, y=y, z=z) for x, y, z in np.asarray(d.points, float).tolist()]
    return m


def to_marker_array(data: list[MarkerData], header: Header) -> MarkerArray:
    """MarkerData list -> rclpy MarkerArray (the slow path)."""
    return MarkerArray(markers=[to_marker(d, header) for d in data])


def frame_markers(result: FrameResult, header: Header) -> MarkerArray:
    """MarkerArray (rclpy message) for both hands of one frame (6 markers)."""
    return to_marker_array(frame_marker_data(result), header)


def marker_array_cdr(markers: list[MarkerData], header: Header) -> bytes:
    """Serialised visualization_msgs/MarkerArray (Jazzy layout) without rclpy objects."""
    w = CdrWriter()
    w.pack("I", len(markers))
    life = _lifetime()
    for d in markers:
        deleting = d.action == Marker.DELETE
        w.header(header)
        w.string(d.ns)
        w.pack("iii", MARKER_ID, d.type, d.action)
        w.pack("ddddddd", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # pose: identity
        w.pack("ddd", *((0.0, 0.0, 0.0) if deleting else d.scale))
        w.pack("ffff", *((0.0, 0.0, 0.0, 0.0) if deleting else d.color))
        w.pack("iI", life.sec, life.nanosec)
        w.pack("?", False)  # frame_locked
        pts = _NO_POINTS if deleting or d.points is None else np.reshape(d.points, (-1, 3))
        w.pack("I", len(pts))  # points: geometry_msgs/Point[], x y z float64 each
        if len(pts):
            w.array(pts, "<f8")
        w.pack("I", 0)  # colors
        w.string("")  # texture_resource
        w.pack("iI", 0, 0)  # texture.header.stamp
        w.string("")  # texture.header.frame_id
        w.string("")  # texture.format
        w.pack("I", 0)  # texture.data
        w.pack("I", 0)  # uv_coordinates
        w.string("")  # text
        w.string("")  # mesh_resource
        w.string("")  # mesh_file.filename
        w.pack("I", 0)  # mesh_file.data
        w.pack("?", False)  # mesh_use_embedded_materials
    return w.bytes()


class FastMarkerSerializer:
    """Serialises frames' markers to CDR bytes when rclpy reads them back as its own
    MarkerArray (checked once here), else builds that MarkerArray."""

    def __init__(self) -> None:
        self.enabled = self._self_check()

    @staticmethod
    def _self_check() -> bool:
        """True when marker_array_cdr has rclpy's length for a sample and deserialises (rclpy)
        to the same message (padding bytes are unspecified, so bytes are not compared)."""
        try:
            h = Header(frame_id="check_frame")
            h.stamp.sec, h.stamp.nanosec = 12, 345
            rng = np.random.default_rng(0)
            sample = [MarkerData("a/mesh", Marker.TRIANGLE_LIST, Marker.ADD, (0.1, 0.2, 0.3, 0.8),
                                 (1.0, 1.0, 1.0), rng.normal(size=(9, 3))),
                      MarkerData("b/j", Marker.SPHERE_LIST, Marker.ADD, (1.0, 0.5, 0.25, 1.0),
                                 (0.01, 0.01, 0.01), rng.normal(size=(2, 3))),
                      MarkerData("c", Marker.LINE_LIST, Marker.DELETE)]
            return check_against_rclpy(marker_array_cdr(sample, h), to_marker_array(sample, h))
        except Exception:
            return False

    def __call__(self, result: FrameResult, header: Header) -> "bytes | MarkerArray":
        """CDR bytes (fast path) or a MarkerArray message (fallback) for one frame."""
        if self.enabled:
            return marker_array_cdr(frame_marker_data(result), header)
        return frame_markers(result, header)
