"""launch_testing test of launch/hands.launch.py on a real ROS 2 install (skipped without it).

Starts the launch file with a params file selecting the light model, publishes camera
images and checks that TwoHandMesh messages and wrist TF frames with the launch's
frame_prefix come back; while it runs, that `rviz:=true` without rviz2 installed fails at
once and leaves no hands_node behind; after shutdown, the exit codes.
Run with `launch_test test/test_hands_launch.py` or pytest (launch_testing's plugin).
"""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import pytest

launch_testing = pytest.importorskip(
    "launch_testing", reason="launch_testing (ROS 2 launch) is not installed here")
import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "launch_test"
FRAME = "launch_test_optical"
FRAME_PREFIX = "lt_"  # the launch's frame_prefix argument: TF child frames lt_left_wrist, ...
W, H = 160, 120
RECEIVE_DEADLINE_S = 90.0
TF_EXTRA_S = 10.0  # after the first TwoHandMesh, how long to keep collecting /tf
RVIZ_FAIL_DEADLINE_S = 60.0  # `ros2 launch ... rviz:=true` without rviz2 must end by then


def _launch_file() -> str:
    """The installed launch file when the package is installed, else the source one."""
    try:
        from ament_index_python.packages import get_package_share_directory

        p = Path(get_package_share_directory("dir_ros")) / "launch" / "hands.launch.py"
        if p.is_file():
            return str(p)
    except Exception:
        pass
    return str(ROOT / "launch" / "hands.launch.py")


# The params files of this test run live here; removed when the run ends (launch_testing
# builds the launch description outside any pytest fixture, so no tmp_path).
_TMP = tempfile.mkdtemp(prefix="hands_launch_")
atexit.register(shutil.rmtree, _TMP, True)


def _params_file() -> str:
    """A params file: the light DIR model (random weights: every hand valid at
    min_confidence 0, so wrist TF is published), full-frame crop, cpu."""
    light = ROOT / "config" / "model" / "dir_light.yaml"
    text = ("/**/hands_node:\n  ros__parameters:\n"
            f"    model_config: \"{light if light.is_file() else 'config/model/dir_light.yaml'}\"\n"
            "    backend: \"dir\"\n    crop: \"full\"\n"
            "    device: \"cpu\"\n    runtime: \"torch\"\n    min_confidence: 0.0\n")
    fd, path = tempfile.mkstemp(suffix=".yaml", dir=_TMP)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


@pytest.mark.launch_test
def generate_test_description() -> launch.LaunchDescription:
    """hands.launch.py in a namespace, remapped to our test topics."""
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(_launch_file()),
        launch_arguments={"image": f"/{NAMESPACE}/cam/image", "camera_info":
                          f"/{NAMESPACE}/cam/camera_info", "config": _params_file(),
                          "namespace": NAMESPACE, "use_sim_time": "false",
                          "frame_prefix": FRAME_PREFIX, "rviz": "false"}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestHandsOutput(unittest.TestCase):
    """While the launch runs: images in, TwoHandMesh out."""

    def test_hands_published(self) -> None:
        import numpy as np
        import rclpy
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from tf2_msgs.msg import TFMessage

        from dir_ros.msg import TwoHandMesh

        rclpy.init()
        node = rclpy.create_node("hands_launch_probe")
        try:
            got: list[TwoHandMesh] = []
            tf_children: set[str] = set()
            node.create_subscription(TwoHandMesh, f"/{NAMESPACE}/hands", got.append, 10)
            node.create_subscription(
                TFMessage, "/tf", lambda m: tf_children.update(
                    t.child_frame_id for t in m.transforms if t.header.frame_id == FRAME), 100)
            qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
            pub = node.create_publisher(Image, f"/{NAMESPACE}/cam/image", qos)
            info_pub = node.create_publisher(CameraInfo, f"/{NAMESPACE}/cam/camera_info", qos)
            img = Image(height=H, width=W, encoding="rgb8", step=W * 3)
            img.header.frame_id = FRAME
            img.data = np.random.default_rng(0).integers(0, 256, H * W * 3, np.uint8).tobytes()
            info = CameraInfo(width=W, height=H, k=[150.0, 0, 79.5, 0, 150.0, 59.5, 0, 0, 1.0])
            info.header.frame_id = FRAME
            end = time.monotonic() + RECEIVE_DEADLINE_S
            while not got and time.monotonic() < end:
                img.header.stamp = node.get_clock().now().to_msg()
                info_pub.publish(info)
                pub.publish(img)
                rclpy.spin_once(node, timeout_sec=1.0)
            self.assertTrue(got, "no TwoHandMesh received from the launched node")
            self.assertEqual(got[0].header.frame_id, FRAME)
            self.assertEqual(len(got[0].left.joints), 21)
            end = time.monotonic() + TF_EXTRA_S
            while not tf_children and time.monotonic() < end:
                img.header.stamp = node.get_clock().now().to_msg()
                info_pub.publish(info)
                pub.publish(img)
                rclpy.spin_once(node, timeout_sec=0.5)
            self.assertTrue(tf_children, "no wrist TF from the launched node")
            self.assertTrue(tf_children <= {f"{FRAME_PREFIX}left_wrist",
                                            f"{FRAME_PREFIX}right_wrist"}, tf_children)
        finally:
            node.destroy_node()
            rclpy.shutdown()


def _rviz2_installed() -> bool:
    """True when launch_ros could start rviz2 (ament index or PATH)."""
    try:
        from ament_index_python.packages import get_package_prefix

        get_package_prefix("rviz2")
        return True
    except Exception:
        return shutil.which("rviz2") is not None


def _processes_with(text: str) -> list[int]:
    """PIDs whose command line contains `text`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                pids.append(int(entry.name))
    return pids


class TestRvizMissing(unittest.TestCase):
    """`rviz:=true` without rviz2: the launch fails at once and starts no hands_node."""

    def test_fails_cleanly(self) -> None:
        if _rviz2_installed():
            self.skipTest("rviz2 is installed here")
        if shutil.which("ros2") is None:
            self.skipTest("no ros2 command")
        namespace = f"rviz_missing_{os.getpid()}"
        try:
            proc = subprocess.run(
                ["ros2", "launch", _launch_file(), "rviz:=true", f"namespace:={namespace}",
                 f"config:={_params_file()}"],
                capture_output=True, text=True, timeout=RVIZ_FAIL_DEADLINE_S)
        finally:
            leftovers = _processes_with(f"__ns:=/{namespace}")
        self.assertNotEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("Nothing was started", proc.stdout + proc.stderr)
        self.assertEqual(leftovers, [], "hands_node left running after the failed launch")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    """After the launch is shut down (SIGINT): exit code 0 (a node killed by the signal,
    -2, or one that raised, is not a clean exit)."""

    def test_exit_codes(self, proc_info) -> None:  # noqa: ANN001 - launch_testing fixture
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
