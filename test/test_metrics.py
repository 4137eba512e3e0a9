"""Metric tests with hand-computed answers (dir_ros.eval: pose_metrics, interpenetration,
evaluator)."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from dir_ros.eval import interpenetration as IV
from dir_ros.eval import pose_metrics as PM
from dir_ros.eval.evaluator import Evaluator, FrameSample, HandSample, hand_sample

RNG_SEED = 0


def _hand(rng: np.random.Generator, centre: tuple[float, float, float], n: int = 1) -> np.ndarray:
    """(n,21,3) random joints within 5 cm of a centre (m)."""
    return np.asarray(centre) + rng.uniform(-0.05, 0.05, size=(n, 21, 3))


def test_translation_and_scale_invariance_of_wrist_alignment() -> None:
    rng = np.random.default_rng(RNG_SEED)
    gt = _hand(rng, (0.0, 0.0, 0.5), n=4)
    pred = 1.3 * gt + np.array([0.1, -0.2, 0.3])  # same hand, other translation and scale
    assert PM.mpjpe_mm(pred, gt, "wrist") == pytest.approx(0.0, abs=1e-9)
    assert PM.mpjpe_mm(pred, gt, "ms") == pytest.approx(0.0, abs=1e-9)
    # M: aligned at the middle MCP but not scaled: error = 0.3 * |gt - gt_9|
    expected_m = np.mean(0.3 * np.linalg.norm(gt - gt[:, 9:10], axis=-1)) * 1000.0
    assert PM.mpjpe_mm(pred, gt, "m") == pytest.approx(expected_m, rel=1e-9)
    assert expected_m > 1.0


def test_known_per_joint_offset() -> None:
    rng = np.random.default_rng(RNG_SEED)
    gt = _hand(rng, (0.0, 0.0, 0.5), n=3)
    pred = gt.copy()
    # move every joint except the wrist (0) and the middle MCP (9) by 6 mm along y and 8 mm
    # along z (|d| = 10 mm); the wrist-to-middle-MCP bone is unchanged, so scale = 1
    moved = [j for j in range(21) if j not in (0, 9)]
    pred[:, moved] += np.array([0.0, 0.006, 0.008])
    assert PM.mpjpe_mm(pred, gt, "wrist") == pytest.approx(10.0 * 19 / 21, rel=1e-9)
    assert PM.mpjpe_mm(pred, gt, "m") == pytest.approx(10.0 * 19 / 21, rel=1e-9)
    # vertices shifted by 3 mm (root joints untouched) -> MPVPE 3 mm
    verts = rng.uniform(-0.05, 0.05, size=(3, 50, 3)) + np.array([0, 0, 0.5])
    assert PM.mpvpe_mm(verts + [0.003, 0, 0], verts, pred, gt, "wrist") == pytest.approx(3.0, rel=1e-9)


def test_pck_and_auc_of_constructed_errors() -> None:
    errors = np.array([10.0] * 50 + [30.0] * 50)  # mm
    t = PM.pck_thresholds_mm()  # 0, 0.5, ..., 50
    pck = PM.pck_curve(errors, t)
    assert pck[t < 10].max() == 0.0
    assert np.all(pck[(t >= 10) & (t < 30)] == 0.5)
    assert np.all(pck[t >= 30] == 1.0)
    # trapezoid areas: 9.5-10: 0.125, 10-29.5: 9.75, 29.5-30: 0.375, 30-50: 20 -> 30.25 / 50
    assert PM.pck_auc(pck, t) == pytest.approx(30.25 / 50.0)
    # on the exact step function the AUC would be (0.5 * 20 + 1 * 20) / 50 = 0.6
    assert abs(PM.pck_auc(pck, t) - 0.6) < 0.01


def test_mrrpe_known_offset() -> None:
    gl = np.array([[-0.1, 0.0, 0.5]])
    gr = np.array([[0.1, 0.0, 0.5]])
    # prediction: left right, right hand 3 cm further and 4 cm lower -> 50 mm
    pl = gl + [0.2, 0.2, 0.2]  # a global shift does not matter
    pr = gr + [0.2, 0.2, 0.2] + [0.0, 0.04, 0.03]
    assert PM.mrrpe_mm(pl, pr, gl, gr)[0] == pytest.approx(50.0)


def test_miaa_known_pixel_shift() -> None:
    rng = np.random.default_rng(RNG_SEED)
    fx, z = 600.0, 0.5
    K = np.array([[fx, 0, 320.0], [0, fx, 240.0], [0, 0, 1.0]])
    gt_v = np.concatenate([rng.uniform(-0.05, 0.05, (1, 40, 2)), np.full((1, 40, 1), z)], axis=-1)
    gt_root = np.array([[0.0, 0.0, z]])
    # predicted mesh: 2 mm to the right relative to its root, whose absolute position is wrong
    pred_root = gt_root + [0.05, -0.02, 0.1]
    pred_v = gt_v - gt_root[:, None] + pred_root[:, None] + [0.002, 0.0, 0.0]
    # placed at the GT root, every vertex at depth z moves fx * 0.002 / z = 2.4 px
    assert PM.miaa_px(pred_v, pred_root, gt_v, gt_root, K)[0] == pytest.approx(fx * 0.002 / z)


def test_interpenetration_volume_of_two_boxes() -> None:
    side = 0.04  # 4 cm cubes
    a = trimesh.creation.box(extents=(side, side, side))
    b = trimesh.creation.box(extents=(side, side, side))
    b.apply_translation((0.02, 0.0, 0.0))  # overlap 2 x 4 x 4 cm = 32 cm^3
    vol, watertight = IV.interpenetration_volume(a.vertices, a.faces, b.vertices, b.faces)
    assert watertight
    assert vol == pytest.approx(32.0, abs=4.0)  # faces on the voxel lattice: exact up to edge weights
    c = trimesh.creation.box(extents=(side, side, side))
    c.apply_translation((0.0123, 0.0031, 0.0))  # overlap 2.77 x 3.69 x 4 cm = 40.9 cm^3, off-lattice
    vol2, _ = IV.interpenetration_volume(a.vertices, a.faces, c.vertices, c.faces)
    expected2 = (side - 0.0123) * (side - 0.0031) * side * 1e6
    overlap_area_cm2 = 2 * ((side - 0.0123) * (side - 0.0031) + (side - 0.0123) * side + (side - 0.0031) * side) * 1e4
    assert abs(vol2 - expected2) <= overlap_area_cm2 * IV.IV_PITCH_M * 100 / 2  # half a voxel layer
    far = trimesh.creation.box(extents=(side, side, side))
    far.apply_translation((0.1, 0.0, 0.0))
    assert IV.interpenetration_volume(a.vertices, a.faces, far.vertices, far.faces)[0] == 0.0


def test_open_mesh_is_capped_before_voxelising() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.04)
    # cut a cap away (like the open wrist of a hand mesh)
    keep = sphere.triangles_center[:, 2] < 0.03
    v, f = sphere.vertices, sphere.faces[keep]
    assert not trimesh.Trimesh(v, f, process=False).is_watertight
    v2, f2 = IV.close_holes(v, f)
    assert trimesh.Trimesh(v2, f2).is_watertight
    vol, watertight = IV.interpenetration_volume(v, f, sphere.vertices, sphere.faces)
    assert watertight
    # the capped sphere minus its cap is most of the sphere (268 cm^3), not a thin shell
    assert vol > 150.0


def _frame(left_j: np.ndarray | None, right_j: np.ndarray | None) -> FrameSample:
    def h(j: np.ndarray | None) -> HandSample:
        return HandSample(valid=j is not None, joints=j, confidence=0.9)

    return FrameSample(left=h(left_j), right=h(right_j))


def test_evaluator_counts_missing_hands_and_joints_only_gt() -> None:
    rng = np.random.default_rng(RNG_SEED)
    lj, rj = _hand(rng, (-0.1, 0, 0.5))[0], _hand(rng, (0.1, 0, 0.5))[0]
    ev = Evaluator(compute_iv=False)
    ev.add(_frame(lj, rj), _frame(lj, rj))  # perfect
    ev.add(_frame(lj, None), _frame(lj, rj))  # right hand missing
    ev.add(None, _frame(lj, rj))  # no prediction at all (drop)
    ev.add(_frame(lj, rj), _frame(None, rj))  # left hand false positive
    s = ev.summary()
    assert s["frames"] == {"total": 4, "with_ground_truth": 4, "without_prediction": 1}
    assert s["hands"]["right"]["missing"] == 2
    assert s["hands"]["left"]["missing"] == 1
    assert s["hands"]["left"]["false_positive"] == 1
    assert s["hands"]["left"]["scored"] == 2 and s["hands"]["right"]["scored"] == 2
    assert s["hands"]["right"]["valid_rate"] == pytest.approx(2 / 4)
    assert s["metrics"]["wrist"]["mean"]["mpjpe_mm"] == pytest.approx(0.0, abs=1e-9)
    assert s["metrics"]["wrist"]["mean"]["auc"] == pytest.approx(1.0)
    assert s["metrics"]["wrist"]["left"]["mpvpe_mm"] is None  # joints-only ground truth
    assert s["miaa_px"]["mean"] is None
    assert s["mrrpe_frames"] == 1 and s["mrrpe_mm"] == pytest.approx(0.0, abs=1e-9)


def test_evaluator_without_ground_truth_reports_rates_only() -> None:
    rng = np.random.default_rng(RNG_SEED)
    lj = _hand(rng, (-0.1, 0, 0.5))[0]
    ev = Evaluator(compute_iv=False)
    ev.add(_frame(lj, None), None)
    ev.add(_frame(lj, lj), None)
    s = ev.summary()
    assert not s["has_ground_truth"] and "metrics" not in s
    assert s["hands"]["left"]["valid_rate"] == 1.0 and s["hands"]["right"]["valid_rate"] == 0.5
    assert s["hands"]["left"]["confidence"]["mean"] == pytest.approx(0.9)


# Offset (m) given to the positions of ground-truth joints that are not annotated: scoring
# them would add hundreds of mm of error.
UNANNOTATED_OFFSET_M = 0.5


def test_unannotated_gt_joints_are_excluded() -> None:
    """GT joints marked not annotated (NaN, as joint_valid false writes them) are left out
    of MPJPE / PCK; a hand whose wrist or middle MCP is not annotated cannot be aligned and
    is counted, not scored; MRRPE needs both GT wrists."""
    rng = np.random.default_rng(RNG_SEED)
    lj, rj = _hand(rng, (-0.1, 0, 0.5))[0], _hand(rng, (0.1, 0, 0.5))[0]
    pred_r = rj.copy()
    pred_r[[4, 8]] += UNANNOTATED_OFFSET_M  # wrong only where the GT says "not annotated"
    gt_r = rj.copy()
    gt_r[[4, 8]] = np.nan
    gt_l_no_wrist = lj.copy()
    gt_l_no_wrist[PM.WRIST] = np.nan
    ev = Evaluator(compute_iv=False)
    ev.add(_frame(lj, pred_r), _frame(gt_l_no_wrist, gt_r))
    s = ev.summary()
    right, left = s["hands"]["right"], s["hands"]["left"]
    assert right["scored"] == 1 and right["gt_joints_not_annotated"] == 2
    assert left["scored"] == 0 and left["gt_unalignable"] == 1
    assert s["metrics"]["wrist"]["right"]["mpjpe_mm"] == pytest.approx(0.0, abs=1e-9)
    assert s["metrics"]["wrist"]["right"]["auc"] == pytest.approx(1.0)
    assert s["metrics"]["wrist"]["left"]["mpjpe_mm"] is None
    assert s["mrrpe_frames"] == 0 and s["mrrpe_unavailable_frames"] == 1


def test_confidence_of_invalid_hands_is_reported() -> None:
    """Hands below min_confidence (invalid) keep their confidence, reported apart from the
    valid ones and, with ground truth, split by whether the hand is really there."""
    rng = np.random.default_rng(RNG_SEED)
    lj = _hand(rng, (-0.1, 0, 0.5))[0]

    def pred(left_conf: float, left_valid: bool) -> FrameSample:
        return FrameSample(left=HandSample(valid=left_valid, joints=lj if left_valid else None,
                                           confidence=left_conf),
                           right=HandSample(valid=False, confidence=0.1))

    ev = Evaluator(compute_iv=False)
    ev.add(pred(0.9, True), _frame(lj, None))
    ev.add(pred(0.3, False), _frame(lj, None))  # a real hand scored below the threshold
    ev.add(pred(0.2, False), _frame(None, None))
    hands = ev.summary()["hands"]
    assert hands["left"]["confidence"]["mean"] == pytest.approx(0.9)
    assert hands["left"]["confidence_invalid"]["mean"] == pytest.approx(0.25)
    assert hands["left"]["confidence_gt_hand"]["mean"] == pytest.approx(0.6)
    assert hands["left"]["confidence_gt_no_hand"]["mean"] == pytest.approx(0.2)
    assert hands["right"]["confidence"] is None
    assert hands["right"]["confidence_invalid"]["max"] == pytest.approx(0.1)


def test_hand_sample_keeps_confidence_of_invalid_hand() -> None:
    class Invalid:
        valid = False
        confidence = 0.35

    sample = hand_sample(Invalid())
    assert not sample.valid and sample.confidence == pytest.approx(0.35)
