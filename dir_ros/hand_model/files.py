"""Loading and validating MANO-format model files (official or open hand model) into
read-only numpy arrays, cached per file; the left-shapedirs fix; the bundled model's folder."""
from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np

from dir_ros.common.resources import find_resource, package_root
from dir_ros.hand_model.constants import (MANO_TIP_VERTEX_IDS, NUM_BETAS, NUM_JOINTS,
                                          NUM_POSE_COMPS, check_side)
from dir_ros.hand_model.errors import (HandModelError, HandModelFileNotFoundError,
                                       HandModelKeyError)
from dir_ros.hand_model.safe_pickle import read_pickle, to_numpy

_NUM_POSE_FEATURES = (NUM_JOINTS - 1) * 9  # 135 = posedirs basis size (15 joints x 3x3)
_REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table",
                  "weights", "f", "hands_components", "hands_mean")
_MODEL_FILES = {"left": "MANO_LEFT.pkl", "right": "MANO_RIGHT.pkl"}
# Total |left - right| over the x components of shapedirs (metres per unit beta, summed
# over vertices and betas) below which the left file is taken to carry the right hand's
# shape directions and its x components are negated (the release's threshold).
SHAPEDIRS_BUG_TOLERANCE = 1.0
_OPEN_HAND_SUBDIR = ("weights", "open_hand")


@dataclass
class HandModelArrays:
    """One side's MANO-format model as plain numpy (shared and read-only when cached)."""

    v_template: np.ndarray  # (V,3) m, rest-pose template
    shapedirs: np.ndarray  # (V,3,10) m per unit beta
    posedirs: np.ndarray  # (V,3,135) m per unit of (R - I) entries of joints 1..15
    J_regressor: np.ndarray  # (16,V) dense joint regressor
    weights: np.ndarray  # (V,16) skinning weights
    faces: np.ndarray  # (F,3) int64
    hands_mean: np.ndarray  # (45,) rad, mean finger pose (axis-angle of joints 1..15)
    hands_components: np.ndarray  # (45,45) rows = PCA components of finger pose
    kintree_table: np.ndarray  # (2,16) parents (row 0) and joint ids (row 1)
    tip_ids: np.ndarray  # (5,) int64 fingertip vertex ids: thumb, index, middle, ring, pinky
    side: str  # "left" or "right"

    @property
    def num_verts(self) -> int:
        """Number of mesh vertices V."""
        return int(self.v_template.shape[0])


def _check_shape(path: Path, key: str, arr: np.ndarray, shape: Tuple[Optional[int], ...]) -> None:
    """Raise HandModelError unless arr matches shape (None = any size)."""
    ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
    if not ok:
        want = tuple("*" if s is None else s for s in shape)
        raise HandModelError(f"{path}: '{key}' has shape {arr.shape}, expected {want}")

@functools.lru_cache(maxsize=32)
def _load_cached(path_str: str, mtime_ns: int, size: int, side: str) -> HandModelArrays:
    """Parse one file once per (path, modification time, size); arrays are read-only."""
    path = Path(path_str)
    data = read_pickle(path)
    for key in _REQUIRED_KEYS:
        if key not in data:
            raise HandModelKeyError(f"{path}: required key '{key}' is missing")
    arr = {k: np.asarray(to_numpy(data[k])) for k in _REQUIRED_KEYS}
    v_template = arr["v_template"].astype(np.float64, copy=False)
    _check_shape(path, "v_template", v_template, (None, 3))
    nv = v_template.shape[0]
    shapedirs = arr["shapedirs"]
    _check_shape(path, "shapedirs", shapedirs, (nv, 3, None))
    if shapedirs.shape[2] < NUM_BETAS:
        raise HandModelError(f"{path}: 'shapedirs' has {shapedirs.shape[2]} shape directions, "
                             f"need {NUM_BETAS}")
    shapedirs = shapedirs[:, :, :NUM_BETAS]
    posedirs = arr["posedirs"]
    if posedirs.ndim == 2 and posedirs.shape == (nv * 3, _NUM_POSE_FEATURES):  # flattened form
        posedirs = posedirs.reshape(nv, 3, _NUM_POSE_FEATURES)
    _check_shape(path, "posedirs", posedirs, (nv, 3, _NUM_POSE_FEATURES))
    j_reg = arr["J_regressor"]
    _check_shape(path, "J_regressor", j_reg, (NUM_JOINTS, nv))
    weights = arr["weights"]
    _check_shape(path, "weights", weights, (nv, NUM_JOINTS))
    faces = arr["f"].astype(np.int64)
    _check_shape(path, "f", faces, (None, 3))
    if faces.size and (faces.min() < 0 or faces.max() >= nv):
        raise HandModelError(f"{path}: 'f' indexes vertices outside 0..{nv - 1}")
    hands_mean = arr["hands_mean"].reshape(-1)
    _check_shape(path, "hands_mean", hands_mean, (NUM_POSE_COMPS,))
    comps = arr["hands_components"]
    _check_shape(path, "hands_components", comps, (NUM_POSE_COMPS, NUM_POSE_COMPS))
    kintree = arr["kintree_table"].astype(np.int64)
    _check_shape(path, "kintree_table", kintree, (2, NUM_JOINTS))
    if "tip_ids" in data:
        tip_ids = np.asarray(to_numpy(data["tip_ids"])).astype(np.int64).reshape(-1)
    else:
        tip_ids = np.asarray(MANO_TIP_VERTEX_IDS[side], dtype=np.int64)
    _check_shape(path, "tip_ids", tip_ids, (5,))
    if tip_ids.min() < 0 or tip_ids.max() >= nv:
        raise HandModelError(f"{path}: fingertip vertex ids {tip_ids.tolist()} outside 0..{nv - 1}"
                             " (a non-MANO mesh must store its own 'tip_ids')")
    out = HandModelArrays(
        v_template=v_template, shapedirs=shapedirs, posedirs=posedirs, J_regressor=j_reg,
        weights=weights, faces=faces, hands_mean=hands_mean, hands_components=comps,
        kintree_table=kintree, tip_ids=tip_ids, side=side)
    for f in fields(out):
        if f.name != "side":
            a = np.ascontiguousarray(getattr(out, f.name))
            a.flags.writeable = False
            setattr(out, f.name, a)
    return out


def load_mano_pickle(path: Union[str, Path], side: str) -> HandModelArrays:
    """Load one MANO-format pickle (official/chumpy or open) for `side`; cached per file."""
    check_side(side)
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise HandModelFileNotFoundError(f"hand model file not found: {path}")
    st = path.stat()
    return _load_cached(str(path), st.st_mtime_ns, st.st_size, side)


def _left_shapedirs_unmirrored(left: np.ndarray, right: np.ndarray) -> bool:
    """The release's test for the left-shapedirs bug: the x components of the two sides'
    shape directions agree to a total absolute difference below SHAPEDIRS_BUG_TOLERANCE
    (a correctly mirrored pair differs there by twice their magnitude)."""
    if left.shape != right.shape:
        return False
    diff = np.abs(left[:, 0, :].astype(np.float64) - right[:, 0, :].astype(np.float64)).sum()
    return bool(diff < SHAPEDIRS_BUG_TOLERANCE)


def load_hand_model(folder: Union[str, Path]) -> Dict[str, HandModelArrays]:
    """Load MANO_LEFT.pkl and MANO_RIGHT.pkl from `folder`, fixing the left shapedirs bug."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise HandModelFileNotFoundError(f"hand model folder not found: {folder}")
    for side, fname in _MODEL_FILES.items():
        if not (folder / fname).is_file():
            raise HandModelFileNotFoundError(
                f"hand model file not found: {folder / fname} (need {fname} for the {side} hand)")
    out = {side: load_mano_pickle(folder / fname, side) for side, fname in _MODEL_FILES.items()}
    left, right = out["left"], out["right"]
    if _left_shapedirs_unmirrored(left.shapedirs, right.shapedirs):
        # Known bug of the official MANO release: the left file carries the right shapedirs;
        # mirroring x (shapedirs[:, 0, :] *= -1) turns them into the left hand's.
        fixed = np.array(left.shapedirs)
        fixed[:, 0, :] *= -1
        fixed.flags.writeable = False
        out["left"] = HandModelArrays(**{**left.__dict__, "shapedirs": fixed})
    return out



def open_hand_dir() -> Path:
    """Folder of the bundled open hand model (source tree, or share/dir_ros when installed)."""
    rel = Path(*_OPEN_HAND_SUBDIR)
    return find_resource(rel, Path.is_dir) or package_root() / rel
