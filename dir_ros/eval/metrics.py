"""Two-hand reconstruction metrics of the DIR paper (ICCV 2023), numpy, vectorised over frames.

Units: inputs in metres (camera optical frame) and pixels; outputs in millimetres, pixels
and cm^3 as named. Keypoint order is the project's 21-keypoint order (0 wrist, 9 middle MCP).

Protocol (docs/evaluation.md, spec "Evaluation protocol of the release"):
  * ``wrist`` (main table): translate both hands so keypoint 0 is at the origin, scale the
    prediction about it by |GT wrist-to-middle-MCP| / |pred wrist-to-middle-MCP|.
  * ``ms``: same, aligned at the middle MCP (keypoint 9), scaled.
  * ``m``: aligned at the middle MCP, not scaled.
  * MRRPE: |(pred right root - pred left root) - (GT right root - GT left root)|, mm.
  * MIAA: predicted root-relative mesh placed at the GT root, projected with K; mean pixel
    distance to the projected GT vertices.
  * PCK / AUC over 0-50 mm of the aligned per-joint errors.
  * Interpenetration volume (IV): both predicted meshes voxelised at 0.5 cm, cm^3 of the
    intersection (see :func:`interpenetration_volume` for the voxel convention).
  * Temporal (issue 19): jitter of the wrist and of the root-relative joints, mm/frame^2,
    of the predictions and the ground truth; acceleration error, m/s^2; over runs of
    consecutive valid frames (MISS_RULE). Detection rate per hand beside every metric.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dir_ros.data.clips import second_difference_norm

SIDES: tuple[str, str] = ("left", "right")
WRIST = 0  # keypoint index of the wrist (contract keypoint order)
MIDDLE_MCP = 9  # keypoint index of the middle-finger MCP (contract keypoint order)
NUM_KEYPOINTS = 21  # keypoints per hand (contract)
M_TO_MM = 1000.0  # metres -> millimetres
M3_TO_CM3 = 1.0e6  # cubic metres -> cubic centimetres
PCK_MAX_MM = 50.0  # PCK/AUC range 0-50 mm (paper and release)
PCK_NUM_THRESHOLDS = 101  # thresholds every 0.5 mm over 0-50 mm
IV_PITCH_M = 0.005  # voxel edge for the interpenetration volume: 0.5 cm (paper)
# A voxel that the mesh surface passes through is on average half inside the mesh; giving
# it half weight removes most of the half-voxel bias of surface voxelisation.
SHELL_WEIGHT = 0.5
# Alignment variants: name -> (root keypoint, scale by GT bone length?)
VARIANTS: dict[str, tuple[int, bool]] = {
    "wrist": (WRIST, True),  # main table of the paper
    "ms": (MIDDLE_MCP, True),  # middle-MCP aligned, scaled
    "m": (MIDDLE_MCP, False),  # middle-MCP aligned, unscaled
}
VARIANT_TITLES: dict[str, str] = {
    "wrist": "wrist-aligned, scaled (main)",
    "ms": "middle-MCP aligned, scaled (MS)",
    "m": "middle-MCP aligned, unscaled (M)",
}


def pck_thresholds_mm() -> np.ndarray:
    """Thresholds (T,) in mm of the PCK curve, 0..PCK_MAX_MM inclusive."""
    return np.linspace(0.0, PCK_MAX_MM, PCK_NUM_THRESHOLDS)


def align_scale(
    pred_joints: np.ndarray, gt_joints: np.ndarray, variant: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Alignment of one variant: (scale (N,), pred root (N,3), GT root (N,3)).

    pred_joints, gt_joints: (N,21,3) m. The prediction p maps to (p - pred_root) * scale,
    the ground truth g to g - gt_root. A degenerate predicted bone gives scale NaN.
    """
    root, scaled = VARIANTS[variant]
    pred_root = pred_joints[:, root]
    gt_root = gt_joints[:, root]
    if scaled:
        gt_bone = np.linalg.norm(gt_joints[:, MIDDLE_MCP] - gt_joints[:, WRIST], axis=-1)
        pred_bone = np.linalg.norm(pred_joints[:, MIDDLE_MCP] - pred_joints[:, WRIST], axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(pred_bone > 0, gt_bone / pred_bone, np.nan)
    else:
        scale = np.ones(pred_joints.shape[0])
    return scale, pred_root, gt_root


def aligned_errors(
    pred: np.ndarray, gt: np.ndarray, pred_joints: np.ndarray, gt_joints: np.ndarray, variant: str
) -> np.ndarray:
    """Per-point Euclidean errors (N,P) in m after the variant's alignment.

    pred, gt: (N,P,3) points (joints or vertices) m; the alignment is computed from
    pred_joints / gt_joints (N,21,3).
    """
    scale, pred_root, gt_root = align_scale(pred_joints, gt_joints, variant)
    pred_aligned = (pred - pred_root[:, None]) * scale[:, None, None]
    gt_aligned = gt - gt_root[:, None]
    return np.linalg.norm(pred_aligned - gt_aligned, axis=-1)


def mpjpe_mm(pred_joints: np.ndarray, gt_joints: np.ndarray, variant: str = "wrist") -> float:
    """Mean per-joint position error in mm over (N,21,3) m arrays."""
    return float(np.mean(aligned_errors(pred_joints, gt_joints, pred_joints, gt_joints, variant))) * M_TO_MM


def mpvpe_mm(
    pred_verts: np.ndarray,
    gt_verts: np.ndarray,
    pred_joints: np.ndarray,
    gt_joints: np.ndarray,
    variant: str = "wrist",
) -> float:
    """Mean per-vertex position error in mm; alignment from the joints (N,21,3) m."""
    return float(np.mean(aligned_errors(pred_verts, gt_verts, pred_joints, gt_joints, variant))) * M_TO_MM


def pck_curve(errors_mm: np.ndarray, thresholds_mm: np.ndarray | None = None) -> np.ndarray:
    """Fraction (T,) of errors (any shape, mm) at or below each threshold; NaN if none."""
    t = pck_thresholds_mm() if thresholds_mm is None else np.asarray(thresholds_mm, float)
    e = np.asarray(errors_mm, float).ravel()
    if e.size == 0:
        return np.full(t.shape, np.nan)
    return np.mean(e[None, :] <= t[:, None], axis=1)


def pck_auc(pck: np.ndarray, thresholds_mm: np.ndarray | None = None) -> float:
    """Area under the PCK curve normalised to [0, 1] (trapezoid rule over the thresholds)."""
    t = pck_thresholds_mm() if thresholds_mm is None else np.asarray(thresholds_mm, float)
    return float(np.trapz(pck, t) / (t[-1] - t[0]))


def mrrpe_mm(
    pred_left_root: np.ndarray,
    pred_right_root: np.ndarray,
    gt_left_root: np.ndarray,
    gt_right_root: np.ndarray,
) -> np.ndarray:
    """Per-frame (N,) mean relative-root position error in mm; roots (N,3) m."""
    pred_offset = pred_right_root - pred_left_root
    gt_offset = gt_right_root - gt_left_root
    return np.linalg.norm(pred_offset - gt_offset, axis=-1) * M_TO_MM


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection (N,P,2) px of (N,P,3) m camera-frame points with K (N,3,3) or (3,3).

    Points at or behind the camera plane give NaN.
    """
    K = np.broadcast_to(np.asarray(K, float), (points.shape[0], 3, 3))
    cam = np.einsum("nij,npj->npi", K, points)
    z = cam[..., 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.where(z > 0, cam[..., :2] / z, np.nan)
    return uv


def miaa_px(
    pred_verts: np.ndarray,
    pred_root: np.ndarray,
    gt_verts: np.ndarray,
    gt_root: np.ndarray,
    K: np.ndarray,
) -> np.ndarray:
    """Per-frame (N,) mean image alignment accuracy in px.

    The predicted mesh (N,V,3) m is made relative to its root (N,3), placed at the GT root
    (N,3) (no scaling), projected with K (N,3,3) and compared with the projected GT mesh.
    """
    placed = pred_verts - pred_root[:, None] + gt_root[:, None]
    d = np.linalg.norm(project(placed, K) - project(gt_verts, K), axis=-1)
    return np.nanmean(d, axis=1)


# --------------------------------------------------------------------------------------------
# Interpenetration volume


def close_holes(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cap every boundary loop of a triangle mesh with a fan around the loop centroid.

    The MANO-style hand mesh is open at the wrist; a voxel fill of an open surface leaves
    the inside empty. vertices (V,3), faces (F,3) -> (V+L,3), (F+sum loop lengths,3).
    The caps follow the winding of the adjacent faces, so a consistently oriented open
    mesh becomes a closed, consistently oriented one.
    """
    faces = np.asarray(faces, dtype=np.int64)
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    undirected = np.sort(directed, axis=1)
    _, inverse, counts = np.unique(undirected, axis=0, return_inverse=True, return_counts=True)
    boundary = directed[counts[inverse.ravel()] == 1]
    if boundary.size == 0:
        return np.asarray(vertices), faces
    # Boundary edges (a -> b) of the faces; the cap runs the opposite way (b -> a).
    nxt: dict[int, int] = {}
    for a, b in boundary:
        nxt[int(b)] = int(a)
    new_vertices = [np.asarray(vertices, dtype=float)]
    new_faces = [faces]
    next_index = len(vertices)
    visited: set[int] = set()
    for start in list(nxt):
        if start in visited:
            continue
        loop = [start]
        visited.add(start)
        cur = nxt.get(start)
        while cur is not None and cur != start and cur not in visited:
            loop.append(cur)
            visited.add(cur)
            cur = nxt.get(cur)
        if cur != start or len(loop) < 3:
            continue  # not a simple loop (non-manifold boundary): leave it open
        centre = np.asarray(vertices, float)[loop].mean(axis=0)
        new_vertices.append(centre[None])
        loop_arr = np.asarray(loop, dtype=np.int64)
        fan = np.stack([loop_arr, np.roll(loop_arr, -1), np.full_like(loop_arr, next_index)], axis=1)
        new_faces.append(fan)
        next_index += 1
    return np.concatenate(new_vertices), np.concatenate(new_faces)


def _voxel_keys(points: np.ndarray, pitch: float) -> np.ndarray:
    """Integer lattice keys (n,) of voxel centres (n,3) lying on multiples of pitch."""
    idx = np.round(points / pitch).astype(np.int64) + (1 << 20)  # offset keeps indices >= 0
    return (idx[:, 0] << 42) | (idx[:, 1] << 21) | idx[:, 2]


def voxel_occupancy(
    vertices: np.ndarray, faces: np.ndarray, pitch: float = IV_PITCH_M
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Voxelise one mesh with trimesh: (keys (n,), weights (n,), watertight).

    Holes are capped first (:func:`close_holes`). trimesh's subdivision voxeliser puts the
    voxel centres on the shared lattice pitch * Z^3, so keys of different meshes compare
    directly. Interior voxels (from ``fill()``) weigh 1, voxels the surface passes through
    SHELL_WEIGHT. When the capped mesh is still not watertight the fill may miss the
    inside (IV is then underestimated); the returned flag says so.
    """
    import trimesh  # local: only this metric needs it

    v, f = close_holes(vertices, faces)
    mesh = trimesh.Trimesh(vertices=v, faces=f, process=True)
    watertight = bool(mesh.is_watertight)
    surface = mesh.voxelized(pitch)
    shell_keys = _voxel_keys(np.asarray(surface.points), pitch)
    filled = surface.copy().fill()
    fill_keys = _voxel_keys(np.asarray(filled.points), pitch)
    keys = np.union1d(fill_keys, shell_keys)
    weights = np.where(np.isin(keys, shell_keys), SHELL_WEIGHT, 1.0)
    return keys, weights, watertight


def interpenetration_volume(
    verts_a: np.ndarray,
    faces_a: np.ndarray,
    verts_b: np.ndarray,
    faces_b: np.ndarray,
    pitch: float = IV_PITCH_M,
) -> tuple[float, bool]:
    """Interpenetration volume of two meshes in cm^3 and whether both were watertight.

    IV = pitch^3 * sum over voxels occupied by both meshes of w_a * w_b (weights as in
    :func:`voxel_occupancy`). Accuracy is about one voxel layer over the overlap's surface.
    """
    ka, wa, ta = voxel_occupancy(verts_a, faces_a, pitch)
    kb, wb, tb = voxel_occupancy(verts_b, faces_b, pitch)
    _, ia, ib = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
    volume_m3 = float(np.sum(wa[ia] * wb[ib])) * pitch**3
    return volume_m3 * M3_TO_CM3, ta and tb


# --------------------------------------------------------------------------------------------
# Temporal metrics (issue 19): jitter and acceleration error over runs of valid frames
#
# Jitter (ARCTIC and recent video hand papers): mean ||x[t+1] - 2 x[t] + x[t-1]|| over the
# triples of consecutive frames, mm/frame^2. Acceleration error (as VIBE / TCMR and the
# video hand papers after them): mean ||a_pred[t] - a_gt[t]||, a[t] = (x[t+1] - 2 x[t] +
# x[t-1]) / dt^2, m/s^2, dt from the frames' stamps. Both are computed on the wrist (root)
# position in the camera frame and on the 20 root-relative joints (joint - wrist, unscaled).
# Miss rule: a frame whose hand is missing (no valid prediction, no valid ground truth, or
# for the wrist a prediction without camera intrinsics) is NaN; a triple touching a NaN
# frame is not counted, so the metrics are means over runs of consecutive valid frames.

NS_PER_S = 1.0e9  # stamps (ns) -> seconds
# The rule of report.md / report.json / docs/evaluation.md, in one sentence each.
MISS_RULE = (
    "A hand is detected in a frame when the ground truth has it and the prediction is valid; "
    "the detection rate (detected / frames with the ground-truth hand) is given beside every "
    "metric, and the error means are over detected hands only. Temporal metrics are computed "
    "over runs of consecutive frames in which the hand is valid: a triple of frames "
    "(t-1, t, t+1) is counted only when all three are valid (prediction valid for jitter, "
    "ground truth valid for the ground truth's jitter, both for the acceleration error; the "
    "wrist also needs a metric prediction), so a miss ends a run instead of being bridged.")


def root_and_relative(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T,21,3) joints m -> wrist (T,1,3) and root-relative joints 1..20 (T,20,3), m.
    NaN rows stay NaN (a missing hand), an unannotated wrist makes its whole row NaN."""
    j = np.asarray(joints, float)
    root = j[:, WRIST:WRIST + 1]
    rel = np.delete(j, WRIST, axis=1) - root
    return root, rel


def jitter_mm(points: np.ndarray) -> tuple[float | None, int]:
    """Jitter of a track of points (T,P,3) m, NaN where missing: (mean second-difference
    norm in mm/frame^2 over every finite (triple, point), number of triples counted).
    None when no triple of three valid frames exists."""
    d = second_difference_norm(points) * M_TO_MM  # (T-2, P)
    ok = np.isfinite(d)
    if not ok.any():
        return None, 0
    return float(d[ok].mean()), int(ok.any(axis=1).sum())


def triple_dt_s(stamps_ns: np.ndarray) -> np.ndarray:
    """Per-triple frame interval (T-2,) s: the mean of the two intervals around frame t,
    (stamp[t+1] - stamp[t-1]) / 2; exact for evenly spaced frames. NaN where either
    interval is not positive (stamps unknown, repeated or out of order)."""
    s = np.asarray(stamps_ns, np.int64)
    if len(s) < 3:
        return np.zeros(0)
    d = np.diff(s).astype(np.float64) / NS_PER_S
    ok = (d[:-1] > 0) & (d[1:] > 0)
    return np.where(ok, (d[:-1] + d[1:]) / 2.0, np.nan)


def acceleration_error_m_s2(pred: np.ndarray, gt: np.ndarray,
                            stamps_ns: np.ndarray) -> tuple[float | None, int]:
    """Acceleration error of a track (T,P,3) m against the ground truth (T,P,3) m (NaN
    where missing), frame stamps (T,) ns: (mean ||a_pred - a_gt|| in m/s^2 over every finite
    (triple, point), number of triples counted); a = second difference / dt^2 with dt from
    triple_dt_s. Since the second difference is linear, a_pred - a_gt is the second
    difference of pred - gt over dt^2."""
    dt = triple_dt_s(stamps_ns)
    a = second_difference_norm(np.asarray(pred, float) - np.asarray(gt, float))
    if a.size == 0:
        return None, 0
    a = a / (dt[:, None] ** 2)
    ok = np.isfinite(a)
    if not ok.any():
        return None, 0
    return float(a[ok].mean()), int(ok.any(axis=1).sum())


def track_jitter(joints: np.ndarray, wrist_valid: np.ndarray | None = None) -> dict[str, Any]:
    """Jitter of one hand's track (T,21,3) m (NaN rows: hand missing): wrist and
    root-relative joints in mm/frame^2 and the triples each counted. wrist_valid (T,) bool
    marks frames whose wrist position is absolute (metric); None: every valid frame."""
    root, rel = root_and_relative(joints)
    if wrist_valid is not None:
        root = np.where(np.asarray(wrist_valid, bool)[:, None, None], root, np.nan)
    wrist, n_wrist = jitter_mm(root)
    rel_j, n_rel = jitter_mm(rel)
    return {"wrist": wrist, "joints": rel_j, "wrist_triples": n_wrist, "joints_triples": n_rel}


# --------------------------------------------------------------------------------------------
# Accumulating evaluator


@dataclass
class HandSample:
    """One hand of one frame, prediction or ground truth (camera optical frame, metres).
    A ground-truth joint that is not annotated (joint_valid false) is NaN."""

    valid: bool
    joints: np.ndarray | None = None  # (21,3) m
    vertices: np.ndarray | None = None  # (V,3) m
    faces: np.ndarray | None = None  # (F,3) vertex indices
    metric: bool = True  # False: positions are wrist-relative (no camera intrinsics)
    confidence: float = math.nan  # [0,1]
    placement: int = -1  # HandMesh.placement (0 none, 1 hand size, 2 depth); -1 not known


# HandMesh.placement -> its name in the report (dir_ros.common.results.PLACEMENT_NAMES).
PLACEMENT_NAMES = {0: "none", 1: "hand_size", 2: "depth"}


def placement_name(sample: HandSample) -> str:
    """Report name of a prediction's placement; unknown (recordings older than the field,
    other predictors): hand_size when metric, else none."""
    if sample.placement in PLACEMENT_NAMES:
        return PLACEMENT_NAMES[sample.placement]
    return "hand_size" if sample.metric else "none"


@dataclass
class FrameSample:
    """Both hands of one frame plus its intrinsics and stamp."""

    left: HandSample
    right: HandSample
    K: np.ndarray | None = None  # (3,3) intrinsics of the image the geometry refers to
    stamp_ns: int = 0

    def hand(self, side: str) -> HandSample:
        """The HandSample of side 'left' or 'right'."""
        return self.left if side == "left" else self.right


def hand_sample(hand: Any, joints: Any = None, metric: bool = True) -> HandSample:
    """HandSample from a hand-like object (predictor HandsResult, HandMesh message, None):
    valid, joints (or the `joints` given, e.g. converted from geometry_msgs/Point), vertices,
    faces (empty -> None), metric (`metric` when the object has none), confidence (kept
    for invalid hands too: it is what min_confidence is tuned on)."""
    if hand is None:
        return HandSample(valid=False)
    if not bool(getattr(hand, "valid", False)):
        return HandSample(valid=False, confidence=float(getattr(hand, "confidence", math.nan)))
    verts = getattr(hand, "vertices", None)
    faces = getattr(hand, "faces", None)
    return HandSample(
        valid=True,
        joints=np.asarray(hand.joints if joints is None else joints, float).reshape(-1, 3),
        vertices=None if verts is None or np.size(verts) == 0 else np.asarray(verts, float).reshape(-1, 3),
        faces=None if faces is None or np.size(faces) == 0 else np.asarray(faces, np.int64).reshape(-1, 3),
        metric=bool(getattr(hand, "metric", metric)),
        confidence=float(getattr(hand, "confidence", math.nan)),
        placement=int(getattr(hand, "placement", -1)),
    )


def _mean_or_none(values: list[float | None]) -> float | None:
    """Mean of the non-None entries, None if there are none."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else None


def describe(values: list[float]) -> dict[str, float] | None:
    """Summary statistics (mean, median, p95, min, max) of a list of numbers, None if empty."""
    if not values:
        return None
    a = np.asarray(values, float)
    return {
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "p95": float(np.percentile(a, 95)),
        "min": float(a.min()),
        "max": float(a.max()),
    }


@dataclass
class _HandAccum:
    """Per-side stacks of scored frames and counters."""

    pred_j: list[np.ndarray] = field(default_factory=list)
    gt_j: list[np.ndarray] = field(default_factory=list)
    pred_v: list[np.ndarray] = field(default_factory=list)
    gt_v: list[np.ndarray] = field(default_factory=list)
    mesh_j_pred: list[np.ndarray] = field(default_factory=list)
    mesh_j_gt: list[np.ndarray] = field(default_factory=list)
    miaa: list[float] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)  # valid predictions
    confidence_invalid: list[float] = field(default_factory=list)  # invalid predictions
    # confidence of every prediction (valid or not) by whether the GT hand is there: the
    # two distributions a min_confidence threshold separates
    confidence_gt_hand: list[float] = field(default_factory=list)
    confidence_gt_no_hand: list[float] = field(default_factory=list)
    # one row per frame, in the order added (temporal metrics): joints (21,3) m, NaN rows
    # where the hand is missing (invalid, absent, or no ground truth for the frame)
    track_pred: list[np.ndarray] = field(default_factory=list)
    track_pred_metric: list[bool] = field(default_factory=list)  # absolute wrist position
    track_gt: list[np.ndarray] = field(default_factory=list)
    track_gt_metric: list[bool] = field(default_factory=list)
    counts: dict[str, int] = field(
        default_factory=lambda: {
            "frames": 0,
            "gt_valid": 0,
            "pred_valid": 0,
            "scored": 0,
            "missing": 0,  # GT valid, prediction invalid or absent
            "false_positive": 0,  # GT invalid, prediction valid
            "mesh_unavailable": 0,  # scored, but no comparable vertices (absent / other V)
            "miaa_unavailable": 0,  # scored, but no K, vertices or metric prediction
            "gt_unalignable": 0,  # both valid, but GT wrist or middle MCP not annotated
            "gt_joints_not_annotated": 0,  # joints excluded from scored hands (joint_valid)
        }
    )


class Evaluator:
    """Accumulates frames (prediction vs ground truth) and computes the metric summary.

    ``add(pred, gt, stamp_ns)``: pred None means no prediction at all for that frame (a
    drop); gt None means the frame has no ground truth (only rates/confidence are reported).
    Frames are added in time order: the temporal metrics (jitter, acceleration error) take
    consecutive calls as consecutive frames and their stamps for the frame interval.
    """

    def __init__(self, compute_iv: bool = True, iv_pitch_m: float = IV_PITCH_M) -> None:
        """compute_iv: voxelise predicted meshes for the interpenetration volume."""
        self.compute_iv = compute_iv
        self.iv_pitch_m = iv_pitch_m
        self.hands = {s: _HandAccum() for s in SIDES}
        self.frames = 0
        self.frames_with_gt = 0
        self.dropped = 0
        self.mrrpe: list[float] = []
        self.mrrpe_unavailable = 0
        # placement name -> wrist (root) position errors in mm of metric predictions
        self.root_error_mm: dict[str, list[float]] = {}
        self.iv: list[float] = []
        self.iv_not_watertight = 0
        self.stamps_ns: list[int] = []  # per frame, in the order added

    def add(self, pred: FrameSample | None, gt: FrameSample | None,
            stamp_ns: int | None = None) -> None:
        """Add one frame; stamp_ns: its time (default: the prediction's, else the ground
        truth's stamp_ns)."""
        if stamp_ns is None:
            stamp_ns = pred.stamp_ns if pred is not None else (gt.stamp_ns if gt is not None else 0)
        self.stamps_ns.append(int(stamp_ns))
        self.frames += 1
        if gt is not None:
            self.frames_with_gt += 1
        if pred is None:
            self.dropped += 1
        for side in SIDES:
            self._add_hand(side, pred.hand(side) if pred else None, gt.hand(side) if gt else None, pred, gt)
        if pred is not None and gt is not None:
            self._add_pair(pred, gt)
        if pred is not None and self.compute_iv:
            self._add_iv(pred)

    def _add_hand(
        self,
        side: str,
        p: HandSample | None,
        g: HandSample | None,
        pred: FrameSample | None,
        gt: FrameSample | None,
    ) -> None:
        """One side of one frame: counts, confidences and, when both are valid and the GT
        hand can be aligned, the joints / vertices to score (unannotated GT joints: NaN)."""
        acc = self.hands[side]
        c = acc.counts
        c["frames"] += 1
        p_valid = p is not None and p.valid and p.joints is not None
        g_valid = g is not None and g.valid and g.joints is not None
        missing_row = np.full((NUM_KEYPOINTS, 3), np.nan)
        acc.track_pred.append(np.asarray(p.joints, float).reshape(NUM_KEYPOINTS, 3)
                              if p_valid else missing_row)
        acc.track_pred_metric.append(bool(p_valid and p.metric))
        acc.track_gt.append(np.asarray(g.joints, float).reshape(NUM_KEYPOINTS, 3)
                            if g_valid else missing_row)
        acc.track_gt_metric.append(bool(g_valid and g.metric))
        has_conf = p is not None and not math.isnan(p.confidence)
        if p_valid:
            c["pred_valid"] += 1
        if has_conf:
            (acc.confidence if p_valid else acc.confidence_invalid).append(float(p.confidence))
        if g is None:
            return
        if has_conf:
            (acc.confidence_gt_hand if g_valid else acc.confidence_gt_no_hand).append(
                float(p.confidence))
        if g_valid:
            c["gt_valid"] += 1
        if g_valid and not p_valid:
            c["missing"] += 1
        if p_valid and not g_valid:
            c["false_positive"] += 1
        if not (p_valid and g_valid):
            return
        pj = np.asarray(p.joints, float).reshape(NUM_KEYPOINTS, 3)
        gj = np.asarray(g.joints, float).reshape(NUM_KEYPOINTS, 3)
        annotated = np.isfinite(gj).all(axis=1)
        if not (annotated[WRIST] and annotated[MIDDLE_MCP]):  # every alignment needs both
            c["gt_unalignable"] += 1
            return
        c["scored"] += 1
        c["gt_joints_not_annotated"] += int((~annotated).sum())
        if p.metric and g.metric:  # absolute wrist position error, split by placement
            self.root_error_mm.setdefault(placement_name(p), []).append(
                float(np.linalg.norm(pj[WRIST] - gj[WRIST])) * M_TO_MM)
        acc.pred_j.append(pj)
        acc.gt_j.append(gj)
        pv = None if p.vertices is None else np.asarray(p.vertices, float).reshape(-1, 3)
        gv = None if g.vertices is None else np.asarray(g.vertices, float).reshape(-1, 3)
        if pv is None or gv is None or len(pv) == 0 or pv.shape != gv.shape:
            c["mesh_unavailable"] += 1
            c["miaa_unavailable"] += 1
            return
        acc.pred_v.append(pv)
        acc.gt_v.append(gv)
        acc.mesh_j_pred.append(pj)
        acc.mesh_j_gt.append(gj)
        K = gt.K if gt is not None and gt.K is not None else (pred.K if pred is not None else None)
        if K is None or not p.metric:
            c["miaa_unavailable"] += 1
            return
        acc.miaa.append(float(miaa_px(pv[None], pj[None, WRIST], gv[None], gj[None, WRIST], K)[0]))

    def _add_pair(self, pred: FrameSample, gt: FrameSample) -> None:
        """MRRPE of a frame with both hands valid in prediction and ground truth."""
        ok = all(
            h.valid and h.joints is not None for h in (pred.left, pred.right, gt.left, gt.right)
        )
        if not ok:
            return
        gt_wrists = [np.asarray(h.joints, float).reshape(NUM_KEYPOINTS, 3)[WRIST]
                     for h in (gt.left, gt.right)]
        if not all(np.isfinite(w).all() for w in gt_wrists):  # wrist not annotated
            self.mrrpe_unavailable += 1
            return
        if not (pred.left.metric and pred.right.metric):
            self.mrrpe_unavailable += 1
            return
        roots = [np.asarray(h.joints, float).reshape(NUM_KEYPOINTS, 3)[WRIST][None] for h in (pred.left, pred.right, gt.left, gt.right)]
        self.mrrpe.append(float(mrrpe_mm(*roots)[0]))

    def _add_iv(self, pred: FrameSample) -> None:
        hands = (pred.left, pred.right)
        if not all(h.valid and h.vertices is not None and h.faces is not None and len(h.faces) for h in hands):
            return
        if not (pred.left.metric and pred.right.metric):
            return  # wrist-relative meshes overlap by construction
        vol, watertight = interpenetration_volume(
            np.asarray(pred.left.vertices, float).reshape(-1, 3),
            np.asarray(pred.left.faces).reshape(-1, 3),
            np.asarray(pred.right.vertices, float).reshape(-1, 3),
            np.asarray(pred.right.faces).reshape(-1, 3),
            self.iv_pitch_m,
        )
        self.iv.append(vol)
        if not watertight:
            self.iv_not_watertight += 1

    def summary(self) -> dict[str, Any]:
        """All metrics as a JSON-ready dict (None where not computable)."""
        thresholds = pck_thresholds_mm()
        has_gt = self.frames_with_gt > 0
        out: dict[str, Any] = {
            "has_ground_truth": has_gt,
            "frames": {
                "total": self.frames,
                "with_ground_truth": self.frames_with_gt,
                "without_prediction": self.dropped,
            },
            "hands": {},
            "pck_thresholds_mm": thresholds.tolist(),
        }
        for side in SIDES:
            acc = self.hands[side]
            c = dict(acc.counts)
            c["valid_rate"] = c["pred_valid"] / c["frames"] if c["frames"] else None
            c["detected"] = c["gt_valid"] - c["missing"]
            c["detection_rate"] = c["detected"] / c["gt_valid"] if c["gt_valid"] else None
            c["confidence"] = describe(acc.confidence)
            c["confidence_invalid"] = describe(acc.confidence_invalid)
            c["confidence_gt_hand"] = describe(acc.confidence_gt_hand)
            c["confidence_gt_no_hand"] = describe(acc.confidence_gt_no_hand)
            out["hands"][side] = c
        iv = {
            "mean_cm3": _mean_or_none(self.iv),
            "median_cm3": float(np.median(self.iv)) if self.iv else None,
            "frames": len(self.iv),
            "not_watertight_frames": self.iv_not_watertight,
            "pitch_cm": self.iv_pitch_m * 100.0,
        }
        out["interpenetration"] = iv
        out["detection_rate"] = self._detection_rates()
        out["temporal"] = self._temporal_summary(has_gt)
        if not has_gt:
            return out
        metrics: dict[str, Any] = {}
        for variant in VARIANTS:
            per: dict[str, Any] = {}
            for side in SIDES:
                acc = self.hands[side]
                entry: dict[str, Any] = {"mpjpe_mm": None, "mpvpe_mm": None, "auc": None, "pck": None}
                if acc.pred_j:
                    pj, gj = np.stack(acc.pred_j), np.stack(acc.gt_j)
                    err = aligned_errors(pj, gj, pj, gj, variant) * M_TO_MM
                    entry["mpjpe_mm"] = float(np.nanmean(err))
                    pck = pck_curve(err[np.isfinite(err)], thresholds)
                    entry["pck"] = pck.tolist()
                    entry["auc"] = pck_auc(pck, thresholds)
                if acc.pred_v:
                    verr = aligned_errors(
                        np.stack(acc.pred_v), np.stack(acc.gt_v),
                        np.stack(acc.mesh_j_pred), np.stack(acc.mesh_j_gt), variant,
                    )
                    entry["mpvpe_mm"] = float(np.nanmean(verr)) * M_TO_MM
                entry["detection_rate"] = out["detection_rate"][side]
                per[side] = entry
            mean: dict[str, Any] = {
                k: _mean_or_none([per[s][k] for s in SIDES]) for k in ("mpjpe_mm", "mpvpe_mm", "auc")
            }
            curves = [np.asarray(per[s]["pck"]) for s in SIDES if per[s]["pck"] is not None]
            mean["pck"] = np.mean(curves, axis=0).tolist() if curves else None
            mean["detection_rate"] = out["detection_rate"]["mean"]
            per["mean"] = mean
            metrics[variant] = per
        out["metrics"] = metrics
        miaa = {s: _mean_or_none(self.hands[s].miaa) for s in SIDES}
        miaa["mean"] = _mean_or_none([miaa[s] for s in SIDES])
        out["miaa_px"] = miaa
        out["mrrpe_mm"] = _mean_or_none(self.mrrpe)
        out["mrrpe_frames"] = len(self.mrrpe)
        out["mrrpe_unavailable_frames"] = self.mrrpe_unavailable
        out["root_error_mm_by_placement"] = {
            name: {**describe(v), "hands": len(v)} for name, v in sorted(self.root_error_mm.items())}
        return out

    def _detection_rates(self) -> dict[str, float | None]:
        """Detected / frames with the ground-truth hand, per side and pooled over both
        ("mean"); None without ground truth for that hand."""
        out: dict[str, float | None] = {}
        for side in SIDES:
            c = self.hands[side].counts
            out[side] = (c["gt_valid"] - c["missing"]) / c["gt_valid"] if c["gt_valid"] else None
        gt = sum(self.hands[s].counts["gt_valid"] for s in SIDES)
        missing = sum(self.hands[s].counts["missing"] for s in SIDES)
        out["mean"] = (gt - missing) / gt if gt else None
        return out

    def _temporal_summary(self, has_gt: bool) -> dict[str, Any]:
        """Jitter (predictions and, with ground truth, the ground truth's own) and the
        acceleration error per hand, with the triples counted (MISS_RULE)."""
        stamps = np.asarray(self.stamps_ns, np.int64)
        dt = triple_dt_s(stamps)
        out: dict[str, Any] = {
            "rule": MISS_RULE,
            "frames": self.frames,
            "triples": max(self.frames - 2, 0),
            "frame_interval_ms": (float(np.nanmedian(dt)) * 1e3
                                  if dt.size and np.isfinite(dt).any() else None),
            "triples_without_interval": int(np.sum(~np.isfinite(dt))),
        }
        keys = ("jitter_wrist_mm_f2", "jitter_joints_mm_f2", "gt_jitter_wrist_mm_f2",
                "gt_jitter_joints_mm_f2", "accel_error_wrist_m_s2", "accel_error_joints_m_s2")
        rates = self._detection_rates()
        for side in SIDES:
            acc = self.hands[side]
            entry: dict[str, Any] = {k: None for k in keys}
            entry["detection_rate"] = rates[side]
            entry["triples_counted"] = {}
            if not acc.track_pred:
                out[side] = entry
                continue
            pred = np.stack(acc.track_pred)
            pred_metric = np.asarray(acc.track_pred_metric, bool)
            j = track_jitter(pred, pred_metric)
            entry["jitter_wrist_mm_f2"], entry["jitter_joints_mm_f2"] = j["wrist"], j["joints"]
            counted = {"jitter_wrist": j["wrist_triples"], "jitter_joints": j["joints_triples"]}
            if has_gt:
                gt = np.stack(acc.track_gt)
                gt_metric = np.asarray(acc.track_gt_metric, bool)
                g = track_jitter(gt, gt_metric)
                entry["gt_jitter_wrist_mm_f2"] = g["wrist"]
                entry["gt_jitter_joints_mm_f2"] = g["joints"]
                counted["gt_jitter_wrist"] = g["wrist_triples"]
                counted["gt_jitter_joints"] = g["joints_triples"]
                pr, prel = root_and_relative(pred)
                gr, grel = root_and_relative(gt)
                both = (pred_metric & gt_metric)[:, None, None]
                entry["accel_error_wrist_m_s2"], counted["accel_error_wrist"] = \
                    acceleration_error_m_s2(np.where(both, pr, np.nan), gr, stamps)
                entry["accel_error_joints_m_s2"], counted["accel_error_joints"] = \
                    acceleration_error_m_s2(prel, grel, stamps)
            entry["triples_counted"] = counted
            out[side] = entry
        out["mean"] = {k: _mean_or_none([out[s][k] for s in SIDES]) for k in keys}
        out["mean"]["detection_rate"] = rates["mean"]
        return out
