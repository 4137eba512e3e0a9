"""Keypoint frames for TF (dir_ros.robot.joint_frames): positions exactly at the keypoints,
x along the bone, the wrist frame carried along each finger without twist (z on the nail
side), equivariant under rotations of the hand and continuous from an open hand to a fist."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dir_ros.common import geometry as geo
from dir_ros.common.results import HandsResult
from dir_ros.robot import joint_frames as jf
from dir_ros.robot.synthetic import synthetic_hand

SIDES = ("left", "right")
POSITION_TOL_M = 1e-6  # issue 22: fingertip frames equal the keypoints to 1e-6 m
# Unit-vector comparisons of frames built in float64 from float32 keypoints.
AXIS_TOL = 1e-6
# Open flat hand: z of every frame within this of the back-of-hand direction (rad): the
# fingers of the flat hand model are straight and lie in the palm plane within a few degrees.
FLAT_DORSAL_TOL_RAD = np.radians(20.0)
# Open -> fist in 100 linear steps of the keypoints: no frame turns more than this per step
# (continuity: a flip would be ~pi).
STEPS, MAX_STEP_RAD = 100, 0.1


def _axes(quats: np.ndarray) -> np.ndarray:
    """(N,3,3) rotation matrices (columns x, y, z) of quaternions (N,4) xyzw."""
    return geo.quat_to_matrix(quats)


@pytest.mark.parametrize("side", SIDES)
def test_names_and_positions(side):
    hand = synthetic_hand(side, "pinch", rotation=Rotation.random(random_state=2).as_matrix(),
                          wrist=(0.1, -0.05, 0.6))
    tips = jf.keypoint_frames(hand.joints, hand.wrist_quat, side, "fingertips")
    assert tips.names == [f"{side}_{f}_tip" for f in ("thumb", "index", "middle", "ring",
                                                      "pinky")]
    assert np.max(np.abs(tips.positions - hand.joints[[4, 8, 12, 16, 20]])) <= POSITION_TOL_M
    every = jf.keypoint_frames(hand.joints, hand.wrist_quat, side, "all")
    assert len(every) == 20 and every.names[0] == f"{side}_thumb_cmc"
    assert every.names[4:8] == [f"{side}_index_{j}" for j in ("mcp", "pip", "dip", "tip")]
    assert np.max(np.abs(every.positions - hand.joints[1:])) <= POSITION_TOL_M
    assert jf.keypoint_frame_names(side, "all") == every.names
    assert len(jf.keypoint_frames(hand.joints, hand.wrist_quat, side, "none")) == 0


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("pose", ("open", "pinch", "fist"))
def test_x_along_the_bone_and_orthonormal(side, pose):
    hand = synthetic_hand(side, pose, rotation=Rotation.random(random_state=5).as_matrix())
    f = jf.keypoint_frames(hand.joints, hand.wrist_quat, side, "all")
    rot = _axes(f.quaternions)
    j = hand.joints.astype(np.float64)
    parents = [0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19]
    for k in range(1, 21):
        bone = j[k] - j[parents[k - 1]]
        assert np.allclose(rot[k - 1][:, 0], bone / np.linalg.norm(bone), atol=AXIS_TOL)
    assert np.allclose(rot @ np.transpose(rot, (0, 2, 1)), np.eye(3), atol=AXIS_TOL)
    assert np.allclose(np.linalg.det(rot), 1.0, atol=AXIS_TOL)


@pytest.mark.parametrize("side", SIDES)
def test_flat_hand_frames_face_the_back_of_the_hand(side):
    """z out of the back of the hand (model +y rotated by the root), y toward the thumb on a
    right hand (model +z), toward the little finger on a left hand."""
    root = Rotation.from_euler("zyx", [40, 10, -70], degrees=True).as_matrix()
    hand = synthetic_hand(side, "open", rotation=root)
    rot = _axes(jf.keypoint_frames(hand.joints, hand.wrist_quat, side, "all").quaternions)
    dorsal, thumb_side = root[:, 1], root[:, 2]
    fingers = [k for k in range(20) if k >= 4]  # index..pinky (the thumb leaves the plane)
    z_angle = np.arccos(np.clip(rot[fingers][:, :, 2] @ dorsal, -1, 1))
    assert z_angle.max() < FLAT_DORSAL_TOL_RAD
    lateral = rot[fingers][:, :, 1] @ thumb_side
    assert np.all(lateral > 0.9) if side == "right" else np.all(lateral < -0.9)


@pytest.mark.parametrize("side", SIDES)
def test_frames_rotate_with_the_hand(side):
    hand = synthetic_hand(side, "fist")
    base = jf.keypoint_frames(hand.joints, hand.wrist_quat, side, "all")
    j = hand.joints.astype(np.float64)
    for q in Rotation.random(4, random_state=9).as_matrix():
        moved = jf.keypoint_frames(j @ q.T + [0.2, 0.1, 0.7],
                                   geo.matrix_to_quat(q @ geo.quat_to_matrix(hand.wrist_quat)),
                                   side, "all")
        assert np.allclose(_axes(moved.quaternions), q @ _axes(base.quaternions), atol=AXIS_TOL)


@pytest.mark.parametrize("side", SIDES)
def test_frames_change_continuously_from_open_to_fist(side):
    """The hand closing from flat to the fist (every joint angle scaled from 0 to 1 in 100
    steps, same root): every frame turns by little per step (at most the fist's summed finger
    flexion, 4 rad, over 100 steps: 0.04 rad); a convention that flipped an axis would jump
    by ~pi."""
    open_ = synthetic_hand(side, "open")
    prev = None
    worst = 0.0
    for t in np.linspace(0.0, 1.0, STEPS + 1):
        hand = synthetic_hand(side, "fist", amount=t)
        rot = _axes(jf.keypoint_frames(hand.joints, hand.wrist_quat, side, "all").quaternions)
        if prev is not None:
            rel = np.transpose(prev, (0, 2, 1)) @ rot
            worst = max(worst, float(Rotation.from_matrix(rel).magnitude().max()))
        prev = rot
    assert worst < MAX_STEP_RAD
    # and the fist's fingertip frames point back toward the palm (x turned past 90 degrees)
    x_tips = rot[[7, 11, 15, 19]][:, :, 0]
    finger_dir = geo.quat_to_matrix(open_.wrist_quat) @ (
        np.array([-1.0, 0, 0]) if side == "right" else np.array([1.0, 0, 0]))
    assert np.all(x_tips @ finger_dir < 0)


def test_folded_bone_stays_finite():
    hand = synthetic_hand("right", "open")
    j = hand.joints.astype(np.float64)
    j[8] = j[7] - (j[7] - j[6])  # index tip folded straight back onto its DIP bone
    j[12] = j[11]  # zero-length bone
    f = jf.keypoint_frames(j, hand.wrist_quat, "right", "all")
    rot = _axes(f.quaternions)
    assert np.all(np.isfinite(f.quaternions))
    assert np.allclose(rot @ np.transpose(rot, (0, 2, 1)), np.eye(3), atol=AXIS_TOL)


def test_hand_helper_skips_hands_that_must_not_be_placed():
    hand = synthetic_hand("left", "open")
    assert len(jf.hand_keypoint_frames(hand, "fingertips")) == 5
    assert jf.hand_keypoint_frames(hand, "none") is None
    invalid = HandsResult.invalid("left", hand.faces, 1)
    assert jf.hand_keypoint_frames(invalid, "all") is None
    not_metric = HandsResult(**{**hand.__dict__, "metric": False, "placement": 0})
    assert jf.hand_keypoint_frames(not_metric, "all") is None
    with pytest.raises(ValueError, match="publish_joint_tf"):
        jf.hand_keypoint_frames(hand, "tips")
    with pytest.raises(ValueError, match="finite"):
        bad = hand.joints.copy()
        bad[2] = np.inf
        jf.keypoint_frames(bad, hand.wrist_quat, "left", "all")
