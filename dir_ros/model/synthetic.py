"""Seeded, MANO-shaped stand-in hand models for tests (no licensed data needed)."""
from __future__ import annotations

import numpy as np

from dir_ros.hand_model import (MANO_PARENTS, MANO_TIP_VERTEX_IDS, NUM_BETAS, NUM_JOINTS,
                                NUM_POSE_COMPS, SIDES, HandModelArrays)

# MANO array sizes (official model): vertices and faces.
MANO_NUM_VERTS = 778
MANO_NUM_FACES = 1538
# Rest-pose layout of the 16 MANO joints (metres, x across the palm, y along the fingers):
# finger base x positions and phalanx lengths, roughly an adult hand.
_FINGER_X = {"index": 0.025, "middle": 0.005, "pinky": -0.035, "ring": -0.015}
_PHALANX = 0.025
_PALM = 0.08
# Scale of the random blend shapes (m per unit coefficient).
_SHAPE_STD = 2e-3
_POSE_STD = 1e-3
# Spread of vertices around their joint (m).
_VERTEX_SPREAD = 0.008


def _rest_joints() -> np.ndarray:
    """(16,3) rest joints in MANO order (wrist, index, middle, pinky, ring, thumb)."""
    j = np.zeros((NUM_JOINTS, 3))
    for f, name in enumerate(("index", "middle", "pinky", "ring")):
        for k in range(3):
            j[1 + 3 * f + k] = (_FINGER_X[name], _PALM + k * _PHALANX, 0.0)
    for k in range(3):  # thumb goes out sideways
        j[13 + k] = (0.03 + k * 0.02, 0.02 + k * 0.015, 0.0)
    return j


def synthetic_hand_arrays(side: str = "right", num_verts: int = MANO_NUM_VERTS,
                          num_faces: int = MANO_NUM_FACES, seed: int = 0) -> HandModelArrays:
    """A hand-like MANO-format model: vertices scattered around a skeleton, skinned rigidly
    to their nearest joint, J_regressor = cluster means, random small blend shapes."""
    rng = np.random.default_rng(seed)
    joints = _rest_joints()
    if side == "left":
        joints[:, 0] *= -1
    # Tips (5) are extra vertices beyond the last joint of each finger.
    owner = rng.integers(0, NUM_JOINTS, num_verts)
    v = joints[owner] + rng.normal(0, _VERTEX_SPREAD, (num_verts, 3))
    v[:, 1] += np.where(owner > 0, 0.01, 0.0)  # push finger vertices out along the bone
    tip_ids = np.array(MANO_TIP_VERTEX_IDS[side] if num_verts == MANO_NUM_VERTS
                       else rng.choice(num_verts, 5, replace=False), dtype=np.int64)
    for i, last in enumerate((15, 3, 6, 12, 9)):  # thumb, index, middle, ring, pinky
        owner[tip_ids[i]] = last
        v[tip_ids[i]] = joints[last] + (0.0, 0.02, 0.0)
    weights = np.full((num_verts, NUM_JOINTS), 1e-3)
    weights[np.arange(num_verts), owner] = 1.0
    weights /= weights.sum(1, keepdims=True)
    jreg = np.zeros((NUM_JOINTS, num_verts))
    jreg[owner, np.arange(num_verts)] = 1.0
    empty = jreg.sum(1) == 0
    jreg[empty, rng.integers(0, num_verts, int(empty.sum()))] = 1.0
    jreg /= jreg.sum(1, keepdims=True)
    faces = np.stack([rng.choice(num_verts, 3, replace=False) for _ in range(num_faces)])
    comps, _ = np.linalg.qr(rng.normal(size=(NUM_POSE_COMPS, NUM_POSE_COMPS)))
    kintree = np.stack([np.array(MANO_PARENTS), np.arange(NUM_JOINTS)]).astype(np.int64)
    kintree[0, 0] = 2 ** 32 - 1  # as in the MANO files
    f32 = np.float32
    return HandModelArrays(
        v_template=v.astype(f32),
        shapedirs=rng.normal(0, _SHAPE_STD, (num_verts, 3, NUM_BETAS)).astype(f32),
        posedirs=rng.normal(0, _POSE_STD, (num_verts, 3, (NUM_JOINTS - 1) * 9)).astype(f32),
        J_regressor=jreg.astype(f32), weights=weights.astype(f32),
        faces=faces.astype(np.int64), hands_mean=rng.normal(0, 0.1, NUM_POSE_COMPS).astype(f32),
        hands_components=comps.astype(f32), kintree_table=kintree, tip_ids=tip_ids, side=side)


def synthetic_hand_model(num_verts: int = MANO_NUM_VERTS, num_faces: int = MANO_NUM_FACES,
                         seed: int = 0) -> dict[str, HandModelArrays]:
    """Both sides (side -> HandModelArrays), seeded."""
    return {side: synthetic_hand_arrays(side, num_verts, num_faces, seed + i)
            for i, side in enumerate(SIDES)}
