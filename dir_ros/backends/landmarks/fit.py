"""Landmark backend math: metric placement of MediaPipe-style hand landmarks and a fast,
batched fit of a MANO-format hand layer to 21 target 3D keypoints (no ROS, no DIR network).

Pipeline per hand (the integrator's side): ``t = place_hand(world, image_px, K)`` puts the
hand-centred metric "world landmarks" into the camera frame; ``HandFitter.fit(world + t)``
then returns the hand model's mesh, joints, per-joint rotations and shape in that frame.

Fit (``HandFitter``):
  1. Root rotation in closed form (Kabsch) from the six palm keypoints (wrist, thumb base,
     index/middle/ring/pinky MCP). These are all children of the MANO root, so for given
     betas they move rigidly with the root: the closed form is exact on noiseless targets.
     Then a "swing" start for the fingers: level by level (MCP, PIP, DIP, batched over the
     five fingers) each bone is turned by the smallest rotation onto the target's bone
     direction (from ~30 mm to ~4 mm mean keypoint error before any iteration).
  2. A few batched Levenberg-Marquardt (damped Gauss-Newton) steps over root rotation (3),
     full finger pose (15 joints x 3 axis-angle, mean pose included) and shape (10 betas),
     with an analytic Jacobian of a 21-point forward kinematics model (joints from the
     joint regressor folded with the shape blend shapes, fingertip vertices by the same
     linear blend skinning as the layer: no mesh inside the fit). Forward kinematics runs
     finger-major, one batched step per level for all five fingers. The translation is
     eliminated (residuals are centred), so the target may be in any frame. L2
     regularisation pulls the finger pose to the model's mean pose and the betas to zero,
     which keeps noisy landmarks on plausible hands and fixes the degrees of freedom the
     keypoints do not see (e.g. twist of the last finger bones). A hand stops when a step
     is predicted to (or did) lower its cost by less than rel_tol of it; the check comes
     before the candidate's forward pass, so the last, confirming iteration costs only
     the Jacobian and one solve.
  3. The mesh once, by the layer's linear blend skinning with the fit's joint transforms
     (float64; equal to the layer's output in maths, checked in the tests).

Units: metres, radians. Frames: the target's (camera optical frame for place_hand output).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from dir_ros.common.geometry import HALF_PIXEL
from dir_ros.hand_model import (BONE_PARENTS, MANO_PARENTS, MANO_TO_KEYPOINT, NUM_BETAS,
                                NUM_JOINTS, NUM_KEYPOINTS, HandLayer, unit_vectors)

__all__ = [
    "PALM_KEYPOINTS", "NUM_FIT_PARAMS", "ROOT_AA_SLICE", "FINGER_AA_SLICE", "POSE_AA_SLICE",
    "FIT_BETAS_SLICE", "TRANSL_SLICE",
    "place_hand", "FitResult", "HandFitter", "kabsch_rotation",
]

# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------
# Contract keypoint ids of the palm: wrist, thumb base (MANO joint 13, the CMC), index,
# middle, ring and pinky MCP (MANO joints 1, 4, 10, 7). All are MANO root children.
PALM_KEYPOINTS: Tuple[int, ...] = (0, 1, 5, 9, 13, 17)
_NUM_FINGER_JOINTS = NUM_JOINTS - 1  # 15
# MANO's finger joints are finger-major: joint 1 + 3 f + l is level l (MCP, PIP, DIP) of
# finger f (index, middle, pinky, ring, thumb), its parent the wrist (l = 0) or joint 3 f + l.
_NUM_FINGERS, _NUM_LEVELS = 5, 3
# Batches of distinct side patterns whose gathered buffers HandFitter keeps (left, right,
# both in either order, ... : a handful in practice; the cache is cleared when full).
_MAX_CACHED_BATCHES = 16
_NUM_FINGER_AA = 3 * _NUM_FINGER_JOINTS  # 45
# FitResult.params layout (B, 61): root axis-angle | finger axis-angle (MANO joints 1..15,
# absolute, mean pose included) | betas | translation of the root keypoint (wrist), metres.
ROOT_AA_SLICE = slice(0, 3)
FINGER_AA_SLICE = slice(3, 3 + _NUM_FINGER_AA)
POSE_AA_SLICE = slice(0, 3 + _NUM_FINGER_AA)  # the 48-value MANO pose
FIT_BETAS_SLICE = slice(POSE_AA_SLICE.stop, POSE_AA_SLICE.stop + NUM_BETAS)
TRANSL_SLICE = slice(FIT_BETAS_SLICE.stop, FIT_BETAS_SLICE.stop + 3)
NUM_FIT_PARAMS = TRANSL_SLICE.stop  # 61
# Optimised unknowns per hand: root rotation increment (3), finger axis-angle (45), betas (10).
_NUM_UNKNOWNS = 3 + _NUM_FINGER_AA + NUM_BETAS  # 58
_FINGER_UNK = slice(3, 3 + _NUM_FINGER_AA)

# Defaults of HandFitter (measured with benchmarks/benchmark_landmark_fit.py; see its output).
DEFAULT_STEPS = 12  # LM iterations at most (hands typically stop after 1-4)
DEFAULT_LR = 1.0  # fraction of each LM step taken (1 = the full damped Gauss-Newton step)
# Regularisation weights, m^2 per unit^2: a deviation of 1 rad of one finger joint from the
# mean pose (1 unit of one beta from 0) costs as much as a sqrt(weight) m keypoint residual:
# sqrt(1e-5) = 3.2 mm. Chosen with the benchmark's sweep (1e-7..1e-4): with 3 mm landmark
# noise it lowers the joint error against the truth slightly versus 1e-6, while noiseless
# fits stay within ~1 mm (max-joint mean); 1e-4 biases noiseless fits to ~3 mm.
DEFAULT_POSE_REG = 1e-5  # (m/rad)^2
DEFAULT_SHAPE_REG = 1e-5  # (m/beta)^2
# Levenberg-Marquardt damping (Marquardt-scaled): start, multiply on reject, divide on accept,
# bounds. Standard textbook values (Nielsen 1999 style factor-of-10 updates).
_LM_DAMPING_INIT = 1e-3
_LM_DAMPING_UP = 10.0
_LM_DAMPING_DOWN = 10.0
_LM_DAMPING_MIN, _LM_DAMPING_MAX = 1e-9, 1e6
# A hand counts as converged (the loop stops when all have) when its cost (m^2: squared
# keypoint residuals summed over the 21 keypoints, plus the priors) is predicted to drop, or
# did drop, in a step by less than DEFAULT_REL_TOL of itself, or by less than the floor
# 21 * (0.05 mm)^2 (far below any landmark noise; it ends noiseless fits). 0.3 % of the cost
# is 0.15 % of the RMS residual: ~0.01 mm of the ~5 mm left on real MediaPipe landmarks,
# where the floor alone ran 7 steps on average (often all 12) and this rule 3.4, for a mean
# residual of 5.722 vs 5.729 mm (benchmarks/benchmark_landmark_fit.py --images); synthetic
# targets reach the converged accuracy in 1-2 steps either way.
DEFAULT_REL_TOL = 3e-3
_CONVERGED_DECREASE = NUM_KEYPOINTS * (5e-5) ** 2
# Added to diag(H) in the Marquardt scaling so zero-curvature directions still get damped.
_DIAG_FLOOR = 1e-12
# Small-angle threshold (rad) of the sin/cos ratios: angles are clamped to it in _angle, and
# _matrix_to_axis_angle takes the ratio's limit below it.
_SMALL_ANGLE = 1e-4
# 1 + cos(angle) floor in _min_rotation: below it the two directions count as opposite.
_OPPOSITE_EPS = 1e-9
# place_hand noise model (standard deviations per coordinate), used only to weight the
# landmarks against each other: MediaPipe image landmarks ~1-2 px on a hand a few hundred px
# tall, world landmarks a few mm (assumed, from the benchmark noise used here; scale both
# together and nothing changes).
DEFAULT_PX_SIGMA = 1.5  # px
DEFAULT_WORLD_SIGMA = 3e-3  # m
# Reweighted solves after the first (the weights depend only on the landmark depths, which
# the first solve already gets to within a few percent: two passes settle them).
_PLACE_REWEIGHT_STEPS = 2
# Smallest depth (m) a landmark may have in front of the camera.
_MIN_DEPTH = 1e-3
# place_hand: smallest accepted reciprocal condition number of the 3x3 normal matrix.
_PLACE_MIN_RCOND = 1e-10
_M_TO_MM = 1e3

_F64 = torch.float64


# ---------------------------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------------------------
def place_hand(world: np.ndarray, image_px: np.ndarray, K: np.ndarray,
               weights: Optional[np.ndarray] = None, *,
               px_sigma: float = DEFAULT_PX_SIGMA,
               world_sigma: float = DEFAULT_WORLD_SIGMA) -> np.ndarray:
    """Camera-frame translation t (3,) m with world + t projecting onto image_px through K.

    world (N,3) m (hand-centred, camera-aligned axes), image_px (N,2) corner-origin pixels,
    K (3,3), weights (N,) >= 0 (None = all 1; points with weight 0 are ignored, may be NaN).
    With the rotation known, the collinearity equations (X + tx) - x (Z + tz) = 0 (x, y the
    normalised image coordinates) are linear in t; their residual is depth x reprojection
    error, so each is weighted by weights / (world_sigma^2 + (depth * px_sigma / f)^2) (the
    variance of that residual for world noise world_sigma m and pixel noise px_sigma px) and
    re-solved with the depths of the previous solve (iteratively reweighted least squares).
    Raises ValueError on non-finite input, fewer than 2 usable points, a degenerate
    geometry or a solution with a landmark behind the camera.
    """
    world = np.asarray(world, dtype=np.float64)
    px = np.asarray(image_px, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    if world.ndim != 2 or world.shape[1] != 3 or px.shape != (world.shape[0], 2):
        raise ValueError(f"world must be (N,3) and image_px (N,2), got {world.shape}, {px.shape}")
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K must be a finite (3,3) intrinsic matrix with fx, fy > 0, got {K}")
    if not (px_sigma >= 0 and world_sigma >= 0 and px_sigma + world_sigma > 0):
        raise ValueError(f"need px_sigma, world_sigma >= 0, not both 0; got {px_sigma}, "
                         f"{world_sigma}")
    w = np.ones(len(world)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w.shape != (len(world),) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be (N,) finite and >= 0")
    used = w > 0
    if used.sum() < 2:
        raise ValueError(f"place_hand needs at least 2 points with weight > 0, got {used.sum()}")
    world, px, w = world[used], px[used], w[used]
    if not (np.all(np.isfinite(world)) and np.all(np.isfinite(px))):
        raise ValueError("place_hand: non-finite world or image landmarks")
    # Normalised image coordinates (x, y) of each ray: K^-1 [u - 0.5, v - 0.5, 1].
    uv1 = np.column_stack([px - HALF_PIXEL, np.ones(len(px))])
    rays = np.linalg.solve(K, uv1.T).T
    xn, yn = rays[:, 0] / rays[:, 2], rays[:, 1] / rays[:, 2]
    n = len(world)
    a = np.zeros((2 * n, 3))  # rows x0, y0, x1, y1, ...
    a[0::2, 0], a[0::2, 2] = 1.0, -xn
    a[1::2, 1], a[1::2, 2] = 1.0, -yn
    b = np.empty(2 * n)
    b[0::2] = xn * world[:, 2] - world[:, 0]
    b[1::2] = yn * world[:, 2] - world[:, 1]
    focal = np.tile([K[0, 0], K[1, 1]], n)  # pixels per normalised unit of each row
    t = _weighted_lstsq(a, b, np.repeat(w, 2))  # first pass: plain weights
    for _ in range(_PLACE_REWEIGHT_STEPS):
        depth = np.repeat(world[:, 2] + t[2], 2)
        if np.any(depth <= _MIN_DEPTH):
            break  # behind the camera: reported below
        var = world_sigma ** 2 + (depth * px_sigma / focal) ** 2
        t = _weighted_lstsq(a, b, np.repeat(w, 2) / var)
    depth = world[:, 2] + t[2]
    if not np.all(np.isfinite(t)) or np.any(depth <= _MIN_DEPTH):
        raise ValueError(f"place_hand: degenerate solution t={t} (landmark depth "
                         f"{depth.min():.4g} m, behind the camera or at it)")
    return t


def _weighted_lstsq(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares x (3,) of a x = b (row weights w) through the normal
    equations; ValueError if they are singular (t not determined)."""
    h = a.T @ (a * w[:, None])
    if not np.all(np.isfinite(h)) or np.linalg.cond(h) * _PLACE_MIN_RCOND > 1.0:
        raise ValueError("place_hand: degenerate geometry (rays do not constrain t)")
    return np.linalg.solve(h, a.T @ (b * w))


# ---------------------------------------------------------------------------------------------
# Rotation helpers (float64, batched)
# ---------------------------------------------------------------------------------------------
def _eye3(like: torch.Tensor) -> torch.Tensor:
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


def _skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices (...,3,3) of float64 vectors v (...,3): skew(v) @ x = v x x."""
    return (v @ _SKEW_BASIS).view(v.shape[:-1] + (3, 3))


def _angle(theta: torch.Tensor) -> torch.Tensor:
    """|theta| (...,1,1) rad of axis-angle vectors theta (...,3), clamped to >= _SMALL_ANGLE.

    The sin/cos ratios below are then evaluated at the clamped angle: they differ from their
    limits by < _SMALL_ANGLE^2 / 6 relative and multiply skew(theta) of norm < _SMALL_ANGLE, so
    a rotation is off by < 2e-13, float64 rounding scale, with no Taylor branches to select."""
    return (theta * theta).sum(-1)[..., None, None].sqrt().clamp_min(_SMALL_ANGLE)


def _rodrigues(theta: torch.Tensor) -> torch.Tensor:
    """Axis-angle (...,3) rad -> rotation matrices (...,3,3)."""
    a = _angle(theta)
    k = _skew(theta)
    return _eye3(theta) + (torch.sin(a) / a) * k + ((1.0 - torch.cos(a)) / (a * a)) * (k @ k)


def _right_jacobian(theta: torch.Tensor) -> torch.Tensor:
    """SO(3) right Jacobian (...,3,3): exp(theta + d) ~= exp(theta) exp(Jr(theta) d)."""
    a = _angle(theta)
    k = _skew(theta)
    a2 = a * a
    return _eye3(theta) - ((1.0 - torch.cos(a)) / a2) * k \
        + ((a - torch.sin(a)) / (a2 * a)) * (k @ k)


def _min_rotation(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Smallest rotations (...,3,3) turning directions u onto v (...,3) (axis u x v); the
    identity where u and v are opposite or zero (no unique answer; the LM steps sort it out)."""
    u, v = unit_vectors(u), unit_vectors(v)
    axis = torch.cross(u, v, dim=-1)
    cos = (u * v).sum(-1)[..., None, None]
    k = _skew(axis)
    eye = torch.eye(3, dtype=u.dtype, device=u.device)
    return eye + k + (k @ k) / (1.0 + cos).clamp_min(_OPPOSITE_EPS)


def _matrix_to_axis_angle(rot: torch.Tensor) -> torch.Tensor:
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


# ---------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------
@dataclass
class FitResult:
    """Hand-model fit of B hands (frame = the targets' frame, metres)."""

    params: np.ndarray  # (B,61) float64 warm-start state: [root aa 0:3 | finger aa 3:48 (MANO
    # joints 1..15, absolute, mean pose included) | betas 48:58 | wrist translation 58:61 m]
    joints: np.ndarray  # (B,21,3) float32 m, contract keypoint order
    vertices: np.ndarray  # (B,V,3) float32 m
    rotmats: np.ndarray  # (B,16,3,3) float64 root + 15 finger joint rotations (MANO order)
    shape: np.ndarray  # (B,10) float64 betas
    residual_mm: np.ndarray  # (B,) float64 RMS 3D keypoint distance after the fit, mm
    steps: int = 0  # LM iterations run (the loop stops early when all hands converged)

    @property
    def pose(self) -> np.ndarray:
        """(B,48) MANO pose axis-angle rad: root (canonical, |angle| <= pi) + 15 finger joints."""
        return self.params[:, POSE_AA_SLICE]

    @property
    def translation(self) -> np.ndarray:
        """(B,3) m position of the wrist keypoint (= joints[:, 0], up to float32 rounding)."""
        return self.params[:, TRANSL_SLICE]


# ---------------------------------------------------------------------------------------------
# Fitter
# ---------------------------------------------------------------------------------------------
class HandFitter:
    """Fits MANO-format hand layers (open hand or MANO) to target 3D keypoints, batched over
    hands; with one layer per side, left and right hands in the same batch."""

    def __init__(self, layers: Union[HandLayer, Mapping[str, HandLayer]],
                 steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR,
                 shape_reg: float = DEFAULT_SHAPE_REG, pose_reg: float = DEFAULT_POSE_REG,
                 swing_init: bool = True, rel_tol: float = DEFAULT_REL_TOL) -> None:
        """Precompute the 21-keypoint kinematic model of each layer (float64, CPU).

        layers: one HandLayer (every hand uses it), or side name -> HandLayer (each hand
        names its side in fit(); the layers must have the same number of vertices).
        steps: LM iterations at most; lr: fraction of each LM step taken (0 < lr <= 1);
        shape_reg (m/beta)^2 and pose_reg (m/rad)^2: L2 weights pulling betas to 0 and the
        finger axis-angle to the layer's mean pose (see DEFAULT_POSE_REG); swing_init: start
        the fingers bone by bone from the target (False = from the mean/previous pose only,
        the benchmark's baseline); rel_tol: a hand has converged when a step lowers (or is
        predicted to lower) its cost by less than this fraction of it (see DEFAULT_REL_TOL;
        0 = only the absolute floor, i.e. run to numerical convergence).
        """
        if steps < 0 or not 0.0 < lr <= 1.0 or shape_reg < 0 or pose_reg < 0 \
                or not 0.0 <= rel_tol < 1.0:
            raise ValueError(f"need steps >= 0, 0 < lr <= 1, regularisers >= 0, "
                             f"0 <= rel_tol < 1; got {steps}, {lr}, {shape_reg}, {pose_reg}, "
                             f"{rel_tol}")
        if isinstance(layers, HandLayer):
            self.layer: Optional[HandLayer] = layers
            self.sides: Tuple[str, ...] = ()
            chosen = [layers]
        else:
            self.layer = None
            self.sides = tuple(layers)
            chosen = [layers[s] for s in self.sides]
            if not chosen:
                raise ValueError("HandFitter needs at least one layer")
        for lay in chosen:
            parents = tuple(int(p) for p in lay.parents.tolist())
            if parents != (-1,) + MANO_PARENTS[1:]:
                raise ValueError(f"HandFitter needs MANO's kinematic tree {MANO_PARENTS}, the "
                                 f"{lay.side} layer has parents {parents}")
        if len({lay.num_verts for lay in chosen}) > 1:
            raise ValueError(f"the layers of one HandFitter need the same vertex count, got "
                             f"{[lay.num_verts for lay in chosen]}")
        self.steps, self.lr = int(steps), float(lr)
        self.shape_reg, self.pose_reg = float(shape_reg), float(pose_reg)
        self.swing_init = swing_init
        self.rel_tol = float(rel_tol)
        with torch.no_grad():
            self._build_structure()
            models = [self._build_model(lay) for lay in chosen]
        self.has_posedirs = any(bool(m["kp_posedirs"].abs().max() > 0) for m in models)
        # Mesh pose blend shapes: left out when every layer's are zero (the open hand model),
        # zeros for a layer without them beside one with them.
        if all(m["mesh_pose_basis"] is None for m in models):
            for m in models:
                del m["mesh_pose_basis"]
        else:
            for m, lay in zip(models, chosen):
                if m["mesh_pose_basis"] is None:
                    m["mesh_pose_basis"] = torch.zeros(_NUM_FINGER_JOINTS * 9,
                                                       3 * lay.num_verts, dtype=_F64)
        # Per-layer buffers stacked (L, ...), the fit's and the mesh's (only the result needs
        # those, a few MB with pose blend shapes); a batch takes its hands' rows (_model).
        self._stacked = {part: {key: torch.stack([m[key] for m in models]) for key in models[0]
                                if key.startswith("mesh_") == (part == "mesh")}
                         for part in ("fit", "mesh")}
        self._models: Dict[tuple, Dict[str, torch.Tensor]] = {}
        if self.layer is not None:  # one layer: its prior mean and PCA inverse, for callers
            self.pose_mean = models[0]["pose_mean"]  # (45,) rad
            self.comps_pinv = models[0]["comps_pinv"]  # (45,ncomp)

    def _build_structure(self) -> None:
        """What all MANO-format layers share: the kinematic tree, the keypoint layout, the
        finger-major swing order and the LM priors."""
        self.kp_joint = torch.full((NUM_KEYPOINTS,), -1)  # MANO joint id, -1 for tips
        self.kp_tip = torch.full((NUM_KEYPOINTS,), -1)  # tip id 0..4, -1 for joints
        for k, m in enumerate(MANO_TO_KEYPOINT):
            if m < NUM_JOINTS:
                self.kp_joint[k] = m
            else:
                self.kp_tip[k] = m - NUM_JOINTS
        self.is_tip = self.kp_tip >= 0
        self.tip_kps = torch.nonzero(self.is_tip).view(-1)  # keypoint ids of the tips
        parents = [max(p, 0) for p in MANO_PARENTS]  # root -> itself
        self.parents = torch.tensor(parents)
        # anc[i, j] = 1 if joint j is joint i or one of its ancestors.
        anc = torch.zeros(NUM_JOINTS, NUM_JOINTS, dtype=_F64)
        for i in range(NUM_JOINTS):  # init only
            j = i
            while True:
                anc[i, j] = 1.0
                if j == 0:
                    break
                j = parents[j]
        self.anc = anc
        self.palm_joints = self.kp_joint[torch.tensor(PALM_KEYPOINTS)]  # MANO ids of the palm
        # Swing start, finger-major (MANO joint 1 + 3 f + l is level l of finger f): each
        # finger joint's keypoint and the keypoint at the far end of its bone (its child
        # joint, or the fingertip for the last joint of a finger).
        joint_to_kp = {m: k for k, m in enumerate(MANO_TO_KEYPOINT)}
        child_kp = {}
        for k in range(1, NUM_KEYPOINTS):
            parent_kp = BONE_PARENTS[k - 1]
            if parent_kp > 0:  # the bone parent_kp -> k belongs to the joint at parent_kp
                child_kp[MANO_TO_KEYPOINT[parent_kp]] = k
        self.swing_kp = torch.tensor([joint_to_kp[j] for j in range(1, NUM_JOINTS)])  # (15,)
        self.swing_child_kp = torch.tensor([child_kp[j] for j in range(1, NUM_JOINTS)])
        # LM unknowns beyond the root: q = [finger axis-angle (45) | betas (10)]; the priors
        # pull q to the layer's q_mean with weights q_prior.
        self.q_prior = torch.cat([torch.full((_NUM_FINGER_AA,), self.pose_reg, dtype=_F64),
                                  torch.full((NUM_BETAS,), self.shape_reg, dtype=_F64)])
        self.prior_hess = torch.diag(F.pad(self.q_prior, (3, 0)))  # (58,58)

    def _build_model(self, layer: HandLayer) -> Dict[str, Optional[torch.Tensor]]:
        """One layer's buffers: the 21-point LBS model (rest joints/keypoints and their shape
        bases, pose correctives, skinning), the mesh, the priors' mean; shapes below."""

        def f64(x: torch.Tensor) -> torch.Tensor:
            return x.detach().to("cpu", _F64)

        m: Dict[str, Optional[torch.Tensor]] = {}
        v_t, shapedirs = f64(layer.th_v_template[0]), f64(layer.th_shapedirs)  # (V,3), (V,3,10)
        jreg = f64(layer.th_J_regressor)  # (16,V)
        tips = layer.tip_ids.cpu()
        # Joint-only model: the joint regressor folded with the template and shape blend
        # shapes (J = J_regressor (v_template + shapedirs betas), linear in betas).
        joint_rest = jreg @ v_t  # (16,3) rest joints at beta = 0
        joint_dirs = torch.einsum("jv,vcl->jcl", jreg, shapedirs)  # (16,3,10) m/beta
        m["joint_rest"] = joint_rest.reshape(-1)  # (48,)
        m["joint_dirs"] = joint_dirs
        m["joint_basis"] = joint_dirs.permute(2, 0, 1).reshape(NUM_BETAS, -1)  # (10,48)
        tip_rest, tip_dirs = v_t[tips], shapedirs[tips]  # (5,3), (5,3,10)
        tip_weights = f64(layer.th_weights)[tips]  # (5,16) skinning weights of the tips
        m["tip_weights"] = tip_weights
        # Rest keypoints X_k (contract order): joint keypoints at their rest joint, fingertips
        # at their rest vertex; X = x_rest + betas @ x_basis, (B,63).
        jmask, tmask = ~self.is_tip, self.is_tip
        x_rest = torch.empty(NUM_KEYPOINTS, 3, dtype=_F64)
        x_dirs = torch.empty(NUM_KEYPOINTS, 3, NUM_BETAS, dtype=_F64)
        x_rest[jmask], x_dirs[jmask] = joint_rest[self.kp_joint[jmask]], \
            joint_dirs[self.kp_joint[jmask]]
        x_rest[tmask], x_dirs[tmask] = tip_rest[self.kp_tip[tmask]], tip_dirs[self.kp_tip[tmask]]
        m["x_rest"], m["x_dirs"] = x_rest.reshape(-1), x_dirs  # (63,), (21,3,10)
        m["x_basis"] = x_dirs.permute(2, 0, 1).reshape(NUM_BETAS, -1)  # (10,63)
        # Pose correctives (lbs pose_feature: entries of R_j - I, joints 1..15) of the tips,
        # as a (135,63) map onto the keypoints (zero rows for the joint keypoints).
        posedirs = f64(layer.th_posedirs)  # (V,3,135)
        n_pose = posedirs.shape[-1]
        tip_posedirs = posedirs[tips]  # (5,3,135)
        kp_posedirs = torch.zeros(NUM_KEYPOINTS, 3, n_pose, dtype=_F64)
        kp_posedirs[tmask] = tip_posedirs[self.kp_tip[tmask]]
        m["kp_posedirs"] = kp_posedirs.permute(2, 0, 1).reshape(n_pose, -1)  # (135,63)
        # The same, split per finger joint: (15 joints, 9 entries of R - I, 5 tips, 3).
        m["tip_posedirs_j"] = tip_posedirs.permute(2, 0, 1).reshape(
            _NUM_FINGER_JOINTS, 9, len(tips), 3)
        # Mesh (for the result only): template, shape and pose blend shapes, skinning weights.
        m["mesh_template"] = v_t  # (V,3)
        m["mesh_shape_basis"] = shapedirs.permute(2, 0, 1).reshape(NUM_BETAS, -1)  # (10,3V)
        m["mesh_pose_basis"] = posedirs.permute(2, 0, 1).reshape(n_pose, -1) \
            if bool(posedirs.abs().max() > 0) else None  # (135,3V); None: all zero
        m["mesh_weights"] = f64(layer.th_weights)  # (V,16)
        # Keypoint k = sum_i carry[k, i] * (point X_k carried rigidly by joint i): a joint
        # keypoint is carried by its parent joint (the wrist by itself), a fingertip vertex by
        # its skinning weights (linear blend skinning).
        carry = torch.zeros(NUM_KEYPOINTS, NUM_JOINTS, dtype=_F64)
        carry[jmask, self.parents[self.kp_joint[jmask]]] = 1.0
        carry[tmask] = tip_weights[self.kp_tip[tmask]]
        m["carry"] = carry  # (21,16)
        # Constant part of the beta Jacobian: the rest bone vectors' derivatives.
        bone = joint_dirs - joint_dirs[self.parents]
        bone[0] = joint_dirs[0]  # the root joint sits at its own rest position
        m["beta_bone"] = bone  # (16,3,10)
        # Rotation Jacobian contraction: C[k, i, j] = carry[k, i] * anc[i, j], stored as
        # chain_t[k, j, i] for a batched matmul.
        chain = carry[:, :, None] * self.anc[None]  # (21,16,16)
        m["chain_t"] = chain.transpose(1, 2).contiguous()  # (21,16,16)
        m["chain_sum"] = chain.sum(1)[..., None]  # (21,16,1)
        # Finger pose prior and PCA inverse for the layer (pca = (aa - mean) @ comps_pinv).
        m["pose_mean"] = f64(layer.th_hands_mean).reshape(-1)  # (45,)
        m["comps_pinv"] = torch.linalg.pinv(f64(layer.th_selected_comps))  # (45,ncomp)
        m["q_mean"] = torch.cat([m["pose_mean"], torch.zeros(NUM_BETAS, dtype=_F64)])  # (55,)
        # Swing start: each finger joint's rest bone vector bone = rest + betas @ basis in the
        # joint's frame (the tips' pose correctives left out: a start only).
        finger_joints = torch.arange(1, NUM_JOINTS)
        m["swing_bone_rest"] = (x_rest[self.swing_child_kp]
                                - joint_rest[finger_joints]).reshape(-1)  # (45,)
        m["swing_bone_basis"] = (x_dirs[self.swing_child_kp] - joint_dirs[finger_joints]
                                 ).permute(2, 0, 1).reshape(NUM_BETAS, -1)  # (10,45)
        return m

    def _model(self, index: Optional[Tuple[int, ...]] = None, part: str = "fit"
               ) -> Dict[str, torch.Tensor]:
        """The fit's (part "fit") or the mesh's ("mesh") buffers for a batch whose hand b uses
        layer index[b]: each (B, ...), or (1, ...) broadcast over the batch when one layer
        serves all (index None, or a one-layer fitter). Cached per index."""
        stacked = self._stacked[part]
        if index is None or len(self._stacked["fit"]["q_mean"]) == 1:
            return stacked
        model = self._models.get((part, index))
        if model is None:
            rows = torch.tensor(index)
            model = {key: val[rows] for key, val in stacked.items()}
            if len(self._models) >= _MAX_CACHED_BATCHES:
                self._models.clear()
            self._models[(part, index)] = model
        return model

    # -- model ----------------------------------------------------------------------------
    def _forward(self, root: torch.Tensor, finger_aa: torch.Tensor, betas: torch.Tensor,
                 m: Optional[Dict[str, torch.Tensor]] = None) -> dict:
        """21 keypoints (B,21,3) m (root joint at its rest position) and the FK state.

        root (B,3,3), finger_aa (B,45) rad (MANO joints 1..15), betas (B,10); m: the
        batch's buffers (_model; default: the single layer's). Forward kinematics runs
        finger-major: three batched steps (MCP, PIP, DIP) over the 5 fingers.
        """
        m = self._model() if m is None else m
        bsz = root.shape[0]
        local = _rodrigues(finger_aa.reshape(bsz, _NUM_FINGER_JOINTS, 3))  # (B,15,3,3)
        rot = torch.cat([root[:, None], local], 1)  # (B,16,3,3)
        joints = (m["joint_rest"] + (betas[:, None] @ m["joint_basis"])[:, 0]).view(
            bsz, NUM_JOINTS, 3)
        x = m["x_rest"] + (betas[:, None] @ m["x_basis"])[:, 0]  # (B,63) rest keypoints
        if self.has_posedirs:  # pose-corrective offsets of the tip vertices (lbs pose_feature)
            x = x + ((local - _eye3(local)).reshape(bsz, 1, -1) @ m["kp_posedirs"])[:, 0]
        x = x.view(bsz, NUM_KEYPOINTS, 3)
        by_finger = local.view(bsz, _NUM_FINGERS, _NUM_LEVELS, 3, 3)
        chain = [root[:, None].expand(bsz, _NUM_FINGERS, 3, 3)]
        for lvl in range(_NUM_LEVELS):  # world rotation of level lvl of every finger
            chain.append(chain[-1] @ by_finger[:, :, lvl])
        par_rot = torch.stack(chain[:-1], 2)  # (B,5,3,3,3) world rotation of each parent
        world_rot = torch.cat([root[:, None], torch.stack(chain[1:], 2).view(
            bsz, _NUM_FINGER_JOINTS, 3, 3)], 1)  # (B,16,3,3)
        bones = (joints[:, 1:] - joints[:, self.parents[1:]]).view(
            bsz, _NUM_FINGERS, _NUM_LEVELS, 3, 1)
        pos = joints[:, :1, None] + (par_rot @ bones).squeeze(-1).cumsum(2)  # (B,5,3,3)
        pos = torch.cat([joints[:, :1], pos.view(bsz, _NUM_FINGER_JOINTS, 3)], 1)  # (B,16,3)
        # carried[b, k, i] = R_i (X_k - J_i) + p_i: keypoint k's rest point moved by joint i.
        carried = (world_rot[:, None] @ (x[:, :, None] - joints[:, None])[..., None]
                   ).squeeze(-1) + pos[:, None]  # (B,21,16,3)
        kps = (m["carry"][:, :, None] @ carried).squeeze(-2)  # sum_i carry[k, i] carried[k, i]
        return dict(rot=rot, world_rot=world_rot, par_rot=par_rot, pos=pos, carried=carried,
                    kps=kps, joints=joints)

    def _jacobian(self, st: dict, finger_aa: torch.Tensor,
                  m: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        """d keypoints / d unknowns (B,63,58): root increment (right-multiplied), finger
        axis-angle (via the SO(3) right Jacobian, plus the fingertips' pose correctives) and
        betas; exact (checked against finite differences in the tests)."""
        m = self._model() if m is None else m
        bsz = finger_aa.shape[0]
        world_rot, pos, carried = st["world_rot"], st["pos"], st["carried"]
        # Rotation increment d at joint j moves every point q it carries by (R_j d) x (q - p_j).
        lever = m["chain_t"] @ carried - m["chain_sum"] * pos[:, None]  # (B,21,16,3)
        jr = _right_jacobian(finger_aa.reshape(bsz, _NUM_FINGER_JOINTS, 3))  # (B,15,3,3)
        axes = torch.cat([world_rot[:, :1], world_rot[:, 1:] @ jr], 1)  # (B,16,3,3)
        cols = axes.transpose(-1, -2)  # (B,16,3(c),3): world axis of unknown c of joint j
        j_rot = torch.linalg.cross(cols[:, None], lever[:, :, :, None])  # (B,21,16,3c,3m)
        j_rot = j_rot.permute(0, 1, 4, 2, 3).reshape(bsz, 3 * NUM_KEYPOINTS, 3 * NUM_JOINTS)
        # Betas: d p_i = sum over the chain of R_parent(a) (dJ_a - dJ_parent(a)) (the root's
        # parent rotation is the identity), and keypoint k moves by
        # sum_i carry[k, i] (R_i (dX_k - dJ_i) + dp_i)
        #   = (sum_i carry[k, i] R_i) dX_k + sum_i carry[k, i] (dp_i - R_i dJ_i).
        par_rot = torch.cat([_eye3(pos).expand(bsz, 1, 3, 3),
                             st["par_rot"].reshape(bsz, _NUM_FINGER_JOINTS, 3, 3)], 1)
        dpos = self.anc @ (par_rot @ m["beta_bone"]).view(bsz, NUM_JOINTS, -1)  # (B,16,30)
        moved = dpos - (world_rot @ m["joint_dirs"]).view(bsz, NUM_JOINTS, -1)
        blend_rot = (m["carry"] @ world_rot.view(bsz, NUM_JOINTS, 9)).view(
            bsz, NUM_KEYPOINTS, 3, 3)  # sum_i carry[k, i] R_i
        j_beta = (blend_rot @ m["x_dirs"]).view(bsz, NUM_KEYPOINTS, -1) + m["carry"] @ moved
        jac = torch.cat([j_rot, j_beta.view(bsz, 3 * NUM_KEYPOINTS, NUM_BETAS)], -1)
        if self.has_posedirs:  # fingertip pose correctives: d offset / d finger axis-angle
            # d R_j = R_j skew(Jr_j[:, c]) per unknown c; the offsets are linear in R_j - I.
            d_rot = st["rot"][:, 1:, None] @ _skew(jr.transpose(-1, -2))  # (B,15,3c,3,3)
            posedirs_j = m["tip_posedirs_j"].expand((bsz,) + m["tip_posedirs_j"].shape[1:])
            d_off = torch.einsum("bjcf,bjftm->btmjc", d_rot.flatten(-2), posedirs_j)
            skin_rot = m["tip_weights"] @ world_rot.view(bsz, NUM_JOINTS, 9)  # (B,5,9)
            d_tip = torch.einsum("btmn,btnjc->btmjc", skin_rot.view(bsz, -1, 3, 3),
                                 d_off)  # (B,5,3,15,3)
            jac = jac.view(bsz, NUM_KEYPOINTS, 3, _NUM_UNKNOWNS)
            jac[:, self.tip_kps, :, _FINGER_UNK] += d_tip.reshape(bsz, 5, 3, _NUM_FINGER_AA)
            jac = jac.view(bsz, 3 * NUM_KEYPOINTS, _NUM_UNKNOWNS)
        return jac

    def _mesh(self, st: dict, betas: torch.Tensor, m: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Vertices (B,V,3) m in the FK frame of `st` (the layer's linear blend skinning with
        the fit's joint transforms: the same maths as smplx.lbs, in float64); m: the mesh
        buffers (_model(..., "mesh"))."""
        bsz = betas.shape[0]
        verts = m["mesh_template"] + (betas[:, None] @ m["mesh_shape_basis"]).view(bsz, -1, 3)
        if "mesh_pose_basis" in m:
            feat = (st["rot"][:, 1:] - _eye3(betas)).reshape(bsz, 1, -1)  # (B,1,135)
            verts = verts + (feat @ m["mesh_pose_basis"]).view(bsz, -1, 3)
        world_rot = st["world_rot"]
        # Joint transforms x -> R_i (x - J_i) + p_i as [R_i | p_i - R_i J_i], blended per vertex.
        trans = st["pos"] - (world_rot @ st["joints"][..., None]).squeeze(-1)  # (B,16,3)
        blend = m["mesh_weights"] @ torch.cat([world_rot.reshape(bsz, NUM_JOINTS, 9), trans],
                                              -1)  # (B,V,12)
        return (blend[..., :9].view(bsz, -1, 3, 3) @ verts[..., None]).squeeze(-1) \
            + blend[..., 9:]

    # -- fit ------------------------------------------------------------------------------
    def _cost(self, kps: torch.Tensor, target_c: torch.Tensor, q: torch.Tensor,
              m: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Centred keypoint residual (B,63) m and total cost (B,) m^2 incl. the priors;
        q (B,55) = [finger axis-angle | betas]."""
        res = (kps - kps.mean(1, keepdim=True) - target_c).reshape(kps.shape[0], -1)
        dq = q - m["q_mean"]
        return res, (res * res).sum(-1) + (self.q_prior * dq * dq).sum(-1)

    def _init_root(self, target: torch.Tensor, betas: torch.Tensor,
                   m: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Closed-form root rotation (B,3,3): Kabsch of the rest palm keypoints onto the
        target's (they move rigidly with the root for fixed betas)."""
        joints = (m["joint_rest"] + (betas[:, None] @ m["joint_basis"])[:, 0]).view(
            -1, NUM_JOINTS, 3)
        return kabsch_rotation(joints[:, self.palm_joints], target[:, list(PALM_KEYPOINTS)])

    def _swing_init(self, root: torch.Tensor, finger_aa: torch.Tensor, betas: torch.Tensor,
                    target: torch.Tensor, m: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Finger pose (B,45) whose bones point along the target's: level by level (MCP, PIP,
        DIP, batched over the 5 fingers), each bone is swung by the smallest world rotation
        from its current direction onto the target's, which keeps the current twist (mean
        pose, or warm start)."""
        bsz = root.shape[0]
        shape = (bsz, _NUM_FINGERS, _NUM_LEVELS, 3)
        local = _rodrigues(finger_aa.reshape(bsz, _NUM_FINGER_JOINTS, 3)).view(shape + (3,))
        bone = (m["swing_bone_rest"] + (betas[:, None] @ m["swing_bone_basis"])[:, 0]).view(
            shape + (1,))
        want = (target[:, self.swing_child_kp] - target[:, self.swing_kp]).view(shape)
        par = root[:, None].expand(bsz, _NUM_FINGERS, 3, 3)
        out = []
        for lvl in range(_NUM_LEVELS):
            current = par @ local[:, :, lvl]  # (B,5,3,3) world rotation now
            now = (current @ bone[:, :, lvl]).squeeze(-1)  # world bone direction now
            swung = _min_rotation(now, want[:, :, lvl]) @ current
            out.append(par.transpose(-1, -2) @ swung)
            par = swung
        local = torch.stack(out, 2).view(bsz, _NUM_FINGER_JOINTS, 3, 3)
        return _matrix_to_axis_angle(local).reshape(bsz, -1)

    def _layer_index(self, sides: Optional[Sequence[str]], bsz: int) -> Optional[Tuple[int, ...]]:
        """Layer index per hand for `sides` (None for a single-layer fitter)."""
        if not self.sides:
            if sides is not None:
                raise ValueError("sides: this HandFitter has one layer for every hand; build "
                                 "it with side -> layer to fit hands of several sides")
            return None
        if sides is None or len(sides) != bsz or any(s not in self.sides for s in sides):
            raise ValueError(f"sides must name one of {self.sides} for each of the {bsz} "
                             f"hands, got {sides!r}")
        return tuple(self.sides.index(s) for s in sides)

    def fit(self, target: np.ndarray, init: Optional[np.ndarray] = None,
            steps: Optional[int] = None, sides: Optional[Sequence[str]] = None) -> FitResult:
        """Fit B hands to target keypoints (B,21,3) m (contract order, any common frame).

        init: a previous FitResult.params (B,61) to warm-start from (same hands); a row of
        NaN = no previous fit for that hand. None or NaN = closed-form root, mean pose swung
        onto the target's bones, zero betas. A warm start takes, per hand, the lowest-cost
        of: the previous root and pose; the closed-form root with the previous pose; the
        closed-form root with the previous pose swung onto the target's bones (so a hand that
        moved fast still starts well).
        steps: override of the constructor's iteration limit for this call.
        sides: the side of each hand (one of the fitter's sides) when it was built with
        side -> layer; None for a single-layer fitter.
        """
        tgt = torch.as_tensor(np.asarray(target, dtype=np.float64))
        if tgt.ndim != 3 or tgt.shape[1:] != (NUM_KEYPOINTS, 3):
            raise ValueError(f"target must be (B,{NUM_KEYPOINTS},3), got {tuple(tgt.shape)}")
        if not torch.isfinite(tgt).all():
            raise ValueError("target keypoints must be finite")
        bsz = tgt.shape[0]
        index = self._layer_index(sides, bsz)
        max_steps = self.steps if steps is None else int(steps)
        target_c = tgt - tgt.mean(1, keepdim=True)
        cold = torch.ones(bsz, dtype=torch.bool)
        p = None
        if init is not None:
            p = torch.as_tensor(np.asarray(init, dtype=np.float64))
            if p.shape != (bsz, NUM_FIT_PARAMS):
                raise ValueError(f"init must be ({bsz},{NUM_FIT_PARAMS}), got {tuple(p.shape)}")
            cold = torch.isnan(p).all(1)
            if not torch.isfinite(p[~cold]).all():
                raise ValueError("init rows must be finite, or all NaN for a cold start")
        if bool(cold.all()) or bool((~cold).all()):
            start = self._start(tgt, target_c, None if bool(cold.all()) else p, index)
        else:  # some hands warm, some cold: both starts, then back in the hands' order
            rows = [torch.nonzero(cold).view(-1), torch.nonzero(~cold).view(-1)]
            parts = [self._start(tgt[r], target_c[r], None if i == 0 else p[r],
                                 None if index is None else tuple(index[j] for j in r.tolist()))
                     for i, r in enumerate(rows)]
            order = torch.argsort(torch.cat(rows))

            def merged(values: list) -> torch.Tensor:
                return torch.cat(values)[order]

            root, q, res, cost = (merged([part[i] for part in parts]) for i in (0, 1, 3, 4))
            st = {key: merged([part[2][key] for part in parts]) for key in parts[0][2]}
            start = (root, q, st, res, cost)
        root, q, st, n_run = self._levenberg_marquardt(*start, target_c, max_steps,
                                                       self._model(index))
        return self._result(tgt, root, q, st, n_run, self._model(index, "mesh"))

    def _start(self, tgt: torch.Tensor, target_c: torch.Tensor, init: Optional[torch.Tensor],
               index: Optional[Tuple[int, ...]]) -> tuple:
        """Start of hands (root (B,3,3), q (B,55), FK state, residual, cost): cold (init None)
        or warm from init (B,61), as fit() describes."""
        bsz = tgt.shape[0]
        m = self._model(index)
        if init is None:
            betas = torch.zeros(bsz, NUM_BETAS, dtype=_F64)
            root = self._init_root(tgt, betas, m)
            finger_aa = m["pose_mean"].expand(bsz, -1)
            if self.swing_init:
                finger_aa = self._swing_init(root, finger_aa, betas, tgt, m)
            q = torch.cat([finger_aa, betas], -1)
            st = self._forward(root, finger_aa, betas, m)
            return (root, q, st) + self._cost(st["kps"], target_c, q, m)
        betas = init[:, FIT_BETAS_SLICE]
        warm_root, warm_pose = _rodrigues(init[:, ROOT_AA_SLICE]), init[:, FINGER_AA_SLICE]
        root_k = self._init_root(tgt, betas, m)
        roots, poses = [warm_root, root_k], [warm_pose, warm_pose]
        if self.swing_init:
            roots.append(root_k)
            poses.append(self._swing_init(root_k, warm_pose, betas, tgt, m))
        return self._best_start(roots, poses, betas, target_c, index)

    def _levenberg_marquardt(self, root: torch.Tensor, q: torch.Tensor, st: dict,
                             res: torch.Tensor, cost: torch.Tensor, target_c: torch.Tensor,
                             max_steps: int, m: Dict[str, torch.Tensor]) -> tuple:
        """Damped Gauss-Newton from (root (B,3,3), q (B,55)) with FK state st, residual res
        (B,63) and cost (B,); returns the final root, q, state and the steps taken.

        Each iteration linearises at the current point and solves the damped normal
        equations; a hand whose predicted decrease is below its tolerance stops there,
        without the candidate's forward pass. Otherwise the candidate is evaluated and kept
        if it lowers the cost (damping down), else dropped (damping up)."""
        bsz = root.shape[0]
        damping = torch.full((bsz,), _LM_DAMPING_INIT, dtype=_F64)
        done = torch.zeros(bsz, dtype=torch.bool)
        n_run = 0
        for _ in range(max_steps):
            jac = self._jacobian(st, q[:, :_NUM_FINGER_AA], m)
            # centred residuals: centre the Jacobian's rows over the keypoints too
            jac = jac.view(bsz, NUM_KEYPOINTS, 3, -1)
            jac = (jac - jac.mean(1, keepdim=True)).view(bsz, 3 * NUM_KEYPOINTS, -1)
            jac_t = jac.transpose(1, 2)
            hess = jac_t @ jac + self.prior_hess  # (B,58,58), half the cost's Hessian (GN)
            grad = (jac_t @ res[..., None]).squeeze(-1) \
                + F.pad(self.q_prior * (q - m["q_mean"]), (3, 0))  # half the gradient
            diag = torch.diagonal(hess, dim1=1, dim2=2) + _DIAG_FLOOR
            step = torch.linalg.solve(hess + torch.diag_embed(damping[:, None] * diag), grad) \
                * -self.lr
            # predicted decrease of the quadratic model: -(2 g.d + d.H.d)
            predicted = -(2.0 * grad + (hess @ step[..., None]).squeeze(-1)).mul(step).sum(-1)
            tol = (self.rel_tol * cost).clamp_min(_CONVERGED_DECREASE)
            done = done | (predicted < tol)
            if bool(done.all()):
                break
            n_run += 1
            root_n = root @ _rodrigues(step[:, :3])
            q_n = q + step[:, 3:]
            st_n = self._forward(root_n, q_n[:, :_NUM_FINGER_AA], q_n[:, _NUM_FINGER_AA:], m)
            res_n, cost_n = self._cost(st_n["kps"], target_c, q_n, m)
            ok = (cost_n < cost) & ~done
            done = done | (ok & (cost - cost_n < tol))
            if bool(ok.all()):
                root, q, st, res, cost = root_n, q_n, st_n, res_n, cost_n
            elif bool(ok.any()):
                sel = ok.view(-1, 1)
                root = torch.where(sel[:, :, None], root_n, root)
                q, res = torch.where(sel, q_n, q), torch.where(sel, res_n, res)
                cost = torch.where(ok, cost_n, cost)
                st = {key: torch.where(ok.view((-1,) + (1,) * (val.ndim - 1)), st_n[key], val)
                      for key, val in st.items()}
            damping = torch.where(ok, damping / _LM_DAMPING_DOWN, damping * _LM_DAMPING_UP)
            damping = damping.clamp(_LM_DAMPING_MIN, _LM_DAMPING_MAX)
            # a hand whose damping hit the ceiling cannot improve any more: stop it too
            done = done | (damping >= _LM_DAMPING_MAX)
        return root, q, st, n_run

    def _best_start(self, roots: list, poses: list, betas: torch.Tensor,
                    target_c: torch.Tensor, index: Optional[Tuple[int, ...]]) -> tuple:
        """Per hand, the lowest-cost of n candidate (root (B,3,3), finger pose (B,45)) starts,
        evaluated in one batched forward; returns root, q, FK state, residual, cost."""
        n, bsz = len(roots), betas.shape[0]
        m = self._model(None if index is None else index * n)
        root, pose, beta = torch.cat(roots), torch.cat(poses), betas.repeat(n, 1)
        q = torch.cat([pose, beta], -1)
        st = self._forward(root, pose, beta, m)
        res, cost = self._cost(st["kps"], target_c.repeat(n, 1, 1), q, m)
        pick = cost.view(n, bsz).argmin(0) * bsz + torch.arange(bsz)  # rows of the winners
        st = {key: val[pick] for key, val in st.items()}
        return root[pick], q[pick], st, res[pick], cost[pick]

    def _result(self, tgt: torch.Tensor, root: torch.Tensor, q: torch.Tensor, st: dict,
                n_run: int, mesh: Dict[str, torch.Tensor]) -> FitResult:
        """Joints and mesh (buffers `mesh`) of the fitted model (the layer's maths, float64),
        translated so that the joints' centroid is the target's."""
        finger_aa, betas = q[:, :_NUM_FINGER_AA], q[:, _NUM_FINGER_AA:]
        kps = st["kps"]
        wrist = kps[:, :1]
        transl = (tgt - kps).mean(1) + wrist[:, 0]  # least-squares translation of the wrist
        joints = kps - wrist + transl[:, None]
        verts = self._mesh(st, betas, mesh) - wrist + transl[:, None]
        resid = ((joints - tgt) ** 2).sum(-1).mean(-1).sqrt() * _M_TO_MM
        rotmats = st["rot"]  # (B,16,3,3): the root's rotation is rotmats[:, 0]
        params = torch.cat([_matrix_to_axis_angle(root), finger_aa, betas, transl], -1)
        return FitResult(params=params.numpy(), joints=joints.numpy().astype(np.float32),
                         vertices=verts.numpy().astype(np.float32), rotmats=rotmats.numpy(),
                         shape=betas.numpy().copy(), residual_mm=resid.numpy(), steps=n_run)
