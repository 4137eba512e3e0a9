"""Restricted unpickling of MANO-format pickles: an allow-list of globals, stand-ins for
chumpy and scipy.sparse objects, and numpy arrays, dtypes and scalars checked to be numeric
before numpy reads any bytes (a hand model file must never run code)."""
from __future__ import annotations

import _compat_pickle
import functools
import pickle
from pathlib import Path
from typing import Any, Dict

import numpy as np
import scipy.sparse

try:  # numpy >= 1.26 (numpy 2's name); numpy.core is deprecated there
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # older numpy 1
    from numpy.core.multiarray import _reconstruct as _np_reconstruct
    from numpy.core.multiarray import scalar as _np_scalar


from dir_ros.hand_model.errors import HandModelError, UnsafePickleError


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
        return np.asarray(to_numpy(value))


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
    """Raised while unpickling on a non-numeric or tampered dtype; read_pickle turns it into
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


def to_numpy(value: Any) -> Any:
    """Convert stand-ins and sparse matrices to dense numpy; other values pass through."""
    if isinstance(value, (_ChumpyStandIn, _SparseStandIn)):
        return value.to_numpy()
    if scipy.sparse.issparse(value):
        return np.asarray(value.toarray())
    return value



def read_pickle(path: Path) -> Dict[str, Any]:
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
