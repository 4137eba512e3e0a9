"""The installed node with its default parameters (backend auto -> the landmark backend) on a
real photo of two hands: a TwoHandMesh with at least one valid, metric hand and its wrist TF."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

try:
    import rclpy  # noqa: F401
    from rclpy.qos import ReliabilityPolicy
except ImportError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"rclpy not importable: {e}", allow_module_level=True)

from test_node import FRAME, PREFIX, NodeProcess, Probe  # the node harness of test_node.py

from dir_ros.cli.infer import letterbox
from dir_ros.common.geometry import pinhole_K

cv2 = pytest.importorskip("cv2")
pytest.importorskip("mediapipe")

PHOTO = Path(__file__).resolve().parents[2] / "shared" / "images" / "interwild_demo2_input.jpg"
WIDTH, HEIGHT = 640, 480  # a VGA camera frame
HFOV_DEG = 60.0
ANSWER_DEADLINE_S = 90.0  # node start (MediaPipe graphs, hand model) + DDS on 2 busy cores


def _camera_frame() -> np.ndarray:
    """The photo letterboxed into a 640x480 RGB frame."""
    return cv2.cvtColor(letterbox(cv2.imread(str(PHOTO), cv2.IMREAD_COLOR), WIDTH, HEIGHT),
                        cv2.COLOR_BGR2RGB)


@pytest.mark.skipif(not PHOTO.is_file(), reason=f"{PHOTO} not present")
def test_default_node_on_a_real_photo(ctx: Any, tmp_path: Path) -> None:
    """Default parameters, a photo of two interlocked hands with CameraInfo: at least one
    valid metric hand at a plausible depth, and its wrist on /tf."""
    node = NodeProcess(tmp_path, f"frame_prefix:={PREFIX}")
    probe = Probe(ctx, ReliabilityPolicy.RELIABLE)
    rgb = _camera_frame()
    k = pinhole_K(WIDTH, HEIGHT, HFOV_DEG).reshape(-1)
    try:
        def publish() -> None:
            probe.publish_frame(rgb, k)

        def answered() -> bool:
            return any(h.valid and h.metric for m in probe.mine(probe.hands)
                       for h in (m.left, m.right)) and bool(probe.tf)

        ok = probe.spin_until(answered, ANSWER_DEADLINE_S, every=publish, period_s=2.0)
        assert ok, f"no valid metric hand / TF (hands {len(probe.hands)}):\n{node.output()[-3000:]}"
        msg = [m for m in probe.mine(probe.hands)
               if any(h.valid and h.metric for h in (m.left, m.right))][-1]
        assert msg.header.frame_id == FRAME
        children = {t.child_frame_id: t for m in probe.tf for t in m.transforms}
        for hand, side in ((msg.left, "left"), (msg.right, "right")):
            if not (hand.valid and hand.metric):
                continue
            p = hand.wrist_pose.position
            assert 0.05 < p.z < 3.0 and np.isfinite([p.x, p.y]).all()
            assert len(hand.vertices) == 3 * 778 and len(hand.joints) == 21
            kp = np.asarray(hand.keypoints_2d).reshape(21, 2)
            assert np.all((kp >= 0) & (kp <= [WIDTH, HEIGHT]))  # on the image
            assert f"{PREFIX}{side}_wrist" in children
            assert children[f"{PREFIX}{side}_wrist"].header.frame_id == FRAME
        assert node.proc.poll() is None
    finally:
        probe.close()
        rc = node.stop()
    assert rc == 0, node.output()[-3000:]
