"""hands_node: camera image -> two reconstructed hands (TwoHandMesh, markers, TF, diagnostics).

Threading: the subscription callback only drops the newest message into a one-slot mailbox
(an older unprocessed one is replaced and counted as dropped); a worker thread decodes,
runs the network and publishes. So a slow model never builds a backlog.

Run: `ros2 run dir_ros hands_node --ros-args -r image:=/camera/image_raw ...`, or as a plain
executable (`python -m dir_ros.ros.node`, `lib/dir_ros/hands_node`).
"""
from __future__ import annotations

import collections
import pickle
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from dir_ros import geometry as geo
from dir_ros import predictor as P
from dir_ros.hand_model import HandModelError
from dir_ros.msg import TwoHandMesh
from dir_ros.ros.messages import rgb_to_image, to_two_hand_mesh, wrist_transforms

NODE_NAME = "hands_node"
EXIT_BAD_CONFIG = 2  # exit status for refused parameters / missing files at startup
DIAGNOSTICS_PERIOD_S = 1.0
LOG_THROTTLE_S = 5.0  # at most one repeated error log per this many seconds
LATENCY_WINDOW = 100  # frames kept for latency statistics
WORKER_JOIN_TIMEOUT_S = 5.0
OUTPUT_DEPTH = 10  # outputs: RELIABLE depth 10 (ROS_INTERFACE.md)
TF_DEPTH = 100  # /tf as tf2_ros publishes it: RELIABLE depth 100
ROI_UNSET = [0.0, 0.0, 0.0, 0.0]


@dataclass
class ParamSpec:
    """One declared parameter: default, description, allowed values / range, runtime change."""

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    value_range: Optional[tuple[float, float, bool]] = None  # (lo, hi, lo inclusive)
    read_only: bool = False


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("weights", "", "Trained DIR checkpoint (.pt / .pth); '' = random init (warns).",
              read_only=True),
    ParamSpec("model_config", "config/model/dir_release.yaml",
              "Network config YAML (absolute, or relative to the package share / source root).",
              read_only=True),
    ParamSpec("hand_model", "", "Folder with MANO_LEFT.pkl and MANO_RIGHT.pkl; '' = bundled "
              "open hand model (weights/open_hand).", read_only=True),
    ParamSpec("device", "auto", "Torch device.", choices=P.DEVICES, read_only=True),
    ParamSpec("precision", "fp32", "Inference precision (fp16/bf16: CUDA autocast only).",
              choices=P.PRECISIONS, read_only=True),
    ParamSpec("image_reliability", "best_effort", "QoS reliability of the image and camera_info "
              "subscriptions (best_effort also hears reliable publishers).",
              choices=("best_effort", "reliable"), read_only=True),
    ParamSpec("image_transport", "raw", "raw: sensor_msgs/Image on `image`; compressed: "
              "sensor_msgs/CompressedImage on `<image>/compressed`.",
              choices=("raw", "compressed"), read_only=True),
    ParamSpec("frame_prefix", "", "Prefix of the TF child frames <prefix>left_wrist / "
              "<prefix>right_wrist."),
    ParamSpec("publish_markers", True, "Publish hands/markers (MarkerArray) for RViz."),
    ParamSpec("publish_tf", True, "Publish the wrist frames on /tf (valid hands only)."),
    ParamSpec("publish_debug_image", False, "Publish hands/debug_image (input with keypoints)."),
    ParamSpec("min_confidence", P.DEFAULT_MIN_CONFIDENCE, "A hand is valid when its confidence "
              "(seg-head hand probability over its footprint) is >= this.",
              value_range=(0.0, 1.0, True)),
    ParamSpec("crop", "full", "Two-hand crop: full frame (centred square), fixed roi, or track "
              "the previous frame's hands.", choices=P.CROP_MODES),
    ParamSpec("roi", list(ROI_UNSET), "[x, y, w, h] image pixels, used when crop is roi."),
    ParamSpec("smoothing", "none", "Temporal filter of the output.", choices=("none", "ema")),
    ParamSpec("smoothing_factor", 0.5, "EMA weight of the newest frame, in (0, 1] "
              "(1 = no smoothing).", value_range=(0.0, 1.0, False)),
)
SPECS = {p.name: p for p in PARAMS}


class ConfigError(Exception):
    """A parameter or file problem that stops the node at startup."""


def check_param(name: str, value: Any, values: Optional[dict[str, Any]] = None) -> Optional[str]:
    """None when `value` is acceptable for parameter `name`, else a message naming it and the
    allowed values. `values` = all current parameter values (enables the cross checks)."""
    spec = SPECS.get(name)
    if spec is None:
        return None
    if spec.choices and value not in spec.choices:
        return (f"parameter '{name}': '{value}' is not allowed; allowed values: "
                f"{', '.join(spec.choices)}")
    if spec.value_range is not None:
        lo, hi, lo_incl = spec.value_range
        if not isinstance(value, (int, float)) or not (
                (lo <= value if lo_incl else lo < value) and value <= hi):
            return (f"parameter '{name}': {value} is out of range; allowed: "
                    f"{'[' if lo_incl else '('}{lo}, {hi}]")
    if name == "roi":
        roi = list(value)
        if len(roi) != 4:
            return f"parameter 'roi': needs 4 numbers [x, y, w, h], got {roi}"
        if roi != ROI_UNSET and (roi[2] <= 0 or roi[3] <= 0):
            return f"parameter 'roi': width and height must be > 0, got {roi}"
    if values is None:
        return None
    merged = {**values, name: value}
    if merged.get("crop") == "roi" and list(merged.get("roi", ROI_UNSET)) == ROI_UNSET:
        return "parameter 'crop': 'roi' needs parameter 'roi' = [x, y, w, h] with w, h > 0"
    return None


@dataclass
class Stats:
    """Counters since start and per diagnostics period (guarded by the mailbox lock)."""

    received: int = 0
    processed: int = 0
    dropped: int = 0
    decode_errors: int = 0
    inference_errors: int = 0
    latency_ms: collections.deque = field(default_factory=lambda: collections.deque(
        maxlen=LATENCY_WINDOW))
    network_ms: collections.deque = field(default_factory=lambda: collections.deque(
        maxlen=LATENCY_WINDOW))
    last: dict[str, int] = field(default_factory=dict)
    last_time: float = field(default_factory=time.monotonic)


class HandsNode(Node):
    """The ROS 2 node around HandsPredictor (see module docstring)."""

    def __init__(self, predictor_factory: Callable[[dict], P.HandsPredictor] =
                 P.HandsPredictor.from_config, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self._lock = threading.Condition()
        self._mailbox: Optional[tuple[Any, float]] = None
        self._stop = threading.Event()
        self.stats = Stats()
        # (K, CameraInfo size, roi (x, y, w, h)) of the latest CameraInfo, swapped as one tuple
        self._camera: Optional[tuple[np.ndarray, tuple[int, int], tuple[int, int, int, int]]] = None
        self._warned: set[str] = set()
        self.cfg: Optional[dict[str, Any]] = None
        self._declare()
        cfg = {n: self.get_parameter(n).value for n in SPECS}
        error = check_param("crop", cfg["crop"], cfg)
        if error:
            raise ConfigError(error)
        try:
            self.predictor = predictor_factory(
                {k: cfg[k] for k in ("weights", "model_config", "hand_model", "device",
                                     "precision", "min_confidence", "crop")}
                | {"roi": list(cfg["roi"]) if cfg["crop"] == "roi" else []})
        except (OSError, ValueError, RuntimeError, KeyError, pickle.UnpicklingError,
                HandModelError) as e:  # unreadable weights / hand model: a one-line refusal
            raise ConfigError(str(e)) from e
        self.smoother: Optional[P.EmaSmoother] = self._make_smoother(cfg)
        self.cfg = cfg  # from here on the set-parameters callback applies changes
        self.device_name = str(getattr(self.predictor, "device", cfg["device"]))
        self._setup_io()
        self._worker = threading.Thread(target=self._work, name="hands_inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: {self._image_topic} -> {self.resolve_topic_name('hands')} on "
            f"{self.device_name} ({cfg['precision']}), crop {cfg['crop']}")

    # ---- parameters
    def _declare(self) -> None:
        """Declare every parameter with its descriptor; a bad value raises ConfigError."""
        # Validation runs for the declared values too (rclpy calls the callback on declare).
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for spec in PARAMS:
            allowed = (f" Allowed: {', '.join(spec.choices)}." if spec.choices else "")
            desc = ParameterDescriptor(
                name=spec.name, description=spec.description + allowed,
                read_only=spec.read_only,
                additional_constraints=allowed.strip())
            if spec.value_range is not None:
                desc.floating_point_range = [FloatingPointRange(
                    from_value=spec.value_range[0], to_value=spec.value_range[1], step=0.0)]
            try:
                self.declare_parameter(spec.name, spec.default, desc)
            except ParameterException as e:
                raise ConfigError(f"parameter '{spec.name}': {e}") from e

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate, then apply (read-only ones are refused by rclpy). While declaring at
        startup (no self.cfg yet) it only validates each value on its own."""
        if getattr(self, "cfg", None) is None:
            for p in params:
                error = check_param(p.name, p.value)
                if error:
                    return SetParametersResult(successful=False, reason=error)
            return SetParametersResult(successful=True)
        values = dict(self.cfg)
        for p in params:
            values[p.name] = p.value
        for p in params:
            error = check_param(p.name, p.value, values)
            if error:
                self.get_logger().warning(f"refused: {error}")
                return SetParametersResult(successful=False, reason=error)
        try:
            if {"crop", "roi"} & {p.name for p in params}:
                self.predictor.cropper = P.make_cropper(
                    values["crop"], list(values["roi"]) if values["crop"] == "roi" else None)
                self.predictor.reset()
            self.predictor.min_confidence = float(values["min_confidence"])
            self.smoother = self._make_smoother(values)
        except ValueError as e:
            return SetParametersResult(successful=False, reason=str(e))
        self.cfg = values
        return SetParametersResult(successful=True)

    @staticmethod
    def _make_smoother(cfg: dict[str, Any]) -> Optional[P.EmaSmoother]:
        return P.EmaSmoother(float(cfg["smoothing_factor"])) if cfg["smoothing"] == "ema" else None

    # ---- I/O
    def _setup_io(self) -> None:
        reliability = (ReliabilityPolicy.RELIABLE if self.cfg["image_reliability"] == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        sensor_qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=reliability,
                                durability=DurabilityPolicy.VOLATILE)
        if self.cfg["image_transport"] == "compressed":
            # image_transport convention: <resolved image topic>/compressed (follows remaps)
            self._image_topic = self.resolve_topic_name("image") + "/compressed"
            self.create_subscription(CompressedImage, self._image_topic, self._on_image, sensor_qos)
        else:
            self._image_topic = self.resolve_topic_name("image")
            self.create_subscription(Image, "image", self._on_image, sensor_qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, sensor_qos)
        out_qos = QoSProfile(depth=OUTPUT_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_hands = self.create_publisher(TwoHandMesh, "hands", out_qos)
        self.pub_markers = self.create_publisher(MarkerArray, "hands/markers", out_qos)
        self.pub_debug = self.create_publisher(Image, "hands/debug_image", out_qos)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", out_qos)
        self.pub_tf = None
        try:
            from tf2_msgs.msg import TFMessage

            self._TFMessage = TFMessage
            self.pub_tf = self.create_publisher(
                TFMessage, "/tf",
                QoSProfile(depth=TF_DEPTH, reliability=ReliabilityPolicy.RELIABLE))
        except ImportError:
            self.get_logger().warning("tf2_msgs is not available: no TF output")
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        from dir_ros.ros.markers import FastMarkerSerializer

        self._markers = FastMarkerSerializer()
        if not self._markers.enabled:
            self.get_logger().warning("fast marker serialisation unavailable for this "
                                      "visualization_msgs/Marker layout: using the slow path")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        """Cache the intrinsics of the latest CameraInfo (one reference swap: thread safe)."""
        k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        roi = msg.roi
        self._camera = (k, (int(msg.width), int(msg.height)),
                        (int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height))) \
            if k[0, 0] > 0 else None

    def _on_image(self, msg: Any) -> None:
        """Newest frame wins: replace the mailbox content, count what gets dropped."""
        with self._lock:
            self.stats.received += 1
            if self._mailbox is not None:
                self.stats.dropped += 1
            self._mailbox = (msg, time.monotonic())
            self._lock.notify()

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(text)

    # ---- processing (worker thread)
    def _work(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                while self._mailbox is None and not self._stop.is_set():
                    self._lock.wait(timeout=0.5)
                if self._stop.is_set():
                    return
                msg, t_recv = self._mailbox
                self._mailbox = None
            try:
                self._process(msg, t_recv)
            except Exception as e:  # keep serving: one bad frame must not kill the node
                if self._stop.is_set():  # shutting down: publishers may already be gone
                    return
                with self._lock:
                    self.stats.inference_errors += 1
                self.get_logger().error(f"processing failed: {type(e).__name__}: {e}",
                                        throttle_duration_sec=LOG_THROTTLE_S)

    def _process(self, msg: Any, t_recv: float) -> None:
        try:
            rgb = P.decode_image_msg(msg)
        except ValueError as e:
            with self._lock:
                self.stats.decode_errors += 1
            self.get_logger().error(f"cannot decode image from {self._image_topic}: {e}",
                                    throttle_duration_sec=LOG_THROTTLE_S)
            return
        cam = self._camera
        K = None
        if cam is None:
            self._warn_once("noK", "no camera_info yet: publishing wrist-relative hands "
                            "(metric false)")
        else:
            K, info_size = geo.intrinsics_for_image(cam[0], cam[1], (rgb.shape[1], rgb.shape[0]),
                                                cam[2])
            if info_size != (0, 0) and info_size != (rgb.shape[1], rgb.shape[0]):
                self._warn_once("Ksize", f"camera_info is {info_size[0]}x{info_size[1]} but "
                                f"the image is {rgb.shape[1]}x{rgb.shape[0]}: K scaled to the "
                                f"image")
        result = self.predictor.predict(rgb, K)
        if self.smoother is not None:
            result = self.smoother(result)
        header = msg.header
        self.pub_hands.publish(to_two_hand_mesh(result, header))
        if self.cfg["publish_markers"]:
            self.pub_markers.publish(self._markers(result, header))
        if self.cfg["publish_tf"] and self.pub_tf is not None:
            if not header.frame_id:
                self._warn_once("noframe", "image header has no frame_id: no TF published")
            else:
                transforms = wrist_transforms(result, header, self.cfg["frame_prefix"])
                if transforms:
                    self.pub_tf.publish(self._TFMessage(transforms=transforms))
        if self.cfg["publish_debug_image"]:
            self.pub_debug.publish(rgb_to_image(draw_debug(rgb, result, K), header))
        with self._lock:
            self.stats.processed += 1
            self.stats.latency_ms.append(1e3 * (time.monotonic() - t_recv))
            self.stats.network_ms.append(result.timings.get("network_ms", 0.0))

    # ---- diagnostics
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        with self._lock:
            s = self.stats
            dt = max(now - s.last_time, 1e-6)
            cur = {"received": s.received, "processed": s.processed, "dropped": s.dropped,
                   "decode_errors": s.decode_errors, "inference_errors": s.inference_errors}
            delta = {k: v - s.last.get(k, 0) for k, v in cur.items()}
            s.last, s.last_time = cur, now
            lat = np.array(s.latency_ms) if s.latency_ms else np.zeros(1)
            net = np.array(s.network_ms) if s.network_ms else np.zeros(1)
        status = DiagnosticStatus(name=f"{self.get_name()}: hand reconstruction",
                                  hardware_id=self.device_name)
        if delta["inference_errors"]:
            status.level, status.message = DiagnosticStatus.ERROR, "inference errors"
        elif delta["decode_errors"]:
            status.level, status.message = DiagnosticStatus.WARN, "undecodable images"
        elif delta["received"] == 0:
            status.level = DiagnosticStatus.WARN
            status.message = f"no images on {self._image_topic}"
        else:
            status.level, status.message = DiagnosticStatus.OK, "running"
        values = {
            "input_rate_hz": f"{delta['received'] / dt:.2f}",
            "processed_rate_hz": f"{delta['processed'] / dt:.2f}",
            "dropped_total": str(cur["dropped"]),
            "dropped_rate_hz": f"{delta['dropped'] / dt:.2f}",
            "decode_errors_total": str(cur["decode_errors"]),
            "inference_errors_total": str(cur["inference_errors"]),
            "latency_ms_median": f"{np.median(lat):.1f}",  # receive -> published
            "latency_ms_max": f"{np.max(lat):.1f}",
            "network_ms_median": f"{np.median(net):.1f}",
            "device": self.device_name,
            "precision": str(getattr(self.predictor, "precision", self.cfg["precision"])),
            "camera_info": "yes" if self._camera is not None else "no",
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)

    # ---- shutdown
    def stop(self) -> None:
        """Stop the worker thread (idempotent)."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=WORKER_JOIN_TIMEOUT_S)


def draw_debug(rgb: np.ndarray, result: P.FrameResult, K: Optional[np.ndarray]) -> np.ndarray:
    """Input image with the crop box and each valid hand's projected mesh, bones and
    keypoints drawn (RGB copy)."""
    from dir_ros.overlay import draw_hands

    return draw_hands(rgb, result.hands(), K, box=result.box)


def main(args: Optional[Sequence[str]] = None) -> int:
    """Entry point of the hands_node executable; returns the exit status."""
    rclpy.init(args=args)
    node: Optional[HandsNode] = None
    try:
        node = HandsNode()
    except ConfigError as e:
        print(f"[{NODE_NAME}] ERROR: {e}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return EXIT_BAD_CONFIG
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
