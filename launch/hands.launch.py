"""Launch dir_ros hands_node (and optionally RViz, configured for the same topics and frame).

ros2 launch dir_ros hands.launch.py image:=/camera/color/image_raw \
    camera_info:=/camera/color/camera_info [config:=<params.yaml>] [namespace:=hands] \
    [frame_prefix:=cam1_] [fixed_frame:=camera_color_optical_frame] \
    [use_sim_time:=true] [rviz:=true] [retarget:=allegro] [publish_joint_tf:=fingertips]
ros2 launch dir_ros hands.launch.py camera:=webcam [camera_index:=0]   # live, no driver
ros2 launch dir_ros hands.launch.py video:=clip.mp4 [loop:=true]        # a file (or a photo)
    [fov_deg:=60 | camera_calibration:=<camera_info.yaml>] [rate:=0]

With camera:=webcam or video:=..., the package's camera_node (dir_ros/ros/camera.py) starts
beside hands_node in the same namespace, publishing camera/image_raw and camera/camera_info,
and hands_node listens to those (the image / camera_info arguments are then not used).

Everything is decided in one OpaqueFunction, before any process starts: with rviz:=true and
no rviz2 installed, or a camera source that cannot be opened (no such webcam, a missing or
unreadable file), the launch fails with one message and starts nothing. The processes are
tied together: when hands_node, the camera or RViz exits (a video without loop at its end),
the whole launch shuts down (no orphaned node).
RViz gets a config generated from rviz/hands.rviz with the camera image topic, the marker
and debug-image topics of this node (its namespace) and the fixed frame filled in.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Optional

from ament_index_python.packages import (PackageNotFoundError, get_package_prefix,
                                         get_package_share_directory)
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, LogInfo, OpaqueFunction,
                            RegisterEventHandler, Shutdown)
from launch.event_handlers import OnShutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "dir_ros"
RVIZ_PACKAGE = "rviz2"  # package and executable name of RViz 2
# RViz's fixed frame by default: the RealSense colour optical frame, the frame_id of the
# default image topic's images (markers and wrist TF frames hang off the image frame).
DEFAULT_FIXED_FRAME = "camera_color_optical_frame"
TRUE_WORDS = ("true", "1")  # what launch's IfCondition takes as true (case-insensitive)
FALSE_WORDS = ("false", "0")
# Display names in rviz/hands.rviz whose topic the generated config sets.
RVIZ_CAMERA_DISPLAY = "Camera image"
RVIZ_DEBUG_DISPLAY = "Debug image"
RVIZ_MARKER_CLASS = "rviz_default_plugins/MarkerArray"
RVIZ_CONFIG_PREFIX = "dir_ros_hands_"  # temp file name of the generated RViz config

# (name, default, description); the config default is filled in from the share directory.
ARGUMENTS: tuple[tuple[str, Optional[str], str], ...] = (
    ("image", "/camera/color/image_raw",
     "Input sensor_msgs/Image topic (remapped to `image`; relative = in `namespace`)."),
    ("camera_info", "/camera/color/camera_info", "sensor_msgs/CameraInfo topic of that camera."),
    ("config", None, "Params file of hands_node (see config/hands.yaml)."),
    ("namespace", "", "Namespace of the node and its relative topics."),
    ("frame_prefix", "", "Prefix of the wrist TF frames (<prefix>left_wrist); '' = the "
     "params file's value."),
    ("fixed_frame", DEFAULT_FIXED_FRAME,
     "RViz fixed frame: the frame_id of the camera images (parent of markers and wrist TF)."),
    ("use_sim_time", "false", "Use /clock (bag replay)."),
    ("rviz", "false", "Start RViz (rviz2) showing the image, the hand markers and TF."),
    ("camera", "none", "none: hands_node listens to `image`; webcam: start the package's "
     "camera_node on webcam `camera_index` (no camera driver needed)."),
    ("camera_index", "0", "Webcam index for camera:=webcam (0 = /dev/video0)."),
    ("video", "", "A video file (or a photo, repeated) published by camera_node instead of "
     "a camera; '' = none."),
    ("loop", "false", "Start the video over at its end (false: the launch ends with it)."),
    ("rate", "0", "camera_node's publish rate (Hz); 0 = the source's own (a video's rate)."),
    ("fov_deg", "60", "Horizontal field of view (degrees) assumed for camera_node's "
     "CameraInfo when no camera_calibration is given."),
    ("camera_calibration", "", "Calibration YAML (ROS camera_info format) for camera_node; "
     "'' = use fov_deg."),
    ("retarget", "", "Robot-hand joint commands on hands/<side>/joint_commands: none | "
     "allegro | leap | <dex-retargeting YAML path>; '' = the params file's value."),
    ("publish_joint_tf", "", "Keypoint frames in TF: none | fingertips | all; '' = the "
     "params file's value."),
)
# String node parameters a non-empty launch argument of the same name overrides (the params
# file's value otherwise); passed as strings as given (launch would read "1_" or "true" as
# YAML). The node checks their values.
NODE_STRING_OVERRIDES = ("frame_prefix", "retarget", "publish_joint_tf")
CAMERA_CHOICES = ("none", "webcam")
CAMERA_EXECUTABLE = "camera_node"
# camera_node's topics, relative to the launch namespace; hands_node is remapped to them.
CAMERA_IMAGE_TOPIC = "camera/image_raw"
CAMERA_INFO_TOPIC = "camera/camera_info"


class LaunchArgumentError(RuntimeError):
    """A launch argument or missing tool that stops the launch before anything starts."""


def generate_launch_description() -> LaunchDescription:
    """The declared arguments, then one OpaqueFunction that checks them and starts the nodes."""
    share = get_package_share_directory(PACKAGE)
    defaults = {"config": os.path.join(share, "config", "hands.yaml")}
    args = [DeclareLaunchArgument(name, default_value=defaults.get(name, default),
                                  description=description)
            for name, default, description in ARGUMENTS]
    return LaunchDescription(args + [OpaqueFunction(function=launch_setup,
                                                    kwargs={"share": share})])


def launch_setup(context: Any, share: str) -> list[Any]:
    """Check the arguments (rviz2 present when asked for) first, then hands_node and RViz,
    each shutting the launch down when it exits."""
    cfg = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    want_rviz = parse_flag("rviz", cfg["rviz"])
    use_sim_time = parse_flag("use_sim_time", cfg["use_sim_time"])
    rviz_exe = find_rviz2() if want_rviz else None
    if want_rviz and rviz_exe is None:  # refuse before anything is started
        raise LaunchArgumentError(
            "rviz:=true but RViz 2 is not installed (no 'rviz2' package in the ament index, "
            "no rviz2 on PATH): install it (apt install ros-$ROS_DISTRO-rviz2) or launch with "
            "rviz:=false. Nothing was started.")
    camera = camera_node(cfg, use_sim_time)  # refuses a bad source before anything starts
    if camera is not None:
        cfg["image"], cfg["camera_info"] = CAMERA_IMAGE_TOPIC, CAMERA_INFO_TOPIC
    params: list[Any] = [cfg["config"], {"use_sim_time": use_sim_time}]
    for name in NODE_STRING_OVERRIDES:
        if cfg[name]:
            params.append({name: ParameterValue(cfg[name], value_type=str)})
    hands = Node(
        package=PACKAGE, executable="hands_node", name="hands_node",
        namespace=cfg["namespace"], output="screen", emulate_tty=True, parameters=params,
        remappings=[("image", cfg["image"]), ("camera_info", cfg["camera_info"])],
        on_exit=[Shutdown(reason="hands_node exited")])
    started = [hands] if camera is None else [hands, camera]
    if not want_rviz:
        return started
    image_topic = resolve_topic(cfg["image"], cfg["namespace"])
    rviz_config = write_rviz_config(
        os.path.join(share, "rviz", "hands.rviz"),
        image_topic=image_topic,
        markers_topic=resolve_topic("hands/markers", cfg["namespace"]),
        debug_topic=resolve_topic("hands/debug_image", cfg["namespace"]),
        fixed_frame=cfg["fixed_frame"])
    rviz_kwargs = ({"package": RVIZ_PACKAGE, "executable": RVIZ_PACKAGE}
                   if rviz_exe == RVIZ_PACKAGE else {"executable": rviz_exe})
    rviz = Node(**rviz_kwargs, name="rviz2", arguments=["-d", rviz_config],
                parameters=[{"use_sim_time": use_sim_time}], output="screen",
                on_exit=[Shutdown(reason="RViz exited")])
    cleanup = RegisterEventHandler(OnShutdown(
        on_shutdown=lambda event, ctx: remove_file(rviz_config)))
    note = LogInfo(msg=f"RViz config {rviz_config}: image {image_topic}, "
                       f"fixed frame {cfg['fixed_frame']}")
    return started + [note, rviz, cleanup]


def camera_node(cfg: dict[str, str], use_sim_time: bool) -> Optional[Any]:
    """The camera_node action for camera:=webcam or video:=FILE (None for neither). The source
    is opened once here (and closed) so that a missing webcam or an unreadable file stops
    the launch with one message before anything starts."""
    camera = cfg["camera"].strip().lower()
    if camera not in CAMERA_CHOICES:
        raise LaunchArgumentError(f"camera:={cfg['camera']!r} is not one of "
                                  f"{', '.join(CAMERA_CHOICES)} (for a file use video:=PATH)")
    video = cfg["video"].strip()
    if camera == "webcam" and video:
        raise LaunchArgumentError("camera:=webcam and video:=... both given: choose one")
    if camera == "none" and not video:
        return None
    if camera == "webcam" and not cfg["camera_index"].strip().isdigit():
        raise LaunchArgumentError(f"camera_index:={cfg['camera_index']!r} is not a webcam "
                                  f"index (0, 1, ...)")
    source = cfg["camera_index"].strip() if camera == "webcam" else os.path.abspath(
        os.path.expanduser(video))
    try:
        rate, fov = float(cfg["rate"]), float(cfg["fov_deg"])
    except ValueError:
        raise LaunchArgumentError(f"rate:={cfg['rate']!r} / fov_deg:={cfg['fov_deg']!r} must "
                                  f"be numbers") from None
    loop = parse_flag("loop", cfg["loop"])
    calibration = cfg["camera_calibration"].strip()
    from dir_ros.image.camera_source import CameraSource, CameraSourceError, load_calibration

    try:
        if calibration:
            load_calibration(calibration)
        CameraSource(source).close()
    except CameraSourceError as e:
        raise LaunchArgumentError(f"{e}. Nothing was started.") from None
    return Node(
        package=PACKAGE, executable=CAMERA_EXECUTABLE, name=CAMERA_EXECUTABLE,
        namespace=cfg["namespace"], output="screen", emulate_tty=True,
        # strings as given: launch would read source "0" as an integer
        parameters=[{"source": ParameterValue(source, value_type=str), "loop": loop,
                     "rate": rate, "fov_deg": fov,
                     "calibration": ParameterValue(calibration, value_type=str),
                     "frame_id": ParameterValue(cfg["fixed_frame"], value_type=str),
                     "use_sim_time": use_sim_time}],
        remappings=[("image_raw", CAMERA_IMAGE_TOPIC), ("camera_info", CAMERA_INFO_TOPIC)],
        on_exit=[Shutdown(reason=f"{CAMERA_EXECUTABLE} exited")])


def parse_flag(name: str, text: str) -> bool:
    """A boolean launch argument as IfCondition reads it; anything else is refused."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise LaunchArgumentError(f"{name}:={text!r} is not a boolean (true/false/1/0)")


def find_rviz2() -> Optional[str]:
    """'rviz2' when the ament index has the package's executable, else its path on PATH,
    else None (RViz is not installed)."""
    try:
        prefix = get_package_prefix(RVIZ_PACKAGE)
    except (PackageNotFoundError, KeyError, LookupError, ValueError):
        prefix = None
    if prefix and os.access(os.path.join(prefix, "lib", RVIZ_PACKAGE, RVIZ_PACKAGE), os.X_OK):
        return RVIZ_PACKAGE
    return shutil.which(RVIZ_PACKAGE)


def resolve_topic(name: str, namespace: str) -> str:
    """Absolute topic of a node's (possibly relative) topic name in `namespace`."""
    if name.startswith("/"):
        return name
    ns = namespace.strip("/")
    return f"/{ns}/{name}" if ns else f"/{name}"


def write_rviz_config(template: str, *, image_topic: str, markers_topic: str, debug_topic: str,
                      fixed_frame: str) -> str:
    """A temporary copy of the RViz config `template` with the topics and fixed frame set;
    returns its path."""
    import yaml

    with open(template, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    manager = config["Visualization Manager"]
    for display in manager.get("Displays", []):
        topic = {RVIZ_CAMERA_DISPLAY: image_topic, RVIZ_DEBUG_DISPLAY: debug_topic}.get(
            display.get("Name"))
        if display.get("Class") == RVIZ_MARKER_CLASS:
            topic = markers_topic
        if topic is not None:
            display.setdefault("Topic", {})["Value"] = topic
    manager.setdefault("Global Options", {})["Fixed Frame"] = fixed_frame
    fd, path = tempfile.mkstemp(prefix=RVIZ_CONFIG_PREFIX, suffix=".rviz")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def remove_file(path: str) -> None:
    """Delete the generated RViz config at shutdown (RViz read it at start)."""
    try:
        os.unlink(path)
    except OSError:
        pass
