"""Rotation helpers of the landmark fit (float64 torch, batched): cross-product matrices,
axis-angle <-> matrix (Rodrigues; Shepperd's quaternion method back), the SO(3) right
Jacobian, the smallest rotation between two directions and the Kabsch best-fit rotation.

Units: radians."""
from __future__ import annotations

from typing import Tuple

import torch

from dir_ros.hand_model import unit_vectors

__all__ = ["eye3", "skew", "rodrigues", "right_jacobian", "min_rotation",
           "matrix_to_axis_angle", "kabsch_rotation"]

# Small-angle threshold (rad) of the sin/cos ratios: angles are clamped to it in _angle, and
# matrix_to_axis_angle takes the ratio's limit below it.
_SMALL_ANGLE = 1e-4
# 1 + cos(angle) floor in min_rotation: below it the two directions count as opposite.
_OPPOSITE_EPS = 1e-9

_F64 = torch.float64


def eye3(like: torch.Tensor) -> torch.Tensor:
    """3x3 identity with the dtype and device of `like`."""
    return torch.eye(3, dtype=like.dtype, device=like.device)


def _linear_map(entries: dict, n_in: int, n_out: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Constant (n_out,) and matrix (n_in, n_out) float64 of the affine map out = const +
    in @ matrix, from {output index: (constant, ((sign, input index), ...))}."""
    const = torch.zeros(n_out, dtype=_F64)
    mat = torch.zeros(n_in, n_out, dtype=_F64)
    for out, (c, terms) in entries.items():
        const[out] = c
        for sign, i in terms:
            mat[i, out] += sign
    return const, mat


# skew(v) flattened row-major = v @ _SKEW_BASIS: one small matmul instead of a 9-way stack.
_, _SKEW_BASIS = _linear_map({1: (0, ((-1, 2),)), 2: (0, ((1, 1),)), 3: (0, ((1, 2),)),
                              5: (0, ((-1, 0),)), 6: (0, ((-1, 1),)), 7: (0, ((1, 0),))}, 3, 9)
# Shepperd's candidates: row i of the (4,4) matrix is 4 q_i (w, x, y, z) of the rotation m;
# flattened = _QUAT_CONST + m.flatten() @ _QUAT_BASIS (entries m_ij at index 3 i + j).
_M00, _M01, _M02, _M10, _M11, _M12, _M20, _M21, _M22 = range(9)
_D21, _D02, _D10 = ((1, _M21), (-1, _M12)), ((1, _M02), (-1, _M20)), ((1, _M10), (-1, _M01))
_S01, _S02, _S12 = ((1, _M01), (1, _M10)), ((1, _M02), (1, _M20)), ((1, _M12), (1, _M21))
_QUAT_CONST, _QUAT_BASIS = _linear_map({
    0: (1, ((1, _M00), (1, _M11), (1, _M22))), 1: (0, _D21), 2: (0, _D02), 3: (0, _D10),
    4: (0, _D21), 5: (1, ((1, _M00), (-1, _M11), (-1, _M22))), 6: (0, _S01), 7: (0, _S02),
    8: (0, _D02), 9: (0, _S01), 10: (1, ((-1, _M00), (1, _M11), (-1, _M22))), 11: (0, _S12),
    12: (0, _D10), 13: (0, _S02), 14: (0, _S12), 15: (1, ((-1, _M00), (-1, _M11), (1, _M22))),
}, 9, 16)


def skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices (...,3,3) of float64 vectors v (...,3): skew(v) @ x = v x x."""
    return (v @ _SKEW_BASIS).view(v.shape[:-1] + (3, 3))


def _angle(theta: torch.Tensor) -> torch.Tensor:
    """|theta| (...,1,1) rad of axis-angle vectors theta (...,3), clamped to >= _SMALL_ANGLE.

    The sin/cos ratios below are then evaluated at the clamped angle: they differ from their
    limits by < _SMALL_ANGLE^2 / 6 relative and multiply skew(theta) of norm < _SMALL_ANGLE, so
    a rotation is off by < 2e-13, float64 rounding scale, with no Taylor branches to select."""
    return (theta * theta).sum(-1)[..., None, None].sqrt().clamp_min(_SMALL_ANGLE)


def rodrigues(theta: torch.Tensor) -> torch.Tensor:
    """Axis-angle (...,3) rad -> rotation matrices (...,3,3)."""
    a = _angle(theta)
    k = skew(theta)
    return eye3(theta) + (torch.sin(a) / a) * k + ((1.0 - torch.cos(a)) / (a * a)) * (k @ k)


def right_jacobian(theta: torch.Tensor) -> torch.Tensor:
    """SO(3) right Jacobian (...,3,3): exp(theta + d) ~= exp(theta) exp(Jr(theta) d)."""
    a = _angle(theta)
    k = skew(theta)
    a2 = a * a
    return eye3(theta) - ((1.0 - torch.cos(a)) / a2) * k \
        + ((a - torch.sin(a)) / (a2 * a)) * (k @ k)


def min_rotation(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Smallest rotations (...,3,3) turning directions u onto v (...,3) (axis u x v); the
    identity where u and v are opposite or zero (no unique answer; the LM steps sort it out)."""
    u, v = unit_vectors(u), unit_vectors(v)
    axis = torch.cross(u, v, dim=-1)
    cos = (u * v).sum(-1)[..., None, None]
    k = skew(axis)
    eye = torch.eye(3, dtype=u.dtype, device=u.device)
    return eye + k + (k @ k) / (1.0 + cos).clamp_min(_OPPOSITE_EPS)


def matrix_to_axis_angle(rot: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (...,3,3) -> axis-angle (...,3) rad, |angle| <= pi, through the
    quaternion (Shepperd's method: built from the largest of w, x, y, z; stable everywhere)."""
    # row i: 4 q_i times the quaternion (w, x, y, z); float64 rotations
    cands = (_QUAT_CONST + rot.flatten(-2) @ _QUAT_BASIS).view(rot.shape[:-2] + (4, 4))
    diag = torch.diagonal(cands, dim1=-2, dim2=-1)
    best = diag.argmax(-1, keepdim=True)
    q = torch.gather(cands, -2, best[..., None].expand(best.shape + (4,))).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)  # w >= 0: angle in [0, pi]
    v = q[..., 1:]
    sin_half = v.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(sin_half, q[..., :1])
    # angle / sin(angle/2) -> 2 / w as the angle -> 0
    ratio = torch.where(sin_half > _SMALL_ANGLE, angle / sin_half.clamp_min(_SMALL_ANGLE),
                        2.0 / q[..., :1])
    return v * ratio


def kabsch_rotation(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Rotation R (B,3,3) minimising sum |R (src - mean) - (dst - mean)|^2; src, dst (B,N,3)."""
    a = src - src.mean(1, keepdim=True)
    b = dst - dst.mean(1, keepdim=True)
    u, _, vh = torch.linalg.svd(b.transpose(1, 2) @ a)  # cov = sum b a^T
    d = torch.sign(torch.linalg.det(u @ vh))
    d = torch.where(d == 0, torch.ones_like(d), d)
    fix = torch.ones(src.shape[0], 3, dtype=src.dtype, device=src.device)
    fix[:, 2] = d  # no reflections
    return (u * fix[:, None, :]) @ vh

