"""The accumulating Evaluator: prediction vs ground truth frame by frame (HandSample,
FrameSample), summarised into every metric (dir_ros/eval/pose_metrics.py,
interpenetration.py, temporal.py) with detection rates (MISS_RULE)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dir_ros.common.results import NUM_KEYPOINTS, SIDES
from dir_ros.eval.interpenetration import IV_PITCH_M, interpenetration_volume
from dir_ros.eval.pose_metrics import (MIDDLE_MCP, M_TO_MM, VARIANTS, WRIST, aligned_errors,
                                       miaa_px, mrrpe_mm, pck_auc, pck_curve, pck_thresholds_mm)
from dir_ros.eval.temporal import (MISS_RULE, acceleration_error_m_s2, root_and_relative,
                                   track_jitter, triple_dt_s)


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
