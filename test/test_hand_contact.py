"""Two hands placed together: penetration test, region test and the coupling step
(hand_contact), alone and inside the landmark backend."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dir_ros.common import geometry as geo
from dir_ros.backends.landmarks.contact import (FINGER_BASE_JOINT, HandContact, contact_report,
                                  finger_weights, penetration, regions_meet, separate_pair,
                                  vertex_normals)
from dir_ros.hand_model import MANO_TO_KEYPOINT
from dir_ros.common.results import HandsResult
from dir_ros.hand_model import build_hand_layers
from dir_ros.backends.landmarks.predictor import LandmarkPredictor
from test_landmark_backend import FakeDetector, _detection

K = geo.pinhole_K(640, 480)
IMAGE = np.zeros((480, 640, 3), np.uint8)
LAYERS = build_hand_layers()
DEPTH = 0.5  # m
PALMS_TO_CAMERA = Rotation.from_euler("x", 90, degrees=True).as_matrix()
OVERLAP_M = 0.01  # "placed 1 cm into each other"


def _hand(side: str, wrist: np.ndarray, rot: np.ndarray = PALMS_TO_CAMERA
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joints (21,3), vertices (V,3) m and faces of the mean-pose hand of a side, its wrist at
    wrist, root orientation rot."""
    rot6d = torch.tensor(rot[:, :2].T.reshape(1, 6), dtype=torch.float32)
    with torch.no_grad():
        out = LAYERS[side](rot6d, torch.zeros(1, 45), torch.zeros(1, 10))
    joints = out.joints[0].numpy().astype(np.float64)
    verts = out.vertices[0].numpy().astype(np.float64)
    return (joints - joints[0] + wrist, verts - joints[0] + wrist,
            LAYERS[side].faces.numpy().astype(np.int64))


def _overlapping_pair() -> tuple[tuple, tuple, float]:
    """A left hand and a right hand behind it, both palms to the camera and overlapping in the
    image, the right one moved OVERLAP_M past first touch toward the left (1 cm into it);
    returns both hands and the touching depth offset (m)."""
    left = _hand("left", np.array([-0.08, 0.0, DEPTH]))
    right0 = _hand("right", np.array([0.08, 0.0, DEPTH]))
    touch = next(dz for dz in np.arange(0.0, 0.1, 0.001)
                 if contact_report(left[1], left[2], right0[1] + [0, 0, dz],
                                   right0[2]).max_penetration_m == 0.0)
    shift = np.array([0.0, 0.0, touch - OVERLAP_M])
    right = (right0[0] + shift, right0[1] + shift, right0[2])
    return left, right, touch


def test_vertex_normals_point_outward_and_penetration_finds_inside_points() -> None:
    """On a closed mesh (the hand at the origin is not closed; a cube is): normals point away
    from the centre; points inside have the depth to the surface, points outside 0."""
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    hull_faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                           [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    normals = vertex_normals(corners, hull_faces)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0)
    assert np.all(np.einsum("ij,ij->i", normals, corners) > 0)  # outward
    scale = 0.01  # a 2 cm cube: inside points within MAX_INSIDE_M of its corners
    depth, dist = penetration(np.array([[0.5, 0.5, 0.5], [1.5, 1.5, 1.5]]) * scale,
                              corners * scale, normals)
    assert depth[0] > 0 and depth[1] == 0.0
    assert dist[1] == pytest.approx(np.sqrt(3 * 0.25) * scale)


def test_regions_meet() -> None:
    """Landmark boxes that overlap (or nearly: within the margin) meet; far apart ones don't."""
    a = np.array([[0.0, 0.0], [100.0, 100.0]])
    assert regions_meet(a, a + 50)
    assert regions_meet(a, a + [105.0, 0.0])  # 5 px apart, margin ~14 px
    assert not regions_meet(a, a + [200.0, 0.0])


def test_coupling_separates_hands_one_cm_into_each_other() -> None:
    """Two hands 1 cm into each other: penetration before > 3 mm, after <= 3 mm, still in
    contact (smallest vertex distance < 1 cm), each moved along the ray by about the overlap
    only (< 2 cm)."""
    left, right, _ = _overlapping_pair()
    before = contact_report(left[1], left[2], right[1], right[2])
    assert before.max_penetration_m > 3e-3
    px = {s: geo.project_points(h[0], K) for s, h in (("left", left), ("right", right))}
    d_left, d_right = HandContact().offsets(left[1], left[2], px["left"], left[0][0],
                                            right[1], right[2], px["right"], right[0][0])
    after = contact_report(left[1] + d_left, left[2], right[1] + d_right, right[2])
    assert after.max_penetration_m <= 3e-3
    assert after.min_distance_m < 0.01
    assert np.linalg.norm(d_left) < 0.02 and np.linalg.norm(d_right) < 0.02
    assert d_right[2] - d_left[2] > 0.5 * OVERLAP_M  # the right one (behind) went back


def test_coupling_leaves_separate_hands_alone_and_pulls_close_ones_into_contact() -> None:
    """Hands whose image regions do not meet: no offsets. Hands that meet in the image but are
    2 cm apart in depth are brought into contact (the contact prior), not into each other."""
    left = _hand("left", np.array([-0.25, 0.0, DEPTH]))
    right = _hand("right", np.array([0.25, 0.0, DEPTH]))
    px = {s: geo.project_points(h[0], K) for s, h in (("left", left), ("right", right))}
    assert HandContact().offsets(left[1], left[2], px["left"], left[0][0], right[1], right[2],
                                 px["right"], right[0][0]) is None
    left, right, touch = _overlapping_pair()
    gap = np.array([0.0, 0.0, OVERLAP_M + 0.02])  # 2 cm behind first touch
    right = (right[0] + gap, right[1] + gap, right[2])
    assert contact_report(left[1], left[2], right[1], right[2]).min_distance_m > 0.01
    px = {s: geo.project_points(h[0], K) for s, h in (("left", left), ("right", right))}
    contact = HandContact()
    d_left, d_right = contact.offsets(left[1], left[2], px["left"], left[0][0], right[1],
                                      right[2], px["right"], right[0][0])
    after = contact_report(left[1] + d_left, left[2], right[1] + d_right, right[2])
    assert after.min_distance_m < 0.008 and after.max_penetration_m <= 3e-3
    # without the contact prior the hands stay where they are (nothing to push apart)
    d_left, d_right = HandContact(contact=False).offsets(
        left[1], left[2], px["left"], left[0][0], right[1], right[2], px["right"], right[0][0])
    assert np.allclose(d_left, 0.0, atol=1e-3) and np.allclose(d_right, 0.0, atol=1e-3)
    with pytest.raises(ValueError, match="depth_sigma_ratio"):
        HandContact(depth_sigma_ratio=0.0)


def _predict_pair(left: tuple, right: tuple, hand_contact: bool):
    """The landmark backend's FrameResult for detections of two true hands."""
    dets = {"left": _detection("left", left[0], K), "right": _detection("right", right[0], K)}
    pred = LandmarkPredictor(FakeDetector(dets), LAYERS, 0.5, (0.05, 10.0),
                             hand_contact=hand_contact)
    return pred, pred.predict(IMAGE, K)


def test_backend_joint_fit_separates_interpenetrating_hands() -> None:
    """Through the landmark backend: two detected hands 1 cm into each other come out with at
    most 3 mm penetration and in contact with the coupling, over 3 mm without it; the
    coupling's cost is reported (contact_ms)."""
    left, right, _ = _overlapping_pair()
    _, alone = _predict_pair(left, right, hand_contact=False)
    rep_alone = contact_report(alone.left.vertices, alone.left.faces, alone.right.vertices,
                               alone.right.faces)
    assert rep_alone.max_penetration_m > 3e-3
    _, joint = _predict_pair(left, right, hand_contact=True)
    rep = contact_report(joint.left.vertices, joint.left.faces, joint.right.vertices,
                         joint.right.faces)
    assert rep.max_penetration_m <= 3e-3 and rep.min_distance_m < 0.01
    assert joint.timings["contact_ms"] > 0.0
    # moved rigidly: same shape, same wrist-relative joints as the hands fitted alone
    for side in ("left", "right"):
        a, b = alone.hand(side), joint.hand(side)
        assert np.allclose(b.joints - b.joints[0], a.joints - a.joints[0], atol=1e-6)
        assert np.allclose(b.wrist_position, b.joints[0], atol=1e-6)


def test_backend_leaves_separate_hands_unchanged() -> None:
    """Two hands apart in the image: the same result with and without the coupling (which
    does not run: no contact_ms)."""
    left = _hand("left", np.array([-0.25, 0.0, DEPTH]))
    right = _hand("right", np.array([0.25, 0.0, DEPTH]))
    _, alone = _predict_pair(left, right, hand_contact=False)
    _, joint = _predict_pair(left, right, hand_contact=True)
    assert "contact_ms" not in joint.timings
    for side in ("left", "right"):
        assert np.array_equal(alone.hand(side).vertices, joint.hand(side).vertices)
        assert np.array_equal(alone.hand(side).wrist_position, joint.hand(side).wrist_position)


WEIGHTS = {s: LAYERS[s].th_weights.numpy().astype(np.float64) for s in ("left", "right")}
FINGERS_INTO_M = 0.008  # the interlock of the finger-step tests: 8 mm past first touch


def _interlocked_pair() -> tuple[tuple, tuple]:
    """The pair of _overlapping_pair with the right hand FINGERS_INTO_M past first touch: the
    two thumbs and the right index meet the left hand's fingers, 6.6 mm deep (measured)."""
    left = _hand("left", np.array([-0.08, 0.0, DEPTH]))
    right0 = _hand("right", np.array([0.08, 0.0, DEPTH]))
    _, _, touch = _overlapping_pair()
    shift = np.array([0.0, 0.0, touch - FINGERS_INTO_M])
    return left, (right0[0] + shift, right0[1] + shift, right0[2])


def test_finger_base_constants_match_the_hand_model() -> None:
    """The finger step's base joints are MANO's fingers' first joints (root children), and its
    base keypoints their contract keypoints (each finger's four keypoints follow it)."""
    from dir_ros.backends.landmarks.contact import _FINGER_BASE_KEYPOINT, _KEYPOINTS_PER_FINGER

    for f, (joint, kp) in enumerate(zip(FINGER_BASE_JOINT, _FINGER_BASE_KEYPOINT)):
        assert joint == 1 + 3 * f and MANO_TO_KEYPOINT[kp] == joint
        assert MANO_TO_KEYPOINT[kp + 1] == joint + 1 and MANO_TO_KEYPOINT[kp + 2] == joint + 2
        assert MANO_TO_KEYPOINT[kp + _KEYPOINTS_PER_FINGER - 1] >= 16  # its tip
    fw = finger_weights(WEIGHTS["left"])
    np.testing.assert_allclose(fw.sum(1) + WEIGHTS["left"][:, 0], 1.0, atol=1e-5)


def test_finger_step_separates_interlocked_fingers_and_keeps_their_2d() -> None:
    """Fingers 8 mm into the other hand (6.6 mm deepest vertex): the finger step leaves at
    most 3 mm (measured: 0.006), the hands still in contact (smallest vertex distance < 2 cm),
    each keypoint within 3 px of its projection before (measured: 2.2 px), the wrist and the
    palm's vertices (no skinning weight on a turned finger) where they were."""
    left, right = _interlocked_pair()
    before = contact_report(left[1], left[2], right[1], right[2])
    assert before.max_penetration_m > 5e-3
    out = separate_pair((left[1], left[0], left[2], WEIGHTS["left"]),
                        (right[1], right[0], right[2], WEIGHTS["right"]), K)
    assert out is not None and any(step.turns for step in out)
    after = contact_report(out[0].vertices, left[2], out[1].vertices, right[2])
    assert after.max_penetration_m <= 3e-3 and after.min_distance_m < 0.02
    for step, hand, side in zip(out, (left, right), ("left", "right")):
        moved = np.abs(geo.project_points(step.joints, K) - geo.project_points(hand[0], K))
        assert moved.max() < 3.0
        np.testing.assert_array_equal(step.joints[0], hand[0][0])
        untouched = finger_weights(WEIGHTS[side])[:, list(step.turns)].sum(1) == 0.0
        np.testing.assert_array_equal(step.vertices[untouched], hand[1][untouched])
        for rot in step.turns.values():
            np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)


def test_finger_step_leaves_apart_and_touching_hands_alone() -> None:
    """Hands apart, or touching without penetration: no finger step (None)."""
    far = [_hand(s, np.array([x, 0.0, DEPTH])) for s, x in (("left", -0.25), ("right", 0.25))]
    _, _, touch = _overlapping_pair()
    left = _hand("left", np.array([-0.08, 0.0, DEPTH]))
    right = _hand("right", np.array([0.08, 0.0, DEPTH + touch]))
    for a, b in (far, (left, right)):
        assert separate_pair((a[1], a[0], a[2], WEIGHTS["left"]),
                             (b[1], b[0], b[2], WEIGHTS["right"]), K) is None


def test_backend_finger_step_updates_vertices_joints_and_base_rotations() -> None:
    """The backend's finger step (finger_step on) on two interlocked hands: penetration at
    most 3 mm; each turned finger's base joint's local rotation takes the turn (the root's
    frame: root^T turn root local), the other joints' and the root's pose unchanged."""
    left, right = _interlocked_pair()
    pred = LandmarkPredictor(FakeDetector({}), LAYERS, 0.5, (0.05, 10.0), finger_step=True)
    root = PALMS_TO_CAMERA
    hands = {}
    for side, hand in (("left", left), ("right", right)):
        pose = np.concatenate([geo.matrix_to_axis_angle(root), np.zeros(45)])
        hands[side] = HandsResult(
            side=side, valid=True, confidence=1.0, vertices=hand[1].astype(np.float32),
            joints=hand[0].astype(np.float32), wrist_position=hand[0][0].copy(),
            wrist_quat=geo.matrix_to_quat(root), metric=True, pose=pose.astype(np.float32),
            shape=np.zeros(10, np.float32),
            keypoints_2d=geo.project_points(hand[0], K).astype(np.float32), faces=hand[2])
    before = {s: h.pose.copy() for s, h in hands.items()}
    pred._separate_fingers(hands, K)
    rep = contact_report(hands["left"].vertices, left[2], hands["right"].vertices, right[2])
    assert rep.max_penetration_m <= 3e-3
    changed = 0
    for side in ("left", "right"):
        pose, old = hands[side].pose.reshape(16, 3), before[side].reshape(16, 3)
        np.testing.assert_array_equal(pose[0], old[0])
        for j in range(1, 16):
            if j not in FINGER_BASE_JOINT:
                np.testing.assert_array_equal(pose[j], old[j])
        for f, j in enumerate(FINGER_BASE_JOINT):
            if np.allclose(pose[j], old[j], atol=1e-7):
                continue
            changed += 1
            kp = [k for k, m in enumerate(MANO_TO_KEYPOINT) if m == j][0]
            # the turn carries the finger's next keypoint about its base keypoint
            local = geo.axis_angle_to_matrix(pose[j].astype(np.float64))
            turn = root @ local @ root.T  # the world turn (old local: identity)
            src = left if side == "left" else right
            want = src[0][kp] + (src[0][kp + 1] - src[0][kp]) @ turn.T
            np.testing.assert_allclose(hands[side].joints[kp + 1], want, atol=1e-5)
    assert changed > 0


def test_turn_fingers_repeats_the_finger_steps_turns() -> None:
    """turn_fingers (the held turns of finger_step 'onset') applied to the hands before the
    step gives the step's own vertices and joints (float32-level agreement)."""
    from dir_ros.backends.landmarks.contact import turn_fingers

    left, right = _interlocked_pair()
    out = separate_pair((left[1], left[0], left[2], WEIGHTS["left"]),
                        (right[1], right[0], right[2], WEIGHTS["right"]), K)
    assert out is not None and any(step.turns for step in out)
    for step, hand, side in zip(out, (left, right), ("left", "right")):
        again = turn_fingers(hand[1], hand[0], finger_weights(WEIGHTS[side]), step.turns)
        np.testing.assert_allclose(again.vertices, step.vertices, atol=1e-6)
        np.testing.assert_allclose(again.joints, step.joints, atol=1e-6)


class _StillContact(HandContact):
    """A coupling step that moves no hand and reports the pair's true deepest vertex (so that
    the finger step's mode alone decides what happens to two interlocked hands)."""

    def offsets(self, verts_a, faces_a, px_a, wrist_a, verts_b, faces_b, px_b, wrist_b):
        rep = contact_report(verts_a, faces_a, verts_b, faces_b)
        self.inside, self.depth_m = rep.max_penetration_m > 0.0, rep.max_penetration_m
        return np.zeros(3), np.zeros(3)


def _fitted_pair_hands(left: tuple, right: tuple) -> dict[str, HandsResult]:
    """Two valid metric HandsResults of the mean-pose hands (root PALMS_TO_CAMERA), as the
    backend's fit and placement give them before the coupling."""
    root = PALMS_TO_CAMERA
    pose = np.concatenate([geo.matrix_to_axis_angle(root), np.zeros(45)]).astype(np.float32)
    return {side: HandsResult(
        side=side, valid=True, confidence=1.0, vertices=hand[1].astype(np.float32),
        joints=hand[0].astype(np.float32), wrist_position=hand[0][0].copy(),
        wrist_quat=geo.matrix_to_quat(root), metric=True, pose=pose.copy(),
        shape=np.zeros(10, np.float32),
        keypoints_2d=geo.project_points(hand[0], K).astype(np.float32), faces=hand[2])
        for side, hand in (("left", left), ("right", right))}


def test_finger_step_onset_runs_once_carries_its_turns_and_resets() -> None:
    """finger_step 'onset' on an interlocked pair seen on three frames: the step runs on the
    first frame only, the later frames get its turns (penetration at most 3 mm on each, over
    3 mm with the step off); reset() and a lost hand forget them (the step runs again)."""
    left, right = _interlocked_pair()
    pred = LandmarkPredictor(FakeDetector({}), LAYERS, 0.5, (0.05, 10.0))
    assert pred.finger_step == "onset"  # the default
    pred.contact = _StillContact()
    runs = []
    step = pred._separate_fingers
    pred._separate_fingers = lambda hands, K_: (runs.append(1), step(hands, K_))

    def frame() -> float:
        hands = _fitted_pair_hands(left, right)
        assert pred._couple(hands, K)
        return contact_report(hands["left"].vertices, left[2], hands["right"].vertices,
                              right[2]).max_penetration_m

    depths = [frame() for _ in range(3)]
    assert len(runs) == 1 and pred._turns
    assert max(depths) <= 3e-3
    np.testing.assert_allclose(depths[1:], depths[0], atol=1e-6)  # the same turns carried
    pred.reset()
    assert pred._turns == {}
    frame()
    assert len(runs) == 2
    lost = _fitted_pair_hands(left, right)
    lost["right"] = HandsResult.invalid("right", right[2], len(right[1]))
    pred._couple(lost, K)
    assert pred._turns == {}
    pred.finger_step = "off"
    assert frame() > 3e-3 and len(runs) == 2
    with pytest.raises(ValueError, match="finger_step"):
        pred.finger_step = "sometimes"


def test_default_finger_step_brings_demo2_photo_within_3_mm() -> None:
    """The default configuration on the demo2 photo (../shared/images, skipped without it),
    as one frame: at most 3 mm inside and in contact (smallest vertex distance < 2 cm);
    finger_step 'off' leaves it deeper (measured: 2.2 mm and 8.3 mm)."""
    from pathlib import Path

    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("mediapipe")
    path = Path(__file__).resolve().parents[2] / "shared" / "images" / "interwild_demo2_input.jpg"
    if not path.exists():
        pytest.skip(f"{path} not available")
    photo = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    photo_K = geo.pinhole_K(photo.shape[1], photo.shape[0])
    pred = LandmarkPredictor.from_config({})
    reports = {}
    for mode in ("off", "onset"):
        pred.finger_step = mode
        pred.reset()
        r = pred.predict(photo, photo_K)
        assert r.left.valid and r.right.valid and r.left.metric and r.right.metric
        reports[mode] = contact_report(r.left.vertices, r.left.faces, r.right.vertices,
                                       r.right.faces)
    assert reports["onset"].max_penetration_m <= 3e-3
    assert reports["onset"].min_distance_m < 0.02
    assert reports["off"].max_penetration_m > 3e-3
