"""DIR's robust 6D root rotation: 6 numbers -> rotation matrix by symmetric Gram-Schmidt
(torch, batched), and the zero-safe unit vectors it is built on."""
from __future__ import annotations

import torch

# Guards the 6D normalisations against zero-length vectors; raised to the dtype's smallest
# normal number where 1e-8 would underflow to zero (float16).
_NORMALISE_EPS = 1e-8


def unit_vectors(v: torch.Tensor) -> torch.Tensor:
    """Unit vectors along the last axis (zero vectors stay finite)."""
    eps = max(_NORMALISE_EPS, torch.finfo(v.dtype).tiny)
    return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """Robust 6D -> rotation (...,6) -> (...,3,3): symmetric Gram-Schmidt, columns [x,y,z]."""
    a = unit_vectors(x[..., 0:3])
    b = unit_vectors(x[..., 3:6])
    mid = unit_vectors(a + b)
    orth = unit_vectors(a - b)
    cx = unit_vectors(mid + orth)
    cy = unit_vectors(mid - orth)
    cz = unit_vectors(torch.cross(cx, cy, dim=-1))
    return torch.stack([cx, cy, cz], dim=-1)

