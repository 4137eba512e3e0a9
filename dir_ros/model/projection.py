"""Bone projection: paint per-bone joint features (or bone masks) onto a feature grid.

The release builds every (cell, bone) point pair with its two end features, i.e. a
B x S^2 x 20 x 2 x C gather. Here the geometry is reduced first to two scalar weights per
(bone, cell), (B,20,2,S^2), and the planes are one batched matmul of those weights with
the bones' end features; the result is the same tensor.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

# Squared bone length (feature px^2) below which bone_geometry measures distances to the
# bone's parent point instead of dividing by the length (also the floor of _safe_norm).
# Bones of exactly zero length are dropped by bone_end_weights, as in the release.
ZERO_LENGTH_EPS = 1e-12


def make_grid(size: int) -> torch.Tensor:
    """Cell centres of a size x size map, (size*size, 2) as (u, v) = (col + 0.5, row + 0.5),
    row-major (the release's `img_gird`)."""
    r = torch.arange(size, dtype=torch.float32) + 0.5
    v, u = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1)], dim=-1)


def uv_to_feature_px(uv: torch.Tensor, size: int) -> torch.Tensor:
    """Normalised uv in [-1,1] over the crop -> feature-map pixels (cell centre = idx + 0.5)."""
    return (uv + 1.0) * (size / 2.0)


def _bone_ends(parents: Sequence[int], device: torch.device
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Index tensors (K,) of each bone's parent point parents[k] and child point k + 1."""
    par = torch.as_tensor(list(parents), device=device)
    child = torch.arange(1, len(parents) + 1, device=device)
    return par, child


def bone_geometry(points: torch.Tensor, grid: torch.Tensor, parents: Sequence[int]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distances of each grid cell to each bone, computed in float32.

    points (B,N,2) px, grid (P,2) px; bone k joins parents[k] (a) to child k + 1 (b).
    Returns d_seg (B,K,P) point-to-segment distance, d_a, d_b (B,K,P) to each end.
    """
    pts = points.float()
    par, child = _bone_ends(parents, pts.device)
    a, b = pts[:, par], pts[:, child]                       # (B,K,2)
    ab = b - a                                              # (B,K,2)
    ap = grid.float()[None, None] - a[:, :, None]           # (B,K,P,2)
    len2 = (ab * ab).sum(-1, keepdim=True)                  # (B,K,1)
    proj = (ap * ab[:, :, None]).sum(-1)                    # (B,K,P)
    nonzero = len2 > ZERO_LENGTH_EPS
    t = torch.where(nonzero, proj / torch.where(nonzero, len2, torch.ones_like(len2)),
                    torch.zeros_like(proj)).clamp(0.0, 1.0)
    d_seg = _safe_norm(ap - t[..., None] * ab[:, :, None])
    d_a = _safe_norm(ap)
    d_b = _safe_norm(ap - ab[:, :, None])
    return d_seg, d_a, d_b


def _safe_norm(x: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last axis with a finite gradient at 0."""
    sq = (x * x).sum(-1)
    return torch.where(sq > 0, sq.clamp_min(ZERO_LENGTH_EPS).sqrt(), torch.zeros_like(sq))


def bone_has_length(points: torch.Tensor, parents: Sequence[int]) -> torch.Tensor:
    """(B,K,1) bool: bone k's two end points differ (its length is not exactly 0)."""
    pts = points.float()
    par, child = _bone_ends(parents, pts.device)
    return (pts[:, child] != pts[:, par]).any(-1, keepdim=True)


def bone_end_weights(points: torch.Tensor, grid: torch.Tensor, parents: Sequence[int],
                     distance: float) -> torch.Tensor:
    """Release weights (B,K,2,P) float32: [parent, child] = [1 - d_a/(d_a+d_b),
    1 - d_b/(d_a+d_b)] for cells whose distance to bone k is < distance, else 0.

    A bone of exactly zero length paints nothing: the release normalises the bone
    direction by its length, the 0/0 makes the segment distance NaN and its `< distance`
    test false, so the whole plane stays 0. The same result is produced here without NaN.
    """
    d_seg, d_a, d_b = bone_geometry(points, grid, parents)
    total = d_a + d_b
    pos = total > 0
    safe_total = torch.where(pos, total, torch.ones_like(total))
    w_a = torch.where(pos, 1.0 - d_a / safe_total, torch.zeros_like(total))
    w_b = torch.where(pos, 1.0 - d_b / safe_total, torch.zeros_like(total))
    inside = ((d_seg < distance) & bone_has_length(points, parents)).to(w_a.dtype)
    return torch.stack([w_a * inside, w_b * inside], dim=2)


def bone_tent_heatmaps(points: torch.Tensor, grid: torch.Tensor, parents: Sequence[int],
                       distance: float) -> torch.Tensor:
    """Bone masks (B,K,P) float32: max(0, 1 - d_seg / distance) (the heatmap ablation)."""
    d_seg, _, _ = bone_geometry(points, grid, parents)
    return (1.0 - d_seg / distance).clamp_min(0.0)


def bone_end_features(feats: torch.Tensor, parents: Sequence[int]) -> torch.Tensor:
    """Each bone's end features: feats (B,N,C) joint features -> (B,K,2,C) holding
    [f[parent_k], f[child_k]] (the pair bone_end_weights' two weights multiply)."""
    par, child = _bone_ends(parents, feats.device)
    return torch.stack([feats[:, par], feats[:, child]], dim=2)


def project_bone_features(feats: torch.Tensor, weights: torch.Tensor,
                          parents: Sequence[int]) -> torch.Tensor:
    """Per-bone feature planes: feats (B,N,C) joint features, weights (B,K,2,P) from
    bone_end_weights -> (B,K,C,P) with plane[b,k,:,p] = w_a f[parent_k] + w_b f[child_k]."""
    ends = bone_end_features(feats, parents)                           # (B,K,2,C)
    return torch.matmul(ends.transpose(2, 3), weights.to(feats.dtype))  # (B,K,C,P)
