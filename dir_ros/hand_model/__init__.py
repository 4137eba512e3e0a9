"""MANO-format hand model layer for DIR: a thin adapter on smplx's MANO machinery.

Loads left and right MANO-format models (the licensed official pickles, which contain chumpy
objects, or the project's open hand model in weights/open_hand/) through a restricted
unpickler, and turns DIR's 64 hand parameters (robust 6D root rotation, 45 PCA finger
coefficients, 10 shape coefficients) into a root-relative mesh and 21 keypoints with
``smplx.lbs`` (shape/pose blend shapes and linear blend skinning).

Units: metres. Frame: the model's own (MANO canonical) frame rotated by the root rotation.

The package, one module per idea (each importing its siblings directly, never this face):
``constants`` (sizes, slices, keypoint and kinematic orders), ``errors``, ``safe_pickle``
(the restricted unpickler), ``files`` (loading and validating model files), ``rotation``
(6D rotations) and ``layer`` (HandLayer). This module re-exports their public names.
"""
from __future__ import annotations

from dir_ros.hand_model.constants import (BETAS_SLICE, BONE_PARENTS, CAMERA_SLICE,
                                          MANO_PARENTS, MANO_TIP_VERTEX_IDS, MANO_TO_KEYPOINT,
                                          NUM_BETAS, NUM_JOINTS, NUM_KEYPOINTS, NUM_PARAMS,
                                          NUM_POSE_COMPS, PCA_SLICE, ROT6D_SLICE, SIDES)
# Public names of the former single module that were never in __all__.
from dir_ros.hand_model.constants import NUM_ROT6D  # noqa: F401
from dir_ros.hand_model.errors import (HandModelError, HandModelFileNotFoundError,
                                       HandModelKeyError, UnsafePickleError)
from dir_ros.hand_model.files import SHAPEDIRS_BUG_TOLERANCE  # noqa: F401
from dir_ros.hand_model.files import (HandModelArrays, load_hand_model, load_mano_pickle,
                                      open_hand_dir)
# Two private hooks the hand-model tests reach through this face: the per-file parse cache
# (cleared between pickles written to one path) and the chumpy stand-in factory.
from dir_ros.hand_model.files import _load_cached  # noqa: F401
from dir_ros.hand_model.layer import (HandLayer, HandLayerOutput, build_hand_layers,
                                      make_hand_layers)
from dir_ros.hand_model.rotation import rot6d_to_matrix, unit_vectors
from dir_ros.hand_model.safe_pickle import _chumpy_class  # noqa: F401

__all__ = [
    "NUM_KEYPOINTS", "NUM_JOINTS", "NUM_BETAS", "NUM_POSE_COMPS", "NUM_PARAMS", "SIDES",
    "ROT6D_SLICE", "PCA_SLICE", "BETAS_SLICE", "CAMERA_SLICE",
    "MANO_TIP_VERTEX_IDS", "MANO_TO_KEYPOINT", "BONE_PARENTS", "MANO_PARENTS",
    "HandModelError", "HandModelFileNotFoundError", "HandModelKeyError", "UnsafePickleError",
    "HandModelArrays", "HandLayerOutput", "HandLayer",
    "load_mano_pickle", "load_hand_model", "make_hand_layers", "build_hand_layers",
    "rot6d_to_matrix", "unit_vectors", "open_hand_dir",
]

