"""The node's robot outputs over real DDS (issue 22): with `retarget: allegro` and
`publish_joint_tf: fingertips`, on the sample photos (landmark backend), each valid hand gets
a JointState (the URDF's actuated joints in URDF order, finite, within the URDF's limits,
stamped like the image), the fingertip frames in /tf equal the published keypoints, and
hands/grasp says which hands are valid; a retargeting config or URDF folder that cannot be
used stops the node at startup in one line naming the file."""
from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest

try:
    import rclpy  # noqa: F401
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState

    from dir_ros.msg import HandGrasp, TwoHandGrasp
except ImportError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"ROS messages not importable: {e}", allow_module_level=True)

from test_node import (EXIT_DEADLINE_S, FRAME, PREFIX, NodeProcess, Probe,  # the node harness
                       _env, _node_cmd)

from dir_ros.cli.infer import letterbox
from dir_ros.common.geometry import pinhole_K

cv2 = pytest.importorskip("cv2")
pytest.importorskip("mediapipe")
pytest.importorskip("dex_retargeting")

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = sorted((ROOT / "samples").glob("*.jpg"))
URDF = {side: ROOT / "config" / "robot_hands" / "allegro_hand" / f"allegro_hand_{side}.urdf"
        for side in ("left", "right")}
WIDTH, HEIGHT = 640, 480  # a VGA camera frame
HFOV_DEG = 60.0
# Node start (MediaPipe graphs, hand model, two dex-retargeting optimisers) + DDS, 2 busy cores.
FIRST_ANSWER_S = 90.0
ANSWER_S = 30.0  # each later photo
REPUBLISH_S = 5.0  # a frame sent before the node subscribed is lost: send it again
TIP_KEYPOINTS = {"thumb": 4, "index": 8, "middle": 12, "ring": 16, "pinky": 20}
# TF and the keypoints are written from the same float64 values: equal to rounding.
TIP_TOL_M = 1e-6
# Grasp distances travel as float32: a 0.1 m distance rounds by < 1e-8 m.
GRASP_TOL_M = 1e-6
LIMIT_TOL_RAD = 1e-9  # commands are clipped to the limits (float64 end to end)


def _urdf_joints(path: Path) -> list[tuple[str, float, float]]:
    """(name, lower, upper) of the URDF's revolute / prismatic joints in document order,
    read here independently of dir_ros.robot."""
    out = []
    for joint in ET.parse(path).getroot().iter("joint"):
        if joint.get("type") in ("revolute", "prismatic"):
            lim = joint.find("limit")
            out.append((joint.get("name"), float(lim.get("lower")), float(lim.get("upper"))))
    return out


def _frame(path: Path) -> np.ndarray:
    """A sample photo letterboxed into a 640x480 RGB frame."""
    return cv2.cvtColor(letterbox(cv2.imread(str(path), cv2.IMREAD_COLOR), WIDTH, HEIGHT),
                        cv2.COLOR_BGR2RGB)


def _stamp(msg: Any) -> tuple[int, int]:
    return (msg.header.stamp.sec, msg.header.stamp.nanosec)


def _keypoints(hand: Any) -> np.ndarray:
    return np.array([[p.x, p.y, p.z] for p in hand.joints])


@pytest.mark.skipif(not PHOTOS, reason="no samples/*.jpg")
def test_robot_outputs_on_the_sample_photos(ctx: Any, tmp_path: Path) -> None:
    """Each sample photo: JointState per valid hand, tip frames = keypoints, grasp flags."""
    node = NodeProcess(tmp_path, f"frame_prefix:={PREFIX}", "retarget:=allegro",
                       "publish_joint_tf:=fingertips")
    probe = Probe(ctx, ReliabilityPolicy.RELIABLE)
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    grasp: list[TwoHandGrasp] = []
    joints: dict[str, list[JointState]] = {"left": [], "right": []}
    probe.node.create_subscription(TwoHandGrasp, "hands/grasp", grasp.append, qos)
    for side in joints:
        probe.node.create_subscription(JointState, f"hands/{side}/joint_commands",
                                       joints[side].append, qos)
    k = pinhole_K(WIDTH, HEIGHT, HFOV_DEG).reshape(-1)
    urdf = {side: _urdf_joints(path) for side, path in URDF.items()}
    driven = {"left": 0, "right": 0}
    try:
        for n, photo in enumerate(PHOTOS):
            rgb = _frame(photo)
            current: dict[str, Any] = {}

            def publish() -> None:
                stamp = probe.publish_frame(rgb, k)
                current["stamps"] = current.get("stamps", set()) | {stamp}

            def answered() -> bool:
                # grasp comes after the mesh and TF, joint commands after grasp
                # (a frame that reached the node before its first camera_info is not metric)
                meshes = [m for m in probe.hands if _stamp(m) in current.get("stamps", ())
                          and all(h.metric for h in (m.left, m.right) if h.valid)]
                if not meshes:
                    return False
                mesh = meshes[0]
                stamp = _stamp(mesh)
                if not any(_stamp(g) == stamp for g in grasp):
                    return False
                current["mesh"] = mesh
                return all(any(_stamp(j) == stamp for j in joints[side])
                           for side, hand in (("left", mesh.left), ("right", mesh.right))
                           if hand.valid)

            deadline = FIRST_ANSWER_S if n == 0 else ANSWER_S
            assert probe.spin_until(answered, deadline, every=publish, period_s=REPUBLISH_S), (
                f"{photo.name}: no complete answer (hands {len(probe.hands)}, grasp "
                f"{len(grasp)}, joints {[len(v) for v in joints.values()]}):\n"
                f"{node.output()[-3000:]}")
            probe.executor.spin_once(timeout_sec=0.2)  # the TF of the frame, if behind
            mesh = current["mesh"]
            stamp = _stamp(mesh)
            assert mesh.header.frame_id == FRAME
            (g,) = [m for m in grasp if _stamp(m) == stamp]
            assert g.header.frame_id == FRAME
            tf = {t.child_frame_id: t for m in probe.tf for t in m.transforms
                  if _stamp(t) == stamp}
            for side, hand, gh, side_id in (("left", mesh.left, g.left, HandGrasp.LEFT),
                                            ("right", mesh.right, g.right, HandGrasp.RIGHT)):
                # grasp: the hand's valid flag, and its distances from its keypoints
                assert gh.side == side_id and gh.valid == hand.valid, (photo.name, side)
                tips = {name: f"{PREFIX}{side}_{name}_tip" for name in TIP_KEYPOINTS}
                mine = [j for j in joints[side] if _stamp(j) == stamp]
                if not hand.valid:
                    assert (gh.thumb_index_distance, gh.aperture, gh.pinch) == (0.0, 0.0, False)
                    assert not mine and not set(tips.values()) & set(tf)
                    continue
                kp = _keypoints(hand)
                assert abs(gh.thumb_index_distance - np.linalg.norm(kp[4] - kp[8])) < GRASP_TOL_M
                assert abs(gh.thumb_middle_distance
                           - np.linalg.norm(kp[4] - kp[12])) < GRASP_TOL_M
                assert 0.01 < gh.aperture < 0.2  # a human hand, metres
                # joint commands: the URDF's actuated joints in URDF order, within limits
                (js,) = mine
                assert js.header.frame_id == FRAME
                assert list(js.name) == [name for name, _, _ in urdf[side]]
                q = np.asarray(js.position)
                lower = np.array([lo for _, lo, _ in urdf[side]])
                upper = np.array([hi for _, _, hi in urdf[side]])
                assert q.shape == lower.shape and np.all(np.isfinite(q)), (photo.name, side, q)
                assert np.all(q >= lower - LIMIT_TOL_RAD) and np.all(q <= upper + LIMIT_TOL_RAD)
                driven[side] += 1
                # fingertip frames: at the published keypoints, same stamp, image frame
                assert hand.metric
                assert f"{PREFIX}{side}_wrist" in tf
                for name, child in tips.items():
                    assert child in tf, (photo.name, sorted(tf))
                    t = tf[child]
                    assert t.header.frame_id == FRAME
                    p = t.transform.translation
                    assert np.abs(np.array([p.x, p.y, p.z])
                                  - kp[TIP_KEYPOINTS[name]]).max() < TIP_TOL_M
                    r = t.transform.rotation
                    assert abs(np.linalg.norm([r.x, r.y, r.z, r.w]) - 1.0) < 1e-9
                # fingertips mode: no other keypoint frames
                assert not any(c.startswith(f"{PREFIX}{side}_") and not c.endswith(("_tip",
                               "_wrist")) for c in tf)
        assert driven["left"] and driven["right"], driven  # both robot hands were driven
        # /diagnostics times the new stages and names the robot
        def status() -> dict[str, str]:
            found = [s for a in probe.diagnostics for s in a.status
                     if s.name.startswith("hands_node")]
            return {kv.key: kv.value for kv in found[-1].values} if found else {}

        assert probe.spin_until(lambda: "stage_retarget_ms" in status(), 10.0), status()
        values = status()
        assert values["retarget"] == "allegro"
        for stage in ("retarget", "grasp", "tf"):
            fields = dict(part.split("=") for part in values[f"stage_{stage}_ms"].split())
            assert float(fields["median"]) > 0.0 and int(fields["n"]) >= 1, (stage, fields)
        assert node.proc.poll() is None
    finally:
        probe.close()
        rc = node.stop()
    assert rc == 0, node.output()[-3000:]


def _refusal(tmp_path: Path, *params: str) -> str:
    """Start the node with `params`; it must exit non-zero: its one [hands_node] line."""
    args = [a for p in params for a in ("-p", p)]
    res = subprocess.run(_node_cmd(*args), env=_env(), capture_output=True, text=True,
                         timeout=EXIT_DEADLINE_S * 2, cwd=str(tmp_path))
    assert res.returncode != 0, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    ours = [ln for ln in res.stderr.splitlines() if ln.startswith("[hands_node]")]
    assert len(ours) == 1, res.stderr
    return ours[0]


def test_missing_urdf_folder_refused(tmp_path: Path) -> None:
    """retarget_urdf_dir that does not exist: one line naming the folder."""
    missing = tmp_path / "no_urdfs"
    line = _refusal(tmp_path, "retarget:=allegro", f"retarget_urdf_dir:={missing}")
    assert "retarget" in line and str(missing) in line, line


def test_bad_retarget_yaml_refused(tmp_path: Path) -> None:
    """A retarget YAML path that does not exist, or one that is not dex-retargeting YAML:
    one line naming the file (with '{side}' replaced)."""
    line = _refusal(tmp_path, f"retarget:={tmp_path}/missing_{{side}}.yml")
    assert "not found" in line and f"{tmp_path}/missing_left.yml" in line, line
    bad = tmp_path / "broken.yml"
    bad.write_text("retargeting: [unclosed\n")
    line = _refusal(tmp_path, f"retarget:={bad}")
    assert str(bad) in line and "cannot be read" in line, line


def test_scale_hold_and_hand_contact_reach_the_predictor(ctx: Any) -> None:
    """The landmark backend's two switches are node parameters passed to the predictor
    (defaults: predictor.DEFAULT_CONFIG's); read-only."""
    from rclpy.parameter import Parameter

    from dir_ros import config as P
    from dir_ros.ros.node import HandsNode
    from dir_ros.ros.parameters import SPECS

    class _Stub:  # what the node needs of a predictor until a frame arrives
        device, precision = "cpu", "fp32"

        def predict(self, *args: Any) -> None:  # pragma: no cover - no frame is sent
            raise AssertionError("no frame expected")

    for key in ("scale_hold", "hand_contact", "finger_step"):
        assert SPECS[key].default == P.DEFAULT_CONFIG[key] and SPECS[key].read_only
    seen: list[dict] = []

    def factory(config: dict) -> _Stub:
        seen.append(dict(config))
        return _Stub()

    for values in ((False, True), (True, False)):
        node = HandsNode(factory, context=ctx, namespace="robot_switches", parameter_overrides=[
            Parameter("backend", value="landmarks"), Parameter("scale_hold", value=values[0]),
            Parameter("hand_contact", value=values[1])])
        try:
            assert (seen[-1]["scale_hold"], seen[-1]["hand_contact"]) == values
            assert not node.set_parameters([Parameter("scale_hold", value=True)])[0].successful
        finally:
            node.destroy_node()
