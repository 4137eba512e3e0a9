"""Constants of the MANO format and of DIR's 64 hand parameters: sizes, parameter slices,
sides, fingertip vertex ids and the keypoint / kinematic orders (numbers only, no torch)."""
from __future__ import annotations

from typing import Dict, Tuple

NUM_KEYPOINTS = 21  # 16 MANO joints + 5 fingertips (contract keypoint order)
NUM_JOINTS = 16  # MANO kinematic joints: wrist + 5 fingers x 3
NUM_BETAS = 10  # MANO shape coefficients
NUM_POSE_COMPS = 45  # MANO finger-pose PCA coefficients (15 finger joints x 3 axis-angle)
NUM_ROT6D = 6  # robust 6D root rotation
NUM_PARAMS = 64  # DIR's per-hand parameter vector: 6 rot6d + 45 pca + 10 betas + 3 camera
# Slices of the four parts inside the 64 parameters.
ROT6D_SLICE = slice(0, NUM_ROT6D)
PCA_SLICE = slice(ROT6D_SLICE.stop, ROT6D_SLICE.stop + NUM_POSE_COMPS)
BETAS_SLICE = slice(PCA_SLICE.stop, PCA_SLICE.stop + NUM_BETAS)
CAMERA_SLICE = slice(BETAS_SLICE.stop, NUM_PARAMS)
SIDES = ("left", "right")

# Fingertip vertex ids of the official MANO meshes, in order thumb, index, middle, ring, pinky
# (DIR_ARCHITECTURE.md "Hand model layer"; the left mesh differs at the middle tip).
MANO_TIP_VERTEX_IDS: Dict[str, Tuple[int, ...]] = {
    "right": (745, 317, 444, 556, 673),
    "left": (745, 317, 445, 556, 673),
}

# MANO joint order: 0 wrist, 1-3 index, 4-6 middle, 7-9 pinky, 10-12 ring, 13-15 thumb; the five
# tips are appended as 16..20 (thumb, index, middle, ring, pinky). Keypoint k takes MANO/tip
# index MANO_TO_KEYPOINT[k] (contract order: wrist, thumb, index, middle, ring, pinky).
MANO_TO_KEYPOINT: Tuple[int, ...] = (
    0,
    13, 14, 15, 16,  # thumb
    1, 2, 3, 17,  # index
    4, 5, 6, 18,  # middle
    10, 11, 12, 19,  # ring
    7, 8, 9, 20,  # pinky
)
# Parent of keypoints 1..20 in the 21-keypoint order (contract "Keypoint order").
BONE_PARENTS: Tuple[int, ...] = (0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)
# MANO's kinematic tree (kintree_table[0]); -1 for the root.
MANO_PARENTS: Tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)


def check_side(side: str) -> str:
    """Validate a side name."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    return side
