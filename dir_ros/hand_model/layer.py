"""The MANO-format hand layer (torch): DIR's 64 hand parameters -> root-relative mesh and
21 keypoints through smplx's blend shapes and linear blend skinning; layers for both sides."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np
import torch
from smplx.lbs import batch_rodrigues, lbs

from dir_ros.hand_model.constants import (BETAS_SLICE, MANO_TO_KEYPOINT, NUM_BETAS,
                                          NUM_JOINTS, NUM_KEYPOINTS, PCA_SLICE, ROT6D_SLICE,
                                          SIDES, check_side)
from dir_ros.hand_model.files import HandModelArrays, load_hand_model, open_hand_dir
from dir_ros.hand_model.rotation import rot6d_to_matrix


@dataclass
class HandLayerOutput:
    """Result of HandLayer.forward (metres, root-relative model frame)."""

    vertices: torch.Tensor  # (B,V,3) relative to keypoint root_joint
    joints: torch.Tensor  # (B,21,3) contract keypoint order, same frame
    root: torch.Tensor  # (B,3) root keypoint position before subtraction
    rotmats: torch.Tensor  # (B,16,3,3) per-joint rotations (root from 6D)


class _KinematicParents(list):
    """MANO parent indices as a list of ints with a tensor-like `.shape`, as smplx.lbs
    expects of its `parents` argument. lbs walks the kinematic chain with parents[i] as a
    Python list index; on a tensor that is a data-dependent .item() (it stops torch.export
    and breaks torch.compile graphs), on this list a constant int. parents[1:] is a list,
    which indexes a tensor the same way the tensor slice does."""

    @property
    def shape(self) -> Tuple[int]:
        """(J,), like the (J,) tensor this stands in for."""
        return (len(self),)


class HandLayer(torch.nn.Module):
    """One side's MANO layer: (rot6d, pca, betas) -> root-relative mesh and 21 keypoints."""

    def __init__(self, arrays: HandModelArrays, root_joint: int = 0) -> None:
        super().__init__()
        if not 0 <= int(root_joint) < NUM_KEYPOINTS:
            raise ValueError(f"root_joint must be a keypoint index 0..{NUM_KEYPOINTS - 1}, "
                             f"got {root_joint}")
        self.side: str = check_side(arrays.side)
        self.root_joint: int = int(root_joint)
        self.num_verts: int = arrays.num_verts
        f32 = torch.float32

        def t(a: np.ndarray, dtype: torch.dtype = f32) -> torch.Tensor:
            return torch.tensor(np.asarray(a), dtype=dtype)

        # Persistent buffers: names and shapes as in the authors' checkpoint.
        self.register_buffer("th_betas", torch.zeros(1, NUM_BETAS, dtype=f32))
        self.register_buffer("th_shapedirs", t(arrays.shapedirs))
        self.register_buffer("th_posedirs", t(arrays.posedirs))
        self.register_buffer("th_v_template", t(arrays.v_template).unsqueeze(0))
        self.register_buffer("th_J_regressor", t(arrays.J_regressor))
        self.register_buffer("th_weights", t(arrays.weights))
        self.register_buffer("th_faces", t(arrays.faces, torch.int64))
        self.register_buffer("th_hands_mean", t(arrays.hands_mean).unsqueeze(0))
        self.register_buffer("th_comps", t(arrays.hands_components))
        self.register_buffer("th_selected_comps", t(arrays.hands_components))
        # Non-persistent helpers.
        parents = torch.tensor(np.asarray(arrays.kintree_table[0]), dtype=torch.long)
        parents[0] = -1  # MANO stores 2**32-1 for the root
        self.register_buffer("parents", parents, persistent=False)
        # The same tree as Python integers for smplx.lbs (see _KinematicParents).
        self._parent_index = _KinematicParents(parents.tolist())
        self.register_buffer("tip_ids", t(arrays.tip_ids, torch.long), persistent=False)
        self.register_buffer("keypoint_index", torch.tensor(MANO_TO_KEYPOINT, dtype=torch.long),
                             persistent=False)

    @property
    def faces(self) -> torch.Tensor:
        """(F,3) int64 triangle vertex indices."""
        return self.th_faces

    def finger_pose(self, pca: torch.Tensor) -> torch.Tensor:
        """PCA coefficients (B,45) -> axis-angle of joints 1..15 (B,45) with the mean added."""
        return self.th_hands_mean + pca @ self.th_selected_comps

    def forward(self, rot6d: torch.Tensor, pca: torch.Tensor,
                betas: torch.Tensor) -> HandLayerOutput:
        """rot6d (B,6), pca (B,45), betas (B,10) -> HandLayerOutput (metres)."""
        dtype = self.th_v_template.dtype
        rot6d, pca, betas = (x.to(dtype) for x in (rot6d, pca, betas))
        bsz = max(rot6d.shape[0], pca.shape[0], betas.shape[0])
        rot6d, pca, betas = (x.expand(bsz, -1) for x in (rot6d, pca, betas))
        root_rot = rot6d_to_matrix(rot6d)  # (B,3,3)
        finger_rot = batch_rodrigues(self.finger_pose(pca).reshape(-1, 3))
        rotmats = torch.cat([root_rot.unsqueeze(1), finger_rot.view(bsz, NUM_JOINTS - 1, 3, 3)],
                            dim=1)  # (B,16,3,3)
        posedirs = self.th_posedirs.reshape(-1, self.th_posedirs.shape[-1]).t()  # (135,V*3)
        verts, joints16 = lbs(betas, rotmats, self.th_v_template, self.th_shapedirs, posedirs,
                              self.th_J_regressor, self._parent_index, self.th_weights,
                              pose2rot=False)
        tips = verts[:, self.tip_ids]  # (B,5,3)
        joints = torch.cat([joints16, tips], dim=1)[:, self.keypoint_index]  # (B,21,3)
        root = joints[:, self.root_joint]
        return HandLayerOutput(vertices=verts - root.unsqueeze(1),
                               joints=joints - root.unsqueeze(1), root=root, rotmats=rotmats)

    def forward_params(self, params: torch.Tensor) -> HandLayerOutput:
        """params (B,64) = [rot6d 0:6 | pca 6:51 | betas 51:61 | camera 61:64] -> output."""
        return self.forward(params[:, ROT6D_SLICE], params[:, PCA_SLICE], params[:, BETAS_SLICE])

    def extra_repr(self) -> str:
        return f"side={self.side}, num_verts={self.num_verts}, root_joint={self.root_joint}"


def make_hand_layers(arrays: Dict[str, HandModelArrays],
                     root_joint: int = 0) -> Dict[str, HandLayer]:
    """Layers for both sides from loaded arrays (side -> HandModelArrays)."""
    return {side: HandLayer(arrays[side], root_joint=root_joint) for side in SIDES}


def build_hand_layers(folder: Union[str, Path, None] = None,
                      root_joint: int = 0) -> Dict[str, HandLayer]:
    """Layers for both sides from a MANO-format folder (default: the open hand model)."""
    return make_hand_layers(load_hand_model(open_hand_dir() if folder is None else folder),
                            root_joint)

