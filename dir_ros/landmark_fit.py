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
     with an analytic Jacobian of a 21-point forward kinematics model (joints + fingertip
     vertices only; the same linear blend skinning as the layer, about 40x fewer points).
     The translation is eliminated (residuals are centred), so the target may be in any
     frame. L2 regularisation pulls the finger pose to the model's mean pose and the
     betas to zero, which keeps noisy landmarks on plausible hands and fixes the degrees
     of freedom the keypoints do not see (e.g. twist of the last finger bones).
  3. One full layer forward for the mesh.

Units: metres, radians. Frames: the target's (camera optical frame for place_hand output).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from dir_ros.geometry import HALF_PIXEL
from dir_ros.hand_model import (BONE_PARENTS, MANO_TO_KEYPOINT, NUM_BETAS, NUM_JOINTS,
                                NUM_KEYPOINTS, HandLayer, unit_vectors)

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
_BETA_UNK = slice(_FINGER_UNK.stop, _NUM_UNKNOWNS)

# Defaults of HandFitter (measured with scripts/benchmark_landmark_fit.py; see its output).
DEFAULT_STEPS = 12  # LM iterations at most (2 hands typically stop after 3-4; 64 after 8)
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
# did drop, by less than 21 * (0.05 mm)^2 in a step: far below any landmark noise.
_CONVERGED_DECREASE = NUM_KEYPOINTS * (5e-5) ** 2
# Added to diag(H) in the Marquardt scaling so zero-curvature directions still get damped.
_DIAG_FLOOR = 1e-12
# Axis-angle magnitude below which Taylor series replace sin/cos ratios (float64 safe).
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
def _skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices (...,3,3) of vectors v (...,3): skew(v) @ x = v x x."""
    z = torch.zeros_like(v[..., 0])
    x, y, w = v.unbind(-1)
    return torch.stack([z, -w, y, w, z, -x, -y, x, z], dim=-1).view(v.shape[:-1] + (3, 3))


def _sincos_coeffs(theta: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """sin(a)/a, (1-cos a)/a^2, (a-sin a)/a^3 for a = |theta| (...,3), Taylor near 0, (...,1,1)."""
    a2 = (theta * theta).sum(-1)
    a = a2.sqrt()
    small = a < _SMALL_ANGLE
    a_safe = torch.where(small, torch.ones_like(a), a)
    s, c = torch.sin(a_safe), torch.cos(a_safe)
    c0 = torch.where(small, 1.0 - a2 / 6.0, s / a_safe)
    c1 = torch.where(small, 0.5 - a2 / 24.0, (1.0 - c) / a_safe ** 2)
    c2 = torch.where(small, 1.0 / 6.0 - a2 / 120.0, (a_safe - s) / a_safe ** 3)
    return tuple(x[..., None, None] for x in (c0, c1, c2))


def _rodrigues(theta: torch.Tensor) -> torch.Tensor:
    """Axis-angle (...,3) rad -> rotation matrices (...,3,3)."""
    c0, c1, _ = _sincos_coeffs(theta)
    k = _skew(theta)
    eye = torch.eye(3, dtype=theta.dtype, device=theta.device)
    return eye + c0 * k + c1 * (k @ k)


def _right_jacobian(theta: torch.Tensor) -> torch.Tensor:
    """SO(3) right Jacobian (...,3,3): exp(theta + d) ~= exp(theta) exp(Jr(theta) d)."""
    _, c1, c2 = _sincos_coeffs(theta)
    k = _skew(theta)
    eye = torch.eye(3, dtype=theta.dtype, device=theta.device)
    return eye - c1 * k + c2 * (k @ k)


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
    m = rot
    r00, r11, r22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    d21, d02, d10 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], \
        m[..., 1, 0] - m[..., 0, 1]
    s01, s02, s12 = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], \
        m[..., 1, 2] + m[..., 2, 1]
    # 4 x (the candidate's largest component) times each quaternion (w, x, y, z)
    cands = torch.stack([
        torch.stack([1 + r00 + r11 + r22, d21, d02, d10], -1),
        torch.stack([d21, 1 + r00 - r11 - r22, s01, s02], -1),
        torch.stack([d02, s01, 1 - r00 + r11 - r22, s12], -1),
        torch.stack([d10, s02, s12, 1 - r00 - r11 + r22], -1)], -2)  # (...,4,4)
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
    """Fits a HandLayer (open hand or MANO) to target 3D keypoints, batched over hands."""

    def __init__(self, layer: HandLayer, steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR,
                 shape_reg: float = DEFAULT_SHAPE_REG, pose_reg: float = DEFAULT_POSE_REG,
                 swing_init: bool = True) -> None:
        """Precompute the 21-keypoint kinematic model of `layer` (float64, CPU).

        steps: LM iterations at most; lr: fraction of each LM step taken (0 < lr <= 1);
        shape_reg (m/beta)^2 and pose_reg (m/rad)^2: L2 weights pulling betas to 0 and the
        finger axis-angle to the layer's mean pose (see DEFAULT_POSE_REG); swing_init: start
        the fingers bone by bone from the target (False = from the mean/previous pose only,
        the benchmark's baseline).
        """
        if steps < 0 or not 0.0 < lr <= 1.0 or shape_reg < 0 or pose_reg < 0:
            raise ValueError(f"need steps >= 0, 0 < lr <= 1, regularisers >= 0; got "
                             f"{steps}, {lr}, {shape_reg}, {pose_reg}")
        self.layer = layer
        self.steps, self.lr = int(steps), float(lr)
        self.shape_reg, self.pose_reg = float(shape_reg), float(pose_reg)
        self.swing_init = swing_init
        with torch.no_grad():
            self._build_model(layer)

    def _build_model(self, layer: HandLayer) -> None:
        """Buffers of the 21-point LBS model: rest joints/tips, skinning, kinematic tree."""

        def f64(x: torch.Tensor) -> torch.Tensor:
            return x.detach().to("cpu", _F64)

        v_t, shapedirs = f64(layer.th_v_template[0]), f64(layer.th_shapedirs)  # (V,3), (V,3,10)
        jreg = f64(layer.th_J_regressor)  # (16,V)
        tips = layer.tip_ids.cpu()
        self.joint_rest = jreg @ v_t  # (16,3) rest joints at beta = 0
        self.joint_dirs = torch.einsum("jv,vcl->jcl", jreg, shapedirs)  # (16,3,10) m/beta
        self.tip_rest = v_t[tips]  # (5,3)
        self.tip_dirs = shapedirs[tips]  # (5,3,10)
        n_pose = layer.th_posedirs.shape[-1]
        self.tip_posedirs = f64(layer.th_posedirs)[tips].reshape(-1, n_pose).t()  # (135,15)
        self.has_posedirs = bool(self.tip_posedirs.abs().max() > 0)
        # The same, split per finger joint: (15 joints, 9 entries of R - I, 5 tips, 3).
        self.tip_posedirs_j = self.tip_posedirs.reshape(_NUM_FINGER_JOINTS, 9, len(tips), 3)
        self.tip_weights = f64(layer.th_weights)[tips]  # (5,16) skinning weights of the tips
        parents = [int(p) for p in layer.parents.tolist()]
        self.parents = torch.tensor([max(p, 0) for p in parents])  # root -> itself (unused)
        # Kinematic levels (depth 1, 2, ...) so FK runs one batched step per level.
        depth = [0] * NUM_JOINTS
        for j in range(1, NUM_JOINTS):  # init only: parents precede children in MANO order
            depth[j] = depth[parents[j]] + 1
        self.levels = [torch.tensor([j for j in range(NUM_JOINTS) if depth[j] == d])
                       for d in range(1, max(depth) + 1)]
        # anc[i, j] = 1 if joint j is joint i or one of its ancestors.
        anc = torch.zeros(NUM_JOINTS, NUM_JOINTS, dtype=_F64)
        for i in range(NUM_JOINTS):
            j = i
            while j >= 0:
                anc[i, j] = 1.0
                j = parents[j]
        # Keypoint k = sum_i carry[k, i] * (point X_k carried rigidly by joint i): a joint
        # keypoint is carried by its parent joint (the wrist by itself), a fingertip vertex by
        # its skinning weights (linear blend skinning).
        carry = torch.zeros(NUM_KEYPOINTS, NUM_JOINTS, dtype=_F64)
        self.kp_joint = torch.full((NUM_KEYPOINTS,), -1)  # MANO joint id, -1 for tips
        self.kp_tip = torch.full((NUM_KEYPOINTS,), -1)  # tip id 0..4, -1 for joints
        for k, m in enumerate(MANO_TO_KEYPOINT):
            if m < NUM_JOINTS:
                carry[k, max(parents[m], 0)] = 1.0
                self.kp_joint[k] = m
            else:
                carry[k] = self.tip_weights[m - NUM_JOINTS]
                self.kp_tip[k] = m - NUM_JOINTS
        self.carry = carry  # (21,16)
        self.tip_kps = [k for k, m in enumerate(MANO_TO_KEYPOINT) if m >= NUM_JOINTS]
        # Constant parts of the beta Jacobian: rest bone vectors' and rest points' derivatives.
        bone = self.joint_dirs - self.joint_dirs[self.parents]
        bone[0] = self.joint_dirs[0]  # the root joint sits at its own rest position
        self.beta_bone = bone  # (16,3,10)
        dx = torch.empty(NUM_KEYPOINTS, 3, NUM_BETAS, dtype=_F64)
        jmask = self.kp_joint >= 0
        dx[jmask] = self.joint_dirs[self.kp_joint[jmask]]
        dx[~jmask] = self.tip_dirs[self.kp_tip[~jmask]]
        self.beta_rel = dx[:, None] - self.joint_dirs[None]  # (21,16,3,10) dX_k - dJ_i
        self.is_tip = self.kp_tip >= 0
        # Rotation Jacobian contraction: C[k, i, j] = carry[k, i] * anc[i, j].
        self.chain = carry[:, :, None] * anc[None]  # (21,16,16)
        self.chain_sum = self.chain.sum(1)  # (21,16)
        self.anc = anc
        # Finger pose prior and PCA inverse for the layer (pca = (aa - mean) @ comps_pinv).
        self.pose_mean = f64(layer.th_hands_mean).reshape(-1)  # (45,)
        self.comps_pinv = torch.linalg.pinv(f64(layer.th_selected_comps))  # (45,ncomp)
        palm = torch.tensor(PALM_KEYPOINTS)
        self.palm_joints = self.kp_joint[palm]  # MANO ids of the palm keypoints
        # Per FK level: the keypoint at the far end of each joint's bone (its child joint, or
        # the fingertip for the last joint of a finger) and the joint's own keypoint.
        joint_to_kp = {m: k for k, m in enumerate(MANO_TO_KEYPOINT)}
        child_kp = {}
        for k, m in enumerate(MANO_TO_KEYPOINT):
            parent_kp = BONE_PARENTS[k - 1] if k > 0 else -1
            if parent_kp > 0:  # the bone parent_kp -> k belongs to the joint at parent_kp
                child_kp[MANO_TO_KEYPOINT[parent_kp]] = k
        self.level_child_kp = [torch.tensor([child_kp[int(j)] for j in idx]) for idx in self.levels]
        self.level_kp = [torch.tensor([joint_to_kp[int(j)] for j in idx]) for idx in self.levels]

    # -- model ----------------------------------------------------------------------------
    def _rest_points(self, betas: torch.Tensor, rot: torch.Tensor
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Rest joints J (B,16,3) and rest keypoint positions X (B,21,3) for betas (B,10)."""
        joints = self.joint_rest + torch.einsum("jcl,bl->bjc", self.joint_dirs, betas)
        tips = self.tip_rest + torch.einsum("tcl,bl->btc", self.tip_dirs, betas)
        if self.has_posedirs:  # pose-corrective offsets of the tip vertices (lbs pose_feature)
            eye = torch.eye(3, dtype=_F64)
            feat = (rot[:, 1:] - eye).reshape(rot.shape[0], -1)  # (B,135)
            tips = tips + (feat @ self.tip_posedirs).view(-1, 5, 3)
        x = torch.empty(betas.shape[0], NUM_KEYPOINTS, 3, dtype=_F64)
        jmask, tmask = ~self.is_tip, self.is_tip
        x[:, jmask] = joints[:, self.kp_joint[jmask]]
        x[:, tmask] = tips[:, self.kp_tip[tmask]]
        return joints, x

    def _forward(self, root: torch.Tensor, finger_aa: torch.Tensor, betas: torch.Tensor) -> dict:
        """21 keypoints (B,21,3) (root joint at its rest position) and the FK state."""
        bsz = root.shape[0]
        rot = torch.cat([root[:, None], _rodrigues(finger_aa.view(bsz, -1, 3))], 1)  # (B,16,3,3)
        joints, x = self._rest_points(betas, rot)
        world_rot = torch.empty_like(rot)
        pos = torch.empty_like(joints)
        world_rot[:, 0], pos[:, 0] = rot[:, 0], joints[:, 0]
        for idx in self.levels:  # 3 levels (MCP, PIP, DIP), each batched over the 5 fingers
            par = self.parents[idx]
            world_rot[:, idx] = world_rot[:, par] @ rot[:, idx]
            pos[:, idx] = pos[:, par] + (world_rot[:, par] @ (joints[:, idx] - joints[:, par])
                                         .unsqueeze(-1)).squeeze(-1)
        # carried[b, k, i] = R_i (X_k - J_i) + p_i: keypoint k's rest point moved by joint i.
        carried = torch.einsum("bimn,bkin->bkim", world_rot, x[:, :, None] - joints[:, None]) \
            + pos[:, None]
        kps = torch.einsum("ki,bkim->bkm", self.carry, carried)
        return dict(rot=rot, world_rot=world_rot, pos=pos, carried=carried, kps=kps,
                    joints=joints)

    def _jacobian(self, st: dict, finger_aa: torch.Tensor) -> torch.Tensor:
        """d keypoints / d unknowns (B,63,58): root increment (right-multiplied), finger
        axis-angle (via the SO(3) right Jacobian, plus the fingertips' pose correctives) and
        betas; exact (checked against finite differences in the tests)."""
        bsz = finger_aa.shape[0]
        world_rot, pos, carried = st["world_rot"], st["pos"], st["carried"]
        # Rotation increment d at joint j moves every point q it carries by (R_j d) x (q - p_j).
        lever = torch.einsum("kij,bkim->bkjm", self.chain, carried) \
            - self.chain_sum[None, :, :, None] * pos[:, None]  # (B,21,16,3)
        jr = _right_jacobian(finger_aa.view(bsz, -1, 3))  # (B,15,3,3)
        axes = torch.cat([world_rot[:, :1], world_rot[:, 1:] @ jr], 1)  # (B,16,3,3)
        cols = axes.transpose(-1, -2)  # (B,16,3(c),3): world axis of unknown c of joint j
        j_rot = torch.cross(cols[:, None], lever[:, :, :, None].expand(-1, -1, -1, 3, -1), dim=-1)
        j_rot = j_rot.permute(0, 1, 4, 2, 3).reshape(bsz, 3 * NUM_KEYPOINTS, 3 * NUM_JOINTS)
        # Betas: d p_i = sum over the chain of R_parent(a) (dJ_a - dJ_parent(a)), and each
        # carried point moves by R_i (dX_k - dJ_i) + dp_i.
        par_rot = world_rot[:, self.parents].clone()
        par_rot[:, 0] = torch.eye(3, dtype=_F64)  # the root joint itself is not rotated
        dpos = torch.einsum("ia,bamn,anl->biml", self.anc, par_rot, self.beta_bone)
        j_beta = torch.einsum("ki,bimn,kinl->bkml", self.carry, world_rot, self.beta_rel) \
            + torch.einsum("ki,biml->bkml", self.carry, dpos)
        jac = torch.cat([j_rot, j_beta.reshape(bsz, 3 * NUM_KEYPOINTS, NUM_BETAS)], -1)
        if self.has_posedirs:  # fingertip pose correctives: d offset / d finger axis-angle
            # d R_j = R_j skew(Jr_j[:, c]) per unknown c; the offsets are linear in R_j - I.
            d_rot = st["rot"][:, 1:, None] @ _skew(jr.transpose(-1, -2))  # (B,15,3c,3,3)
            d_off = torch.einsum("bjcf,jftm->btmjc", d_rot.flatten(-2), self.tip_posedirs_j)
            skin_rot = torch.einsum("ti,bimn->btmn", self.tip_weights, world_rot)
            d_tip = torch.einsum("btmn,btnjc->btmjc", skin_rot, d_off)  # (B,5,3,15,3)
            jac = jac.view(bsz, NUM_KEYPOINTS, 3, _NUM_UNKNOWNS)
            jac[:, self.tip_kps, :, _FINGER_UNK] += d_tip.reshape(bsz, 5, 3, _NUM_FINGER_AA)
            jac = jac.view(bsz, 3 * NUM_KEYPOINTS, _NUM_UNKNOWNS)
        return jac

    # -- fit ------------------------------------------------------------------------------
    def _cost(self, kps: torch.Tensor, target_c: torch.Tensor, finger_aa: torch.Tensor,
              betas: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Centred keypoint residual (B,63) m and total cost (B,) incl. the priors."""
        res = (kps - kps.mean(1, keepdim=True) - target_c).reshape(kps.shape[0], -1)
        cost = (res * res).sum(-1) + self.pose_reg * ((finger_aa - self.pose_mean) ** 2).sum(-1) \
            + self.shape_reg * (betas * betas).sum(-1)
        return res, cost

    def _init_root(self, target: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """Closed-form root rotation (B,3,3): Kabsch of the rest palm keypoints onto the
        target's (they move rigidly with the root for fixed betas)."""
        joints = self.joint_rest + torch.einsum("jcl,bl->bjc", self.joint_dirs, betas)
        src = joints[:, self.palm_joints]
        return kabsch_rotation(src, target[:, list(PALM_KEYPOINTS)])

    def _swing_init(self, root: torch.Tensor, finger_aa: torch.Tensor, betas: torch.Tensor,
                    target: torch.Tensor) -> torch.Tensor:
        """Finger pose (B,45) whose bones point along the target's: level by level (MCP, PIP,
        DIP), each bone is swung by the smallest world rotation from its current direction
        onto the target's, which keeps the current twist (mean pose, or warm start)."""
        bsz = root.shape[0]
        local = _rodrigues(finger_aa.view(bsz, -1, 3))  # (B,15,3,3)
        joints, x = self._rest_points(betas, torch.cat([root[:, None], local], 1))
        world_rot = torch.empty(bsz, NUM_JOINTS, 3, 3, dtype=_F64)
        world_rot[:, 0] = root
        for idx, kp, child in zip(self.levels, self.level_kp, self.level_child_kp):
            par = self.parents[idx]
            current = world_rot[:, par] @ local[:, idx - 1]  # (B,n,3,3)
            bone = x[:, child] - joints[:, idx]  # rest bone in the joint's frame (B,n,3)
            now = (current @ bone.unsqueeze(-1)).squeeze(-1)
            want = target[:, child] - target[:, kp]
            world_rot[:, idx] = _min_rotation(now, want) @ current
            local[:, idx - 1] = world_rot[:, par].transpose(-1, -2) @ world_rot[:, idx]
        return _matrix_to_axis_angle(local).reshape(bsz, -1)

    def fit(self, target: np.ndarray, init: Optional[np.ndarray] = None,
            steps: Optional[int] = None) -> FitResult:
        """Fit B hands to target keypoints (B,21,3) m (contract order, any common frame).

        init: a previous FitResult.params (B,61) to warm-start from (same B, same hands);
        None = closed-form root, mean pose swung onto the target's bones, zero betas. A warm
        start takes, per hand, the lowest-cost of: the previous root and pose; the closed-form
        root with the previous pose; the closed-form root with the previous pose swung onto
        the target's bones (so a hand that moved fast still starts well).
        steps: override of the constructor's iteration limit for this call.
        """
        tgt = torch.as_tensor(np.asarray(target, dtype=np.float64))
        if tgt.ndim != 3 or tgt.shape[1:] != (NUM_KEYPOINTS, 3):
            raise ValueError(f"target must be (B,{NUM_KEYPOINTS},3), got {tuple(tgt.shape)}")
        if not torch.isfinite(tgt).all():
            raise ValueError("target keypoints must be finite")
        bsz = tgt.shape[0]
        max_steps = self.steps if steps is None else int(steps)
        target_c = tgt - tgt.mean(1, keepdim=True)
        if init is None:
            betas = torch.zeros(bsz, NUM_BETAS, dtype=_F64)
            root = self._init_root(tgt, betas)
            finger_aa = self.pose_mean.expand(bsz, -1).clone()
            if self.swing_init:
                finger_aa = self._swing_init(root, finger_aa, betas, tgt)
            st = self._forward(root, finger_aa, betas)
            res, cost = self._cost(st["kps"], target_c, finger_aa, betas)
        else:
            p = torch.as_tensor(np.asarray(init, dtype=np.float64))
            if p.shape != (bsz, NUM_FIT_PARAMS) or not torch.isfinite(p).all():
                raise ValueError(f"init must be finite ({bsz},{NUM_FIT_PARAMS}), "
                                 f"got {tuple(p.shape)}")
            betas = p[:, FIT_BETAS_SLICE].clone()
            warm_root, warm_pose = _rodrigues(p[:, ROOT_AA_SLICE]), p[:, FINGER_AA_SLICE].clone()
            root_k = self._init_root(tgt, betas)
            roots, poses = [warm_root, root_k], [warm_pose, warm_pose]
            if self.swing_init:
                roots.append(root_k)
                poses.append(self._swing_init(root_k, warm_pose, betas, tgt))
            root, finger_aa, st, res, cost = self._best_start(roots, poses, betas, target_c)
        damping = torch.full((bsz,), _LM_DAMPING_INIT, dtype=_F64)
        done = torch.zeros(bsz, dtype=torch.bool)
        eye = torch.eye(_NUM_UNKNOWNS, dtype=_F64)
        prior = torch.zeros(_NUM_UNKNOWNS, dtype=_F64)
        prior[_FINGER_UNK], prior[_BETA_UNK] = self.pose_reg, self.shape_reg
        n_run = 0
        for _ in range(max_steps):
            if bool(done.all()):
                break
            n_run += 1
            jac = self._jacobian(st, finger_aa)
            jac = jac - jac.view(bsz, NUM_KEYPOINTS, 3, -1).mean(1).repeat(1, NUM_KEYPOINTS, 1)
            hess = jac.transpose(1, 2) @ jac + torch.diag(prior)
            grad = (jac.transpose(1, 2) @ res.unsqueeze(-1)).squeeze(-1)
            grad[:, _FINGER_UNK] += self.pose_reg * (finger_aa - self.pose_mean)
            grad[:, _BETA_UNK] += self.shape_reg * betas
            diag = torch.diagonal(hess, dim1=1, dim2=2) + _DIAG_FLOOR
            lhs = hess + damping[:, None, None] * (eye * diag[:, None, :])
            step = -self.lr * torch.linalg.solve(lhs, grad)
            # predicted decrease of the quadratic model: -(2 g.d + d.H.d)
            predicted = -(2.0 * (grad * step).sum(-1)
                          + (step.unsqueeze(1) @ hess @ step.unsqueeze(-1)).view(-1))
            root_n = root @ _rodrigues(step[:, :3])
            finger_n = finger_aa + step[:, _FINGER_UNK]
            betas_n = betas + step[:, _BETA_UNK]
            st_n = self._forward(root_n, finger_n, betas_n)
            res_n, cost_n = self._cost(st_n["kps"], target_c, finger_n, betas_n)
            ok = (cost_n < cost) & ~done
            newly_done = (predicted < _CONVERGED_DECREASE) | (ok & (cost - cost_n
                                                                   < _CONVERGED_DECREASE))
            sel = ok.view(-1, 1)
            root = torch.where(sel[:, :, None], root_n, root)
            finger_aa = torch.where(sel, finger_n, finger_aa)
            betas = torch.where(sel, betas_n, betas)
            res = torch.where(sel, res_n, res)
            cost = torch.where(ok, cost_n, cost)
            for key in st:
                shape = (-1,) + (1,) * (st[key].ndim - 1)
                st[key] = torch.where(ok.view(shape), st_n[key], st[key])
            damping = torch.where(ok, damping / _LM_DAMPING_DOWN, damping * _LM_DAMPING_UP)
            damping = damping.clamp(_LM_DAMPING_MIN, _LM_DAMPING_MAX)
            # a hand whose damping hit the ceiling cannot improve any more: stop it too
            done = done | newly_done | (damping >= _LM_DAMPING_MAX)
        return self._result(tgt, root, finger_aa, betas, st["rot"], n_run)

    def _best_start(self, roots: list, poses: list, betas: torch.Tensor,
                    target_c: torch.Tensor) -> tuple:
        """Per hand, the lowest-cost of n candidate (root (B,3,3), finger pose (B,45)) starts,
        evaluated in one batched forward; returns root, pose, FK state, residual, cost."""
        n, bsz = len(roots), betas.shape[0]
        root, pose, beta = torch.cat(roots), torch.cat(poses), betas.repeat(n, 1)
        st = self._forward(root, pose, beta)
        res, cost = self._cost(st["kps"], target_c.repeat(n, 1, 1), pose, beta)
        pick = cost.view(n, bsz).argmin(0) * bsz + torch.arange(bsz)  # rows of the winners
        st = {key: val[pick] for key, val in st.items()}
        return root[pick], pose[pick], st, res[pick], cost[pick]

    def _result(self, tgt: torch.Tensor, root: torch.Tensor, finger_aa: torch.Tensor,
                betas: torch.Tensor, rot: torch.Tensor, n_run: int) -> FitResult:
        """Mesh and joints from the layer itself, translated onto the target's centroid."""
        layer = self.layer
        dtype, device = layer.th_v_template.dtype, layer.th_v_template.device
        rot6d = torch.cat([root[:, :, 0], root[:, :, 1]], -1)  # columns x, y of R
        pca = (finger_aa - self.pose_mean) @ self.comps_pinv
        with torch.no_grad():
            out = layer(*(x.to(device, dtype) for x in (rot6d, pca, betas)))
        joints = out.joints.detach().to("cpu", _F64)
        transl = (tgt - joints).mean(1)  # least-squares translation of the wrist
        joints = joints + transl[:, None]
        verts = out.vertices.detach().to("cpu", _F64) + transl[:, None]
        resid = ((joints - tgt) ** 2).sum(-1).mean(-1).sqrt() * _M_TO_MM
        root_aa = _matrix_to_axis_angle(root)
        rotmats = rot.clone()
        rotmats[:, 0] = root
        params = torch.cat([root_aa, finger_aa, betas, transl], -1)
        return FitResult(params=params.numpy(), joints=joints.numpy().astype(np.float32),
                         vertices=verts.numpy().astype(np.float32), rotmats=rotmats.numpy(),
                         shape=betas.numpy().copy(), residual_mm=resid.numpy(), steps=n_run)
