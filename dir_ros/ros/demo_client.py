"""The demo's ROS 2 side: an rclpy node that publishes a photo as camera_info + bgr8 Image,
calls the node's reset service, and records the TwoHandMesh, MarkerArray and /tf answers by
header stamp (rclpy and the messages are imported when the client is built)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from dir_ros.ros.demo_node import TF_PREFIX

FRAME_ID = "demo_camera_optical"  # header.frame_id of the published images
# Pause between CameraInfo and Image so the node caches the intrinsics first.
CAMERA_INFO_LEAD_S = 0.1
SPIN_PERIOD_S = 0.05  # executor spin_once timeout
OUTPUT_QOS_DEPTH = 50  # demo subscriptions: keep every answer of a run
TF_QOS_DEPTH = 100  # /tf as tf2_ros subscribes to it
RESET_SERVICE = "hands_node/reset"  # std_srvs/Trigger: forget tracking / warm start / smoothing
RESET_TIMEOUT_S = 30.0  # the reset runs between two frames on the node's worker thread


Stamp = tuple[int, int]


@dataclass
class Answers:
    """What came back, keyed by header stamp, with the monotonic receive time."""

    hands: dict[Stamp, tuple[Any, float]] = field(default_factory=dict)
    markers: dict[Stamp, tuple[Any, float]] = field(default_factory=dict)
    tf: dict[Stamp, tuple[list[str], float]] = field(default_factory=dict)


class DemoClient:
    """rclpy node publishing images + camera_info and recording hands / markers / TF."""

    def __init__(self, namespace: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import CameraInfo, Image
        from std_srvs.srv import Trigger
        from tf2_msgs.msg import TFMessage
        from visualization_msgs.msg import MarkerArray

        from dir_ros.msg import TwoHandMesh

        self._Image, self._CameraInfo, self._Trigger = Image, CameraInfo, Trigger
        self.context = rclpy.Context()
        # Python's own SIGINT/SIGTERM handling stays in charge (the demo cleans up itself).
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("hands_demo", namespace=namespace, context=self.context)
        # Reliable in (the node is told image_reliability: reliable): a 3 MB frame is
        # retransmitted instead of lost; depth 1 as a camera would.
        in_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_image = self.node.create_publisher(Image, "image", in_qos)
        self.pub_info = self.node.create_publisher(CameraInfo, "camera_info", in_qos)
        out_qos = QoSProfile(depth=OUTPUT_QOS_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        self.answers = Answers()
        self.node.create_subscription(TwoHandMesh, "hands", self._on_hands, out_qos)
        self.node.create_subscription(MarkerArray, "hands/markers", self._on_markers, out_qos)
        self.node.create_subscription(TFMessage, "/tf", self._on_tf, QoSProfile(
            depth=TF_QOS_DEPTH, reliability=ReliabilityPolicy.RELIABLE))
        self.reset_client = self.node.create_client(Trigger, RESET_SERVICE)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def reset(self, timeout_s: float = RESET_TIMEOUT_S) -> Optional[str]:
        """Ask the node to forget its per-stream state (tracking, warm start, smoothing);
        None when done, else why not (no such service, refused, no answer in time)."""
        end = time.monotonic() + timeout_s
        while not self.reset_client.service_is_ready():  # discovery may lag the topics
            if time.monotonic() > end:
                return f"the node offers no {RESET_SERVICE} service"
            self.spin()
        future = self.reset_client.call_async(self._Trigger.Request())
        while not future.done() and time.monotonic() < end:
            self.spin()
        if not future.done():
            future.cancel()
            return f"{RESET_SERVICE} did not answer within {timeout_s:g} s"
        answer = future.result()
        return None if answer.success else f"{RESET_SERVICE} refused: {answer.message}"

    @staticmethod
    def _key(header: Any) -> Stamp:
        """(sec, nanosec) of a header stamp: how answers are matched to frames."""
        return (int(header.stamp.sec), int(header.stamp.nanosec))

    def _on_hands(self, msg: Any) -> None:
        """Keep the first TwoHandMesh per stamp with its receive time."""
        self.answers.hands.setdefault(self._key(msg.header), (msg, time.monotonic()))

    def _on_markers(self, msg: Any) -> None:
        """Keep the first MarkerArray per stamp (of its first marker) with its receive time."""
        if msg.markers:
            self.answers.markers.setdefault(self._key(msg.markers[0].header),
                                            (msg, time.monotonic()))

    def _on_tf(self, msg: Any) -> None:
        """Collect the demo's wrist frames per stamp (time of the first one)."""
        for t in msg.transforms:
            if not t.child_frame_id.startswith(TF_PREFIX):
                continue  # someone else's TF
            frames, t0 = self.answers.tf.get(self._key(t.header), ([], time.monotonic()))
            frames.append(t.child_frame_id)
            self.answers.tf[self._key(t.header)] = (frames, t0)

    def spin(self, seconds: float = SPIN_PERIOD_S) -> None:
        """Handle what has arrived, waiting at most `seconds`."""
        self.executor.spin_once(timeout_sec=seconds)

    def connected(self) -> bool:
        """The node's image / camera_info subscriptions and hands publisher are matched."""
        return (self.pub_image.get_subscription_count() > 0
                and self.pub_info.get_subscription_count() > 0
                and self.node.count_publishers(self.node.resolve_topic_name("hands")) > 0)

    def new_stamp(self, previous: Optional[Stamp]) -> Stamp:
        """Now (ROS clock), strictly after `previous` so every frame has its own stamp."""
        ns = self.node.get_clock().now().nanoseconds
        if previous is not None:
            ns = max(ns, previous[0] * 10**9 + previous[1] + 1)
        return (ns // 10**9, ns % 10**9)

    def publish(self, bgr: np.ndarray, K: np.ndarray, stamp: Stamp) -> float:
        """CameraInfo (K, no distortion), a short pause, then the bgr8 Image, same stamp;
        returns the monotonic time just before the Image was published."""
        h, w = bgr.shape[:2]
        info = self._CameraInfo()
        info.header.frame_id = FRAME_ID
        info.header.stamp.sec, info.header.stamp.nanosec = stamp
        info.width, info.height = w, h
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        info.k = [float(v) for v in K.reshape(-1)]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        P = np.zeros((3, 4))
        P[:, :3] = K
        info.p = [float(v) for v in P.reshape(-1)]
        self.pub_info.publish(info)
        end = time.monotonic() + CAMERA_INFO_LEAD_S
        while time.monotonic() < end:
            self.spin(SPIN_PERIOD_S / 5)
        img = self._Image()
        img.header.frame_id = FRAME_ID
        img.header.stamp.sec, img.header.stamp.nanosec = stamp
        img.height, img.width, img.encoding = h, w, "bgr8"
        img.is_bigendian = 0
        img.step = w * 3
        img.data = np.ascontiguousarray(bgr).tobytes()
        t_publish = time.monotonic()
        self.pub_image.publish(img)
        return t_publish

    def close(self) -> None:
        """Tear down the executor, node and context (idempotent enough for a finally)."""
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
