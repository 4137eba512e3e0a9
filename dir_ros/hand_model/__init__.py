"""MANO-format hand model layer for DIR: a thin adapter on smplx's MANO machinery.

Loads left and right MANO-format models (the licensed official pickles, which contain chumpy
objects, or the project's open hand model in weights/open_hand/) through a restricted
unpickler, and turns DIR's 64 hand parameters (robust 6D root rotation, 45 PCA finger
coefficients, 10 shape coefficients) into a root-relative mesh and 21 keypoints with
``smplx.lbs`` (shape/pose blend shapes and linear blend skinning).

Units: metres. Frame: the model's own (MANO canonical) frame rotated by the root rotation.
"""
from __future__ import annotations

import _compat_pickle
import functools
import pickle
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import scipy.sparse
import torch
from smplx.lbs import batch_rodrigues, lbs

try:  # numpy >= 1.26 (numpy 2's name); numpy.core is deprecated there
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # older numpy 1
    from numpy.core.multiarray import _reconstruct as _np_reconstruct
    from numpy.core.multiarray import scalar as _np_scalar

from dir_ros.common.resources import find_resource, package_root

__all__ = [
    "NUM_KEYPOINTS", "NUM_JOINTS", "NUM_BETAS", "NUM_POSE_COMPS", "NUM_PARAMS", "SIDES",
    "ROT6D_SLICE", "PCA_SLICE", "BETAS_SLICE", "CAMERA_SLICE",
    "MANO_TIP_VERTEX_IDS", "MANO_TO_KEYPOINT", "BONE_PARENTS", "MANO_PARENTS",
    "HandModelError", "HandModelFileNotFoundError", "HandModelKeyError", "UnsafePickleError",
    "HandModelArrays", "HandLayerOutput", "HandLayer",
    "load_mano_pickle", "load_hand_model", "make_hand_layers", "build_hand_layers",
    "rot6d_to_matrix", "unit_vectors", "open_hand_dir",
]

# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------
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
_NUM_POSE_FEATURES = (NUM_JOINTS - 1) * 9  # 135 = posedirs basis size (15 joints x 3x3)
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

_REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table",
                  "weights", "f", "hands_components", "hands_mean")
# Guards the 6D normalisations against zero-length vectors; raised to the dtype's smallest
# normal number where 1e-8 would underflow to zero (float16).
_NORMALISE_EPS = 1e-8
_MODEL_FILES = {"left": "MANO_LEFT.pkl", "right": "MANO_RIGHT.pkl"}
# Total |left - right| over the x components of shapedirs (metres per unit beta, summed
# over vertices and betas) below which the left file is taken to carry the right hand's
# shape directions and its x components are negated (the release's threshold).
SHAPEDIRS_BUG_TOLERANCE = 1.0
_OPEN_HAND_SUBDIR = ("weights", "open_hand")


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
class HandModelError(Exception):
    """Any problem loading or validating a hand model file."""


class HandModelFileNotFoundError(HandModelError, FileNotFoundError):
    """A hand model folder or file is missing (message names it)."""

    def __str__(self) -> str:  # FileNotFoundError with one arg prints it plainly already
        return str(self.args[0]) if self.args else ""


class HandModelKeyError(HandModelError, KeyError):
    """A required key is missing from a hand model file (message names the key and file)."""

    def __str__(self) -> str:  # KeyError would print the repr() of the message
        return str(self.args[0]) if self.args else ""


class UnsafePickleError(HandModelError, pickle.UnpicklingError):
    """The pickle references a class outside the allow-list (message names module.class)."""


# ---------------------------------------------------------------------------------------------
# Restricted unpickler
# ---------------------------------------------------------------------------------------------
def _merge_slotstate(state: Any) -> Any:
    """Pickle BUILD state in its (dict, slotstate) form -> one dict; other forms unchanged."""
    if isinstance(state, tuple) and len(state) == 2:
        return {**(state[0] or {}), **(state[1] or {})}
    return state


class _ChumpyStandIn:
    """Stand-in for any chumpy class: keeps the pickled state, exposes the value as numpy."""

    _chumpy_class = "chumpy.?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "_ChumpyStandIn":
        # NEWOBJ/REDUCE may pass the value positionally (Ch(x)); BUILD state overrides it
        obj = super().__new__(cls)
        obj._state = {"x": args[0]} if args else dict(kwargs)
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        state = _merge_slotstate(state)
        self._state = {**getattr(self, "_state", {}),
                       **(dict(state) if isinstance(state, dict) else {"x": state})}

    def to_numpy(self) -> np.ndarray:
        """The object's value; chumpy leaves (Ch) pickle it under key 'x'."""
        value = getattr(self, "_state", {}).get("x")
        if value is None:
            raise HandModelError(
                f"cannot evaluate chumpy expression {self._chumpy_class} without chumpy "
                f"(state keys {sorted(getattr(self, '_state', {}))}); only plain chumpy arrays "
                "are supported")
        return np.asarray(_to_numpy(value))


class _SparseStandIn:
    """Stand-in for pickled scipy.sparse matrices; rebuilt from data/indices/indptr/shape."""

    _sparse_class = "csc_matrix"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._state: Dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self._state = dict(_merge_slotstate(state))

    def to_numpy(self) -> np.ndarray:
        """Dense ndarray of the matrix."""
        st = getattr(self, "_state", {})
        shape = tuple(st.get("_shape", st.get("shape", ())))
        fmt = self._sparse_class[:3]
        if fmt in ("csc", "csr"):
            cls = scipy.sparse.csc_matrix if fmt == "csc" else scipy.sparse.csr_matrix
            mat = cls((np.asarray(st["data"]), np.asarray(st["indices"]),
                       np.asarray(st["indptr"])), shape=shape)
        elif fmt == "coo":
            row = st.get("row", st.get("coords", (None, None))[0])
            col = st.get("col", st.get("coords", (None, None))[1])
            mat = scipy.sparse.coo_matrix((np.asarray(st["data"]), (row, col)), shape=shape)
        else:
            raise HandModelError(f"unsupported sparse matrix type {self._sparse_class}")
        return np.asarray(mat.toarray())


@functools.lru_cache(maxsize=None)
def _chumpy_class(qualname: str) -> type:
    """One stand-in subclass per chumpy class name (so errors can name it)."""
    return type(qualname.rsplit(".", 1)[-1], (_ChumpyStandIn,), {"_chumpy_class": qualname})


@functools.lru_cache(maxsize=None)
def _sparse_class(name: str) -> type:
    """One stand-in subclass per sparse matrix class name."""
    return type(name, (_SparseStandIn,), {"_sparse_class": name})


# Globals a MANO-format pickle may reference (after py2 -> py3 name mapping).
_ALLOWED_GLOBALS = frozenset({
    ("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("_codecs", "encode"),
    ("builtins", "object"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "slice"), ("builtins", "complex"), ("builtins", "bytearray"),
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
})
_SPARSE_NAMES = frozenset({"csc_matrix", "csr_matrix", "coo_matrix"})
# numpy dtype kinds an array or scalar in a hand model may have: bool, signed and unsigned
# integers, floats, complex. Every other kind (object 'O', void/structured 'V', bytes 'S',
# str 'U', datetime 'M'/'m') is refused: an object array built from raw pickled bytes holds
# arbitrary pointers, and the others are never part of a MANO-format model.
_NUMERIC_DTYPE_KINDS = frozenset("biufc")


class _RefusedDtype(Exception):
    """Raised while unpickling on a non-numeric or tampered dtype; _read_pickle turns it into
    an UnsafePickleError naming the file (the hooks below do not know the path)."""


def _describe_dtype(dt: Any) -> str:
    """Short printable description of a (possibly tampered) dtype for error messages."""
    try:
        return f"{dt.str!r} (kind '{dt.kind}')"
    except Exception:  # noqa: BLE001 - a description must never raise
        return type(dt).__name__


def _check_dtype(dt: Any) -> np.dtype:
    """Return dt if it is a plain numeric numpy dtype identical to a freshly built one;
    raise _RefusedDtype otherwise. Compares with np.dtype(dt.str) because a pickled dtype's
    state (flags, itemsize) can be rewritten by BUILD after construction."""
    if not isinstance(dt, np.dtype):
        raise _RefusedDtype(f"a {type(dt).__name__} where a numpy dtype belongs")
    if dt.kind not in _NUMERIC_DTYPE_KINDS or dt.names is not None or dt.subdtype is not None:
        raise _RefusedDtype(f"non-numeric numpy dtype {_describe_dtype(dt)}")
    try:
        fresh = np.dtype(dt.str)
    except TypeError as exc:
        raise _RefusedDtype(f"malformed numpy dtype {_describe_dtype(dt)}") from exc
    if (dt != fresh or dt.flags != fresh.flags or dt.itemsize != fresh.itemsize
            or dt.alignment != fresh.alignment or dt.hasobject):
        raise _RefusedDtype(f"tampered numpy dtype {_describe_dtype(dt)} (flags {dt.flags}, "
                            f"itemsize {dt.itemsize})")
    return dt


class _DtypeSpec:
    """What the name numpy.dtype resolves to while unpickling: the dtype's arguments and
    BUILD state, not a dtype. Each use builds a fresh private dtype from them and checks it,
    so a later BUILD on this object (pickles may BUILD any memoised object again) cannot
    rewrite the flags of a dtype an array already holds, and numpy's shared builtin dtypes
    (np.dtype('f8', copy=False)) are never handed to BUILD."""

    def __init__(self, obj: Any, align: Any = False, copy: Any = False, **kwargs: Any) -> None:
        """Record numpy.dtype(obj, align, copy) (copy is ignored: build() always copies)."""
        self._obj = obj.build() if isinstance(obj, _DtypeSpec) else obj
        self._align = bool(align)
        if kwargs:
            raise _RefusedDtype(f"numpy dtype with extra arguments {sorted(kwargs)}")
        self._state: Any = None
        self._used = False
        self.build()  # refuse a non-numeric kind at once, before its BUILD
        self._used = False

    def __setstate__(self, state: Any) -> None:
        """Record dtype state (byte order, flags, ...), applied by build(). numpy pickles
        set it once, right after construction; a second or late BUILD is refused."""
        if self._state is not None or self._used:
            raise _RefusedDtype("numpy dtype state set again after construction or use")
        self._state = state

    def build(self) -> np.dtype:
        """A new dtype from the recorded arguments and state, checked to be numeric."""
        self._used = True
        try:
            dt = np.dtype(self._obj, self._align, True)  # copy: never a shared builtin
            if self._state is not None:
                dt.__setstate__(self._state)
        except (TypeError, ValueError) as exc:
            raise _RefusedDtype(f"malformed numpy dtype ({exc})") from exc
        return _check_dtype(dt)


def _as_dtype(value: Any) -> np.dtype:
    """A checked numeric dtype from a _DtypeSpec or a dtype-like value (e.g. 'b')."""
    if isinstance(value, _DtypeSpec):
        return value.build()
    if isinstance(value, (str, bytes)):
        return _check_dtype(np.dtype(value.decode("latin1") if isinstance(value, bytes)
                                     else value))
    raise _RefusedDtype(f"a {type(value).__name__} where a numpy dtype belongs")


def _array_state_with_dtype(state: Any) -> tuple:
    """ndarray.__setstate__'s state, (version, shape, dtype, fortran, data) or the older
    (shape, dtype, fortran, data), with its dtype built and checked."""
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise _RefusedDtype(f"unexpected ndarray state ({type(state).__name__} of "
                            f"{len(state) if isinstance(state, tuple) else '?'} items)")
    i = len(state) - 3
    return state[:i] + (_as_dtype(state[i]),) + state[i + 1:]


class _CheckedArray(np.ndarray):
    """What the name numpy.ndarray resolves to while unpickling: an ndarray whose creation
    and BUILD refuse non-numeric dtypes before numpy interprets any bytes."""

    def __new__(cls, shape: Any, dtype: Any = "f8", *args: Any, **kwargs: Any) -> "_CheckedArray":
        """ndarray(shape, dtype, buffer, ...) called directly by a pickle: numeric only."""
        dt = _as_dtype(kwargs.pop("dtype", dtype))
        return super().__new__(cls, shape, dt, *args, **kwargs)

    def __setstate__(self, state: Any) -> None:
        """Check the dtype in the state, then let numpy fill the array."""
        super().__setstate__(_array_state_with_dtype(state))


def _checked_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """Stands in for numpy's _reconstruct: only our checked ndarray, numeric dtypes."""
    if subtype is not _CheckedArray:
        raise _RefusedDtype(f"array reconstruction of {getattr(subtype, '__name__', subtype)!r}")
    return _np_reconstruct(_CheckedArray, shape, _as_dtype(dtype))


def _checked_scalar(dtype: Any, *args: Any) -> Any:
    """Stands in for numpy's scalar(): numpy scalars of numeric dtypes only."""
    return _np_scalar(_as_dtype(dtype), *args)


# Allowed numpy globals, each replaced by its checking stand-in (keyed by the global's name).
_NUMPY_HOOKS: Dict[str, Any] = {
    "ndarray": _CheckedArray, "dtype": _DtypeSpec,
    "_reconstruct": _checked_reconstruct, "scalar": _checked_scalar,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that allows numpy, scipy.sparse, chumpy stand-ins and a few builtins only;
    numpy arrays, dtypes and scalars are checked to be numeric before numpy reads bytes."""

    def __init__(self, file: Any, source: Path) -> None:
        super().__init__(file, encoding="latin1")  # official MANO files are py2 pickles
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        """Resolve a pickled global through the allow-list (py2 names mapped first)."""
        mod, nm = module, name
        if (mod, nm) in _compat_pickle.NAME_MAPPING:  # py2 names (copy_reg, __builtin__)
            mod, nm = _compat_pickle.NAME_MAPPING[(mod, nm)]
        elif mod in _compat_pickle.IMPORT_MAPPING:
            mod = _compat_pickle.IMPORT_MAPPING[mod]
        if mod == "chumpy" or mod.startswith("chumpy."):
            return _chumpy_class(f"{mod}.{nm}")
        if (mod == "scipy.sparse" or mod.startswith("scipy.sparse.")) and nm in _SPARSE_NAMES:
            return _sparse_class(nm)
        if (mod, nm) in _ALLOWED_GLOBALS:
            if mod.split(".", 1)[0] == "numpy":
                return _NUMPY_HOOKS[nm]
            return super().find_class(mod, nm)
        shown = f"{module}.{name}" + ("" if (mod, nm) == (module, name) else f" ({mod}.{nm})")
        raise UnsafePickleError(
            f"{self._source}: refusing to load foreign class {shown} "
            f"(a MANO-format hand model may only contain numpy, scipy.sparse and chumpy data)")


def _to_numpy(value: Any) -> Any:
    """Convert stand-ins and sparse matrices to dense numpy; other values pass through."""
    if isinstance(value, (_ChumpyStandIn, _SparseStandIn)):
        return value.to_numpy()
    if scipy.sparse.issparse(value):
        return np.asarray(value.toarray())
    return value


# ---------------------------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------------------------
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


def _check_side(side: str) -> str:
    """Validate a side name."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    return side


def _check_shape(path: Path, key: str, arr: np.ndarray, shape: Tuple[Optional[int], ...]) -> None:
    """Raise HandModelError unless arr matches shape (None = any size)."""
    ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
    if not ok:
        want = tuple("*" if s is None else s for s in shape)
        raise HandModelError(f"{path}: '{key}' has shape {arr.shape}, expected {want}")


def _read_pickle(path: Path) -> Dict[str, Any]:
    """Unpickle a MANO-format file (checked to exist by load_mano_pickle) with the
    restricted unpickler."""
    with open(path, "rb") as fh:
        try:
            data = _RestrictedUnpickler(fh, path).load()
        except HandModelError:
            raise
        except _RefusedDtype as exc:
            raise UnsafePickleError(
                f"{path}: refusing to load {exc} (a MANO-format hand model may only contain "
                f"numeric arrays)") from None
        except Exception as exc:  # corrupt or non-pickle file
            raise HandModelError(f"{path}: cannot read hand model pickle: {exc}") from exc
    if not isinstance(data, dict):
        raise HandModelError(f"{path}: expected a dict of arrays, got {type(data).__name__}")
    return data


@functools.lru_cache(maxsize=32)
def _load_cached(path_str: str, mtime_ns: int, size: int, side: str) -> HandModelArrays:
    """Parse one file once per (path, modification time, size); arrays are read-only."""
    path = Path(path_str)
    data = _read_pickle(path)
    for key in _REQUIRED_KEYS:
        if key not in data:
            raise HandModelKeyError(f"{path}: required key '{key}' is missing")
    arr = {k: np.asarray(_to_numpy(data[k])) for k in _REQUIRED_KEYS}
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
        tip_ids = np.asarray(_to_numpy(data["tip_ids"])).astype(np.int64).reshape(-1)
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
    _check_side(side)
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


# ---------------------------------------------------------------------------------------------
# Rotation
# ---------------------------------------------------------------------------------------------
def unit_vectors(v: torch.Tensor) -> torch.Tensor:
    """Unit vectors along the last axis (zero vectors stay finite)."""
    eps = max(_NORMALISE_EPS, torch.finfo(v.dtype).tiny)
    return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """Robust 6D -> rotation (...,6) -> (...,3,3): symmetric Gram-Schmidt, columns [x,y,z]."""
    a = unit_vectors(x[..., 0:3])
    b = unit_vectors(x[..., 3:6])
    mid = unit_vectors(a + b)
    orth = unit_vectors(a - b)
    cx = unit_vectors(mid + orth)
    cy = unit_vectors(mid - orth)
    cz = unit_vectors(torch.cross(cx, cy, dim=-1))
    return torch.stack([cx, cy, cz], dim=-1)


# ---------------------------------------------------------------------------------------------
# Layer
# ---------------------------------------------------------------------------------------------
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
        self.side: str = _check_side(arrays.side)
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


def open_hand_dir() -> Path:
    """Folder of the bundled open hand model (source tree, or share/dir_ros when installed)."""
    rel = Path(*_OPEN_HAND_SUBDIR)
    return find_resource(rel, Path.is_dir) or package_root() / rel
