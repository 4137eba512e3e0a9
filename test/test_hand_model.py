"""Tests for dir_ros.hand_model: loading (restricted unpickler), keypoints, LBS, 6D rotation."""
from __future__ import annotations

import os
import pickle
import pickletools
import struct
import subprocess
import sys
import types
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import scipy.sparse
import torch

from dir_ros import hand_model as hm

NUM_VERTS = 778  # MANO's vertex count, so MANO's documented tip ids are valid
NUM_FACES = 1538  # MANO's face count
ATOL = 1e-5  # float32 tolerance in metres
# The same maths in float32 through different kernels (strided vs contiguous inputs, another
# CPU's BLAS): a few ulp of ~0.1 m values (float32 ulp at 0.1 m is 7.5e-9 m).
SAME_MATH_RTOL = 1e-5
SAME_MATH_ATOL = 1e-6  # metres


def _mano_like(seed: int = 0) -> Dict[str, np.ndarray]:
    """A random MANO-shaped model (plain numpy, no tip_ids) with a hand-like joint spread."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(NUM_VERTS, 3)) * 0.04
    jreg = np.zeros((hm.NUM_JOINTS, NUM_VERTS))
    for j in range(hm.NUM_JOINTS):  # each joint = mean of 20 distinct vertices
        jreg[j, rng.choice(NUM_VERTS, 20, replace=False)] = 1 / 20
    weights = rng.random((NUM_VERTS, hm.NUM_JOINTS)) ** 4
    weights /= weights.sum(1, keepdims=True)
    comps, _ = np.linalg.qr(rng.normal(size=(45, 45)))
    return dict(
        v_template=v, shapedirs=rng.normal(size=(NUM_VERTS, 3, 10)) * 2e-3,
        posedirs=rng.normal(size=(NUM_VERTS, 3, 135)) * 1e-3, J_regressor=jreg,
        kintree_table=np.array([[2 ** 32 - 1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14],
                                list(range(16))], dtype=np.int64),
        weights=weights, f=rng.integers(0, NUM_VERTS, (NUM_FACES, 3)),
        hands_components=comps, hands_mean=rng.normal(size=45) * 0.2,
    )


def _write_folder(folder: Path, left: dict, right: dict, protocol: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("MANO_LEFT.pkl", left), ("MANO_RIGHT.pkl", right)):
        with open(folder / name, "wb") as fh:
            pickle.dump(data, fh, protocol=protocol)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_folder(tmp_path_factory.mktemp("mano_like"), _mano_like(1), _mano_like(2))


@pytest.fixture(scope="module")
def layers(model_dir: Path) -> Dict[str, hm.HandLayer]:
    return hm.build_hand_layers(model_dir)


def _identity6d(b: int) -> torch.Tensor:
    return torch.tensor([[1.0, 0, 0, 0, 1, 0]]).repeat(b, 1)


def _zero_finger_pca(layer: hm.HandLayer) -> torch.Tensor:
    """PCA coefficients whose full finger pose is zero: -hands_mean @ pinv(comps)."""
    return -layer.th_hands_mean @ torch.linalg.pinv(layer.th_comps)


def _random_inputs(b: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 6, generator=g), torch.randn(b, 45, generator=g) * 0.5,
            torch.randn(b, 10, generator=g))


def test_constants():
    assert len(hm.MANO_TO_KEYPOINT) == hm.NUM_KEYPOINTS == 21
    assert sorted(hm.MANO_TO_KEYPOINT) == list(range(21))
    assert hm.MANO_TO_KEYPOINT[1:5] == (13, 14, 15, 16)  # thumb
    assert hm.MANO_TO_KEYPOINT[17:21] == (7, 8, 9, 20)  # pinky
    assert hm.BONE_PARENTS == (0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)


def test_buffers_match_checkpoint_names(layers):
    sd = layers["right"].state_dict()
    expected = {"th_betas": (1, 10), "th_shapedirs": (778, 3, 10), "th_posedirs": (778, 3, 135),
                "th_v_template": (1, 778, 3), "th_J_regressor": (16, 778),
                "th_weights": (778, 16), "th_faces": (1538, 3), "th_hands_mean": (1, 45),
                "th_comps": (45, 45), "th_selected_comps": (45, 45)}
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert sd["th_faces"].dtype == torch.int64
    assert layers["right"].faces.shape == (1538, 3)


def test_zero_pose_gives_template(layers, model_dir):
    for side in hm.SIDES:
        layer = layers[side]
        out = layer(_identity6d(1), _zero_finger_pca(layer), torch.zeros(1, 10))
        v = layer.th_v_template[0]
        wrist = layer.th_J_regressor[0] @ v
        assert torch.allclose(out.vertices[0], v - wrist, atol=ATOL)
        assert torch.allclose(out.root[0], wrist, atol=ATOL)
        assert torch.allclose(out.rotmats, torch.eye(3).expand(1, 16, 3, 3), atol=1e-5)


def test_keypoint_order_and_mano_tips_match_smplx(layers, model_dir):
    """Keypoints = smplx.MANO joints reordered + MANO tip vertices (no tip_ids in file)."""
    smplx = pytest.importorskip("smplx")
    layer = layers["right"]
    rot6d, pca, betas = _random_inputs(3, seed=4)
    out = layer(rot6d, pca, betas)
    rotm = hm.rot6d_to_matrix(rot6d)
    aa = torch.tensor(np.stack([_matrix_to_axis_angle(r) for r in rotm.numpy()]),
                      dtype=torch.float32)
    ref = smplx.MANO(str(model_dir / "MANO_RIGHT.pkl"), is_rhand=True, use_pca=False,
                     flat_hand_mean=True, num_betas=10)
    full = layer.finger_pose(pca)
    r = ref(global_orient=aa, hand_pose=full, betas=betas)
    tips = r.vertices[:, list(hm.MANO_TIP_VERTEX_IDS["right"])]
    ref21 = torch.cat([r.joints[:, :16], tips], 1)[:, list(hm.MANO_TO_KEYPOINT)]
    wrist = r.joints[:, 0:1]
    assert torch.allclose(out.joints, ref21 - wrist, atol=1e-4)
    assert torch.allclose(out.vertices, r.vertices - wrist, atol=1e-4)
    # explicit order spot checks: keypoint 4 = thumb tip vertex 745, 8 = index tip 317, ...
    for kp, vid in zip((4, 8, 12, 16, 20), hm.MANO_TIP_VERTEX_IDS["right"]):
        assert torch.allclose(out.joints[:, kp], out.vertices[:, vid], atol=1e-6)
    assert torch.allclose(out.joints[:, 1], ref.forward(global_orient=aa, hand_pose=full,
                                                        betas=betas).joints[:, 13] - wrist[:, 0],
                          atol=1e-4)  # keypoint 1 = MANO joint 13 (thumb base)
    left = layers["left"](rot6d, pca, betas)
    assert torch.allclose(left.joints[:, 12], left.vertices[:, 445], atol=1e-6)  # left middle


def _matrix_to_axis_angle(r: np.ndarray) -> np.ndarray:
    """Rotation matrix -> axis-angle (test helper, angles < pi)."""
    from scipy.spatial.transform import Rotation
    return Rotation.from_matrix(r.astype(np.float64)).as_rotvec()


def test_root_joint_9(model_dir):
    lay0 = hm.build_hand_layers(model_dir, root_joint=0)["right"]
    lay9 = hm.build_hand_layers(model_dir, root_joint=9)["right"]
    args = _random_inputs(5, seed=1)
    o0, o9 = lay0(*args), lay9(*args)
    assert torch.allclose(o9.joints[:, 9], torch.zeros(5, 3), atol=1e-7)
    assert torch.allclose(o9.joints, o0.joints - o0.joints[:, 9:10], atol=ATOL)
    assert torch.allclose(o9.root, o0.root + o0.joints[:, 9], atol=ATOL)
    with pytest.raises(ValueError):
        hm.HandLayer(hm.load_hand_model(model_dir)["right"], root_joint=21)


def test_forward_params_split(layers):
    rot6d, pca, betas = _random_inputs(2, seed=2)
    params = torch.cat([rot6d, pca, betas, torch.randn(2, 3)], 1)
    a, b = layers["left"].forward_params(params), layers["left"](rot6d, pca, betas)
    # Column slices of params are strided, so BLAS may take another path than for the
    # contiguous inputs: equal up to float32 rounding (a wrong split differs by centimetres).
    torch.testing.assert_close(a.vertices, b.vertices, rtol=SAME_MATH_RTOL, atol=SAME_MATH_ATOL)
    torch.testing.assert_close(a.joints, b.joints, rtol=SAME_MATH_RTOL, atol=SAME_MATH_ATOL)


def test_batch_equals_single_and_finite(layers):
    args = _random_inputs(6, seed=3)
    out = layers["right"](*args)
    assert torch.isfinite(out.vertices).all() and torch.isfinite(out.joints).all()
    one = layers["right"](*(x[2:3] for x in args))
    assert torch.allclose(out.vertices[2:3], one.vertices, atol=1e-6)
    big = layers["right"](torch.randn(8, 6) * 50, torch.randn(8, 45) * 3, torch.randn(8, 10) * 3)
    assert torch.isfinite(big.vertices).all()


def test_gradients_reach_pose_and_shape(layers):
    rot6d, pca, betas = (x.clone().requires_grad_(True) for x in _random_inputs(2, seed=5))
    out = layers["right"](rot6d, pca, betas)
    (out.vertices.pow(2).sum() + out.joints.pow(2).sum()).backward()
    for g in (rot6d.grad, pca.grad, betas.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_dtype_follows_module(model_dir):
    layer = hm.build_hand_layers(model_dir)["left"].to(torch.float64)
    out = layer(*_random_inputs(2))
    assert out.vertices.dtype == torch.float64 and layer.th_faces.dtype == torch.int64


def test_rot6d_orthonormal_det_plus_one():
    x = torch.randn(1000, 6, dtype=torch.float64)
    x[0] = torch.tensor([1.0, 0, 0, 1, 0, 0])  # degenerate: equal vectors
    x[1] = torch.tensor([1.0, 0, 0, -1e-9, 0, 0])  # nearly opposite
    r = hm.rot6d_to_matrix(x)
    eye = torch.eye(3, dtype=torch.float64).expand_as(r)
    good = slice(2, None)
    assert torch.allclose(r[good] @ r[good].transpose(1, 2), eye[good], atol=1e-9)
    assert torch.allclose(torch.linalg.det(r[good]), torch.ones(998, dtype=torch.float64))
    assert torch.isfinite(r).all()
    ident = hm.rot6d_to_matrix(torch.tensor([1.0, 0, 0, 0, 1, 0]))
    assert torch.allclose(ident, torch.eye(3))
    # the robust variant is symmetric in a, b: the bisector of a and b stays the bisector
    a, b = torch.tensor([1.0, 0.2, 0.0]), torch.tensor([0.3, 1.0, 0.1])
    rm = hm.rot6d_to_matrix(torch.cat([a, b]))
    mid = (a / a.norm() + b / b.norm())
    mid = mid / mid.norm()
    assert torch.allclose((rm[:, 0] + rm[:, 1]) / 2 ** 0.5, mid, atol=1e-6)
    # batched leading dims
    assert hm.rot6d_to_matrix(torch.randn(2, 3, 6)).shape == (2, 3, 3, 3)


def test_left_shapedirs_fix(tmp_path):
    right = _mano_like(3)
    left = dict(right)  # same shapedirs object: the official-release bug
    arrays = hm.load_hand_model(_write_folder(tmp_path / "bug", left, right))
    assert np.allclose(arrays["left"].shapedirs[:, 0], -right["shapedirs"][:, 0])
    assert np.allclose(arrays["left"].shapedirs[:, 1:], right["shapedirs"][:, 1:])
    left2 = dict(right, shapedirs=right["shapedirs"] * 0.5)
    arrays2 = hm.load_hand_model(_write_folder(tmp_path / "ok", left2, right))
    assert np.allclose(arrays2["left"].shapedirs, right["shapedirs"] * 0.5)


def test_left_shapedirs_fix_uses_release_tolerance(tmp_path):
    # The release flips the left x components when sum |left_x - right_x| < 1, whatever
    # the y/z components hold; a near copy (re-saved, rounded file) still gets fixed.
    right = _mano_like(4)
    near = np.array(right["shapedirs"])
    near[:, 0] += 0.9 / near[:, 0].size  # total |dx| = 0.9 < 1
    near[:, 1] *= 2.0  # y components play no part in the test
    fixed = hm.load_hand_model(_write_folder(tmp_path / "near", dict(right, shapedirs=near),
                                             right))["left"].shapedirs
    assert np.allclose(fixed[:, 0], -near[:, 0]) and np.allclose(fixed[:, 1:], near[:, 1:])
    far = np.array(right["shapedirs"])
    far[:, 0] += 1.1 / far[:, 0].size  # total |dx| = 1.1 >= 1: left as it is
    kept = hm.load_hand_model(_write_folder(tmp_path / "far", dict(right, shapedirs=far),
                                            right))["left"].shapedirs
    assert np.allclose(kept, far)
    # a properly mirrored pair (official-style left) is never flipped
    mirrored = np.array(right["shapedirs"])
    mirrored[:, 0] *= -1
    kept = hm.load_hand_model(_write_folder(tmp_path / "mirror", dict(
        right, shapedirs=mirrored), right))["left"].shapedirs
    assert np.allclose(kept, mirrored)


# ---------------------------------------------------------------------------------------------
# Restricted unpickler
# ---------------------------------------------------------------------------------------------
class _FakeCh:
    """Mimics how chumpy.ch.Ch pickles: NEWOBJ of the class + BUILD with a dict holding 'x'."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self._dirty_vars = set()
        self._itr = None

    def __getstate__(self):
        return dict(self.__dict__)


def test_chumpy_pickle_loads_without_chumpy(tmp_path):
    data = _mano_like(4)
    fake_pkg, fake_mod = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")
    _FakeCh.__module__, _FakeCh.__qualname__, _FakeCh.__name__ = "chumpy.ch", "Ch", "Ch"
    fake_mod.Ch = _FakeCh
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = fake_pkg, fake_mod
    try:
        chumpy_data = dict(data, shapedirs=_FakeCh(data["shapedirs"]),
                           v_template=_FakeCh(data["v_template"]),
                           J_regressor=scipy.sparse.csc_matrix(data["J_regressor"]))
        for proto in (0, 2):
            with open(tmp_path / f"MANO_RIGHT_{proto}.pkl", "wb") as fh:
                pickle.dump(chumpy_data, fh, protocol=proto)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    assert "chumpy" not in sys.modules
    raw = (tmp_path / "MANO_RIGHT_2.pkl").read_bytes()
    assert b"chumpy.ch" in raw and b"Ch" in raw
    for proto in (0, 2):
        arrays = hm.load_mano_pickle(tmp_path / f"MANO_RIGHT_{proto}.pkl", "right")
        assert np.array_equal(arrays.shapedirs, data["shapedirs"])
        assert np.array_equal(arrays.v_template, data["v_template"])
        assert np.allclose(arrays.J_regressor, data["J_regressor"])
        assert isinstance(arrays.J_regressor, np.ndarray)
        assert arrays.tip_ids.tolist() == list(hm.MANO_TIP_VERTEX_IDS["right"])
    assert "chumpy" not in sys.modules


class _FakeSelect:
    """A chumpy class pickled by REDUCE with the value as a positional argument."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x

    def __reduce__(self):
        return (type(self), (self.x,))


def test_chumpy_reduce_style_and_expression(tmp_path):
    data = _mano_like(8)
    fake_pkg, fake_mod = types.ModuleType("chumpy"), types.ModuleType("chumpy.reordering")
    _FakeSelect.__module__ = "chumpy.reordering"
    _FakeSelect.__qualname__ = _FakeSelect.__name__ = "Select"
    fake_mod.Select = _FakeSelect
    sys.modules["chumpy"], sys.modules["chumpy.reordering"] = fake_pkg, fake_mod
    try:
        with open(tmp_path / "MANO_RIGHT.pkl", "wb") as fh:
            pickle.dump(dict(data, posedirs=_FakeSelect(data["posedirs"])), fh, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.reordering"]
    arrays = hm.load_mano_pickle(tmp_path / "MANO_RIGHT.pkl", "right")
    assert np.array_equal(arrays.posedirs, data["posedirs"])
    # a chumpy expression without a stored value cannot be evaluated: clear error
    stub = hm._chumpy_class("chumpy.ch_ops.add")()
    stub.__setstate__({"a": 1, "b": 2})
    with pytest.raises(hm.HandModelError, match="chumpy.ch_ops.add"):
        stub.to_numpy()


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("1 + 1",))


class _Custom:
    pass


@pytest.mark.parametrize("payload,name", [(_Evil(), "system"), (_EvalEvil(), "builtins.eval"),
                                          (_Custom(), "test_hand_model._Custom")])
def test_foreign_class_refused(tmp_path, payload, name):
    path = tmp_path / "MANO_RIGHT.pkl"
    with open(path, "wb") as fh:
        pickle.dump(dict(_mano_like(5), v_template=payload), fh, protocol=2)
    with pytest.raises(hm.UnsafePickleError) as err:
        hm.load_mano_pickle(path, "right")
    msg = str(err.value)
    assert name in msg and str(path) in msg and "refusing" in msg
    assert isinstance(err.value, hm.HandModelError)


# Malicious pickles that use only globals the restricted unpickler allows (numpy's
# _reconstruct, ndarray, dtype, scalar and _codecs.encode), assembled opcode by opcode
# (pickletools names) so that nothing but the bytes below is involved.
_ATTACK_GLOBALS = {"numpy.core.multiarray _reconstruct", "numpy.core.multiarray scalar",
                   "numpy ndarray", "numpy dtype", "_codecs encode"}
# An 8-byte little-endian address nothing is mapped at: read as a PyObject* it crashes.
_BAD_POINTER = (0xDEADBEEF0000).to_bytes(8, "little")
# numpy's flags of an object dtype (refcounted items, pickled as a list, ...); 0 for numbers.
_OBJECT_DTYPE_FLAGS = 63
# numpy's dtype __setstate__ version written by numpy pickles.
_DTYPE_STATE_VERSION = 3
# Exit status of the child below when the loader refused the file cleanly.
_REFUSED_RC = 3
# Seconds a child may take to import torch and load one hand model file.
_CHILD_TIMEOUT_S = 120


def _op_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()  # GLOBAL


def _op_text(text: str) -> bytes:
    data = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _op_int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)  # BININT


def _op_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"  # MARK ... TUPLE


def _op_bytes(raw: bytes) -> bytes:
    """Bytes the way protocol 2 writes them: _codecs.encode(latin-1 text, 'latin1')."""
    return (_op_global("_codecs", "encode")
            + _op_tuple(_op_text(raw.decode("latin1")), _op_text("latin1")) + b"R")  # REDUCE


def _op_dtype(code: str, flags: int, byteorder: str = "|") -> bytes:
    """numpy.dtype(code, False, True) + BUILD with the given flags (numpy's own layout)."""
    state = _op_tuple(_op_int(_DTYPE_STATE_VERSION), _op_text(byteorder), b"N", b"N", b"N",
                      _op_int(-1), _op_int(-1), _op_int(flags))
    return (_op_global("numpy", "dtype") + _op_tuple(_op_text(code), b"\x89", b"\x88")
            + b"R" + state + b"b")  # NEWFALSE NEWTRUE, REDUCE, BUILD


def _op_array(dtype_ops: bytes, count: int, raw: bytes) -> bytes:
    """_reconstruct(ndarray, (0,), b'b') + BUILD (1, (count,), dtype, False, raw)."""
    return (_op_global("numpy.core.multiarray", "_reconstruct")
            + _op_tuple(_op_global("numpy", "ndarray"), _op_tuple(_op_int(0)), _op_bytes(b"b"))
            + b"R" + _op_tuple(_op_int(1), _op_tuple(_op_int(count)), dtype_ops, b"\x89",
                               _op_bytes(raw)) + b"b")


def _memo_put(index: int) -> bytes:
    return b"r" + struct.pack("<I", index)  # LONG_BINPUT


def _memo_get(index: int) -> bytes:
    return b"j" + struct.pack("<I", index)  # LONG_BINGET


def _attack_value(case: str, memo: int) -> bytes:
    """Opcodes leaving one malicious value on the stack; memo = first free memo index."""
    two_pointers = _BAD_POINTER * 2
    if case == "object_array_from_bytes":  # the reported SIGSEGV: flags cleared, raw bytes
        return _op_array(_op_dtype("O8", 0), 2, two_pointers)
    if case == "object_array_object_flags":
        return _op_array(_op_dtype("O8", _OBJECT_DTYPE_FLAGS), 2, two_pointers)
    if case == "void_array":
        return _op_array(_op_dtype("V8", 0), 2, two_pointers)
    if case == "string_array":
        return _op_array(_op_dtype("U2", 0, "<"), 2, two_pointers)
    if case == "float_dtype_with_object_flags":
        return _op_array(_op_dtype("f8", _OBJECT_DTYPE_FLAGS, "<"), 2, two_pointers)
    if case == "object_scalar_from_bytes":
        return (_op_global("numpy.core.multiarray", "scalar")
                + _op_tuple(_op_dtype("O8", 0), _op_bytes(_BAD_POINTER)) + b"R")
    if case == "ndarray_called_on_buffer":
        return (_op_global("numpy", "ndarray")
                + _op_tuple(_op_tuple(_op_int(2)), _op_dtype("O8", 0), _op_bytes(two_pointers))
                + b"R")
    if case == "dtype_rebuilt_after_use":  # a clean float array, then its dtype re-flagged
        state = _op_tuple(_op_int(_DTYPE_STATE_VERSION), _op_text("<"), b"N", b"N", b"N",
                          _op_int(-1), _op_int(-1), _op_int(_OBJECT_DTYPE_FLAGS))
        return (_op_array(_op_dtype("f8", 0, "<") + _memo_put(memo), 2, two_pointers)
                + _memo_get(memo) + state + b"b" + b"0")  # BUILD the dtype again, POP it
    raise AssertionError(case)


def _malicious_mano_pickle(case: str) -> bytes:
    """A valid MANO-like model (protocol 2) whose v_template is replaced by the attack."""
    data = _mano_like(9)
    del data["v_template"]
    base = pickle.dumps(data, protocol=2)
    assert base.endswith(b"u.")  # ... SETITEMS STOP: append one more key/value pair
    memo = 1 + max(arg for op, arg, _ in pickletools.genops(base) if op.name.endswith("PUT"))
    out = base[:-2] + _op_text("v_template") + _attack_value(case, memo) + b"u."
    used = {arg for op, arg, _ in pickletools.genops(out) if op.name == "GLOBAL"}
    assert used <= _ATTACK_GLOBALS, used  # only globals the unpickler allows
    return out


_CHILD = """
import sys
import numpy as np
from dir_ros import hand_model as hm
try:
    arrays = hm.load_mano_pickle(sys.argv[1], "right")
except hm.UnsafePickleError as err:
    print(err)
    sys.exit({rc})
print("loaded", repr(arrays.v_template), np.asarray(arrays.v_template, float).sum())
""".format(rc=_REFUSED_RC)


@pytest.mark.parametrize("case", [
    "object_array_from_bytes", "object_array_object_flags", "void_array", "string_array",
    "float_dtype_with_object_flags", "object_scalar_from_bytes", "ndarray_called_on_buffer",
    "dtype_rebuilt_after_use"])
def test_non_numeric_dtype_refused_without_crash(tmp_path, case):
    """Arrays/scalars with object, void or string dtypes (or a dtype re-flagged as object)
    are refused with UnsafePickleError naming the file. Loaded in a child process so that
    a segfault fails this test instead of killing pytest."""
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(_malicious_mano_pickle(case))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True,
                          text=True, timeout=_CHILD_TIMEOUT_S)
    assert proc.returncode == _REFUSED_RC, (
        f"rc {proc.returncode}: stdout {proc.stdout[-500:]!r} stderr {proc.stderr[-500:]!r}")
    message = proc.stdout.strip()
    assert str(path) in message and "refusing" in message and "\n" not in message


def test_numeric_arrays_and_scalars_still_load(tmp_path):
    """The dtype checks keep every numeric kind: bool, int, uint, float, complex arrays,
    numpy scalars and big-endian data (as in models written on other machines)."""
    data = dict(_mano_like(10), extra=[np.zeros(3, bool), np.arange(4, dtype=np.uint16),
                                       np.ones(2, np.complex64), np.float32(1.5), np.int64(7)])
    data["hands_mean"] = data["hands_mean"].astype(">f8")
    path = tmp_path / "MANO_RIGHT.pkl"
    for protocol in (0, 2, 4):
        with open(path, "wb") as fh:
            pickle.dump(data, fh, protocol=protocol)
        hm._load_cached.cache_clear()
        arrays = hm.load_mano_pickle(path, "right")
        assert np.array_equal(arrays.hands_mean, data["hands_mean"])  # same stored values
        assert type(arrays.v_template) is np.ndarray


def test_missing_folder_file_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        hm.load_hand_model(tmp_path / "nowhere")
    folder = tmp_path / "half"
    folder.mkdir()
    with open(folder / "MANO_RIGHT.pkl", "wb") as fh:
        pickle.dump(_mano_like(6), fh)
    with pytest.raises(FileNotFoundError, match="MANO_LEFT.pkl"):
        hm.load_hand_model(folder)
    with pytest.raises(hm.HandModelError, match="MANO_LEFT.pkl"):
        hm.build_hand_layers(folder)
    data = _mano_like(6)
    del data["hands_mean"]
    with open(folder / "MANO_LEFT.pkl", "wb") as fh:
        pickle.dump(data, fh)
    with pytest.raises(KeyError) as err:
        hm.load_hand_model(folder)
    assert "hands_mean" in str(err.value) and "MANO_LEFT.pkl" in str(err.value)
    assert isinstance(err.value, hm.HandModelError)


def test_bad_shape_and_side(tmp_path):
    path = tmp_path / "MANO_RIGHT.pkl"
    with open(path, "wb") as fh:
        pickle.dump(dict(_mano_like(7), weights=np.ones((NUM_VERTS, 15))), fh)
    with pytest.raises(hm.HandModelError, match="weights"):
        hm.load_mano_pickle(path, "right")
    with pytest.raises(ValueError):
        hm.load_mano_pickle(path, "middle")


def test_open_hand_dir_is_package_relative():
    d = hm.open_hand_dir()
    assert d.name == "open_hand" and d.parent.name == "weights"
