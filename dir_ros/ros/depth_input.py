"""hands_node's optional depth input: the depth CameraInfo of aligned depth images
(sensor_msgs/Image 16UC1 mm or 32FC1 m, REP 118) and the depth placement of a frame's hands
(dir_ros.post.depth) with the depth frame its colour frame was paired with by stamp
(dir_ros.ros.stamp_pairing, which waits for the pair)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from dir_ros.post import depth as D
from dir_ros.common import geometry as geo
from dir_ros.common.results import FrameResult
from dir_ros.ros.stamp_pairing import Released


def stamp_seconds(stamp: Any) -> float:
    """builtin_interfaces/Time -> seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


class DepthInput:
    """The latest depth CameraInfo (callback from the executor; read by the worker thread)
    and the depth placement of a frame."""

    def __init__(self) -> None:
        self.info: Optional[tuple[np.ndarray, tuple[int, int], tuple[int, int, int, int]]] = None

    def on_info(self, msg: Any) -> None:
        """Keep the depth CameraInfo's K, size and roi when usable (else forget it)."""
        if geo.intrinsics_problem(msg.k) is not None:
            self.info = None
            return
        roi = msg.roi
        self.info = (np.asarray(msg.k, np.float64).reshape(3, 3), (int(msg.width),
                     int(msg.height)), (int(roi.x_offset), int(roi.y_offset), int(roi.width),
                                        int(roi.height)))

    def place(self, result: FrameResult, K: Optional[np.ndarray], pairing: Optional[Released],
              tolerance_s: float) -> Optional[str]:
        """Depth placement of result's hands (in place) with the depth frame of the colour
        frame's pairing (the closest depth frame when unpaired: the reason names its stamp
        gap); K = the colour image's. Returns why the frame's depth was not used (None when
        it was tried per hand: see each hand's placement and placement_note)."""
        if pairing is None or pairing.depth is None:
            D.mark_fallback(result, "no depth image")
            return "no depth image"
        gap, msg = pairing.gap_s, pairing.depth
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
