"""The landmark fit's 21-keypoint model of MANO-format hand layers (float64, CPU, batched):
forward kinematics from root rotation, finger axis-angle and betas, its analytic Jacobian,
and the mesh by the layer's linear blend skinning; per-layer buffers for mixed-side batches.

Keypoints: joints from the joint regressor folded with the shape blend shapes, fingertip
vertices by the layer's skinning (no mesh inside the fit). Forward kinematics runs
finger-major, one batched step per level for all five fingers. Units: metres, radians."""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple, Union

import torch

from dir_ros.backends.landmarks.rotations import eye3, right_jacobian, rodrigues, skew
from dir_ros.hand_model import (BONE_PARENTS, MANO_PARENTS, MANO_TO_KEYPOINT, NUM_BETAS,
                                NUM_JOINTS, NUM_KEYPOINTS, HandLayer)

__all__ = ["PALM_KEYPOINTS", "NUM_FINGER_JOINTS", "NUM_FINGERS", "NUM_LEVELS", "NUM_FINGER_AA",
           "NUM_UNKNOWNS", "FINGER_UNK", "HandKinematics"]

# Contract keypoint ids of the palm: wrist, thumb base (MANO joint 13, the CMC), index,
# middle, ring and pinky MCP (MANO joints 1, 4, 10, 7). All are MANO root children.
PALM_KEYPOINTS: Tuple[int, ...] = (0, 1, 5, 9, 13, 17)
NUM_FINGER_JOINTS = NUM_JOINTS - 1  # 15
# MANO's finger joints are finger-major: joint 1 + 3 f + l is level l (MCP, PIP, DIP) of
# finger f (index, middle, pinky, ring, thumb), its parent the wrist (l = 0) or joint 3 f + l.
NUM_FINGERS, NUM_LEVELS = 5, 3
# Batches of distinct side patterns whose gathered buffers HandFitter keeps (left, right,
# both in either order, ... : a handful in practice; the cache is cleared when full).
_MAX_CACHED_BATCHES = 16
NUM_FINGER_AA = 3 * NUM_FINGER_JOINTS  # 45
# Optimised unknowns per hand: root rotation increment (3), finger axis-angle (45), betas (10).
NUM_UNKNOWNS = 3 + NUM_FINGER_AA + NUM_BETAS  # 58
FINGER_UNK = slice(3, 3 + NUM_FINGER_AA)

_F64 = torch.float64


class HandKinematics:
    """The 21-keypoint kinematic model of one or more MANO-format hand layers (one per side):
    buffers per layer, forward kinematics, Jacobian and mesh; HandFitter's model."""

    def __init__(self, layers: Union[HandLayer, Mapping[str, HandLayer]]) -> None:
        """Precompute the 21-keypoint kinematic model of each layer (float64, CPU).

        layers: one HandLayer (every hand uses it), or side name -> HandLayer (each hand
        names its side; the layers must have the same number of vertices).
        """
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
                    m["mesh_pose_basis"] = torch.zeros(NUM_FINGER_JOINTS * 9,
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
        """What all MANO-format layers share: the kinematic tree, the keypoint layout and the
        finger-major swing order."""
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
            NUM_FINGER_JOINTS, 9, len(tips), 3)
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
        local = rodrigues(finger_aa.reshape(bsz, NUM_FINGER_JOINTS, 3))  # (B,15,3,3)
        rot = torch.cat([root[:, None], local], 1)  # (B,16,3,3)
        joints = (m["joint_rest"] + (betas[:, None] @ m["joint_basis"])[:, 0]).view(
            bsz, NUM_JOINTS, 3)
        x = m["x_rest"] + (betas[:, None] @ m["x_basis"])[:, 0]  # (B,63) rest keypoints
        if self.has_posedirs:  # pose-corrective offsets of the tip vertices (lbs pose_feature)
            x = x + ((local - eye3(local)).reshape(bsz, 1, -1) @ m["kp_posedirs"])[:, 0]
        x = x.view(bsz, NUM_KEYPOINTS, 3)
        by_finger = local.view(bsz, NUM_FINGERS, NUM_LEVELS, 3, 3)
        chain = [root[:, None].expand(bsz, NUM_FINGERS, 3, 3)]
        for lvl in range(NUM_LEVELS):  # world rotation of level lvl of every finger
            chain.append(chain[-1] @ by_finger[:, :, lvl])
        par_rot = torch.stack(chain[:-1], 2)  # (B,5,3,3,3) world rotation of each parent
        world_rot = torch.cat([root[:, None], torch.stack(chain[1:], 2).view(
            bsz, NUM_FINGER_JOINTS, 3, 3)], 1)  # (B,16,3,3)
        bones = (joints[:, 1:] - joints[:, self.parents[1:]]).view(
            bsz, NUM_FINGERS, NUM_LEVELS, 3, 1)
        pos = joints[:, :1, None] + (par_rot @ bones).squeeze(-1).cumsum(2)  # (B,5,3,3)
        pos = torch.cat([joints[:, :1], pos.view(bsz, NUM_FINGER_JOINTS, 3)], 1)  # (B,16,3)
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
        jr = right_jacobian(finger_aa.reshape(bsz, NUM_FINGER_JOINTS, 3))  # (B,15,3,3)
        axes = torch.cat([world_rot[:, :1], world_rot[:, 1:] @ jr], 1)  # (B,16,3,3)
        cols = axes.transpose(-1, -2)  # (B,16,3(c),3): world axis of unknown c of joint j
        j_rot = torch.linalg.cross(cols[:, None], lever[:, :, :, None])  # (B,21,16,3c,3m)
        j_rot = j_rot.permute(0, 1, 4, 2, 3).reshape(bsz, 3 * NUM_KEYPOINTS, 3 * NUM_JOINTS)
        # Betas: d p_i = sum over the chain of R_parent(a) (dJ_a - dJ_parent(a)) (the root's
        # parent rotation is the identity), and keypoint k moves by
        # sum_i carry[k, i] (R_i (dX_k - dJ_i) + dp_i)
        #   = (sum_i carry[k, i] R_i) dX_k + sum_i carry[k, i] (dp_i - R_i dJ_i).
        par_rot = torch.cat([eye3(pos).expand(bsz, 1, 3, 3),
                             st["par_rot"].reshape(bsz, NUM_FINGER_JOINTS, 3, 3)], 1)
        dpos = self.anc @ (par_rot @ m["beta_bone"]).view(bsz, NUM_JOINTS, -1)  # (B,16,30)
        moved = dpos - (world_rot @ m["joint_dirs"]).view(bsz, NUM_JOINTS, -1)
        blend_rot = (m["carry"] @ world_rot.view(bsz, NUM_JOINTS, 9)).view(
            bsz, NUM_KEYPOINTS, 3, 3)  # sum_i carry[k, i] R_i
        j_beta = (blend_rot @ m["x_dirs"]).view(bsz, NUM_KEYPOINTS, -1) + m["carry"] @ moved
        jac = torch.cat([j_rot, j_beta.view(bsz, 3 * NUM_KEYPOINTS, NUM_BETAS)], -1)
        if self.has_posedirs:  # fingertip pose correctives: d offset / d finger axis-angle
            # d R_j = R_j skew(Jr_j[:, c]) per unknown c; the offsets are linear in R_j - I.
            d_rot = st["rot"][:, 1:, None] @ skew(jr.transpose(-1, -2))  # (B,15,3c,3,3)
            posedirs_j = m["tip_posedirs_j"].expand((bsz,) + m["tip_posedirs_j"].shape[1:])
            d_off = torch.einsum("bjcf,bjftm->btmjc", d_rot.flatten(-2), posedirs_j)
            skin_rot = m["tip_weights"] @ world_rot.view(bsz, NUM_JOINTS, 9)  # (B,5,9)
            d_tip = torch.einsum("btmn,btnjc->btmjc", skin_rot.view(bsz, -1, 3, 3),
                                 d_off)  # (B,5,3,15,3)
            jac = jac.view(bsz, NUM_KEYPOINTS, 3, NUM_UNKNOWNS)
            jac[:, self.tip_kps, :, FINGER_UNK] += d_tip.reshape(bsz, 5, 3, NUM_FINGER_AA)
            jac = jac.view(bsz, 3 * NUM_KEYPOINTS, NUM_UNKNOWNS)
        return jac

    def _mesh(self, st: dict, betas: torch.Tensor, m: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Vertices (B,V,3) m in the FK frame of `st` (the layer's linear blend skinning with
        the fit's joint transforms: the same maths as smplx.lbs, in float64); m: the mesh
        buffers (_model(..., "mesh"))."""
        bsz = betas.shape[0]
        verts = m["mesh_template"] + (betas[:, None] @ m["mesh_shape_basis"]).view(bsz, -1, 3)
        if "mesh_pose_basis" in m:
            feat = (st["rot"][:, 1:] - eye3(betas)).reshape(bsz, 1, -1)  # (B,1,135)
            verts = verts + (feat @ m["mesh_pose_basis"]).view(bsz, -1, 3)
        world_rot = st["world_rot"]
        # Joint transforms x -> R_i (x - J_i) + p_i as [R_i | p_i - R_i J_i], blended per vertex.
        trans = st["pos"] - (world_rot @ st["joints"][..., None]).squeeze(-1)  # (B,16,3)
        blend = m["mesh_weights"] @ torch.cat([world_rot.reshape(bsz, NUM_JOINTS, 9), trans],
                                              -1)  # (B,V,12)
        return (blend[..., :9].view(bsz, -1, 3, 3) @ verts[..., None]).squeeze(-1) \
            + blend[..., 9:]

