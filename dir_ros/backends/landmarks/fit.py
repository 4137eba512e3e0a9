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

The landmark fit is split by idea: ``placement`` (place_hand), ``rotations`` (the rotation
helpers), ``kinematics`` (the 21-keypoint model, its Jacobian and mesh) and this module, the
solver (FitResult, HandFitter: initialisation and Levenberg-Marquardt).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from dir_ros.backends.landmarks.kinematics import (NUM_FINGER_AA, NUM_FINGER_JOINTS,
                                                   NUM_FINGERS, NUM_LEVELS, PALM_KEYPOINTS,
                                                   HandKinematics)
from dir_ros.backends.landmarks.rotations import (kabsch_rotation, matrix_to_axis_angle,
                                                  min_rotation, rodrigues)
from dir_ros.hand_model import NUM_BETAS, NUM_JOINTS, NUM_KEYPOINTS, HandLayer

__all__ = [
    "NUM_FIT_PARAMS", "ROOT_AA_SLICE", "FINGER_AA_SLICE", "POSE_AA_SLICE",
    "FIT_BETAS_SLICE", "TRANSL_SLICE", "FitResult", "HandFitter",
]

# FitResult.params layout (B, 61): root axis-angle | finger axis-angle (MANO joints 1..15,
# absolute, mean pose included) | betas | translation of the root keypoint (wrist), metres.
ROOT_AA_SLICE = slice(0, 3)
FINGER_AA_SLICE = slice(3, 3 + NUM_FINGER_AA)
POSE_AA_SLICE = slice(0, 3 + NUM_FINGER_AA)  # the 48-value MANO pose
FIT_BETAS_SLICE = slice(POSE_AA_SLICE.stop, POSE_AA_SLICE.stop + NUM_BETAS)
TRANSL_SLICE = slice(FIT_BETAS_SLICE.stop, FIT_BETAS_SLICE.stop + 3)
NUM_FIT_PARAMS = TRANSL_SLICE.stop  # 61

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
_M_TO_MM = 1e3

_F64 = torch.float64


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


class HandFitter(HandKinematics):
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
        self.steps, self.lr = int(steps), float(lr)
        self.shape_reg, self.pose_reg = float(shape_reg), float(pose_reg)
        self.swing_init = swing_init
        self.rel_tol = float(rel_tol)
        super().__init__(layers)
        # LM unknowns beyond the root: q = [finger axis-angle (45) | betas (10)]; the priors
        # pull q to the layer's q_mean with weights q_prior.
        self.q_prior = torch.cat([torch.full((NUM_FINGER_AA,), self.pose_reg, dtype=_F64),
                                  torch.full((NUM_BETAS,), self.shape_reg, dtype=_F64)])
        self.prior_hess = torch.diag(F.pad(self.q_prior, (3, 0)))  # (58,58)

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
        shape = (bsz, NUM_FINGERS, NUM_LEVELS, 3)
        local = rodrigues(finger_aa.reshape(bsz, NUM_FINGER_JOINTS, 3)).view(shape + (3,))
        bone = (m["swing_bone_rest"] + (betas[:, None] @ m["swing_bone_basis"])[:, 0]).view(
            shape + (1,))
        want = (target[:, self.swing_child_kp] - target[:, self.swing_kp]).view(shape)
        par = root[:, None].expand(bsz, NUM_FINGERS, 3, 3)
        out = []
        for lvl in range(NUM_LEVELS):
            current = par @ local[:, :, lvl]  # (B,5,3,3) world rotation now
            now = (current @ bone[:, :, lvl]).squeeze(-1)  # world bone direction now
            swung = min_rotation(now, want[:, :, lvl]) @ current
            out.append(par.transpose(-1, -2) @ swung)
            par = swung
        local = torch.stack(out, 2).view(bsz, NUM_FINGER_JOINTS, 3, 3)
        return matrix_to_axis_angle(local).reshape(bsz, -1)

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
        warm_root, warm_pose = rodrigues(init[:, ROOT_AA_SLICE]), init[:, FINGER_AA_SLICE]
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
            jac = self._jacobian(st, q[:, :NUM_FINGER_AA], m)
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
            root_n = root @ rodrigues(step[:, :3])
            q_n = q + step[:, 3:]
            st_n = self._forward(root_n, q_n[:, :NUM_FINGER_AA], q_n[:, NUM_FINGER_AA:], m)
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
        finger_aa, betas = q[:, :NUM_FINGER_AA], q[:, NUM_FINGER_AA:]
        kps = st["kps"]
        wrist = kps[:, :1]
        transl = (tgt - kps).mean(1) + wrist[:, 0]  # least-squares translation of the wrist
        joints = kps - wrist + transl[:, None]
        verts = self._mesh(st, betas, mesh) - wrist + transl[:, None]
        resid = ((joints - tgt) ** 2).sum(-1).mean(-1).sqrt() * _M_TO_MM
        rotmats = st["rot"]  # (B,16,3,3): the root's rotation is rotmats[:, 0]
        params = torch.cat([matrix_to_axis_angle(root), finger_aa, betas, transl], -1)
        return FitResult(params=params.numpy(), joints=joints.numpy().astype(np.float32),
                         vertices=verts.numpy().astype(np.float32), rotmats=rotmats.numpy(),
                         shape=betas.numpy().copy(), residual_mm=resid.numpy(), steps=n_run)
