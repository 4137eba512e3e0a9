"""What a camera frame with two posed hands is, and the hand-model geometry both the
frame sources (dir_ros/data) and the training samples (dir_ros/train/sample.py) use: posing,
the 61-value parameter vector (rot6d | PCA | betas), PCA <-> axis-angle, mirroring."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from dir_ros.hand_model import PCA_SLICE, SIDES, HandLayer, HandModelArrays

# Length of the per-hand parameter vector stored with each sample: rot6d (camera frame) |
# 45 PCA coefficients | 10 betas (DIR's 64 parameters without the weak-perspective camera).
NUM_HAND_PARAMS = 61
ROT6D_PART = slice(0, 6)
BETAS_PART = slice(51, 61)
# Mirror of camera-frame geometry across the image's vertical axis.
MIRROR_X = np.diag([-1.0, 1.0, 1.0])
# Axis-angle of a joint rotation mirrored by MIRROR_X: M R M has axis-angle (x, -y, -z).
MIRROR_AXIS_ANGLE = np.array([1.0, -1.0, -1.0])


class BadFrameError(ValueError):
    """A frame that cannot become a sample (unreadable or corrupt image, dark frame, hands
    behind the camera); the message names the frame. The trainer skips or stops on it as
    configured (`bad_frames`)."""


@dataclass
class HandGeometry:
    """One hand in a camera's optical frame (x right, y down, z forward), metres.

    verts (V,3): mesh vertices. joints (21,3): keypoints, project order (0 wrist, thumb 1-4,
    index 5-8, middle 9-12, ring 13-16, pinky 17-20). params (61,): rot6d of the root
    rotation in this camera frame (first two columns of the matrix) | 45 PCA coefficients |
    10 betas, in the convention of dir_ros.hand_model.HandLayer.
    """

    verts: np.ndarray
    joints: np.ndarray
    params: np.ndarray


@dataclass
class RawFrame:
    """A camera image with both hands: rgb (H,W,3) uint8, K (3,3) OpenCV intrinsics (pixel
    centres at integers), hands side -> HandGeometry, name (file or seed/index, for
    messages)."""

    rgb: np.ndarray
    K: np.ndarray
    hands: dict[str, HandGeometry]
    name: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class HandTables:
    """Per-side arrays the sample pipeline needs: faces, PCA basis (mirroring parameters)
    and the dense-correspondence colour of each vertex."""

    faces: dict[str, np.ndarray]          # (F,3) int64
    hands_mean: dict[str, np.ndarray]     # (45,) rad
    comps: dict[str, np.ndarray]          # (45,45) rows = PCA components
    comps_inv: dict[str, np.ndarray]      # (45,45) inverse of comps
    dense_colours: np.ndarray             # (V,3) in [0,1], shared by both hands

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, HandModelArrays]) -> "HandTables":
        """Tables of a loaded hand model (side -> HandModelArrays)."""
        comps = {s: np.asarray(arrays[s].hands_components, np.float64) for s in SIDES}
        return cls(faces={s: np.asarray(arrays[s].faces, np.int64) for s in SIDES},
                   hands_mean={s: np.asarray(arrays[s].hands_mean, np.float64) for s in SIDES},
                   comps=comps, comps_inv={s: np.linalg.inv(c) for s, c in comps.items()},
                   dense_colours=dense_colours(arrays["right"].v_template))


def dense_colours(template: np.ndarray) -> np.ndarray:
    """Dense-correspondence colour of each vertex (V,3) in [0,1]: its rest-pose position
    scaled to the template's bounding box. The release colours both hands from one
    per-vertex table (misc dense_coor, not public); any smooth injective map of the surface
    serves the dense head the same way."""
    t = np.asarray(template, dtype=np.float64)
    lo, hi = t.min(axis=0), t.max(axis=0)
    return (t - lo) / np.maximum(hi - lo, 1e-12)


def rot6d_from_matrix(rot: np.ndarray) -> np.ndarray:
    """Rotation matrices (...,3,3) -> 6D (...,6): first column then second column (the
    representation HandLayer's robust 6D decoding returns exactly)."""
    rot = np.asarray(rot, dtype=np.float64)
    return np.concatenate([rot[..., :, 0], rot[..., :, 1]], axis=-1)


def matrix_from_rot6d(r6: np.ndarray) -> np.ndarray:
    """6D (...,6) -> rotation matrices (...,3,3) by Gram-Schmidt (exact for the output of
    rot6d_from_matrix)."""
    r6 = np.asarray(r6, dtype=np.float64)
    a = r6[..., 0:3] / np.linalg.norm(r6[..., 0:3], axis=-1, keepdims=True)
    b = r6[..., 3:6] - (a * r6[..., 3:6]).sum(-1, keepdims=True) * a
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.stack([a, b, np.cross(a, b)], axis=-1)


def double_layers(arrays: Mapping[str, HandModelArrays]) -> dict[str, HandLayer]:
    """HandLayers in float64 (targets to well below a micrometre), root = wrist."""
    return {s: HandLayer(arrays[s], root_joint=0).double().eval() for s in SIDES}


def posed_hand(layer: HandLayer, rot: np.ndarray, pca: np.ndarray, betas: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """MANO-format hand posed by root rotation rot (N,3,3), PCA coefficients (N,45) and
    betas (N,10) -> (verts (N,V,3), joints (N,21,3)) in metres, model coordinates with the
    root rotation applied about the rest wrist (linear blend skinning output, no
    translation), i.e. the same placement as smplx's MANO with transl 0."""
    dt = layer.th_v_template.dtype
    with torch.no_grad():
        out = layer(torch.as_tensor(rot6d_from_matrix(rot), dtype=dt),
                    torch.as_tensor(np.asarray(pca), dtype=dt),
                    torch.as_tensor(np.asarray(betas), dtype=dt))
        root = out.root[:, None]
        return (out.vertices + root).double().numpy(), (out.joints + root).double().numpy()


def pca_from_axis_angle(finger_aa: np.ndarray, tables: HandTables, side: str) -> np.ndarray:
    """Finger pose axis-angle (...,45) including the mean pose -> PCA coefficients (...,45)
    of HandLayer (finger pose = hands_mean + pca @ comps)."""
    return (np.asarray(finger_aa, np.float64) - tables.hands_mean[side]) @ tables.comps_inv[side]


def axis_angle_from_pca(pca: np.ndarray, tables: HandTables, side: str) -> np.ndarray:
    """PCA coefficients (...,45) -> finger pose axis-angle (...,45) including the mean."""
    return tables.hands_mean[side] + np.asarray(pca, np.float64) @ tables.comps[side]


def mirror_params(params: np.ndarray, tables: HandTables, src: str, dst: str) -> np.ndarray:
    """Parameters (61,) of a `src` hand -> those of its mirror image as a `dst` hand:
    root M R M, each finger joint's axis-angle (x, -y, -z), same betas. Exact when the two
    hand models are mirror images of each other (the open hand model; MANO up to its fitted
    asymmetries)."""
    p = np.asarray(params, np.float64)
    rot = MIRROR_X @ matrix_from_rot6d(p[ROT6D_PART]) @ MIRROR_X
    aa = axis_angle_from_pca(p[PCA_SLICE], tables, src).reshape(-1, 3) * MIRROR_AXIS_ANGLE
    return np.concatenate([rot6d_from_matrix(rot), pca_from_axis_angle(aa.reshape(-1), tables,
                                                                       dst), p[BETAS_PART]])
