"""The hands_node's parameters: their specs (PARAMS / SPECS: default, description, allowed
values, read-only), the checks of a value (check_param), declaring them on the node with
descriptors (declare_parameters) and the smoother they configure (make_smoother)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter

from dir_ros import config as P
from dir_ros.frontend.crop import CROP_MODES
from dir_ros.image.decode import DEFAULT_MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS_LIMIT, MAX_IMAGE_SIDE_PX
from dir_ros.post import depth as D
from dir_ros.post import smoothing as S
from dir_ros.robot.retarget import RETARGET_CHOICES
from dir_ros.ros.robot_outputs import JOINT_TF_MODES
from dir_ros.ros.stamp_pairing import DDS_HEARTBEAT_PERIOD_S
from dir_ros.ros.transport import RELIABILITY

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
# Default longest wait (s) of a colour frame for its depth frame (parameter depth_wait): a
# reliable depth frame that lost a fragment on the way is resent only after the writer's
# next heartbeat, up to one heartbeat period later (Fast DDS default 3 s), and the frames
# behind it are held until then: seen in test_node_depth.py::test_depth_pairs_on_a_busy_cpu
# (640x480 depth sent 0-80 ms after its colour, 2 busy cores) as depth 0.34 s, 1.03 s and
# 2.2 s after its colour (/diagnostics depth_wait_ms_max, depth_late_ms_max). One heartbeat
# period plus 0.5 s for the resend on busy cores. Only a frame whose depth is late waits
# this long: a frame whose depth was lost is superseded by the next paired one, and a node
# without depth camera never waits (stamp_pairing.py).
DEFAULT_DEPTH_WAIT_S = DDS_HEARTBEAT_PERIOD_S + 0.5
MAX_DEPTH_WAIT_S = 5.0


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
    ParamSpec("finger_step", P.DEFAULT_CONFIG["finger_step"], "Landmark backend, with "
              "hand_contact: the finger step of interlocked fingers (turns each finger of two "
              "coupled hands out of the other hand): off = never; always = on every frame where "
              "they are still inside each other; onset = on the frame where the interlock "
              "appears, its turns carried to the later frames.",
              choices=("off", "onset", "always"), read_only=True),
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


def declare_parameters(node: Node,
                       on_set: Callable[[list[Parameter]], SetParametersResult]) -> None:
    """Declare every parameter of PARAMS on `node` with its descriptor, `on_set` validating
    and applying values; a bad value raises ConfigError with on_set's reason."""
    # Validation runs for the declared values too (rclpy calls the callback on declare).
    refusal: list[Optional[str]] = [None]  # our reason when the callback refuses a value

    def checked(params: list[Parameter]) -> SetParametersResult:
        result = on_set(params)
        if not result.successful:
            refusal[0] = result.reason
        return result

    node.add_on_set_parameters_callback(checked)
    # Integers for double parameters: rclpy types a parameter by its default and refuses
    # `min_confidence: 0`. Runtime sets pass the pre-set callback; declaring does not, so
    # the command-line / params-file overrides are converted here (rclpy keeps them in
    # Node._parameter_overrides, the only place they can be read before declaring).
    node.add_pre_set_parameters_callback(
        lambda params: [_ints_as_doubles(p) for p in params])
    overrides = getattr(node, "_parameter_overrides", None)
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
        refusal[0] = None
        try:
            node.declare_parameter(spec.name, spec.default, desc)
        except ParameterException as e:  # our own one-line reason where we have one
            given = overrides.get(spec.name) if isinstance(overrides, dict) else None
            reason = refusal[0] or (check_param(spec.name, given.value)
                                   if given is not None else None)
            raise ConfigError(reason or f"parameter '{spec.name}': {e}") from e


def make_smoother(cfg: dict[str, Any]) -> Optional[S.Smoother]:
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
