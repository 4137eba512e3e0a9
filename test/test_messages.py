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


# ---- the node's fast path: messages written from the result arrays (CDR) --------------------

MANO_VERTS, MANO_FACES = 778, 1538  # the sizes of the real hands
F32 = dict(rtol=1e-6, atol=1e-7)  # float32 rounding of values of order 1


def _frame_result():
    """A frame with a valid metric left hand (depth placement) and a right hand that the
    network found but scored below min_confidence: invalid, with non-zero arrays that the
    message must zero."""
    from dir_ros.common.geometry import full_frame_box
    from dir_ros.common.results import PLACEMENT_DEPTH, FrameResult, HandsResult

    rng = np.random.default_rng(3)

    def hand(side: str, valid: bool) -> HandsResult:
        q = rng.normal(size=4)
        return HandsResult(
            side=side, valid=valid, confidence=float(rng.uniform(0.2, 1.0)),
            vertices=rng.normal(0.0, 0.1, (MANO_VERTS, 3)).astype(np.float32),
            joints=rng.normal(0.0, 0.1, (21, 3)).astype(np.float32),
            wrist_position=rng.normal(0.0, 0.5, 3), wrist_quat=q / np.linalg.norm(q),
            metric=True, pose=rng.normal(size=48).astype(np.float32),
            shape=rng.normal(size=10).astype(np.float32),
            keypoints_2d=rng.uniform(0, 640, (21, 2)).astype(np.float32),
            faces=rng.integers(0, MANO_VERTS, (MANO_FACES, 3)), placement=PLACEMENT_DEPTH)

    return FrameResult(hand("left", True), hand("right", False), full_frame_box(640, 480))


def _header():
    from std_msgs.msg import Header

    header = Header(frame_id="camera_color_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 1_700_000_000, 123_456_789
    return header


def _expect_hand(got, hand, side_code: int) -> None:
    """A HandMesh against values taken from the HandsResult here (HandMesh.msg's contract:
    an invalid hand keeps side, confidence and faces; the rest zero, identity orientation)."""
    v = hand.valid
    assert got.side == side_code and got.valid is v
    np.testing.assert_allclose(got.confidence, hand.confidence, **F32)
    p, o = got.wrist_pose.position, got.wrist_pose.orientation
    np.testing.assert_allclose([p.x, p.y, p.z], hand.wrist_position if v else np.zeros(3), **F32)
    np.testing.assert_allclose([o.x, o.y, o.z, o.w], hand.wrist_quat if v else [0, 0, 0, 1], **F32)
    assert got.metric is (hand.metric and v)
    assert got.placement == (hand.placement if v else 0)
    assert len(got.joints) == 21
    np.testing.assert_allclose([[j.x, j.y, j.z] for j in got.joints],
                               hand.joints if v else np.zeros((21, 3)), **F32)
    for name, want in (("vertices", hand.vertices), ("pose", hand.pose), ("shape", hand.shape),
                       ("keypoints_2d", hand.keypoints_2d)):
        arr = np.asarray(getattr(got, name))
        assert arr.dtype == np.float32 and arr.size == want.size, name
        np.testing.assert_allclose(arr, want.reshape(-1) if v else 0.0, **F32, err_msg=name)
    faces = np.asarray(got.faces)
    assert faces.dtype == np.uint32
    np.testing.assert_array_equal(faces, hand.faces.reshape(-1))


def test_fast_two_hand_mesh_has_the_result_values() -> None:
    """The TwoHandMesh the node publishes (CDR written from the arrays), read back by rclpy,
    holds the result's values field by field, and equals the message the rclpy path builds
    from the same result exactly."""
    from rclpy.serialization import deserialize_message, serialize_message

    from dir_ros.ros.messages import FastMessages, to_two_hand_mesh, two_hand_mesh_cdr

    assert FastMessages().mesh_enabled  # the node uses the fast path on this distro
    result, header = _frame_result(), _header()
    data = two_hand_mesh_cdr(result, header)
    assert isinstance(data, bytes)
    got = deserialize_message(data, msg_mod.TwoHandMesh)
    assert got.header.frame_id == header.frame_id
    assert (got.header.stamp.sec, got.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    _expect_hand(got.left, result.left, msg_mod.HandMesh.LEFT)
    _expect_hand(got.right, result.right, msg_mod.HandMesh.RIGHT)
    # the rclpy path (what the node published before): the same content, exactly
    old = serialize_message(to_two_hand_mesh(result, header))
    assert len(old) == len(data) and got == deserialize_message(old, msg_mod.TwoHandMesh)


def test_fast_tf_has_the_wrist_poses() -> None:
    """The TFMessage written from the arrays: one transform per valid hand, child
    `<prefix><side>_wrist` under the image frame; none when no hand is valid."""
    tf2_msgs = pytest.importorskip("tf2_msgs.msg")
    from rclpy.serialization import deserialize_message, serialize_message

    from dir_ros.ros.messages import FastMessages, tf_message_cdr, wrist_transforms

    assert FastMessages(tf2_msgs.TFMessage).tf_enabled
    result, header = _frame_result(), _header()
    got = deserialize_message(tf_message_cdr(result, header, "robot1/"), tf2_msgs.TFMessage)
    assert [t.child_frame_id for t in got.transforms] == ["robot1/left_wrist"]
    t = got.transforms[0]
    assert t.header.frame_id == header.frame_id and t.header.stamp == header.stamp
    tr, rot = t.transform.translation, t.transform.rotation
    np.testing.assert_allclose([tr.x, tr.y, tr.z], result.left.wrist_position, **F32)
    np.testing.assert_allclose([rot.x, rot.y, rot.z, rot.w], result.left.wrist_quat, **F32)
    old = serialize_message(tf2_msgs.TFMessage(transforms=wrist_transforms(result, header,
                                                                            "robot1/")))
    assert got == deserialize_message(old, tf2_msgs.TFMessage)
    result.left.valid = False
    assert tf_message_cdr(result, header, "") is None


def test_fast_mesh_marker_points_are_the_triangles() -> None:
    """The mesh marker (CDR from the arrays) lists each face's three vertices in order."""
    from rclpy.serialization import deserialize_message
    from visualization_msgs.msg import Marker, MarkerArray

    from dir_ros.ros.markers import FastMarkerSerializer

    result, header = _frame_result(), _header()
    got = deserialize_message(FastMarkerSerializer()(result, header), MarkerArray)
    by_ns = {m.ns: m for m in got.markers}
    mesh = by_ns["left/mesh"]
    assert mesh.type == Marker.TRIANGLE_LIST and mesh.action == Marker.ADD
    want = result.left.vertices[result.left.faces.reshape(-1)]
    np.testing.assert_allclose([[p.x, p.y, p.z] for p in mesh.points], want, **F32)
    assert [by_ns[f"right/{k}"].action for k in ("mesh", "joints", "bones")] == [Marker.DELETE] * 3
