"""hands_node's optional depth input: aligned depth images (sensor_msgs/Image 16UC1 mm or
32FC1 m, REP 118) and their CameraInfo, paired with colour frames by stamp, and the depth
placement of a frame's hands (dir_ros.depth)."""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Optional

import numpy as np

from dir_ros import depth as D
from dir_ros import geometry as geo
from dir_ros.results import FrameResult

# Depth frames kept for pairing (newest last): a third of a second of a 30 Hz camera, so
# a colour frame processed late still finds its depth.
DEPTH_BUFFER_FRAMES = 10
# Longest wait (s) of the worker for a depth frame within tolerance of the colour stamp:
# colour and depth of one capture arrive on separate topics, depth often a little later.
DEPTH_WAIT_S = 0.05


def stamp_seconds(stamp: Any) -> float:
    """builtin_interfaces/Time -> seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


class DepthInput:
    """Latest depth frames and depth CameraInfo (callbacks from the executor; read by the
    worker thread)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frames: collections.deque = collections.deque(maxlen=DEPTH_BUFFER_FRAMES)
        self.info: Optional[tuple[np.ndarray, tuple[int, int], tuple[int, int, int, int]]] = None
        self.received = 0

    def on_depth(self, msg: Any) -> None:
        """Keep a depth Image (newest DEPTH_BUFFER_FRAMES)."""
        with self._cond:
            self._frames.append((stamp_seconds(msg.header.stamp), msg))
            self.received += 1
            self._cond.notify_all()

    def on_info(self, msg: Any) -> None:
        """Keep the depth CameraInfo's K, size and roi when usable (else forget it)."""
        if geo.intrinsics_problem(msg.k) is not None:
            self.info = None
            return
        roi = msg.roi
        self.info = (np.asarray(msg.k, np.float64).reshape(3, 3), (int(msg.width),
                     int(msg.height)), (int(roi.x_offset), int(roi.y_offset), int(roi.width),
                                        int(roi.height)))

    def _closest(self, t: float) -> Optional[tuple[float, Any]]:
        """(stamp gap s, message) of the buffered depth frame closest to t (None: none)."""
        if not self._frames:
            return None
        s, msg = min(self._frames, key=lambda f: abs(f[0] - t))
        return s - t, msg

    def pair(self, t: float, tolerance_s: float,
             wait_s: float = DEPTH_WAIT_S) -> Optional[tuple[float, Any]]:
        """The depth frame closest to colour stamp t, waiting up to wait_s for one within
        tolerance_s (not at all while no depth frame ever arrived: no delay without a depth
        camera): (stamp gap s, message), or None when no depth frame arrived yet."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            if self.received == 0:
                return None
            while True:
                best = self._closest(t)
                left = deadline - time.monotonic()
                if (best is not None and abs(best[0]) <= tolerance_s) or left <= 0:
                    return best
                self._cond.wait(timeout=left)

    def place(self, result: FrameResult, K: Optional[np.ndarray], t: float,
              tolerance_s: float) -> Optional[str]:
        """Depth placement of result's hands (in place) with the depth frame paired to colour
        stamp t; K = the colour image's. Returns why the frame's depth was not used (None
        when it was tried per hand: see each hand's placement and placement_note)."""
        paired = self.pair(t, tolerance_s)
        if paired is None:
            D.mark_fallback(result, "no depth image")
            return "no depth image"
        gap, msg = paired
        size = (int(msg.width), int(msg.height))
        problem = D.depth_frame_problem(size, result.image_size, gap, tolerance_s)
        if problem is not None:  # before decoding: a mismatched frame is not read at all
            D.mark_fallback(result, problem)
            return problem
        try:
            depth = D.decode_depth(msg.encoding, msg.width, msg.height, msg.step,
                                   bytes(msg.data), bool(msg.is_bigendian))
        except D.DepthError as e:
            D.mark_fallback(result, str(e))
            return str(e)
        info = self.info
        if info is not None and K is not None:  # the depth camera's own K, for its size
            K, _ = geo.intrinsics_for_image(info[0], info[1],
                                            (depth.shape[1], depth.shape[0]), info[2])
        problem = None
        fits = D.apply_depth(result, depth, K, gap, tolerance_s)
        if not fits:
            problem = next((h.placement_note for h in result.hands() if h.placement_note),
                           "no metric hand to place")
        return problem
