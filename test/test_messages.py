"""TwoHandMesh over real DDS: one rclpy node (in a child process) publishes a fully filled
message, a node in this process receives it, and every field must come back unchanged."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

msg_mod = pytest.importorskip("dir_ros.msg", reason="dir_ros messages not built (run `make setup`)")
rclpy = pytest.importorskip("rclpy")

TOPIC = "roundtrip/hands"
NUM_VERTS, NUM_FACES = 37, 11  # any sizes: the arrays are unbounded


def filled_message_code() -> str:
    """Python source that builds the reference message deterministically (shared by both ends)."""
    return textwrap.dedent(
        f"""
        import numpy as np
        from geometry_msgs.msg import Point
        from dir_ros.msg import HandMesh, TwoHandMesh

        def make_message():
            rng = np.random.default_rng(7)
            msg = TwoHandMesh()
            msg.header.stamp.sec = 1234
            msg.header.stamp.nanosec = 567_890_123
            msg.header.frame_id = "camera_color_optical_frame"
            for hand, side in ((msg.left, HandMesh.LEFT), (msg.right, HandMesh.RIGHT)):
                hand.side = side
                hand.valid = bool(side == HandMesh.RIGHT)
                hand.metric = True
                hand.confidence = float(0.25 + 0.5 * side)
                p = rng.normal(size=7)
                hand.wrist_pose.position.x, hand.wrist_pose.position.y, hand.wrist_pose.position.z = map(float, p[:3])
                q = p[3:] / np.linalg.norm(p[3:])
                o = hand.wrist_pose.orientation
                o.x, o.y, o.z, o.w = map(float, q)
                hand.joints = [Point(x=float(a), y=float(b), z=float(c)) for a, b, c in rng.normal(size=(21, 3))]
                hand.vertices = rng.normal(size={NUM_VERTS} * 3).astype(np.float32)
                hand.faces = rng.integers(0, {NUM_VERTS}, size={NUM_FACES} * 3).astype(np.uint32)
                hand.pose = rng.normal(size=48).astype(np.float32)
                hand.shape = rng.normal(size=10).astype(np.float32)
                hand.keypoints_2d = rng.uniform(0, 640, size=42).astype(np.float32)
            return msg
        """
    )


PUBLISHER = filled_message_code() + textwrap.dedent(
    f"""
    import rclpy
    from rclpy.node import Node
    rclpy.init()
    node = Node("roundtrip_publisher")
    pub = node.create_publisher(TwoHandMesh, "{TOPIC}", 10)
    msg = make_message()
    import time
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:   # until the parent kills us
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.1)
    """
)


def assert_hand_equal(got, want) -> None:
    """Field-for-field equality of two HandMesh messages (floats as float32/float64 exact)."""
    assert got.side == want.side
    assert got.valid == want.valid
    assert got.metric == want.metric
    assert got.confidence == pytest.approx(want.confidence, abs=0)
    for field in ("position",):
        g, w = getattr(got.wrist_pose, field), getattr(want.wrist_pose, field)
        assert (g.x, g.y, g.z) == (w.x, w.y, w.z)
    g, w = got.wrist_pose.orientation, want.wrist_pose.orientation
    assert (g.x, g.y, g.z, g.w) == (w.x, w.y, w.z, w.w)
    assert len(got.joints) == 21
    assert [(p.x, p.y, p.z) for p in got.joints] == [(p.x, p.y, p.z) for p in want.joints]
    for name in ("vertices", "faces", "pose", "shape", "keypoints_2d"):
        np.testing.assert_array_equal(np.asarray(getattr(got, name)), np.asarray(getattr(want, name)), err_msg=name)
    assert np.asarray(got.faces).dtype == np.uint32


def test_two_hand_mesh_roundtrip_over_dds(tmp_path) -> None:
    """A message published by another process arrives field for field."""
    namespace: dict = {}
    exec(filled_message_code(), namespace)  # the same deterministic reference message
    want = namespace["make_message"]()

    script = tmp_path / "publisher.py"
    script.write_text(PUBLISHER)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    rclpy.init()
    try:
        node = rclpy.create_node("roundtrip_subscriber")
        received = []
        node.create_subscription(msg_mod.TwoHandMesh, TOPIC, received.append, 10)
        deadline = time.monotonic() + 60.0
        while not received and time.monotonic() < deadline and proc.poll() is None:
            rclpy.spin_once(node, timeout_sec=0.2)
        assert received, f"no TwoHandMesh within 60 s; publisher said: {proc.stdout.read() if proc.poll() is not None else ''}"
        got = received[0]
        assert got.header.frame_id == want.header.frame_id
        assert (got.header.stamp.sec, got.header.stamp.nanosec) == (1234, 567_890_123)
        assert_hand_equal(got.left, want.left)
        assert_hand_equal(got.right, want.right)
        node.destroy_node()
    finally:
        rclpy.shutdown()
        proc.kill()
        proc.wait()


def test_message_constants_and_fixed_sizes() -> None:
    """The message contract: side constants, fixed array sizes and unbounded mesh arrays."""
    hand = msg_mod.HandMesh()
    assert (msg_mod.HandMesh.LEFT, msg_mod.HandMesh.RIGHT) == (0, 1)
    assert len(hand.joints) == 21
    assert np.asarray(hand.pose).shape == (48,)
    assert np.asarray(hand.shape).shape == (10,)
    assert np.asarray(hand.keypoints_2d).shape == (42,)
    assert len(hand.vertices) == 0 and len(hand.faces) == 0
