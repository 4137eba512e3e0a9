"""Tests for dir_ros.hand_model: loading (restricted unpickler), keypoints, LBS, 6D rotation."""
from __future__ import annotations

import os
import pickle
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
    assert torch.equal(a.vertices, b.vertices) and torch.equal(a.joints, b.joints)


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
