"""Pose and placement metrics of the DIR paper (ICCV 2023), numpy, vectorised over frames:
MPJPE, MPVPE, PCK/AUC, MRRPE, MIAA.

Units: inputs in metres (camera optical frame) and pixels; outputs in millimetres and
pixels as named. Keypoint order is the project's 21-keypoint order (0 wrist, 9 middle MCP).

Protocol (docs/evaluation.md, spec "Evaluation protocol of the release"):
  * ``wrist`` (main table): translate both hands so keypoint 0 is at the origin, scale the
    prediction about it by |GT wrist-to-middle-MCP| / |pred wrist-to-middle-MCP|.
  * ``ms``: same, aligned at the middle MCP (keypoint 9), scaled.
  * ``m``: aligned at the middle MCP, not scaled.
  * MRRPE: |(pred right root - pred left root) - (GT right root - GT left root)|, mm.
  * MIAA: predicted root-relative mesh placed at the GT root, projected with K; mean pixel
    distance to the projected GT vertices.
  * PCK / AUC over 0-50 mm of the aligned per-joint errors.
  * Interpenetration volume: dir_ros/eval/interpenetration.py; temporal metrics (jitter,
    acceleration error): dir_ros/eval/temporal.py; the accumulating Evaluator:
    dir_ros/eval/evaluator.py.
"""
from __future__ import annotations

import numpy as np

WRIST = 0  # keypoint index of the wrist (contract keypoint order)
MIDDLE_MCP = 9  # keypoint index of the middle-finger MCP (contract keypoint order)
M_TO_MM = 1000.0  # metres -> millimetres
PCK_MAX_MM = 50.0  # PCK/AUC range 0-50 mm (paper and release)
PCK_NUM_THRESHOLDS = 101  # thresholds every 0.5 mm over 0-50 mm
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
