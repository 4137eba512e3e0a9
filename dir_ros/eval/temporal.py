"""Temporal metrics (issue 19): jitter and acceleration error of hand tracks over runs of
consecutive valid frames (MISS_RULE)."""
from __future__ import annotations

from typing import Any

import numpy as np

from dir_ros.data.clips import second_difference_norm
from dir_ros.eval.pose_metrics import M_TO_MM, WRIST

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
