"""hands_node: camera image -> two reconstructed hands (TwoHandMesh, markers, TF, diagnostics),
and for a robot (dir_ros.ros.robot_outputs): grasp state (hands/grasp), robot-hand joint
commands (hands/<side>/joint_commands, `retarget`) and keypoint frames in TF (`publish_joint_tf`).

Threading: the subscription callback only drops the newest message into a one-slot mailbox
(an older unprocessed one is replaced and counted as dropped); a worker thread decodes,
runs the network and publishes. So a slow model never builds a backlog. The worker also
builds the predictor (torch runs in that one thread: see worker.FrameWorker._work). Each frame's
stages are timed and summarised in /diagnostics (`stage_<name>_ms`, diagnostics.NODE_STAGES).

With use_depth, a colour frame first waits (bounded by `depth_wait`) for the depth frame of
its stamp (dir_ros.ros.stamp_pairing). The received frames' stamps give
`estimated_transport_loss` (dir_ros.ros.transport_loss). `~/reset` (std_srvs/Trigger) clears
every per-stream state between frames. SIGINT / SIGTERM, once or more, end the node with
status 0 after the frame in progress is published (main()).

Run: `ros2 run dir_ros hands_node --ros-args -r image:=/camera/image_raw ...`, or as a plain
executable (`python -m dir_ros.ros.node`, `lib/dir_ros/hands_node`).
"""
from __future__ import annotations

import math
import os
import pickle
import signal
import sys
import threading
import time
from typing import Any, Callable, Optional, Sequence

if __name__ == "__main__":  # python -m dir_ros.ros.node: Ctrl-C / SIGTERM during the imports
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))  # leave at once (scripts/hands_node)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, JointState, PointCloud2
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from dir_ros import config as P
from dir_ros.common import geometry as geo
from dir_ros.common.results import PLACEMENT_NAMES, FrameResult
from dir_ros.hand_model import HandModelError
from dir_ros.image.decode import DecodeError, ImageTooLarge, decode_image_msg
from dir_ros.msg import TwoHandGrasp, TwoHandMesh
from dir_ros.post import smoothing as S
from dir_ros.predictor import build_predictor
from dir_ros.robot.retarget import RetargetConfigError
from dir_ros.ros.dds_profile import use_package_profile
from dir_ros.ros.depth_input import DepthInput
from dir_ros.ros.diagnostics import Stats, diagnostics_message
from dir_ros.ros.log_bridge import RosLogBridge
from dir_ros.ros.messages import FastMessages, rgb_to_image, to_point_cloud
from dir_ros.ros.parameters import (SPECS, ConfigError, check_param, declare_parameters,
                                    make_smoother)
from dir_ros.ros.process import Signals, rcl_reason, share_main_malloc_arena
from dir_ros.ros.robot_outputs import RobotOutputs
from dir_ros.ros.stamp_pairing import Released, StampPairer
from dir_ros.ros.transport import SensorSubscriptions, make_executor
from dir_ros.ros.transport_loss import TransportLossEstimator
from dir_ros.ros.worker import FrameWorker

NODE_NAME = "hands_node"
EXIT_BAD_CONFIG = 2  # exit status for refused parameters / missing files at startup
DIAGNOSTICS_PERIOD_S = 1.0
LOG_THROTTLE_S = 5.0  # at most one repeated error log per this many seconds
# A stamp -> callback difference outside [0, TRANSPORT_MAX_S] s is not transport: the camera
# stamps with another clock (a device clock, a bag's time) and the stage is not timed.
TRANSPORT_MAX_S = 5.0
OUTPUT_DEPTH = 10  # outputs: RELIABLE depth 10 (ROS_INTERFACE.md)
TF_DEPTH = 100  # /tf as tf2_ros publishes it: RELIABLE depth 100
# main(): longest blocking wait of the executor, so a signal is seen within this time.
SPIN_SLICE_S = 0.1
# After publishing TwoHandMesh the worker sleeps this long (s) before it builds the markers,
# TF and grasp outputs, so that the mesh's subscribers get a core at once instead of waiting
# behind ~1.5 ms of Python (on 2 busy cores the woken subscriber does not preempt it):
# end-to-end mesh latency 36.1 -> 34.3 ms against sched_yield()'s 35.8 ms (light network,
# OpenVINO, benchmarks/benchmark_node_overhead.py, issue 20); the later outputs come 1 ms later.
MESH_HANDOFF_S = 0.001


class HandsNode(FrameWorker, Node):
    """The ROS 2 node around HandsPredictor (see module docstring); its inference thread and
    mailbox are FrameWorker's (worker.py)."""

    def __init__(self, predictor_factory: Callable[[dict], Any] = build_predictor,
                 **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self._log_bridge = RosLogBridge(self.get_logger())
        self._log_bridge.install()
        try:
            self._start(predictor_factory)
        except BaseException:
            self._release_worker()
            self._log_bridge.uninstall()
            raise

    def _start(self, predictor_factory: Callable[[dict], Any]) -> None:
        """Declare and check the parameters, build the predictor, open the topics and start
        the worker (the constructor's body, run with the log bridge installed)."""
        self._lock = threading.Condition()
        # the newest frame: (message, monotonic and wall-clock time of its callback, header
        # stamp s, its depth pairing (use_depth) or None)
        self._mailbox: Optional[tuple[Any, float, float, float, Optional[Released]]] = None
        # use_depth: colour frames wait here for their depth frame (guarded by _lock)
        self._pairer: Optional[StampPairer] = None
        # the received frames' stamps -> estimated_transport_loss (guarded by _lock)
        self._loss = TransportLossEstimator()
        # ~/reset: the request's event while the worker has not yet cleared the state
        self._reset_request: Optional[threading.Event] = None
        self._stop = threading.Event()
        self.stats = Stats()
        # (K, CameraInfo size, roi (x, y, w, h)) of the latest CameraInfo, swapped as one tuple
        self._camera: Optional[tuple[np.ndarray, tuple[int, int], tuple[int, int, int, int]]] = None
        self._warned: set[str] = set()
        self._last_log: dict[str, float] = {}  # error kind -> monotonic time of its last log
        # why the latest CameraInfo cannot be used (None: usable or none received)
        self._camera_problem: Optional[str] = None
        # start-up: frames wait for the first CameraInfo until this monotonic time (set by
        # the first frame; worker.FIRST_CAMERA_INFO_WAIT_S), or not at all once done
        self._info_wait_end: Optional[float] = None
        self._info_wait_done = False
        self.cfg: Optional[dict[str, Any]] = None
        declare_parameters(self, self._on_set_parameters)
        cfg = {n: self.get_parameter(n).value for n in SPECS}
        error = check_param("crop", cfg["crop"], cfg)
        if error:
            raise ConfigError(error)
        predictor_config = ({k: cfg[k] for k in (
            "backend", "weights", "model_config", "hand_model", "device", "precision", "runtime",
            "export_cache", "min_confidence", "crop", "mirrored_input", "scale_hold",
            "hand_contact", "finger_step")}
            | {"roi": list(cfg["roi"]) if cfg["crop"] == "roi" else []})
        # robot outputs first (quick): a retargeting config or URDF that cannot be used is
        # refused in one line naming the file before the model loads
        try:
            self._robot = RobotOutputs.from_params(
                cfg["publish_joint_tf"], cfg["retarget"], cfg["retarget_urdf_dir"],
                bool(cfg["publish_grasp"]))
        except RetargetConfigError as e:
            raise ConfigError(f"parameter 'retarget': {e}") from e
        # the inference thread builds the predictor (see _work) and then serves the mailbox;
        # it allocates from the main arena (before it starts: see process.M_ARENA_MAX)
        share_main_malloc_arena()
        self._built = threading.Event()
        self._build_error: Optional[BaseException] = None
        self._worker = threading.Thread(target=self._work, name="hands_inference", daemon=True,
                                        args=(predictor_factory, predictor_config))
        self._worker.start()
        try:
            self._wait_for_predictor()
        except (OSError, ValueError, RuntimeError, KeyError, pickle.UnpicklingError,
                HandModelError) as e:  # unreadable weights / hand model: a one-line refusal
            text = e.args[0] if isinstance(e, KeyError) and e.args else e  # no repr quotes
            raise ConfigError(str(text)) from e
        self.smoother: Optional[S.Smoother] = make_smoother(cfg)
        self.backend = P.choose_backend(cfg["backend"], cfg["weights"])
        self.cfg = cfg  # from here on the set-parameters callback applies changes
        self.device_name = str(getattr(self.predictor, "device", cfg["device"]))
        # the precision actually used (the predictor falls back to fp32 off CUDA)
        self.precision = str(getattr(self.predictor, "precision", cfg["precision"]))
        self._setup_io()
        self.get_logger().info(
            f"ready: {self._image_topic} -> {self.resolve_topic_name('hands')} on "
            f"{self.device_name} ({self.precision}), backend {self.backend}"
            + (f", crop {cfg['crop']}" if self.backend == "dir" else "")
            + (f", retarget {cfg['retarget']} -> hands/<side>/joint_commands"
               if self._robot.retargeters is not None else ""))

    # ---- parameters
    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate, then apply (read-only ones are refused by rclpy). While declaring at
        startup (no self.cfg yet) it only validates each value on its own."""
        if getattr(self, "cfg", None) is None:
            for p in params:
                error = check_param(p.name, p.value)
                if error:
                    # the reason is the startup error message (declare_parameters)
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
                if hasattr(self.predictor, "set_crop"):  # the landmark backend has no crop
                    self.predictor.set_crop(
                        values["crop"], list(values["roi"]) if values["crop"] == "roi" else None)
            self.predictor.min_confidence = float(values["min_confidence"])
            self.smoother = make_smoother(values)
        except ValueError as e:
            return SetParametersResult(successful=False, reason=str(e))
        self.cfg = values
        if self._pairer is not None:
            with self._lock:
                self._pairer.tolerance_s = float(values["depth_stamp_tolerance"])
                self._pairer.wait_s = float(values["depth_wait"])
        self._set_debug_publisher(bool(values["publish_debug_image"]))
        return SetParametersResult(successful=True)

    # ---- I/O
    def _setup_io(self) -> None:
        if self.cfg["image_transport"] == "compressed":
            # image_transport convention: <resolved image topic>/compressed (follows remaps)
            self._image_topic = self.resolve_topic_name("image") + "/compressed"
            image_type: type = CompressedImage
        else:
            self._image_topic = self.resolve_topic_name("image")
            image_type = Image
        # image, camera_info (and with use_depth the aligned depth + its CameraInfo, same QoS
        # handling as the colour image) with the QoS of image_reliability (transport.py)
        self.transport = SensorSubscriptions(self, self._image_topic,
                                             self.cfg["image_reliability"])
        self.transport.add(self._image_topic, image_type, self._on_image)
        self._info_topic = self.resolve_topic_name("camera_info")
        self.transport.add(self._info_topic, CameraInfo, self._on_camera_info)
        # use_depth: colour frames wait for their depth frame in the pairer (stamp_pairing.py)
        self._depth: Optional[DepthInput] = DepthInput() if self.cfg["use_depth"] else None
        if self._depth is not None:
            self._pairer = StampPairer(float(self.cfg["depth_stamp_tolerance"]),
                                       float(self.cfg["depth_wait"]))
            self.transport.add(self.resolve_topic_name("depth"), Image, self._on_depth)
            self.transport.add(self.resolve_topic_name("depth_camera_info"), CameraInfo,
                               self._depth.on_info)
        self.transport.start()
        out_qos = QoSProfile(depth=OUTPUT_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_hands = self.create_publisher(TwoHandMesh, "hands", out_qos)
        self.pub_markers = self.create_publisher(MarkerArray, "hands/markers", out_qos)
        self.pub_points = (self.create_publisher(PointCloud2, "hands/points", out_qos)
                           if self.cfg["publish_points"] else None)
        self._out_qos = out_qos
        self._debug_lock = threading.Lock()
        self.pub_debug: Optional[Any] = None
        self._set_debug_publisher(bool(self.cfg["publish_debug_image"]))
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", out_qos)
        self.pub_grasp = (self.create_publisher(TwoHandGrasp, "hands/grasp", out_qos)
                          if self._robot.grasp is not None else None)
        self.pub_joints = {side: self.create_publisher(JointState,
                                                       f"hands/{side}/joint_commands", out_qos)
                           for side in self._robot.joint_names()}
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
        self.create_service(Trigger, "~/reset", self._on_reset)
        from dir_ros.ros.markers import FastMarkerSerializer

        self._markers = FastMarkerSerializer()
        if not self._markers.enabled:
            self.get_logger().warning("fast marker serialisation unavailable for this "
                                      "visualization_msgs/Marker layout: using the slow path")
        self._messages = FastMessages(self._TFMessage if self.pub_tf is not None else None)
        if not self._messages.mesh_enabled:
            self.get_logger().warning("fast TwoHandMesh serialisation unavailable for this "
                                      "middleware: building rclpy messages (slower)")

    def _set_debug_publisher(self, enabled: bool) -> None:
        """Advertise hands/debug_image only while publish_debug_image is true."""
        with self._debug_lock:
            if enabled and self.pub_debug is None:
                self.pub_debug = self.create_publisher(Image, "hands/debug_image", self._out_qos)
            elif not enabled and self.pub_debug is not None:
                self.destroy_publisher(self.pub_debug)
                self.pub_debug = None

    def _on_camera_info(self, msg: CameraInfo) -> None:
        """Cache the intrinsics of the latest CameraInfo (one reference swap: thread safe).
        One the node cannot use (NaN / Inf / zero K, fx or fy <= 0) is not cached: hands are
        then wrist-relative (metric false), the problem is warned once and shown in
        /diagnostics. Distortion is ignored (pinhole K only): warned once. A frame held for
        the first CameraInfo goes on once it is taken (worker._first_camera_info)."""
        problem = geo.intrinsics_problem(msg.k)
        if problem is not None:
            self._camera, self._camera_problem = None, problem
            self._warn_once(f"camera_info:{problem}", f"camera_info on "
                            f"{self._info_topic} cannot be used: {problem}; "
                            f"publishing wrist-relative hands (metric false)")
            self._first_camera_info()
            return
        d = np.asarray(msg.d, dtype=np.float64)
        if d.size and np.any(d != 0):
            self._warn_once("distortion", f"camera_info has a non-zero distortion vector "
                            f"(model '{msg.distortion_model}'): the node ignores distortion "
                            f"and places hands with the pinhole K only (rectify the image, "
                            f"e.g. image_proc, for exact metric placement)")
        k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        roi = msg.roi
        self._camera = (k, (int(msg.width), int(msg.height)),
                        (int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)))
        self._camera_problem = None
        self._first_camera_info()

    def _warn_once(self, key: str, text: str) -> None:
        """Warn the first time `key` occurs (one line per distinct problem)."""
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(text)

    def _log_throttled(self, kind: str, text: str, error: bool = True) -> None:
        """Log at most once per LOG_THROTTLE_S per error kind. rclpy's throttle is per call
        site, so a different error within the period would be lost."""
        now = time.monotonic()
        if now - self._last_log.get(kind, -math.inf) < LOG_THROTTLE_S:
            return
        self._last_log[kind] = now
        (self.get_logger().error if error else self.get_logger().warning)(text)

    # ---- processing (worker thread: worker.FrameWorker serves the mailbox)
    def _process(self, msg: Any, t_recv: float, wall_recv: float, stamp_s: float,
                 depth: Optional[Released]) -> None:
        """Decode, predict, smooth and publish one frame; time each stage (diagnostics.NODE_STAGES).
        t_recv / wall_recv: monotonic / wall-clock time of the image callback (s); stamp_s:
        its header stamp (s); depth: its depth pairing (use_depth)."""
        timer = self.stats.stages  # written by this thread only; committed under the lock
        timer.discard()  # what a failed frame left
        timer.start()
        timer.add("queue", 1e3 * (time.monotonic() - t_recv))  # with use_depth: the pairing
        transport_s = wall_recv - stamp_s
        if 0.0 <= transport_s <= TRANSPORT_MAX_S:
            timer.add("transport", 1e3 * transport_s)
        try:
            rgb = decode_image_msg(msg, int(self.cfg["max_image_pixels"]))
        except (ValueError, cv2.error) as e:  # cv2.error too: OpenCV's checks are decode errors
            kind = e.kind if isinstance(e, DecodeError) else type(e).__name__
            with self._lock:
                self.stats.decode_errors += 1
                if isinstance(e, ImageTooLarge):
                    self.stats.too_large += 1
            self._log_throttled(f"decode:{kind}",
                                f"cannot decode image from {self._image_topic}: {e}")
            return
        timer.lap("decode")
        cam = self._camera
        K = None
        if cam is None:
            self._warn_once("noK", "no camera_info yet: publishing wrist-relative hands "
                            "(metric false)")
        else:
            K, info_size = geo.intrinsics_for_image(cam[0], cam[1], (rgb.shape[1], rgb.shape[0]),
                                                cam[2])
            if info_size != (0, 0) and info_size != (rgb.shape[1], rgb.shape[0]):
                # keyed by both sizes: a mismatch that changes is warned again
                self._warn_once(f"Ksize:{info_size}:{rgb.shape[1]}x{rgb.shape[0]}",
                                f"camera_info is {info_size[0]}x{info_size[1]} but the image is "
                                f"{rgb.shape[1]}x{rgb.shape[0]}: K scaled to the image")
        timer.lap("intrinsics")
        result = self._finite_hands(self.predictor.predict(rgb, K))
        timer.lap("predict")
        for key, ms in result.timings.items():  # the predictor's own steps
            timer.add(f"predict_{key.removesuffix('_ms')}", ms)
        depth_problem = None
        if self._depth is not None:
            depth_problem = self._depth.place(result, K, depth,
                                              float(self.cfg["depth_stamp_tolerance"]))
            timer.lap("depth")
        if self.smoother is not None:
            result = self.smoother(result, stamp_s if stamp_s > 0 else t_recv)
            timer.lap("smoothing")
        header = msg.header
        mesh = self._messages.mesh(result, header)
        timer.lap("mesh_build")
        self.pub_hands.publish(mesh)
        timer.lap("mesh_publish")
        # the mesh is what consumers wait for: let them run before the rest is built
        time.sleep(MESH_HANDOFF_S)
        timer.lap("handoff")
        if self.cfg["publish_markers"]:
            markers = self._markers(result, header)
            timer.lap("markers_build")
            self.pub_markers.publish(markers)
            timer.lap("markers_publish")
        if self.pub_points is not None:
            self.pub_points.publish(to_point_cloud(result, header))
            timer.lap("points")
        wrists = bool(self.cfg["publish_tf"])
        if (wrists or self._robot.joint_tf != "none") and self.pub_tf is not None:
            if not header.frame_id:
                self._warn_once("noframe", "image header has no frame_id: no TF published")
            else:
                prefix = self.cfg["frame_prefix"]
                transforms = self._messages.tf(result, header, prefix, wrists,
                                               self._robot.tf_frames(result, prefix))
                if transforms is not None:
                    self.pub_tf.publish(transforms)
                timer.lap("tf")
        if self.pub_grasp is not None:
            self.pub_grasp.publish(self._robot.grasp_message(result, header))
            timer.lap("grasp")
        if self.pub_joints:
            for side, joints in self._robot.joint_commands(result, header).items():
                self.pub_joints[side].publish(joints)
            timer.lap("retarget")
        if self.cfg["publish_debug_image"]:
            debug = rgb_to_image(draw_debug(rgb, result, K), header)
            with self._debug_lock:
                if self.pub_debug is not None:
                    self.pub_debug.publish(debug)
            timer.lap("debug_image")
        timer.add("total", 1e3 * (time.monotonic() - t_recv))  # the latency
        with self._lock:
            self.stats.processed += 1
            timer.commit()
            for h in result.hands():
                self.stats.fit_residual_mm[h.side] = h.fit_residual_mm if h.valid else float("nan")
                self.stats.placement[h.side] = (
                    PLACEMENT_NAMES.get(h.placement if h.valid else 0, str(h.placement)),
                    h.placement_note if h.valid else "")
            self.stats.depth_problem = depth_problem

    def _finite_hands(self, result: FrameResult) -> FrameResult:
        """Replace a hand holding NaN / Inf (a K the checks missed, a diverged network) by an
        invalid one: a metric hand with NaN must never reach TwoHandMesh or /tf."""
        for side in ("left", "right"):
            hand = result.hand(side)
            arrays = (hand.wrist_position, hand.wrist_quat, hand.joints, hand.vertices,
                      hand.keypoints_2d, hand.pose, hand.shape, [hand.confidence])
            if not all(np.all(np.isfinite(a)) for a in arrays):
                setattr(result, side, type(hand).invalid(side, hand.faces, len(hand.vertices)))
                self._log_throttled("nonfinite", f"the {side} hand has non-finite values: "
                                    f"published as invalid", error=False)
        return result

    # ---- diagnostics
    def _publish_diagnostics(self) -> None:
        """Publish the /diagnostics message (diagnostics.diagnostics_message)."""
        self.pub_diag.publish(diagnostics_message(self))

    # ---- shutdown
    def destroy_node(self) -> None:
        """Stop the worker, give the core's logging back, destroy the node."""
        self.stop()
        self._log_bridge.uninstall()
        super().destroy_node()


def draw_debug(rgb: np.ndarray, result: FrameResult, K: Optional[np.ndarray]) -> np.ndarray:
    """Input image with the crop box and each valid hand's projected mesh, bones and
    keypoints drawn (RGB copy)."""
    from dir_ros.output.overlay import draw_hands

    return draw_hands(rgb, result.hands(), K, box=result.box)


def main(args: Optional[Sequence[str]] = None) -> int:
    """Entry point of the hands_node executable; returns the exit status. Startup problems
    (a malformed params file, a refused parameter) end with one line on stderr, no
    traceback; SIGINT or SIGTERM, once or more, at any time, end it with status 0: the frame
    in progress is finished and published, the node destroyed, nothing left running."""
    signals = Signals()
    signals.install()
    use_package_profile()  # before the DDS participant exists (rclpy.init)
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except KeyboardInterrupt:
        signals.ignore()
        return 0
    except Exception as e:  # RCLError: a malformed params file or --ros-args
        signals.ignore()
        print(f"[{NODE_NAME}] ERROR: {rcl_reason(e)}", file=sys.stderr, flush=True)
        return EXIT_BAD_CONFIG
    node: Optional[HandsNode] = None
    try:
        node = HandsNode()
        signals.interrupt = False  # from here on a signal asks the spin loop to stop
    except ConfigError as e:
        signals.interrupt = False
        print(f"[{NODE_NAME}] ERROR: {e}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        signals.ignore()
        return EXIT_BAD_CONFIG
    except BaseException as e:
        signals.interrupt = False
        # Ctrl-C while the model loads: KeyboardInterrupt, or an rclpy error from a
        # context already shut down.
        if not isinstance(e, KeyboardInterrupt) and signals.received is None and rclpy.ok():
            raise
        print(f"[{NODE_NAME}] interrupted during startup", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        # The inference thread may still be inside native code building the model (weights,
        # export, OpenVINO compile) and nothing there can be interrupted: interpreter
        # shutdown and the libraries' exit handlers under it can hang or crash, so leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    executor = make_executor(node.context)
    executor.add_node(node)
    try:
        while signals.received is None and node.context.ok():
            executor.spin_once(timeout_sec=SPIN_SLICE_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        signals.interrupt = False
        node.stop()  # the worker finishes (and publishes) the frame in progress
        stuck = node.worker_alive()
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
    if stuck:  # still inside native code after worker.WORKER_JOIN_TIMEOUT_S: leave without it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    signals.ignore()
    return 0


if __name__ == "__main__":
    sys.exit(main())  # main() takes over SIGINT / SIGTERM from the import-time handlers