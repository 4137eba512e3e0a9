"""Two hands placed together: penetration test, region test and the coupling step
(hand_contact), alone and inside the landmark backend."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dir_ros import geometry as geo
from dir_ros.hand_contact import (HandContact, contact_report, penetration, regions_meet,
                                  vertex_normals)
from dir_ros.hand_model import build_hand_layers
from dir_ros.landmark_backend import LandmarkPredictor
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
