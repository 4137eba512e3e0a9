"""Training losses of DIR (per output level, release weights) and the Lovasz-softmax loss."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dir_ros.hand_model import SIDES, unit_vectors

from .outputs import XYZ_SCALE, DIROutput, HandPrediction, LevelOutput

# Threshold of the smooth-L1 variant: quadratic below |d| < 0.01, L1 above (release).
SMOOTH_L1_BETA = 0.01
# Release loss weights (DIR_ARCHITECTURE.md "Losses").
RELEASE_LOSS_WEIGHTS: dict[str, float] = {
    "joints_2d": 10.0, "verts_2d": 10.0, "joints_3d": 10.0, "verts_3d": 10.0,
    "offset": 10.0, "edge": 1.0, "normal": 0.1,
    "seg_ce": 0.1, "seg_lovasz": 0.1, "dense": 1.0}
# Cross-entropy class weights background / left / right (release; `seg_loss.weight`).
SEG_CLASS_WEIGHTS = (0.1, 0.45, 0.45)


@dataclass
class HandTarget:
    """Ground truth of one hand, same units as HandPrediction (uv in [-1,1], xyz metres
    root-relative). valid (B,) optional 0/1 weights (a hand missing from the image -> 0)."""
    joints_uv: torch.Tensor
    verts_uv: torch.Tensor
    joints_xyz: torch.Tensor
    verts_xyz: torch.Tensor
    valid: torch.Tensor | None = None

    @classmethod
    def from_prediction(cls, pred: HandPrediction) -> "HandTarget":
        """A target equal to a prediction (detached): tests, self-distillation."""
        return cls(pred.joints_uv.detach(), pred.verts_uv.detach(),
                   pred.joints_xyz.detach(), pred.verts_xyz.detach())


@dataclass
class DIRTarget:
    """Ground truth of a batch. offset (B,3) = (right root - left root) / 0.15;
    seg (B,h,w) int64 in {0 bg, 1 left, 2 right} | None; dense (B,3,h,w) float | None.
    seg/dense at any resolution (resized to the head's)."""
    left: HandTarget
    right: HandTarget
    offset: torch.Tensor
    seg: torch.Tensor | None = None
    dense: torch.Tensor | None = None

    def hand(self, side: str) -> HandTarget:
        """The target of side 'left' or 'right'."""
        return {"left": self.left, "right": self.right}[side]


class WeightedCrossEntropy(nn.CrossEntropyLoss):
    """Cross-entropy with the release's class weights, stored as buffer `weight`."""

    def __init__(self, class_weights: tuple[float, ...] = SEG_CLASS_WEIGHTS) -> None:
        super().__init__(weight=torch.tensor(class_weights, dtype=torch.float32))


def _masked_mean(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean of x (B,...) over samples weighted by valid (B,) and all other elements."""
    if valid is None:
        return x.mean()
    w = valid.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1))).expand_as(x)
    return (x * w).sum() / w.sum().clamp_min(1.0)


def smooth_l1(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None
              ) -> torch.Tensor:
    """Release smooth-L1: 0.5 d^2/beta if |d| < beta else |d| - beta/2, mean."""
    d = F.smooth_l1_loss(pred.float(), gt.float(), reduction="none", beta=SMOOTH_L1_BETA)
    return _masked_mean(d, valid)


def _edges(faces: torch.Tensor) -> torch.Tensor:
    """(F,3) faces -> (3F,2) directed edges v0v1, v1v2, v2v0."""
    return torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], dim=0)


def edge_length_loss(pred: torch.Tensor, gt: torch.Tensor, faces: torch.Tensor,
                     valid: torch.Tensor | None = None) -> torch.Tensor:
    """mean | |e_pred| - |e_gt| | over face edges; verts (B,V,3)."""
    e = _edges(faces)
    lp = (pred[:, e[:, 0]] - pred[:, e[:, 1]]).norm(dim=-1)
    lg = (gt[:, e[:, 0]] - gt[:, e[:, 1]]).norm(dim=-1)
    return _masked_mean((lp - lg).abs(), valid)


def normal_consistency_loss(pred: torch.Tensor, gt: torch.Tensor, faces: torch.Tensor,
                            valid: torch.Tensor | None = None) -> torch.Tensor:
    """mean |<unit predicted edge, GT face normal>| over the 3 edges of every face."""
    f0, f1, f2 = faces[:, 0], faces[:, 1], faces[:, 2]
    n = unit_vectors(torch.cross(gt[:, f1] - gt[:, f0], gt[:, f2] - gt[:, f0], dim=-1))
    cos = torch.stack([(unit_vectors(pred[:, b] - pred[:, a]) * n).sum(-1).abs()
                       for a, b in ((f0, f1), (f1, f2), (f2, f0))], dim=-1)
    return _masked_mean(cos, valid)


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. sorted errors
    (Berman et al. 2018, alg. 1), batched over rows: gt_sorted (C,N) 0/1 -> (C,N)."""
    gts = gt_sorted.sum(dim=1, keepdim=True)
    intersection = gts - gt_sorted.cumsum(dim=1)
    union = gts + (1.0 - gt_sorted).cumsum(dim=1)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)


def lovasz_softmax(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lovasz-softmax over all pixels of the batch, averaged over classes present in labels.

    logits (B,C,h,w), labels (B,h,w) int64. Per class c: errors |[y=c] - p_c| sorted
    descending, dotted with lovasz_grad of the correspondingly sorted ground truth.
    """
    probs = logits.float().softmax(dim=1)
    c = probs.shape[1]
    probs = probs.permute(1, 0, 2, 3).reshape(c, -1)                       # (C,N)
    fg = F.one_hot(labels.reshape(-1), c).t().to(probs.dtype)             # (C,N)
    errors = (fg - probs).abs()
    errors_sorted, perm = errors.sort(dim=1, descending=True)
    grad = lovasz_grad(torch.gather(fg, 1, perm))
    per_class = (errors_sorted * grad).sum(dim=1)
    present = fg.sum(dim=1) > 0
    return (per_class * present).sum() / present.sum().clamp_min(1)


def level_losses(level: LevelOutput, target: DIRTarget, faces: dict[str, torch.Tensor]
                 ) -> dict[str, torch.Tensor]:
    """Unweighted per-level terms summed over both hands (xyz in units of 0.15 m)."""
    terms: dict[str, torch.Tensor] = {}
    for side in SIDES:
        p, t = level.hand(side), target.hand(side)
        pv, tv = p.verts_xyz.float() / XYZ_SCALE, t.verts_xyz.float() / XYZ_SCALE
        side_terms = {
            "joints_2d": smooth_l1(p.joints_uv, t.joints_uv, t.valid),
            "verts_2d": smooth_l1(p.verts_uv, t.verts_uv, t.valid),
            "joints_3d": smooth_l1(p.joints_xyz / XYZ_SCALE, t.joints_xyz / XYZ_SCALE, t.valid),
            "verts_3d": smooth_l1(pv, tv, t.valid),
            "edge": edge_length_loss(pv, tv, faces[side], t.valid),
            "normal": normal_consistency_loss(pv, tv, faces[side], t.valid)}
        for name, value in side_terms.items():
            terms[name] = terms[name] + value if name in terms else value
    both = None
    if target.left.valid is not None and target.right.valid is not None:
        both = target.left.valid * target.right.valid
    terms["offset"] = smooth_l1(level.offset, target.offset, both)
    return terms


def dir_losses(output: DIROutput, target: DIRTarget, faces: dict[str, torch.Tensor],
               weights: dict[str, float] | None = None,
               seg_loss: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Weighted loss terms, named `level{i}/{term}` (i = 0 initial) plus `seg_ce`,
    `seg_lovasz`, `dense` when both the head output and its target exist; `total` = sum."""
    w = {**RELEASE_LOSS_WEIGHTS, **(weights or {})}
    out: dict[str, torch.Tensor] = {}
    for i, level in enumerate(output.levels):
        for name, value in level_losses(level, target, faces).items():
            out[f"level{i}/{name}"] = w[name] * value
    if output.seg is not None and target.seg is not None:
        labels = target.seg
        if labels.shape[-2:] != output.seg.shape[-2:]:
            labels = F.interpolate(labels[:, None].float(), size=output.seg.shape[-2:],
                                   mode="nearest")[:, 0].long()
        ce = seg_loss if seg_loss is not None else WeightedCrossEntropy().to(output.seg.device)
        out["seg_ce"] = w["seg_ce"] * ce(output.seg.float(), labels)
        out["seg_lovasz"] = w["seg_lovasz"] * lovasz_softmax(output.seg, labels)
    if output.dense is not None and target.dense is not None:
        dense = target.dense
        if dense.shape[-2:] != output.dense.shape[-2:]:
            dense = F.interpolate(dense.float(), size=output.dense.shape[-2:], mode="area")
        out["dense"] = w["dense"] * F.l1_loss(output.dense.float(), dense.float())
    out["total"] = sum(out.values())
    return out
