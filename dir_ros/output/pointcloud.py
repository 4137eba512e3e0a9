"""Both hands' mesh vertices as PointCloud2 field values (no ROS imports): x, y, z float32 m
and `hand` float32 (HandMesh.LEFT=0.0 / RIGHT=1.0), for collision avoidance (MoveIt's occupancy
map updater takes point clouds).

The layout is the one sensor_msgs_py.point_cloud2.create_cloud builds for these fields from a
structured array (sensor_msgs_py is not installed here, so the cloud is packed here):
fields x@0, y@4, z@8, hand@12, all FLOAT32 count 1; point_step 16; height 1, width N,
row_step 16 N; is_dense False (what create_cloud always sets); is_bigendian False on a
little-endian host; data = the points' bytes in order (left hand's vertices, then the
right hand's). `hand` is float32, not uint8: with one datatype create_cloud takes a plain
(N,4) float32 array, every sensor_msgs_py version gives the same 16-byte point (a uint8
would make a 13-byte, unaligned point), and RViz colours by it directly.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

from dir_ros.output.hands_msg import SIDE_CODES
from dir_ros.common.results import FrameResult

# sensor_msgs/PointField datatype codes (PointField.msg constants).
POINTFIELD_FLOAT32 = 7
# (name, offset bytes, PointField datatype, count) of each point field.
FIELDS = (("x", 0, POINTFIELD_FLOAT32, 1), ("y", 4, POINTFIELD_FLOAT32, 1),
          ("z", 8, POINTFIELD_FLOAT32, 1), ("hand", 12, POINTFIELD_FLOAT32, 1))
# numpy layout of one point, byte-for-byte the PointCloud2 point (point_step = itemsize).
POINT_DTYPE = np.dtype({"names": ["x", "y", "z", "hand"],
                        "formats": ["<f4", "<f4", "<f4", "<f4"],
                        "offsets": [0, 4, 8, 12]})


def hand_points(result: FrameResult) -> np.ndarray:
    """Vertices of the valid, metric hands of result as a (N,) POINT_DTYPE array (left first);
    wrist-relative hands are left out (they are not where the camera sees them)."""
    parts = []
    for hand in result.hands():
        if not (hand.valid and hand.metric):
            continue
        v = np.asarray(hand.vertices, np.float32).reshape(-1, 3)
        pts = np.zeros(len(v), POINT_DTYPE)
        pts["x"], pts["y"], pts["z"] = v[:, 0], v[:, 1], v[:, 2]
        pts["hand"] = SIDE_CODES[hand.side]
        parts.append(pts)
    return np.concatenate(parts) if parts else np.zeros(0, POINT_DTYPE)


def cloud_fields(points: np.ndarray) -> dict[str, Any]:
    """(N,) POINT_DTYPE points -> PointCloud2 field values (header excluded): height, width,
    fields [(name, offset, datatype, count)], is_bigendian, point_step, row_step, data, is_dense."""
    pts = np.ascontiguousarray(points, POINT_DTYPE)
    return {"height": 1, "width": int(len(pts)), "fields": list(FIELDS),
            "is_bigendian": sys.byteorder != "little", "point_step": POINT_DTYPE.itemsize,
            "row_step": POINT_DTYPE.itemsize * int(len(pts)), "data": pts.tobytes(),
            "is_dense": False}


def read_points(fields: dict[str, Any]) -> np.ndarray:
    """PointCloud2 field values (or a message's) -> (N,) POINT_DTYPE (checks the layout)."""
    names = [(f[0], f[1], f[2], f[3]) if isinstance(f, tuple) else
             (f.name, f.offset, f.datatype, f.count) for f in fields["fields"]]
    if names != list(FIELDS) or int(fields["point_step"]) != POINT_DTYPE.itemsize:
        raise ValueError(f"not a dir_ros hand cloud layout: {names}, "
                         f"point_step {fields['point_step']}")
    n = int(fields["width"]) * int(fields["height"])
    return np.frombuffer(bytes(fields["data"]), POINT_DTYPE, count=n).copy()
