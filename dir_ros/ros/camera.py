"""camera_node: a webcam, a video file or a photo as a ROS 2 camera (Image + CameraInfo).

Live input without a camera driver: `ros2 launch dir_ros hands.launch.py camera:=webcam` or
`video:=clip.mp4` starts it beside hands_node; `ros2 run dir_ros camera_node --ros-args -p
source:=0` alone. Publishes `image_raw` (sensor_msgs/Image bgr8) and `camera_info`
(sensor_msgs/CameraInfo from a calibration YAML in the ROS camera_info format, or a pinhole
from `fov_deg`), both stamped with the time the frame was captured, reliable QoS (a large
frame is retransmitted, not lost: see config/fastdds_camera.xml, the profile it runs with).

Exit status: 0 at the end of a video (loop false) or on Ctrl-C / SIGTERM; 2 with one line on
stderr when the source cannot be opened or a parameter is bad (a missing webcam, an
unreadable file or calibration).
"""
from __future__ import annotations

import signal
import sys
from typing import Any, Optional, Sequence

NODE_NAME = "camera_node"
EXIT_OK, EXIT_BAD_SOURCE = 0, 2
QOS_DEPTH = 1  # newest frame only, as hands_node subscribes (no queue of stale frames)
DEFAULT_FRAME_ID = "camera_optical_frame"


def _parameters(node: Any) -> dict[str, Any]:
    """Declare the node's parameters (with descriptions) and return their values."""
    from rcl_interfaces.msg import ParameterDescriptor

    from dir_ros.image.camera_source import DEFAULT_RATE_HZ
    from dir_ros.common.geometry import DEFAULT_HFOV_DEG

    specs = (
        ("source", "0", "Webcam index (0 = /dev/video0), a video file or an image file (a "
                        "photo is published again and again, a still camera)."),
        ("loop", False, "Start a video file over at its end (false: exit 0 at the end)."),
        ("rate", 0.0, f"Publish rate (Hz); 0 = the source's own (a video's frame rate, a "
                      f"webcam's; a photo: {DEFAULT_RATE_HZ:g} Hz)."),
        ("fov_deg", DEFAULT_HFOV_DEG, "Horizontal field of view (degrees) assumed when no "
                                      "calibration is given: pinhole K, centred."),
        ("calibration", "", "Calibration YAML in the ROS camera_info format (what "
                            "camera_calibration writes); '' = use fov_deg."),
        ("frame_id", DEFAULT_FRAME_ID, "header.frame_id of the images (the optical frame)."),
    )
    values = {}
    for name, default, text in specs:
        # source: `-p source:=0` arrives as an integer, a path as a string: both accepted
        values[name] = node.declare_parameter(name, default, ParameterDescriptor(
            description=text, dynamic_typing=name == "source")).value
    values["source"] = str(values["source"])
    return values


def _camera_info(calib: Any, frame_id: str) -> Any:
    """The CameraInfo message of a CameraCalibration (stamp filled per frame)."""
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo()
    info.header.frame_id = frame_id
    info.width, info.height = int(calib.width), int(calib.height)
    info.distortion_model = calib.distortion_model
    info.d = [float(v) for v in calib.D]
    info.k = [float(v) for v in calib.K.reshape(-1)]
    info.r = [float(v) for v in calib.R.reshape(-1)]
    info.p = [float(v) for v in calib.projection().reshape(-1)]
    return info


def run(node: Any, cfg: dict[str, Any]) -> int:
    """Open the source and publish until it ends or the context shuts down."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from dir_ros.image.camera_source import (CameraSource, CameraSourceError, Pacer,
                                       assumed_calibration, load_calibration)

    if not 0.0 < float(cfg["fov_deg"]) < 180.0:
        raise CameraSourceError(f"fov_deg must be in (0, 180) degrees, got {cfg['fov_deg']}")
    if float(cfg["rate"]) < 0.0:
        raise CameraSourceError(f"rate must be >= 0 Hz, got {cfg['rate']}")
    calib_file = str(cfg["calibration"]).strip()
    calib = load_calibration(calib_file) if calib_file else None
    source = CameraSource(str(cfg["source"]), loop=bool(cfg["loop"]))
    try:
        if calib is None:
            calib = assumed_calibration(source.width, source.height, float(cfg["fov_deg"]))
        elif (calib.width, calib.height) != (source.width, source.height):
            node.get_logger().warning(
                f"calibration is for {calib.width}x{calib.height}, frames are "
                f"{source.width}x{source.height}: intrinsics scaled to the frames")
            calib = calib.scaled_to(source.width, source.height)
        qos = QoSProfile(depth=QOS_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        pub_image = node.create_publisher(Image, "image_raw", qos)
        pub_info = node.create_publisher(CameraInfo, "camera_info", qos)
        info = _camera_info(calib, str(cfg["frame_id"]))
        rate = float(cfg["rate"]) or source.rate_hz
        node.get_logger().info(
            f"{source.kind} {source.source}: {source.width}x{source.height} at {rate:g} Hz "
            f"on {pub_image.topic_name} ({'calibration ' + calib_file if calib_file else 'fov %g deg' % float(cfg['fov_deg'])})")
        pacer = Pacer(rate)
        img = Image()
        img.header.frame_id = info.header.frame_id
        img.encoding, img.is_bigendian = "bgr8", 0
        while rclpy.ok(context=node.context):
            pacer.wait()
            frame = source.read()
            if frame is None:
                node.get_logger().info(f"{source.kind} {source.source}: end after "
                                       f"{source.frames_read} frame(s)")
                return EXIT_OK
            stamp = node.get_clock().now().to_msg()  # the capture time of this frame
            info.header.stamp = img.header.stamp = stamp
            img.height, img.width = frame.shape[:2]
            img.step = img.width * 3
            img.data = frame.tobytes()
            pub_info.publish(info)
            pub_image.publish(img)
        return EXIT_OK
    finally:
        source.close()


def main(args: Optional[Sequence[str]] = None) -> int:
    """Entry point of the camera_node executable; returns the exit status."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from dir_ros.image.camera_source import CameraSourceError
    from dir_ros.ros.dds_profile import CAMERA_PROFILE, use_package_profile

    use_package_profile(profile=CAMERA_PROFILE)  # before the participant exists
    # SIGINT / SIGTERM end the publishing loop through rclpy's handlers (context shut down).
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.ALL)
    except Exception as e:  # a malformed --ros-args
        print(f"[{NODE_NAME}] ERROR: {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_SOURCE
    node = None
    try:
        node = rclpy.create_node(NODE_NAME)
        return run(node, _parameters(node))
    except CameraSourceError as e:
        print(f"[{NODE_NAME}] ERROR: {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_SOURCE
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as e:  # an invalid parameter type (rclpy) and the like: one line
        print(f"[{NODE_NAME}] ERROR: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_SOURCE
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C during teardown
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
