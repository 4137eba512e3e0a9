"""hands_node: camera image -> two reconstructed hands (TwoHandMesh, markers, TF, diagnostics),
and for a robot (dir_ros.ros.robot_outputs): grasp state (hands/grasp), robot-hand joint
commands (hands/<side>/joint_commands, `retarget`) and keypoint frames in TF (`publish_joint_tf`).

Threading: the subscription callback only drops the newest message into a one-slot mailbox
(an older unprocessed one is replaced and counted as dropped); a worker thread decodes,
runs the network and publishes. So a slow model never builds a backlog. The worker also
builds the predictor (torch runs in that one thread: see HandsNode._work). Each frame's
stages are timed and summarised in /diagnostics (`stage_<name>_ms`, NODE_STAGES).

With use_depth, a colour frame first waits (bounded by `depth_wait`) for the depth frame of
its stamp (dir_ros.ros.stamp_pairing). The received frames' stamps give
`estimated_transport_loss` (dir_ros.ros.transport_loss). `~/reset` (std_srvs/Trigger) clears
every per-stream state between frames. SIGINT / SIGTERM, once or more, end the node with
status 0 after the frame in progress is published (main()).

Run: `ros2 run dir_ros hands_node --ros-args -r image:=/camera/image_raw ...`, or as a plain
executable (`python -m dir_ros.ros.node`, `lib/dir_ros/hands_node`).
"""
from __future__ import annotations

import collections
import ctypes
import ctypes.util
import logging
import math
import os
import pickle
import re
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

if __name__ == "__main__":  # python -m dir_ros.ros.node: Ctrl-C / SIGTERM during the imports
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))  # leave at once (scripts/hands_node)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, JointState, PointCloud2
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from dir_ros.post import depth as D
from dir_ros.common import geometry as geo
from dir_ros import config as P
from dir_ros.predictor import build_predictor
from dir_ros.frontend.crop import CROP_MODES
from dir_ros.image.decode import (DEFAULT_MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS_LIMIT, MAX_IMAGE_SIDE_PX,
                            DecodeError, ImageTooLarge, decode_image_msg)
from dir_ros.common.results import PLACEMENT_NAMES, FrameResult
from dir_ros.post import smoothing as S
from dir_ros.hand_model import HandModelError
from dir_ros.msg import TwoHandGrasp, TwoHandMesh
from dir_ros.ros.depth_input import DepthInput, stamp_seconds
from dir_ros.ros.dds_profile import profile_in_use, use_package_profile
from dir_ros.ros.messages import FastMessages, rgb_to_image, to_point_cloud
from dir_ros.ros.robot_outputs import JOINT_TF_MODES, RobotOutputs
from dir_ros.robot.retarget import RETARGET_CHOICES, RetargetConfigError
from dir_ros.ros.stage_timing import StageTimes, format_stage
from dir_ros.ros.stamp_pairing import Released, StampPairer
from dir_ros.ros.transport_loss import TransportLossEstimator

NODE_NAME = "hands_node"
EXIT_BAD_CONFIG = 2  # exit status for refused parameters / missing files at startup
DIAGNOSTICS_PERIOD_S = 1.0
LOG_THROTTLE_S = 5.0  # at most one repeated error log per this many seconds
# Per-stage timing of each frame (/diagnostics `stage_<name>_ms`: median / mean / p90 over the
# last STAGE_WINDOW frames, dir_ros.ros.stage_timing), in pipeline order: transport = header
# stamp -> image callback (wall clock; only when the camera stamps with this machine's clock,
# see TRANSPORT_MAX_S), queue = callback -> worker, then the worker's stages; the predictor's
# own steps follow as predict_<step> (crop, network, post for DIR); total = callback -> last
# publish (the latency).
# handoff = the pause after TwoHandMesh (MESH_HANDOFF_S);
# grasp = hands/grasp built and published; retarget = both hands' robot joint commands
# computed (dex-retargeting) and published (publish_grasp / retarget).
NODE_STAGES = ("transport", "queue", "decode", "intrinsics", "predict", "depth", "smoothing",
               "mesh_build", "mesh_publish", "handoff", "markers_build", "markers_publish",
               "points", "tf", "grasp", "retarget", "debug_image", "total")
# A stamp -> callback difference outside [0, TRANSPORT_MAX_S] s is not transport: the camera
# stamps with another clock (a device clock, a bag's time) and the stage is not timed.
TRANSPORT_MAX_S = 5.0
WORKER_JOIN_TIMEOUT_S = 5.0
# Slice of the constructor's wait for the predictor (built in the inference thread): Ctrl-C
# is handled between slices at the latest.
BUILD_WAIT_SLICE_S = 0.1
OUTPUT_DEPTH = 10  # outputs: RELIABLE depth 10 (ROS_INTERFACE.md)
TF_DEPTH = 100  # /tf as tf2_ros publishes it: RELIABLE depth 100
# Image / camera_info subscription queue. The mailbox keeps only the newest frame anyway;
# a queue of 5 lets a reliable 1280x720 camera at 30 Hz deliver every frame (measured with
# plain rclpy: depth 1 received 290 of 300, depth 5 all 300), the extra frames being
# counted as mailbox drops instead of being lost in transport.
IMAGE_QUEUE_DEPTH = 5
ROI_UNSET = [0.0, 0.0, 0.0, 0.0]
# Smallest smoothing_factor: rclpy shows a FloatingPointRange as inclusive at both ends, so
# the open range (0, 1] is declared as [0.001, 1]; a weight of 0 would freeze the output,
# and 0.001 (a ~1000-frame time constant) is already smoother than any use.
MIN_SMOOTHING_FACTOR = 0.001
# Smallest one_euro_min_cutoff (Hz), for the same reason: a cutoff of 0 freezes a still hand.
MIN_ONE_EURO_CUTOFF_HZ = 0.001
# A TF child frame id `<frame_prefix>left_wrist` must not start with '/' (tf2 refuses it);
# names use ROS name characters; '/' separates namespaces (never two in a row).
FRAME_PREFIX_PATTERN = re.compile(r"(?:[A-Za-z0-9_]+/)*[A-Za-z0-9_]*")
# image_reliability -> subscription reliability. best_available is resolved by the node from
# the publishers it sees (HandsNode._match_publishers): rmw resolves it only once.
RELIABILITY = {"best_available": ReliabilityPolicy.BEST_AVAILABLE,
               "best_effort": ReliabilityPolicy.BEST_EFFORT,
               "reliable": ReliabilityPolicy.RELIABLE}
# best_available: how often the publishers of image and camera_info are looked up to keep the
# subscription's reliability matched to them (see HandsNode._match_publishers).
QOS_RECHECK_PERIOD_S = 1.0
# ... and how often while a sensor topic has no known publisher: the node listens with a
# reliable and a best-effort subscription then (nothing of a starting camera is lost), and
# a camera that appears should not be sent every frame twice for long.
QOS_PROBE_RECHECK_PERIOD_S = 0.1
# Recent image keys (stamp, frame_id) remembered while two image subscriptions overlap, to
# drop the copy of a frame delivered by both: more than both queues hold.
DEDUPE_MEMORY = 4 * IMAGE_QUEUE_DEPTH
# Default longest wait (s) of a colour frame for its depth frame (parameter depth_wait): the
# depth of a 640x480 capture sent 0-80 ms after its colour by a camera with Fast DDS's
# defaults reached the node up to 0.34 s after its colour on 2 busy cores (fragment repair;
# test_node_depth.py::test_depth_pairs_on_a_busy_cpu, /diagnostics depth_wait_ms_max), and in
# a fresh-clone CI run of that test up to 1.01 s (2 of 40 pairs missed a 1 s wait): 2 s.
# Only a frame whose depth is late waits this long: a frame whose depth was lost is
# superseded by the next paired one, and a node without depth camera never waits
# (stamp_pairing.py).
DEFAULT_DEPTH_WAIT_S = 2.0
MAX_DEPTH_WAIT_S = 5.0
# Transport loss (estimated_transport_loss in /diagnostics, dir_ros.ros.transport_loss):
# share of frames lost above which a best-effort subscription warns once (the frames a
# 640x480 camera loses with Fast DDS defaults: 34-70 %; with config/fastdds_camera.xml 5 %),
# and the fewest received frames before it judges.
LOSS_WARN_SHARE = 0.10
LOSS_WARN_MIN_FRAMES = 30
# ~/reset: longest wait of the service for the worker to finish a frame in progress and
# clear its state (a frame of the release network on 2 busy cores takes ~0.3 s).
RESET_WAIT_S = 10.0
# main(): longest blocking wait of the executor, so a signal is seen within this time.
SPIN_SLICE_S = 0.1
# glibc mallopt() parameter M_ARENA_MAX (<malloc.h>) and the arena count the node asks for:
# one, so the inference thread allocates from the main arena. A thread of its own arena
# (glibc's default) gets heaps that glibc trims back on every free, so each frame's buffers
# fault their pages in again: OpenVINO's network (light config, 640x480) took 3.9-5.7 ms
# longer in a worker thread than in the main thread, and 0.1-0.8 ms longer with one arena
# (issue 20; same process, blocks alternating, 2-core Xeon).
M_ARENA_MAX = -8
MALLOC_ARENAS = 1
# After publishing TwoHandMesh the worker sleeps this long (s) before it builds the markers,
# TF and grasp outputs, so that the mesh's subscribers get a core at once instead of waiting
# behind ~1.5 ms of Python (on 2 busy cores the woken subscriber does not preempt it):
# end-to-end mesh latency 36.1 -> 34.3 ms against sched_yield()'s 35.8 ms (light network,
# OpenVINO, benchmarks/benchmark_node_overhead.py, issue 20); the later outputs come 1 ms later.
MESH_HANDOFF_S = 0.001


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
    ParamSpec("backend", "auto", "auto: the DIR network when `weights` names a checkpoint, "
              "the landmark backend (MediaPipe landmarks + hand-model fit) otherwise; dir: the "
              "network (random weights when none are given, with a warning); landmarks.",
              choices=P.BACKENDS, read_only=True),
    ParamSpec("weights", "", "Trained DIR checkpoint (.pt / .pth); '' = none (backend auto "
              "then uses the landmark backend).", read_only=True),
    ParamSpec("model_config", "config/model/dir_release.yaml",
              "Network config YAML (absolute, or relative to the package share / source root).",
              read_only=True),
    ParamSpec("hand_model", "", "Folder with MANO_LEFT.pkl and MANO_RIGHT.pkl; '' = bundled "
              "open hand model (weights/open_hand).", read_only=True),
    ParamSpec("device", "auto", "Torch device.", choices=P.DEVICES, read_only=True),
    ParamSpec("precision", "fp32", "Inference precision. runtime torch: fp16/bf16 = CUDA "
              "autocast (fp32 on the CPU); runtime openvino: bf16/fp16 = OpenVINO's CPU bf16 "
              "where the CPU has it (f32 otherwise; the precision used is logged); runtime "
              "onnxruntime: fp32 only.", choices=P.PRECISIONS, read_only=True),
    ParamSpec("runtime", "auto", "How the DIR network runs: torch (eager), onnxruntime or "
              "openvino (its ONNX export, CPU only, faster than eager; openvino is the faster "
              "and also runs bf16; exported once and cached in `export_cache`; falls back to "
              "torch with a warning when unavailable); auto = torch on CUDA, on the CPU "
              "openvino (else onnxruntime, else torch), whichever is installed.",
              choices=P.RUNTIMES, read_only=True),
    ParamSpec("export_cache", "", "Folder of the cached ONNX exports (keyed by model config "
              "and weights); '' = $XDG_CACHE_HOME/dir_ros/export (~/.cache/dir_ros/export).",
              read_only=True),
    ParamSpec("image_reliability", "best_available", "QoS reliability of the image and "
              "camera_info subscriptions: best_available (reliable while every publisher of "
              "the topic is reliable, so no frame is lost in transport; best effort when one "
              "is not; both, copies dropped, while no publisher is known, so a camera that "
              "starts later loses no frame; re-checked every second), best_effort, or "
              "reliable (hears no best-effort camera).", choices=tuple(RELIABILITY),
              read_only=True),
    ParamSpec("image_transport", "raw", "raw: sensor_msgs/Image on `image`; compressed: "
              "sensor_msgs/CompressedImage on `<image>/compressed`.",
              choices=("raw", "compressed"), read_only=True),
    ParamSpec("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS, "Largest frame (width x height) "
              "decoded; larger ones are refused (counted, logged) before any pixel is "
              f"allocated. A side over {MAX_IMAGE_SIDE_PX} px is always refused.",
              value_range=(1, MAX_IMAGE_PIXELS_LIMIT, True)),
    ParamSpec("frame_prefix", "", "Prefix of the TF child frames <prefix>left_wrist / "
              "<prefix>right_wrist: letters, digits, '_' and '/' (not first, not doubled)."),
    ParamSpec("publish_markers", True, "Publish hands/markers (MarkerArray) for RViz."),
    ParamSpec("publish_tf", True, "Publish the wrist frames on /tf (valid hands only)."),
    ParamSpec("publish_debug_image", False, "Publish hands/debug_image (input with keypoints)."),
    ParamSpec("use_depth", False, "Place hands with an aligned depth image: subscribe to "
              "`depth` (sensor_msgs/Image 16UC1 mm or 32FC1 m, aligned to the colour image as "
              "REP 118 describes) and `depth_camera_info`; per hand, fall back to the hand-"
              "size estimate when the depth cannot be used (HandMesh.placement, /diagnostics).",
              read_only=True),
    ParamSpec("depth_stamp_tolerance", D.DEFAULT_STAMP_TOLERANCE_S, "Largest difference (s) "
              "between the colour and depth stamps of a pair; a depth frame farther off is "
              "not used.", value_range=(0.0, 1.0, True)),
    ParamSpec("depth_wait", DEFAULT_DEPTH_WAIT_S, "use_depth: longest wait (s) of a colour "
              "frame for its depth frame (within depth_stamp_tolerance), from the colour "
              "frame's arrival; a newer released frame supersedes waiting ones; no wait while "
              "no depth frame arrives. 0 = never wait.",
              value_range=(0.0, MAX_DEPTH_WAIT_S, True)),
    ParamSpec("publish_points", False, "Publish hands/points (sensor_msgs/PointCloud2: the "
              "metric hands' mesh vertices, x y z float32 + hand float32 0 left / 1 right, in "
              "the image frame) for collision avoidance.", read_only=True),
    ParamSpec("min_confidence", P.DEFAULT_MIN_CONFIDENCE, "A hand is valid when its confidence "
              "(seg-head hand probability over its footprint) is >= this.",
              value_range=(0.0, 1.0, True)),
    ParamSpec("crop", "detect", "DIR backend's two-hand crop: detect (the release's crop around "
              "the detected hands; falls back to track, then full), full frame (centred "
              "square), fixed roi, or track the previous frame's hands.", choices=CROP_MODES),
    ParamSpec("mirrored_input", False, "True when the camera image is mirrored (selfie view): "
              "the hand detector's left/right labels are then taken as they are.",
              read_only=True),
    ParamSpec("roi", list(ROI_UNSET), "[x, y, w, h] image pixels, used when crop is roi."),
    ParamSpec("smoothing", "one_euro", "Temporal filter of the output (per hand, reset when a "
              "hand is lost or jumps).", choices=S.SMOOTHING_MODES),
    ParamSpec("smoothing_factor", 0.5, f"EMA weight of the newest frame, in "
              f"[{MIN_SMOOTHING_FACTOR}, 1] (1 = no smoothing).",
              value_range=(MIN_SMOOTHING_FACTOR, 1.0, True)),
    ParamSpec("one_euro_min_cutoff", S.DEFAULT_MIN_CUTOFF_HZ, "One-Euro cutoff (Hz) of a still "
              "hand: lower = steadier, more lag.",
              value_range=(MIN_ONE_EURO_CUTOFF_HZ, 100.0, True)),
    ParamSpec("one_euro_beta", S.DEFAULT_BETA, "One-Euro speed coefficient (s/m): higher = less "
              "lag on moving hands.", value_range=(0.0, 1000.0, True)),
    ParamSpec("smoothing_depth_noise", S.DEFAULT_DEPTH_PARAMS.noise_ratio, "smoothing "
              "one_euro: sd of a hand's measured wrist depth, as a fraction of the depth (the "
              "depth's Kalman filter).", value_range=(S.MIN_DEPTH_NOISE_RATIO, 1.0, True)),
    ParamSpec("smoothing_depth_accel", S.DEFAULT_DEPTH_PARAMS.accel, "smoothing one_euro: sd "
              "(m/s^2) of a hand's accelerations along its ray: higher = less lag, less "
              "steady.", value_range=(S.MIN_DEPTH_ACCEL, 1000.0, True)),
    ParamSpec("one_euro_orientation_min_cutoff",
              S.DEFAULT_SIGNAL_PARAMS["orientation"].min_cutoff, "smoothing one_euro: cutoff "
              "(Hz) of a still hand's root orientation.",
              value_range=(MIN_ONE_EURO_CUTOFF_HZ, 100.0, True)),
    ParamSpec("one_euro_orientation_beta", S.DEFAULT_SIGNAL_PARAMS["orientation"].beta,
              "smoothing one_euro: angular speed coefficient (s/rad).",
              value_range=(0.0, 1000.0, True)),
    ParamSpec("one_euro_pose_min_cutoff", S.DEFAULT_SIGNAL_PARAMS["pose"].min_cutoff,
              "smoothing one_euro: cutoff (Hz) of a still hand's finger pose and shape (the "
              "hand in its own frame).", value_range=(MIN_ONE_EURO_CUTOFF_HZ, 100.0, True)),
    ParamSpec("one_euro_pose_beta", S.DEFAULT_SIGNAL_PARAMS["pose"].beta, "smoothing "
              "one_euro: finger speed coefficient (s/m, RMS keypoint speed in the hand's "
              "frame).", value_range=(0.0, 1000.0, True)),
    ParamSpec("one_euro_d_cutoff", S.SIGNAL_D_CUTOFF_HZ, "smoothing one_euro: cutoff (Hz) of "
              "every signal's speed estimate.",
              value_range=(MIN_ONE_EURO_CUTOFF_HZ, 100.0, True)),
    ParamSpec("scale_hold", bool(P.DEFAULT_CONFIG["scale_hold"]), "Landmark backend: each "
              "hand keeps its size from frame to frame (its world landmarks rescaled to the "
              "held size; cleared by ~/reset).", read_only=True),
    ParamSpec("hand_contact", bool(P.DEFAULT_CONFIG["hand_contact"]), "Landmark backend: two "
              "hands whose image regions meet are moved together (touching, not passing "
              "through each other).", read_only=True),
    ParamSpec("publish_joint_tf", "none", "Keypoint frames on /tf beside the wrists, for the "
              "valid metric hands: <frame_prefix><side>_<finger>_tip (fingertips) or every "
              "keypoint but the wrist (all; <side>_<finger>_<cmc|mcp|ip|pip|dip|tip>); at the "
              "keypoint, x along the bone toward it.", choices=JOINT_TF_MODES, read_only=True),
    ParamSpec("retarget", "none", "Robot-hand joint commands (sensor_msgs/JointState on "
              "hands/<side>/joint_commands, dex-retargeting): none, a bundled robot "
              f"({', '.join(c for c in RETARGET_CHOICES if c != 'none')}), or the path of a "
              "dex-retargeting YAML ('{side}' in it becomes left / right).", read_only=True),
    ParamSpec("retarget_urdf_dir", "", "Folder the retargeting configs' urdf_path is relative "
              "to; '' = the bundled config/robot_hands.", read_only=True),
    ParamSpec("publish_grasp", True, "Publish hands/grasp (dir_ros/TwoHandGrasp: fingertip "
              "distances, aperture and a pinch flag per hand) for every processed frame.",
              read_only=True),
)
SPECS = {p.name: p for p in PARAMS}


class ConfigError(Exception):
    """A parameter or file problem that stops the node at startup."""


def make_executor(context: Any) -> Any:
    """The executor of main(): rclpy's EventsExecutor (callback-based, in C++: an image
    reaches its callback ~0.5 ms sooner and the worker ~0.4 ms sooner than with the
    wait-set SingleThreadedExecutor, issue 20), or SingleThreadedExecutor where this rclpy
    has none."""
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:
        return SingleThreadedExecutor(context=context)
    return EventsExecutor(context=context)


def share_main_malloc_arena() -> bool:
    """Ask glibc for MALLOC_ARENAS malloc arena(s), so threads started afterwards (the
    inference thread) allocate like the main thread (see M_ARENA_MAX). False where the C
    library is not glibc or refuses (nothing changes there)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):  # no C library found, or not glibc's
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, MALLOC_ARENAS))


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
        integral = _integral(spec)
        kinds = (int,) if integral else (int, float)  # integers are accepted for doubles
        if isinstance(value, bool) or not isinstance(value, kinds):
            expected = "an integer" if integral else "a number"
            return f"parameter '{name}': {value!r} is not {expected}"
        if not (math.isfinite(value) and (lo <= value if lo_incl else lo < value)
                and value <= hi):
            return (f"parameter '{name}': {value} is out of range; allowed: "
                    f"{'[' if lo_incl else '('}{lo}, {hi}]")
    if name == "roi":
        error = _roi_problem(value)
        if error:
            return f"parameter 'roi': {error}"
    if name == "retarget" and not (isinstance(value, str) and value.strip()):
        return (f"parameter 'retarget': {value!r} is empty; use one of "
                f"{', '.join(RETARGET_CHOICES)} or the path of a dex-retargeting YAML")
    if name == "frame_prefix" and not (isinstance(value, str)
                                       and FRAME_PREFIX_PATTERN.fullmatch(value)):
        return (f"parameter 'frame_prefix': {value!r} does not make a valid TF frame id "
                f"(letters, digits, '_' and '/', not starting with '/', no '//' or spaces)")
    if values is None:
        return None
    merged = {**values, name: value}
    if merged.get("crop") == "roi" and list(merged.get("roi", ROI_UNSET)) == ROI_UNSET:
        return "parameter 'crop': 'roi' needs parameter 'roi' = [x, y, w, h] with w, h > 0"
    return None


def _integral(spec: ParamSpec) -> bool:
    """True for an integer parameter (its default is an int, not a bool)."""
    return isinstance(spec.default, int) and not isinstance(spec.default, bool)


def _ints_as_doubles(param: Parameter) -> Parameter:
    """An INTEGER (array) value given for a double (array) parameter as DOUBLE (array):
    `min_confidence: 0` or `roi: [0, 0, 320, 240]` in a params file mean the doubles."""
    spec = SPECS.get(param.name)
    if spec is None:
        return param
    if isinstance(spec.default, float) and param.type_ == Parameter.Type.INTEGER:
        return Parameter(param.name, Parameter.Type.DOUBLE, float(param.value))
    if (isinstance(spec.default, list) and spec.default
            and all(isinstance(v, float) for v in spec.default)
            and param.type_ == Parameter.Type.INTEGER_ARRAY):
        return Parameter(param.name, Parameter.Type.DOUBLE_ARRAY, [float(v) for v in param.value])
    return param


def _roi_problem(value: Any) -> Optional[str]:
    """None when `value` is a usable roi [x, y, w, h] (or the all-zero 'unset'), else why not:
    finite numbers, w and h > 0, every value within the largest image side."""
    try:
        roi = [float(v) for v in value]
    except (TypeError, ValueError):
        return f"needs 4 numbers [x, y, w, h], got {value!r}"
    if len(roi) != 4:
        return f"needs 4 numbers [x, y, w, h], got {roi}"
    if roi == ROI_UNSET:
        return None
    if not all(math.isfinite(v) for v in roi):
        return f"values must be finite, got {roi}"
    if roi[2] <= 0 or roi[3] <= 0:
        return f"width and height must be > 0, got {roi}"
    if max(abs(v) for v in roi) > MAX_IMAGE_SIDE_PX:
        return (f"values must be within +-{MAX_IMAGE_SIDE_PX} px (the largest image side), "
                f"got {roi}")
    return None


@dataclass
class Stats:
    """Counters since start and per diagnostics period (guarded by the mailbox lock)."""

    received: int = 0
    processed: int = 0
    dropped: int = 0
    decode_errors: int = 0
    inference_errors: int = 0
    too_large: int = 0  # frames refused by max_image_pixels / the side limit (in decode_errors)
    # per-stage timings of the last frames (NODE_STAGES, then the predictor's own steps:
    # FrameResult.timings crop_ms, network_ms, detect_ms, ... as predict_crop, ...)
    stages: StageTimes = field(default_factory=lambda: StageTimes(NODE_STAGES))
    # latest fit residual (mm) per side from the landmark backend (nan when none)
    fit_residual_mm: dict[str, float] = field(default_factory=dict)
    # latest placement per side: (PLACEMENT_NAMES name, why depth was not used or '')
    placement: dict[str, tuple[str, str]] = field(default_factory=dict)
    # use_depth: why the latest frame's depth was not used (None: used / not asked for)
    depth_problem: Optional[str] = None
    last: dict[str, int] = field(default_factory=dict)
    last_time: float = field(default_factory=time.monotonic)


# Python logger of the core (dir_ros.predictor, dir_ros.model, ...) that the node forwards
# to its ROS logger, so the core's warnings reach /rosout.
CORE_LOGGER = "dir_ros"
# Messages forwarded recently, remembered so that the warnings.warn twin of a logged line
# (the predictor both logs and warns "NO WEIGHTS GIVEN") is not printed a second time.
FORWARDED_MEMORY = 32


class RosLogBridge(logging.Handler):
    """Forwards the core's Python log records and warnings.warn to a ROS logger: they reach
    /rosout and the console once, in the ROS format (the `dir_ros` logger stops propagating
    to root handlers while installed; a warning repeating a forwarded record is dropped)."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__(logging.DEBUG)
        self.ros_logger = ros_logger
        self._recent: collections.deque = collections.deque(maxlen=FORWARDED_MEMORY)
        self._installed = False

    # The `dir_ros` logger's level and propagation before the first bridge was installed:
    # with several nodes in one process, the last one to go restores these (a bridge that
    # saved what an earlier bridge had already changed would leave propagation off).
    _core_before: Optional[tuple[int, bool, Any]] = None

    def install(self) -> None:
        """Attach to the `dir_ros` logger at the ROS logger's level; take over warnings."""
        core = logging.getLogger(CORE_LOGGER)
        if not any(isinstance(h, RosLogBridge) for h in core.handlers):
            RosLogBridge._core_before = (core.level, core.propagate, warnings.showwarning)
        self._installed = True
        core.addHandler(self)
        core.propagate = False
        core.setLevel(int(self.ros_logger.get_effective_level()))  # same numbers as logging
        warnings.showwarning = self.show_warning

    def uninstall(self) -> None:
        """Detach and restore what install() changed (idempotent)."""
        if not self._installed:
            return
        core = logging.getLogger(CORE_LOGGER)
        core.removeHandler(self)
        remaining = [h for h in core.handlers if isinstance(h, RosLogBridge)]
        if remaining:  # another node's bridge takes over the warnings
            if warnings.showwarning == self.show_warning:
                warnings.showwarning = remaining[-1].show_warning
        elif RosLogBridge._core_before is not None:  # the last bridge: restore the original
            level, propagate, showwarning = RosLogBridge._core_before
            core.setLevel(level)
            core.propagate = propagate
            warnings.showwarning = showwarning
            RosLogBridge._core_before = None
        self._installed = False

    def emit(self, record: logging.LogRecord) -> None:
        """One Python log record -> the ROS logger at the same severity (only the newest
        bridge forwards: several nodes in one process do not repeat each record)."""
        if _newest_bridge() is not self:
            return
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            self._recent.append(text)
            where = record.name.removeprefix(CORE_LOGGER).lstrip(".") or CORE_LOGGER
            line = f"{where}: {text}"
            if record.levelno >= logging.CRITICAL:
                self.ros_logger.fatal(line)
            elif record.levelno >= logging.ERROR:
                self.ros_logger.error(line)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(line)
            elif record.levelno >= logging.INFO:
                self.ros_logger.info(line)
            else:
                self.ros_logger.debug(line)
        except Exception:  # a logging failure must not break the caller
            self.handleError(record)

    def show_warning(self, message: Any, category: type, filename: str, lineno: int,
                     file: Any = None, line: Optional[str] = None) -> None:
        """warnings.showwarning replacement: one ROS warning line, unless the same text was
        just logged through the core's logger."""
        if _newest_bridge() is not self:
            return
        text = str(message)
        if text in self._recent:
            self._recent.remove(text)
            return
        self.ros_logger.warning(f"{category.__name__}: {text}")


def _newest_bridge() -> Optional[RosLogBridge]:
    """The RosLogBridge installed last on the core's logger (None when none is)."""
    bridges = [h for h in logging.getLogger(CORE_LOGGER).handlers if isinstance(h, RosLogBridge)]
    return bridges[-1] if bridges else None


class HandsNode(Node):
    """The ROS 2 node around HandsPredictor (see module docstring)."""

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

    def _release_worker(self) -> None:
        """Tell the inference thread to end without waiting for it (a failed or interrupted
        startup: it may still be building the predictor; it is a daemon)."""
        lock = getattr(self, "_lock", None)
        if lock is not None:
            self._stop.set()
            with lock:
                lock.notify_all()

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
        self.cfg: Optional[dict[str, Any]] = None
        self._declare()
        cfg = {n: self.get_parameter(n).value for n in SPECS}
        error = check_param("crop", cfg["crop"], cfg)
        if error:
            raise ConfigError(error)
        predictor_config = ({k: cfg[k] for k in (
            "backend", "weights", "model_config", "hand_model", "device", "precision", "runtime",
            "export_cache", "min_confidence", "crop", "mirrored_input", "scale_hold",
            "hand_contact")}
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
        # it allocates from the main arena (before it starts: see M_ARENA_MAX)
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
        self.smoother: Optional[S.Smoother] = self._make_smoother(cfg)
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
    def _declare(self) -> None:
        """Declare every parameter with its descriptor; a bad value raises ConfigError."""
        # Validation runs for the declared values too (rclpy calls the callback on declare).
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._refusal: Optional[str] = None  # our reason when the callback refuses a value
        # Integers for double parameters: rclpy types a parameter by its default and refuses
        # `min_confidence: 0`. Runtime sets pass the pre-set callback; declaring does not, so
        # the command-line / params-file overrides are converted here (rclpy keeps them in
        # Node._parameter_overrides, the only place they can be read before declaring).
        self.add_pre_set_parameters_callback(
            lambda params: [_ints_as_doubles(p) for p in params])
        overrides = getattr(self, "_parameter_overrides", None)
        if isinstance(overrides, dict):
            for name in SPECS.keys() & overrides.keys():
                overrides[name] = _ints_as_doubles(overrides[name])
        for spec in PARAMS:
            allowed = (f" Allowed: {', '.join(spec.choices)}." if spec.choices else "")
            desc = ParameterDescriptor(
                name=spec.name, description=spec.description + allowed,
                read_only=spec.read_only,
                additional_constraints=allowed.strip())
            if spec.value_range is not None:  # rclpy shows both ends as inclusive
                lo, hi, lo_incl = spec.value_range
                if _integral(spec):
                    desc.integer_range = [IntegerRange(
                        from_value=int(lo) if lo_incl else int(lo) + 1, to_value=int(hi), step=0)]
                else:
                    desc.floating_point_range = [FloatingPointRange(
                        from_value=float(lo) if lo_incl else math.nextafter(float(lo), math.inf),
                        to_value=float(hi), step=0.0)]
            self._refusal = None
            try:
                self.declare_parameter(spec.name, spec.default, desc)
            except ParameterException as e:  # our own one-line reason where we have one
                given = overrides.get(spec.name) if isinstance(overrides, dict) else None
                reason = self._refusal or (check_param(spec.name, given.value)
                                           if given is not None else None)
                raise ConfigError(reason or f"parameter '{spec.name}': {e}") from e

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate, then apply (read-only ones are refused by rclpy). While declaring at
        startup (no self.cfg yet) it only validates each value on its own."""
        if getattr(self, "cfg", None) is None:
            for p in params:
                error = check_param(p.name, p.value)
                if error:
                    self._refusal = error  # the startup error message (see _declare)
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
            self.smoother = self._make_smoother(values)
        except ValueError as e:
            return SetParametersResult(successful=False, reason=str(e))
        self.cfg = values
        if self._pairer is not None:
            with self._lock:
                self._pairer.tolerance_s = float(values["depth_stamp_tolerance"])
                self._pairer.wait_s = float(values["depth_wait"])
        self._set_debug_publisher(bool(values["publish_debug_image"]))
        return SetParametersResult(successful=True)

    @staticmethod
    def _make_smoother(cfg: dict[str, Any]) -> Optional[S.Smoother]:
        """The smoother of the parameters: one_euro_min_cutoff / _beta are the image-plane
        signal of one_euro (and the single filter's of one_euro_single); orientation and pose
        have their own one_euro_<signal>_min_cutoff / _beta, the depth its Kalman filter's
        noise model (smoothing_depth_noise, smoothing_depth_accel)."""
        d_cutoff = float(cfg["one_euro_d_cutoff"])
        signals = {name: S.EuroParams(float(cfg[f"one_euro_{prefix}min_cutoff"]),
                                      float(cfg[f"one_euro_{prefix}beta"]), d_cutoff)
                   for name, prefix in (("plane", ""), ("orientation", "orientation_"),
                                        ("pose", "pose_"))}
        depth = S.DepthParams(float(cfg["smoothing_depth_noise"]),
                              float(cfg["smoothing_depth_accel"]))
        return S.make_smoother(cfg["smoothing"], float(cfg["smoothing_factor"]),
                               float(cfg["one_euro_min_cutoff"]), float(cfg["one_euro_beta"]),
                               signals, depth)

    # ---- I/O
    def _setup_io(self) -> None:
        if self.cfg["image_transport"] == "compressed":
            # image_transport convention: <resolved image topic>/compressed (follows remaps)
            self._image_topic = self.resolve_topic_name("image") + "/compressed"
            image_type: type = CompressedImage
        else:
            self._image_topic = self.resolve_topic_name("image")
            image_type = Image
        # topic -> [message type, callback, {reliability: subscription}]
        self._sensor_subs: dict[str, list[Any]] = {
            self._image_topic: [image_type, self._on_image, {}],
            self.resolve_topic_name("camera_info"): [CameraInfo, self._on_camera_info, {}]}
        # use_depth: aligned depth + its CameraInfo, same QoS handling as the colour image;
        # colour frames wait for their depth frame in the pairer (stamp_pairing.py)
        self._depth: Optional[DepthInput] = DepthInput() if self.cfg["use_depth"] else None
        if self._depth is not None:
            self._pairer = StampPairer(float(self.cfg["depth_stamp_tolerance"]),
                                       float(self.cfg["depth_wait"]))
            self._sensor_subs[self.resolve_topic_name("depth")] = [Image, self._on_depth, {}]
            self._sensor_subs[self.resolve_topic_name("depth_camera_info")] = [
                CameraInfo, self._depth.on_info, {}]
        # replaced subscriptions kept until the next re-check (_subscribe_sensor)
        self._retired_subs: list[Any] = []
        self._image_subs_alive = 0  # image subscriptions, replaced ones included
        self._sub_ids = iter(range(1 << 62))  # tells the image subscriptions apart (dedupe)
        self._image_keys: collections.deque = collections.deque(maxlen=DEDUPE_MEMORY)
        self._probe_timer: Any = None
        choice = self.cfg["image_reliability"]
        if choice == "best_available":
            self._match_publishers()  # no publisher known yet: listens both ways
            self.create_timer(QOS_RECHECK_PERIOD_S, self._match_publishers)
        else:
            for topic in self._sensor_subs:
                self._subscribe_sensor(topic, (RELIABILITY[choice],))
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

    def _subscribe_sensor(self, topic: str, policies: tuple[ReliabilityPolicy, ...]) -> None:
        """Hold subscriptions of exactly these reliabilities on a sensor topic (queue
        IMAGE_QUEUE_DEPTH; the mailbox keeps the newest): create the missing ones; a
        replaced one stays until the next QoS re-check (_match_publishers), so a message
        already in its queue, or sent before the new one has matched, is still delivered (a
        camera that sends its intrinsics once would otherwise leave the node without them
        for good; a starting camera's frames are not lost in the switch). While two image
        subscriptions exist, the copy of a frame delivered by both is dropped (_on_image_from)."""
        entry = self._sensor_subs[topic]
        live: dict[ReliabilityPolicy, Any] = entry[2]
        is_image = topic == self._image_topic
        for policy in policies:
            if policy in live:
                continue
            qos = QoSProfile(depth=IMAGE_QUEUE_DEPTH, history=HistoryPolicy.KEEP_LAST,
                             reliability=policy, durability=DurabilityPolicy.VOLATILE)
            callback = entry[1]
            if is_image:
                source = next(self._sub_ids)
                callback = lambda msg, source=source: self._on_image_from(msg, source)  # noqa: E731
                self._image_subs_alive += 1
            # best_available matches the publishers itself: no incompatible-QoS warning from
            # the subscription that does not fit (and no event handlers for the executor)
            events = (SubscriptionEventCallbacks(use_default_callbacks=False)
                      if self.cfg["image_reliability"] == "best_available" else None)
            live[policy] = self.create_subscription(entry[0], topic, callback, qos,
                                                    event_callbacks=events)
        for policy in [p for p in live if p not in policies]:
            self._retired_subs.append(live.pop(policy))

    def sensor_reliability(self, topic: str) -> str:
        """The reliabilities of a sensor topic's live subscriptions ('reliable',
        'best_effort', or 'reliable+best_effort' while best_available listens both ways)."""
        names = {p.name.lower() for p in self._sensor_subs[topic][2]}
        return "+".join(n for n in ("reliable", "best_effort") if n in names)

    def _match_publishers(self) -> None:
        """image_reliability best_available: reliable while every publisher of the topic is
        reliable, best effort when one is not; both (a reliable and a best-effort
        subscription, the copies dropped) while no publisher is known, so the first frames
        of a camera of either kind that starts later are not lost. rmw resolves
        BEST_AVAILABLE only once, when the subscription is created: a node started before
        its camera stayed reliable and never heard a best-effort camera. Re-checked every
        QOS_RECHECK_PERIOD_S, every QOS_PROBE_RECHECK_PERIOD_S while the image topic has no
        publisher; a change re-creates the subscription (logged). Subscriptions replaced at
        the previous check are destroyed here."""
        for sub in self._retired_subs:
            if sub.topic_name == self._image_topic:
                self._image_subs_alive -= 1
            self.destroy_subscription(sub)
        self._retired_subs.clear()
        image_probing = False
        for topic, entry in self._sensor_subs.items():
            pubs = self.get_publishers_info_by_topic(topic)
            if not pubs:  # listen both ways for the next camera of either kind
                want: tuple[ReliabilityPolicy, ...] = (ReliabilityPolicy.RELIABLE,
                                                       ReliabilityPolicy.BEST_EFFORT)
                image_probing |= topic == self._image_topic
            elif all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in pubs):
                want = (ReliabilityPolicy.RELIABLE,)
            else:
                want = (ReliabilityPolicy.BEST_EFFORT,)
            if set(want) != set(entry[2]):
                self._subscribe_sensor(topic, want)
                if pubs:
                    kind = ("all reliable" if want[0] == ReliabilityPolicy.RELIABLE
                            else "not all reliable")
                    self.get_logger().info(f"{topic}: {len(pubs)} publisher(s), {kind}: "
                                           f"subscribing {want[0].name.lower()}")
        if image_probing:  # look again soon: the camera's frames travel twice meanwhile
            if self._probe_timer is None:
                self._probe_timer = self.create_timer(QOS_PROBE_RECHECK_PERIOD_S,
                                                      self._match_publishers)
            elif self._probe_timer.is_canceled():
                self._probe_timer.reset()
        elif self._probe_timer is not None and not self._probe_timer.is_canceled():
            self._probe_timer.cancel()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        """Cache the intrinsics of the latest CameraInfo (one reference swap: thread safe).
        One the node cannot use (NaN / Inf / zero K, fx or fy <= 0) is not cached: hands are
        then wrist-relative (metric false), the problem is warned once and shown in
        /diagnostics. Distortion is ignored (pinhole K only): warned once."""
        problem = geo.intrinsics_problem(msg.k)
        if problem is not None:
            self._camera, self._camera_problem = None, problem
            self._warn_once(f"camera_info:{problem}", f"camera_info on "
                            f"{self.resolve_topic_name('camera_info')} cannot be used: {problem}; "
                            f"publishing wrist-relative hands (metric false)")
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

    def _on_image_from(self, msg: Any, source: int) -> None:
        """An image from subscription `source`: while two image subscriptions exist (a QoS
        switch, or listening both ways), a frame whose stamp and frame_id another one just
        delivered is that frame's copy and is dropped."""
        if self._image_subs_alive > 1:
            header = msg.header
            key = (header.stamp.sec, header.stamp.nanosec, header.frame_id)
            if any(k == key and s != source for s, k in self._image_keys):
                return
            self._image_keys.append((source, key))
        self._on_image(msg)

    def _on_image(self, msg: Any) -> None:
        """Newest frame wins: replace the mailbox content, count what gets dropped. With
        use_depth the frame first waits in the pairer for its depth frame."""
        t_recv, wall_recv = time.monotonic(), time.time()
        stamp_s = stamp_seconds(msg.header.stamp)
        with self._lock:
            self.stats.received += 1
            self._loss.add(stamp_s)
            if self._pairer is None:
                if self._mailbox is not None:
                    self.stats.dropped += 1
                self._mailbox = (msg, t_recv, wall_recv, stamp_s, None)
            else:
                released = self._pairer.add_colour(stamp_s, (msg, t_recv, wall_recv),
                                                   t_recv)
                if released is not None:
                    self._deliver(released)
            self._lock.notify()  # a waiting frame changes the worker's next deadline too

    def _on_depth(self, msg: Image) -> None:
        """use_depth: a depth frame for the pairer; it may release a waiting colour frame."""
        stamp_s = stamp_seconds(msg.header.stamp)
        with self._lock:
            released = self._pairer.add_depth(stamp_s, msg, time.monotonic())
            if released is not None:
                self._deliver(released)
                self._lock.notify()

    def _deliver(self, released: Released) -> None:
        """(Under the lock.) A colour frame the pairer let go into the mailbox."""
        msg, t_recv, wall_recv = released.colour
        if self._mailbox is not None:
            self.stats.dropped += 1
        self._mailbox = (msg, t_recv, wall_recv, released.stamp, released)

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

    # ---- processing (worker thread)
    def _work(self, predictor_factory: Callable[[dict], Any], config: dict[str, Any]) -> None:
        """The inference thread: build the predictor, then serve the mailbox. Torch runs in
        this one thread only: a second thread running torch (the model built in the main
        thread) gives OpenMP two thread teams on the cores, whose workers then sleep between
        parallel regions instead of spinning (the light network: 43 instead of 27 ms)."""
        try:
            self.predictor = predictor_factory(config)
        except BaseException as e:  # handed to the constructor, which raises it
            self._build_error = e
            return
        finally:
            self._built.set()
        self._serve()

    def _wait_for_predictor(self) -> None:
        """Wait until the inference thread has built the predictor; raise its error. Waits in
        short slices so that Ctrl-C reaches the main thread at once."""
        while not self._built.wait(BUILD_WAIT_SLICE_S):
            # Ctrl-C does not always reach this thread as KeyboardInterrupt (twice in
            # fresh-clone CI it kept waiting), but rclpy's own SIGINT/SIGTERM handler always
            # shuts the context down: treat that as the interrupt.
            if not self.context.ok():
                raise KeyboardInterrupt
        if self._build_error is not None:
            error, self._build_error = self._build_error, None
            raise error

    def _serve(self) -> None:
        """Process the newest frame of the mailbox until stopped."""
        while True:
            with self._lock:
                frame = self._next_frame()
            if frame is None:
                return
            try:
                self._process(*frame)
            except Exception as e:  # keep serving: one bad frame must not kill the node
                if self._stop.is_set():  # shutting down: publishers may already be gone
                    return
                with self._lock:
                    self.stats.inference_errors += 1
                self._log_throttled(f"inference:{type(e).__name__}",
                                    f"processing failed: {type(e).__name__}: {e}")

    def _next_frame(self) -> Optional[tuple[Any, float, float, float, Optional[Released]]]:
        """(Worker, under the lock.) Wait for the next frame and take it out of the mailbox;
        run a ~/reset request first; release colour frames whose depth wait ended. None
        once stopped."""
        while not self._stop.is_set():
            if self._reset_request is not None:
                self._reset_state()
                continue
            timeout = 0.5
            if self._pairer is not None:
                now = time.monotonic()
                released = self._pairer.poll(now)
                if released is not None:
                    self._deliver(released)
                deadline = self._pairer.next_deadline()
                if deadline is not None:
                    timeout = min(timeout, max(deadline - now, 0.0))
            if self._mailbox is not None:
                frame, self._mailbox = self._mailbox, None
                return frame
            self._lock.wait(timeout=timeout)
        return None

    def _reset_state(self) -> None:
        """(Worker, under the lock, between frames.) ~/reset: forget every per-stream state
        (the predictor's tracking / warm start, the smoother, the depth pairing, the pinch
        flags and the retargeting optimisers, the
        transport loss window, a frame not yet processed), then tell the service."""
        request, self._reset_request = self._reset_request, None
        try:
            reset = getattr(self.predictor, "reset", None)
            if reset is not None:
                reset()
            smoother = self.smoother
            if smoother is not None:
                if hasattr(smoother, "reset"):
                    smoother.reset()
                else:  # a filter without reset: a fresh one
                    self.smoother = self._make_smoother(self.cfg)
            if self._pairer is not None:
                self._pairer.reset()
            self._robot.reset()
            self._loss.reset()
            if self._mailbox is not None:
                self._mailbox = None
                self.stats.dropped += 1
        finally:
            request.set()

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Any:
        """~/reset (std_srvs/Trigger): clear all per-stream state (see _reset_state) on the
        worker, between frames, so it never races a frame in progress; answers when done.
        Call it before an independent image (a photo after another) so that its hands do
        not depend on the frames before it."""
        done = threading.Event()
        with self._lock:
            if self._stop.is_set():
                response.success, response.message = False, "the node is shutting down"
                return response
            self._reset_request = done
            self._lock.notify_all()
        if done.wait(RESET_WAIT_S):
            response.success = True
            response.message = ("per-stream state cleared: tracking and warm start, "
                                "smoothing, depth pairing, grasp and retargeting state, "
                                "transport loss window")
        else:
            response.success = False
            response.message = (f"the frame in progress did not end within {RESET_WAIT_S:g} s: "
                                f"the reset runs after it")
        return response

    def _process(self, msg: Any, t_recv: float, wall_recv: float, stamp_s: float,
                 depth: Optional[Released]) -> None:
        """Decode, predict, smooth and publish one frame; time each stage (NODE_STAGES).
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
        now = time.monotonic()
        with self._lock:
            s = self.stats
            dt = max(now - s.last_time, 1e-6)
            pairer = self._pairer
            pairing = (None if pairer is None else
                       (pairer.paired, pairer.unpaired_late, pairer.unpaired_missing,
                        pairer.superseded, pairer.depth_received, pairer.longest_wait_s,
                        pairer.latest_late_s))
            # dropped: replaced before processing, in the mailbox or while waiting for depth
            cur = {"received": s.received, "processed": s.processed,
                   "dropped": s.dropped + (pairing[3] if pairing else 0),
                   "decode_errors": s.decode_errors, "inference_errors": s.inference_errors,
                   "too_large": s.too_large}
            delta = {k: v - s.last.get(k, 0) for k, v in cur.items()}
            s.last, s.last_time = cur, now
            stage_window = s.stages.snapshot()  # statistics outside the lock
            residuals = dict(s.fit_residual_mm)
            placement = dict(s.placement)
            depth_problem = s.depth_problem
            stamps = self._loss.snapshot()
        loss = stamps.estimate()  # outside the lock
        stages = stage_window.summary()
        lat = stage_window.values("total")  # receive -> published, ms
        lat = lat if lat.size else np.zeros(1)
        image_qos = self.sensor_reliability(self._image_topic)
        if (loss is not None and loss.received >= LOSS_WARN_MIN_FRAMES
                and loss.share > LOSS_WARN_SHARE and image_qos == "best_effort"):
            self._warn_once("transport_loss", (
                f"{self._image_topic}: about {100 * loss.share:.0f} % of the camera's frames "
                f"are lost in transport (estimated from the gaps of their header stamps; the "
                f"camera publishes best effort). On the camera side: publish reliable (the "
                f"node then subscribes reliable and loses none), or give the camera process a "
                f"Fast DDS profile whose shared-memory segment holds several frames, as "
                f"config/fastdds_camera.xml of this package does "
                f"(FASTRTPS_DEFAULT_PROFILES_FILE=<share>/dir_ros/config/fastdds_camera.xml)"))
        status = DiagnosticStatus(name=f"{self.get_name()}: hand reconstruction",
                                  hardware_id=self.device_name)
        if delta["inference_errors"]:
            status.level, status.message = DiagnosticStatus.ERROR, "inference errors"
        elif delta["decode_errors"]:
            status.level, status.message = DiagnosticStatus.WARN, "undecodable images"
        elif self._camera_problem:
            status.level = DiagnosticStatus.WARN
            status.message = f"camera_info unusable: {self._camera_problem}"
        elif delta["received"] == 0:
            status.level = DiagnosticStatus.WARN
            status.message = f"no images on {self._image_topic}"
        else:
            status.level, status.message = DiagnosticStatus.OK, "running"
        values = {
            "input_rate_hz": f"{delta['received'] / dt:.2f}",
            "processed_rate_hz": f"{delta['processed'] / dt:.2f}",
            # received_total: frames that reached the node (sent - received = transport
            # loss); dropped_total: replaced in the one-slot mailbox before processing
            "received_total": str(cur["received"]),
            "processed_total": str(cur["processed"]),
            "dropped_total": str(cur["dropped"]),
            "dropped_rate_hz": f"{delta['dropped'] / dt:.2f}",
            "decode_errors_total": str(cur["decode_errors"]),
            "inference_errors_total": str(cur["inference_errors"]),
            "too_large_total": str(cur["too_large"]),  # refused by max_image_pixels / side
            "latency_ms_median": f"{np.median(lat):.1f}",  # receive -> published
            "latency_ms_max": f"{np.max(lat):.1f}",
            # the predictor's steps as before (crop_ms_median, network_ms_median, ...)
            **{f"{k.removeprefix('predict_')}_ms_median": f"{v[0]:.1f}"
               for k, v in stages.items() if k.startswith("predict_")},
            # per-stage table (NODE_STAGES): median / mean / p90 ms over the last frames
            **{f"stage_{k}_ms": format_stage(*v) for k, v in stages.items()},
            **{f"{side}_fit_residual_mm": f"{v:.1f}" for side, v in residuals.items()
               if self.backend == "landmarks"},
            "backend": self.backend,
            "device": self.device_name,
            "precision": str(getattr(self.predictor, "precision", self.cfg["precision"])),
            "image_qos": image_qos,
            # lost / (lost + received) over the last frames, from the header stamp gaps
            # against the camera's period (transport_loss.py); unknown until enough frames
            "estimated_transport_loss": (f"{loss.share:.3f}" if loss is not None
                                         else "unknown"),
            "estimated_lost_frames": str(loss.lost) if loss is not None else "0",
            "camera_period_ms": (f"{1e3 * loss.period_s:.1f}" if loss is not None
                                 else "unknown"),
            # the Fast DDS profile file the process was started with (dds_profile.py)
            "dds_profile": profile_in_use() or "none",
            "camera_info": ("yes" if self._camera is not None else
                            f"invalid: {self._camera_problem}" if self._camera_problem else "no"),
            # latest frame: none | hand_size | depth, and why depth was not used
            **{f"{side}_placement": name + (f" ({note})" if note else "")
               for side, (name, note) in placement.items()},
            "retarget": self.cfg["retarget"],  # none, a bundled robot or the YAML path
            "depth": ("off" if self._depth is None else
                      f"not used: {depth_problem}" if depth_problem else "used"),
        }
        if pairing is not None:  # colour frames and their depth (stamp_pairing.py)
            values.update({"depth_paired_total": str(pairing[0]),
                           "depth_unpaired_late_total": str(pairing[1]),
                           "depth_unpaired_missing_total": str(pairing[2]),
                           "depth_received_total": str(pairing[4]),
                           # since start: what depth_wait needs here (colour arrival ->
                           # its depth), over paired and over late frames
                           "depth_wait_ms_max": f"{1e3 * pairing[5]:.1f}",
                           "depth_late_ms_max": f"{1e3 * pairing[6]:.1f}"})
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)

    # ---- shutdown
    def destroy_node(self) -> None:
        """Stop the worker, give the core's logging back, destroy the node."""
        self.stop()
        self._log_bridge.uninstall()
        super().destroy_node()

    def stop(self) -> None:
        """Stop the worker thread (idempotent): it finishes the frame in progress."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=WORKER_JOIN_TIMEOUT_S)

    def worker_alive(self) -> bool:
        """True while the inference thread runs (after stop(): stuck in native code)."""
        return self._worker.is_alive()


def draw_debug(rgb: np.ndarray, result: FrameResult, K: Optional[np.ndarray]) -> np.ndarray:
    """Input image with the crop box and each valid hand's projected mesh, bones and
    keypoints drawn (RGB copy)."""
    from dir_ros.output.overlay import draw_hands

    return draw_hands(rgb, result.hands(), K, box=result.box)


def _rcl_reason(error: Exception) -> str:
    """One line from an rcl error: without the C source locations (', at /.../x.c:415')."""
    return re.sub(r",? at \S+:\d+", "", str(error)).strip()


class _Signals:
    """main()'s SIGINT / SIGTERM handler. While the node starts, the first signal interrupts
    it (KeyboardInterrupt); once it runs, a signal only asks for a stop, which the spin loop
    sees within SPIN_SLICE_S; signals during the shutdown are counted and ignored. So a second
    Ctrl-C (a terminal signals the whole process group and `ros2 launch` forwards one more)
    can never interrupt the shutdown, and the context stays valid until the worker has
    published the frame in progress (rclpy's own handler would shut it down at once)."""

    def __init__(self) -> None:
        self.received: Optional[int] = None  # the first signal's number
        self.count = 0
        self.interrupt = True  # raise KeyboardInterrupt (startup) or only record

    def install(self) -> None:
        """Handle SIGINT and SIGTERM (main thread only; elsewhere they stay as they are)."""
        self._set(self)

    def ignore(self) -> None:
        """Ignore SIGINT and SIGTERM from now on: at the very end, so that one arriving
        while the interpreter shuts down (which restores the default action of handled
        signals, not of ignored ones) cannot kill the process (exit -2)."""
        self._set(signal.SIG_IGN)

    @staticmethod
    def _set(handler: Any) -> None:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, handler)
        except ValueError:  # not the main thread: the caller handles signals
            pass

    def __call__(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.received is None:
            self.received = signum
        if self.interrupt:
            self.interrupt = False
            raise KeyboardInterrupt


def main(args: Optional[Sequence[str]] = None) -> int:
    """Entry point of the hands_node executable; returns the exit status. Startup problems
    (a malformed params file, a refused parameter) end with one line on stderr, no
    traceback; SIGINT or SIGTERM, once or more, at any time, end it with status 0: the frame
    in progress is finished and published, the node destroyed, nothing left running."""
    signals = _Signals()
    signals.install()
    use_package_profile()  # before the DDS participant exists (rclpy.init)
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except KeyboardInterrupt:
        signals.ignore()
        return 0
    except Exception as e:  # RCLError: a malformed params file or --ros-args
        signals.ignore()
        print(f"[{NODE_NAME}] ERROR: {_rcl_reason(e)}", file=sys.stderr, flush=True)
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
    if stuck:  # still inside native code after WORKER_JOIN_TIMEOUT_S: leave without it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    signals.ignore()
    return 0


if __name__ == "__main__":
    sys.exit(main())  # main() takes over SIGINT / SIGTERM from the import-time handlers
