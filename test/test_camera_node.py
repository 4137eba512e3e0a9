"""camera_node (dir_ros/ros/camera.py) over DDS without launch: a photo published as a still
camera with its CameraInfo, a calibration file's intrinsics, and one-line refusals."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed here")

from dir_ros.common.geometry import pinhole_K  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "person_kitchen.jpg"  # 384 x 512
RATE_HZ = 20.0
DEADLINE_S = 60.0


def camera(tmp_path: Path, *params: str) -> subprocess.Popen:
    """camera_node in a child process (this checkout's code), namespace /cam_test."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    args = [sys.executable, "-m", "dir_ros.ros.camera", "--ros-args", "-r", "__ns:=/cam_test"]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, stdout=open(tmp_path / "camera.log", "w"),
                            stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)


def receive(ctx, count: int) -> tuple[list, list]:  # noqa: ANN001
    """Collect `count` images and camera infos from /cam_test (reliable, as published)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    node = rclpy.create_node("camera_probe", context=ctx)
    images: list = []
    infos: list = []
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(Image, "/cam_test/image_raw", images.append, qos)
    node.create_subscription(CameraInfo, "/cam_test/camera_info", infos.append, qos)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    end = time.monotonic() + DEADLINE_S
    while (len(images) < count or len(infos) < count) and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
    executor.shutdown()
    node.destroy_node()
    return images, infos


def stop(proc: subprocess.Popen) -> int:
    """SIGINT, then the exit status."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return -9


def test_photo_as_camera(ctx, tmp_path: Path) -> None:  # noqa: ANN001
    """The photo's pixels in bgr8, a pinhole CameraInfo from fov_deg, same stamps, rate."""
    import cv2

    proc = camera(tmp_path, f"source:={SAMPLE}", f"rate:={RATE_HZ}", "fov_deg:=70.0",
                  "frame_id:=cam_optical")
    try:
        images, infos = receive(ctx, 5)
    finally:
        rc = stop(proc)
    log = (tmp_path / "camera.log").read_text()
    assert len(images) >= 5 and len(infos) >= 5, log
    img = images[-1]
    assert (img.width, img.height, img.encoding, img.step) == (384, 512, "bgr8", 384 * 3)
    pixels = np.frombuffer(bytes(img.data), np.uint8).reshape(512, 384, 3)
    assert np.array_equal(pixels, cv2.imread(str(SAMPLE)))
    assert img.header.frame_id == "cam_optical"
    info = infos[-1]
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), pinhole_K(384, 512, 70.0), rtol=1e-12)
    by_stamp = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in infos}
    assert all((m.header.stamp.sec, m.header.stamp.nanosec) in by_stamp for m in images[1:])
    t = [m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec for m in images]
    period = float(np.median(np.diff(t)))
    assert 0.5 / RATE_HZ < period < 2.0 / RATE_HZ, period
    assert rc == 0 and "Traceback" not in log, log


def test_calibration_file_used(ctx, tmp_path: Path) -> None:  # noqa: ANN001
    """A camera_info YAML for another size is scaled to the frames and published."""
    cal = tmp_path / "cam.yaml"
    cal.write_text("image_width: 768\nimage_height: 1024\n"
                   "camera_matrix: {rows: 3, cols: 3, data: [800, 0, 383.5, 0, 810, 511.5, 0, 0, 1]}\n"
                   "distortion_model: plumb_bob\n"
                   "distortion_coefficients: {rows: 1, cols: 5, data: [0.1, 0, 0, 0, 0]}\n")
    proc = camera(tmp_path, f"source:={SAMPLE}", f"rate:={RATE_HZ}", f"calibration:={cal}")
    try:
        _, infos = receive(ctx, 2)
    finally:
        stop(proc)
    assert infos, (tmp_path / "camera.log").read_text()
    np.testing.assert_allclose(np.reshape(infos[-1].k, (3, 3)),
                               [[400, 0, 191.75], [0, 405, 255.75], [0, 0, 1]])
    assert list(infos[-1].d) == pytest.approx([0.1, 0, 0, 0, 0])


@pytest.mark.parametrize("param, words", [
    ("source:=/no/such/clip.mp4", "camera source '/no/such/clip.mp4': no such file"),
    ("source:=97", "webcam 97: no such camera"),
    ("fov_deg:=0.0", "fov_deg must be in (0, 180)"),
])
def test_bad_source_is_one_line(tmp_path: Path, param: str, words: str) -> None:
    """An unusable source or parameter: exit 2 and one ERROR line naming it."""
    source = [] if param.startswith("source") else [f"source:={SAMPLE}"]
    proc = camera(tmp_path, param, *source)
    rc = proc.wait(DEADLINE_S)
    log = (tmp_path / "camera.log").read_text()
    assert rc == 2, log
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and words in errors[0], log
    assert "Traceback" not in log
