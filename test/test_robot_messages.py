"""The node's robot messages (dir_ros.ros.robot_outputs, dir_ros.ros.messages' extra TF
frames) without DDS: the fast TFMessage with keypoint frames reads back as the rclpy one,
tip frames sit on the keypoints TwoHandMesh carries, grasp messages follow the valid flags,
JointState names / positions as given, reset releases the pinch."""
from __future__ import annotations

import numpy as np
import pytest

try:
    import tf2_msgs.msg as tf2_msgs
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import Header

    from dir_ros.msg import HandGrasp, TwoHandMesh
    from dir_ros.ros.messages import FastMessages, tf_message_cdr, two_hand_mesh_cdr, \
        wrist_transforms
    from dir_ros.ros.robot_outputs import RobotOutputs, grasp_message, joint_state
except ImportError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"ROS messages not importable: {e}", allow_module_level=True)

from dir_ros.common import geometry as geo
from dir_ros.common.results import FrameResult, HandsResult
from dir_ros.robot.grasp import GraspState
from dir_ros.robot.synthetic import synthetic_hand

TIPS = {"thumb": 4, "index": 8, "middle": 12, "ring": 16, "pinky": 20}


def _frame(left_pose: str = "open", right_valid: bool = True) -> tuple[FrameResult, Header]:
    """Both synthetic hands (the left in `left_pose`), the right one invalid if asked."""
    left = synthetic_hand("left", left_pose, wrist=(-0.1, 0.0, 0.5))
    right = synthetic_hand("right", "fist", wrist=(0.1, 0.0, 0.5))
    if not right_valid:
        right = HandsResult.invalid("right", right.faces, len(right.vertices))
    header = Header(frame_id="cam_optical")
    header.stamp.sec, header.stamp.nanosec = 42, 7
    return FrameResult(left, right, geo.full_frame_box(640, 480)), header


def test_fast_tf_with_keypoint_frames_matches_rclpy() -> None:
    """Wrists + fingertip frames: the CDR bytes read back as the rclpy path's TFMessage; with
    wrists off only the keypoint frames; no frame at all -> None."""
    result, header = _frame()
    frames = RobotOutputs("fingertips").tf_frames(result, "p/")
    assert len(frames) == 10
    assert FastMessages(tf2_msgs.TFMessage).tf_enabled
    for wrists in (True, False):
        fast = deserialize_message(tf_message_cdr(result, header, "p/", wrists, frames),
                                   tf2_msgs.TFMessage)
        slow = tf2_msgs.TFMessage(transforms=wrist_transforms(result, header, "p/", wrists,
                                                              frames))
        assert fast == deserialize_message(serialize_message(slow), tf2_msgs.TFMessage)
        names = [t.child_frame_id for t in fast.transforms]
        wrist_names = [n for n in names if n.endswith("_wrist")]
        assert wrist_names == (["p/left_wrist", "p/right_wrist"] if wrists else [])
        assert len(names) == 10 + len(wrist_names)
    assert tf_message_cdr(result, header, "p/", False, []) is None


def test_tip_frames_equal_the_published_keypoints() -> None:
    """Each tip frame's translation is the keypoint TwoHandMesh publishes (1e-6 m), the
    stamp the image's; only valid metric hands get frames; 'all' gives 20 per hand."""
    result, header = _frame(right_valid=False)
    mesh = deserialize_message(two_hand_mesh_cdr(result, header), TwoHandMesh)
    tf = deserialize_message(tf_message_cdr(
        result, header, "", True, RobotOutputs("fingertips").tf_frames(result, "")),
        tf2_msgs.TFMessage)
    by_name = {t.child_frame_id: t for t in tf.transforms}
    assert set(by_name) == {"left_wrist"} | {f"left_{f}_tip" for f in TIPS}
    for finger, k in TIPS.items():
        t = by_name[f"left_{finger}_tip"]
        assert (t.header.stamp.sec, t.header.stamp.nanosec) == (42, 7)
        p, j = t.transform.translation, mesh.left.joints[k]
        assert np.abs(np.array([p.x - j.x, p.y - j.y, p.z - j.z])).max() < 1e-6
    assert len(RobotOutputs("all").tf_frames(result, "")) == 20
    result.left.metric = False  # wrist-relative geometry: never in TF
    assert RobotOutputs("all").tf_frames(result, "") == []
    assert RobotOutputs("none").tf_frames(_frame()[0], "") == []


def test_grasp_message_follows_the_hands() -> None:
    """Valid hands carry their measures, an invalid one the documented zeros; a synthetic
    pinch sets the flag and reset() releases it."""
    robot = RobotOutputs("none")
    result, header = _frame("pinch", right_valid=False)
    msg = robot.grasp_message(result, header)
    assert msg.header == header
    assert (msg.left.side, msg.right.side) == (HandGrasp.LEFT, HandGrasp.RIGHT)
    assert msg.left.valid and msg.left.pinch  # synthetic pinch: 11.7 mm thumb-index
    j = result.left.joints.astype(np.float64)
    assert abs(msg.left.thumb_index_distance - np.linalg.norm(j[4] - j[8])) < 1e-6
    assert not msg.right.valid and not msg.right.pinch
    assert (msg.right.thumb_index_distance, msg.right.thumb_middle_distance,
            msg.right.aperture) == (0.0, 0.0, 0.0)
    robot.reset()
    result.left = synthetic_hand("left", "open")
    assert not robot.grasp_message(result, header).left.pinch
    # a state with NaN (never valid) reads invalid
    nan_state = GraspState("left", True, float("nan"), 0.01, 0.05, True)
    assert not grasp_message({"left": nan_state}, header).left.valid
    assert RobotOutputs("none", grasp=False).grasp_message(result, header) is None


def test_joint_state_names_and_positions() -> None:
    """Names and positions as given, the image's header; a length mismatch is refused."""
    header = Header(frame_id="cam")
    js = joint_state(["a", "b"], np.array([0.5, -0.25]), header)
    assert list(js.name) == ["a", "b"] and list(js.position) == [0.5, -0.25]
    assert js.header == header and not js.velocity and not js.effort
    with pytest.raises(ValueError, match="2 joint names for 3 positions"):
        joint_state(["a", "b"], np.zeros(3), header)
    assert RobotOutputs("none").joint_commands(_frame()[0], header) == {}
    with pytest.raises(ValueError, match="publish_joint_tf"):
        RobotOutputs("tips")
