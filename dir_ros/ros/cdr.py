"""Serialised ROS 2 messages written straight from numpy arrays, without rclpy message objects.

A TwoHandMesh carries 21 geometry_msgs/Point objects per hand and a marker mesh thousands:
building those Python objects costs more than the bytes they become. The node's hot messages
(TwoHandMesh, MarkerArray, TFMessage) are therefore written here as CDR bytes, which
rclpy publishes as they are (Publisher.publish(bytes)). Each user checks once at startup that
rclpy reads its bytes back as the message its rclpy path builds (check_against_rclpy) and
falls back to that path otherwise (another distro's layout, another middleware).

Encoding: little-endian plain CDR (XCDR1), as rmw_fastrtps serialises ROS 2 messages: a
4-byte encapsulation header, then each field aligned to its own size relative to the end of
that header; strings as uint32 length (with the terminating NUL) + bytes + NUL; sequences as
uint32 count + elements; fixed arrays as their elements.
"""
from __future__ import annotations

import logging
import struct
from typing import Any

import numpy as np

LOG = logging.getLogger("dir_ros.ros.cdr")
ENCAPSULATION_CDR_LE = b"\x00\x01\x00\x00"  # representation id CDR_LE, options 0
_HEADER_BYTES = len(ENCAPSULATION_CDR_LE)
_ZEROS = bytes(8)  # padding source (alignment is at most 8)


class CdrWriter:
    """Appends CDR-encoded fields to a buffer (see module docstring)."""

    def __init__(self) -> None:
        self.buf = bytearray(ENCAPSULATION_CDR_LE)

    def align(self, n: int) -> None:
        """Pad with zeros to a multiple of n bytes (relative to the payload start)."""
        pad = -(len(self.buf) - _HEADER_BYTES) % n
        if pad:
            self.buf += _ZEROS[:pad]

    def pack(self, fmt: str, *values: Any) -> None:
        """Primitive fields of one size (struct format characters, e.g. 'iI', 'ddd', 'B?'),
        aligned to that size."""
        self.align(struct.calcsize(fmt[0]))
        self.buf += struct.pack("<" + fmt, *values)

    def string(self, s: str) -> None:
        """A string field: uint32 length including the NUL, UTF-8 bytes, NUL."""
        b = s.encode("utf-8")
        self.pack("I", len(b) + 1)
        self.buf += b
        self.buf += b"\x00"

    def header(self, header: Any) -> None:
        """A std_msgs/Header (stamp sec, nanosec; frame_id)."""
        self.pack("iI", header.stamp.sec, header.stamp.nanosec)
        self.string(header.frame_id)

    def array(self, values: Any, dtype: str) -> None:
        """A fixed-size array field: the elements as little-endian `dtype` ('<f4', '<f8',
        '<u4'), aligned to the element size; no count."""
        a = np.ascontiguousarray(values, dtype=dtype)
        self.align(a.itemsize)
        self.buf += a.data.cast("B")  # no intermediate bytes object

    def sequence(self, values: Any, dtype: str) -> None:
        """An unbounded sequence field: uint32 element count, then the elements."""
        a = np.ascontiguousarray(values, dtype=dtype).reshape(-1)
        self.pack("I", a.size)
        if a.size:
            self.array(a, dtype)

    def bytes(self) -> bytes:
        """The serialised message (what Publisher.publish takes as raw bytes)."""
        return bytes(self.buf)


def check_against_rclpy(fast: bytes, msg: Any) -> bool:
    """True when `fast` has the length of rclpy's serialisation of `msg` and rclpy reads both
    back as equal messages (padding bytes are not part of a message's content, so bytes
    are not compared). False on any error, with the reason logged (the fast path is then
    not used)."""
    kind = type(msg).__name__
    try:
        from rclpy.serialization import deserialize_message, serialize_message

        slow = serialize_message(msg)
        if len(slow) != len(fast):
            LOG.warning("fast %s serialisation: %d bytes, rclpy %d", kind, len(fast), len(slow))
            return False
        if deserialize_message(fast, type(msg)) != deserialize_message(slow, type(msg)):
            LOG.warning("fast %s serialisation reads back as another message", kind)
            return False
        return True
    except Exception as e:  # noqa: BLE001 - any failure means: use rclpy's path
        LOG.warning("fast %s serialisation check failed (%s: %s)", kind, type(e).__name__, e)
        return False
