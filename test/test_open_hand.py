"""Tests for the project's open MANO-format hand model (weights/open_hand/) and its generator."""
from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch

from dir_ros import hand_model as hm

REPO = Path(__file__).resolve().parents[1]
OPEN_DIR = REPO / "weights" / "open_hand"
MIRROR = torch.tensor([-1.0, 1.0, 1.0])  # x -> -x
AA_MIRROR = torch.tensor([1.0, -1.0, -1.0]).repeat(15)  # axis-angle under the x mirror
FINGER_JOINTS = {"index": (1, 2, 3), "middle": (4, 5, 6), "pinky": (7, 8, 9),
                 "ring": (10, 11, 12), "thumb": (13, 14, 15)}
TIP_KEYPOINT = {"thumb": 4, "index": 8, "middle": 12, "ring": 16, "pinky": 20}
# Relative tolerance for float entries regenerated on another machine: float64 maths that
# differs in its last bits can round to a neighbouring float32 (eps 1.2e-7): a few ulp.
F32_ROUNDING = 5e-7
# Relative size of an input perturbation at rounding level, and how far the pose basis may
# move under it: every row must be a well-conditioned function of the design (the same on
# every CPU), not picked by rounding noise.
ROUNDING_PERTURBATION = 1e-12
BASIS_STABILITY_ATOL = 1e-6


def _load_script():
    spec = importlib.util.spec_from_file_location("make_open_hand",
                                                  REPO / "tools" / "make_open_hand.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def arrays() -> Dict[str, hm.HandModelArrays]:
    return hm.load_hand_model(hm.open_hand_dir())


@pytest.fixture(scope="module")
def layers() -> Dict[str, hm.HandLayer]:
    return hm.build_hand_layers()  # default folder = the open model


def _rot6d(r: torch.Tensor) -> torch.Tensor:
    """(B,3,3) -> (B,6) first two columns (inverse of rot6d_to_matrix for rotations)."""
    return torch.cat([r[..., :, 0], r[..., :, 1]], -1)


def _pca_for(layer: hm.HandLayer, full_pose: torch.Tensor) -> torch.Tensor:
    """PCA coefficients giving axis-angle finger pose full_pose (B,45)."""
    return (full_pose - layer.th_hands_mean) @ torch.linalg.pinv(layer.th_comps)


def _random_rot(b: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return hm.rot6d_to_matrix(torch.randn(b, 6, generator=g))


def test_files_present_small_and_documented():
    for name in ("MANO_LEFT.pkl", "MANO_RIGHT.pkl"):
        size = (OPEN_DIR / name).stat().st_size
        assert 0 < size < 5 * 2 ** 20
    readme = (OPEN_DIR / "README.md").read_text()
    assert "Apache-2.0" in readme and "make_open_hand.py" in readme
    assert hm.open_hand_dir().resolve() == OPEN_DIR.resolve()


def test_arrays_mano_format(arrays):
    for side in hm.SIDES:
        a = arrays[side]
        assert a.side == side
        assert a.v_template.shape == (778, 3) and a.faces.shape == (1532, 3)
        assert a.shapedirs.shape == (778, 3, 10) and a.posedirs.shape == (778, 3, 135)
        assert a.J_regressor.shape == (16, 778) and a.weights.shape == (778, 16)
        assert a.kintree_table[0, 1:].tolist() == [0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11,
                                                   0, 13, 14]
        assert np.allclose(a.weights.sum(1), 1, atol=1e-5) and (a.weights >= 0).all()
        assert np.allclose(a.J_regressor.sum(1), 1, atol=1e-5)
        assert np.allclose(a.hands_components @ a.hands_components.T, np.eye(45), atol=1e-5)
        assert a.tip_ids.tolist() != list(hm.MANO_TIP_VERTEX_IDS[side])  # own ids, stored
    assert np.array_equal(arrays["left"].tip_ids, arrays["right"].tip_ids)


def _assert_float32_close(new: np.ndarray, old: np.ndarray, what: str) -> None:
    """new == old up to float32 rounding of float64 maths done on another CPU / BLAS."""
    scale = float(np.abs(old).max()) if old.size else 0.0
    np.testing.assert_allclose(new, old, rtol=F32_ROUNDING, atol=F32_ROUNDING * scale,
                               err_msg=what)


def test_generator_reproduces_committed_files(tmp_path):
    """Regenerated files equal the committed ones: integer and text entries (faces, kinematic
    tree, tip ids, names) exactly, float entries (hands_components: all 45 rows) up to
    float32 rounding."""
    mod = _load_script()
    mod.save(tmp_path)
    for name in ("MANO_LEFT.pkl", "MANO_RIGHT.pkl"):
        with open(tmp_path / name, "rb") as fh:
            new = pickle.load(fh)
        with open(OPEN_DIR / name, "rb") as fh:
            old = pickle.load(fh)
        assert set(new) == set(old)
        for key in new:
            a, b = np.asarray(new[key]), np.asarray(old[key])
            assert a.dtype == b.dtype and a.shape == b.shape, (name, key)
            if a.dtype.kind not in "fc":  # faces, kinematic tree, tip ids, names
                assert np.array_equal(a, b), (name, key)
            else:
                _assert_float32_close(a, b, f"{name} {key}")


def test_pose_basis_insensitive_to_rounding():
    """pose_space() on inputs perturbed at rounding level (uniformly and per entry) gives the
    same mean and basis (all rows): nothing in it depends on rounding noise, so every CPU
    builds the same one. Its leading rows are the hand-designed synergies, Gram-Schmidt'ed."""
    mod = _load_script()
    joints = {spec.name: mod.digit_joint_positions(spec) for spec in mod.FINGERS}
    mean, comps = mod.pose_space(joints)
    assert comps.shape == (45, 45)
    np.testing.assert_allclose(comps @ comps.T, np.eye(45), atol=1e-12)
    rng = np.random.default_rng(0)
    perturbed = {
        "uniform": {k: v * (1 + ROUNDING_PERTURBATION) for k, v in joints.items()},
        "per entry": {k: v * (1 + ROUNDING_PERTURBATION * rng.uniform(-1, 1, v.shape))
                      for k, v in joints.items()}}
    for what, inputs in perturbed.items():
        mean_p, comps_p = mod.pose_space(inputs)
        np.testing.assert_allclose(mean_p, mean, rtol=0, atol=BASIS_STABILITY_ATOL, err_msg=what)
        np.testing.assert_allclose(comps_p, comps, rtol=0, atol=BASIS_STABILITY_ATOL,
                                   err_msg=what)
    # the completion itself: leading rows = Gram-Schmidt of the given rows (positive overlap)
    lead = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
    basis = mod.orthonormal_completion(lead)
    np.testing.assert_allclose(basis @ basis.T, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(basis[0], lead[0] / np.sqrt(2), atol=1e-12)
    assert basis[1] @ lead[1] > 0 and abs(basis[1] @ basis[0]) < 1e-12
    # the rank decision refuses a nearly dependent candidate instead of guessing
    with pytest.raises(ValueError):
        mod.orthonormal_completion(np.array([[1.0, 0.0, 0.0], [1.0, 1e-6, 0.0]]))


def test_canonical_frame_like_mano(arrays):
    """Right hand: fingers along -x, thumb on +z, palm facing -y, wrist at x ~ +0.09 m."""
    a = arrays["right"]
    j = a.J_regressor @ a.v_template
    finger_dir = j[4] - j[0]  # wrist -> middle MCP
    finger_dir /= np.linalg.norm(finger_dir)
    assert finger_dir @ np.array([-1.0, 0, 0]) > 0.98
    assert 0.08 < np.linalg.norm(j[4] - j[0]) < 0.11  # palm length (m)
    thumb_side = j[1] - j[7]  # pinky MCP -> index MCP: the side the thumb is on
    assert thumb_side[2] > 0.04 and j[13, 2] > j[1, 2] - 0.01
    # right-handed chirality: palm normal = thumb side x finger direction = -y
    palm_normal = np.cross(thumb_side, finger_dir)
    palm_normal /= np.linalg.norm(palm_normal)
    assert palm_normal @ np.array([0, -1.0, 0]) > 0.95
    assert abs(j[0, 0] - 0.09) < 0.01
    # joints run distally along each digit with plausible bone lengths (15-50 mm)
    for name, ids in FINGER_JOINTS.items():
        chain = [0] + list(ids)
        tip = a.v_template[a.tip_ids[list(TIP_KEYPOINT).index(name)]]
        pts = np.concatenate([j[chain], tip[None]])
        bones = np.linalg.norm(np.diff(pts[1:], axis=0), axis=1)
        assert ((bones > 0.015) & (bones < 0.05)).all(), (name, bones)
        assert np.all(np.diff(np.linalg.norm(pts - j[0], axis=1)) > 0), name


def test_surface_closed_and_outward(arrays):
    trimesh = pytest.importorskip("trimesh")
    a = arrays["right"]
    mesh = trimesh.Trimesh(a.v_template, a.faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    parts = mesh.split(only_watertight=False)
    assert len(parts) == 6  # palm + five digits, each closed
    assert all(p.volume > 0 for p in parts)  # outward normals
    assert 2e-4 < mesh.volume < 5e-4  # m^3; a real hand is ~3-5e-4
    left = trimesh.Trimesh(arrays["left"].v_template, arrays["left"].faces, process=False)
    assert left.is_watertight and left.volume == pytest.approx(mesh.volume, rel=1e-5)


def test_zero_pose_gives_template(layers):
    for side in hm.SIDES:
        layer = layers[side]
        pca = -layer.th_hands_mean @ torch.linalg.pinv(layer.th_comps)
        out = layer(torch.tensor([[1.0, 0, 0, 0, 1, 0]]), pca, torch.zeros(1, 10))
        v = layer.th_v_template[0]
        wrist = layer.th_J_regressor[0] @ v
        assert torch.allclose(out.vertices[0], v - wrist, atol=1e-5)
        assert torch.allclose(out.joints[0, 0], torch.zeros(3), atol=1e-6)


def test_tips_are_stored_tip_vertices(layers, arrays):
    layer = layers["right"]
    g = torch.Generator().manual_seed(0)
    out = layer(torch.randn(3, 6, generator=g), torch.randn(3, 45, generator=g),
                torch.randn(3, 10, generator=g))
    tips = arrays["right"].tip_ids.tolist()
    for k, (name, kp) in enumerate(TIP_KEYPOINT.items()):
        assert torch.allclose(out.joints[:, kp], out.vertices[:, tips[k]], atol=1e-6)
    # each tip is its digit's most distal vertex along the middle phalanx direction
    a = arrays["right"]
    j = a.J_regressor @ a.v_template
    dominant = a.weights.argmax(1)
    for k, name in enumerate(TIP_KEYPOINT):
        _, mid, distal = FINGER_JOINTS[name]
        digit = np.where(dominant == distal)[0]
        reach = (a.v_template[digit] - j[distal]) @ (j[distal] - j[mid])
        assert digit[reach.argmax()] == tips[k], name


def test_left_is_mirror_of_right(layers):
    b = 4
    g = torch.Generator().manual_seed(1)
    rot = _random_rot(b, seed=2)
    pca, betas = torch.randn(b, 45, generator=g), torch.randn(b, 10, generator=g)
    right = layers["right"](_rot6d(rot), pca, betas)
    m = torch.diag(MIRROR)
    left = layers["left"](_rot6d(m @ rot @ m), pca, betas)  # same PCA coefficients
    assert torch.allclose(left.vertices, right.vertices * MIRROR, atol=2e-5)
    assert torch.allclose(left.joints, right.joints * MIRROR, atol=2e-5)
    # mirrored mean pose: left hands_mean = right hands_mean with (a, -b, -c) per joint
    assert torch.allclose(layers["left"].th_hands_mean, layers["right"].th_hands_mean * AA_MIRROR)


def _palm_normal(joints: torch.Tensor, side: str) -> torch.Tensor:
    """Unit palm normal from keypoints (21,3): thumb side x finger direction (right hand)."""
    finger = joints[9] - joints[0]
    thumb_side = joints[5] - joints[17]
    n = torch.linalg.cross(thumb_side, finger) if side == "right" else \
        torch.linalg.cross(finger, thumb_side)
    return n / n.norm()


@pytest.mark.parametrize("side", hm.SIDES)
def test_fingers_flex_toward_palm_like_mano(layers, side):
    """Direction test: MANO's right-hand flexion is a positive rotation about +z (its mean pose
    has positive z on every finger joint and its fingers point -x with the palm facing -y), and
    the left model mirrors it (-z). The same pose values must move every fingertip of this
    model toward its palm (along the palm normal) and toward the wrist."""
    layer = layers[side]
    eye6 = torch.tensor([[1.0, 0, 0, 0, 1, 0]])
    flat = torch.zeros(1, 45)
    base = layer(eye6, _pca_for(layer, flat), torch.zeros(1, 10)).joints[0]
    n = _palm_normal(base, side)
    sign = 1.0 if side == "right" else -1.0
    for name in ("index", "middle", "ring", "pinky"):
        pose = flat.clone()
        for j in FINGER_JOINTS[name]:
            pose[0, 3 * (j - 1) + 2] = sign * 0.8  # rotation about z
        bent = layer(eye6, _pca_for(layer, pose), torch.zeros(1, 10)).joints[0]
        kp = TIP_KEYPOINT[name]
        move = bent[kp] - base[kp]
        assert move @ n > 0.02, (name, move @ n)  # > 2 cm toward the palm side
        assert bent[kp].norm() < base[kp].norm() - 0.02  # closer to the wrist
    # the mean pose (pca = 0) is a relaxed slight flexion toward the palm
    relaxed = layer(eye6, torch.zeros(1, 45), torch.zeros(1, 10)).joints[0]
    for name in ("index", "middle", "ring", "pinky"):
        kp = TIP_KEYPOINT[name]
        assert 0.003 < (relaxed[kp] - base[kp]) @ n < 0.05, name


def test_shape_directions(layers):
    layer = layers["right"]
    eye6 = torch.tensor([[1.0, 0, 0, 0, 1, 0]])
    pca = torch.zeros(1, 45)

    def joints(k: int, value: float) -> torch.Tensor:
        betas = torch.zeros(1, 10)
        betas[0, k] = value
        return layer(eye6, pca, betas).joints[0]

    base = joints(0, 0.0)
    size = lambda j: (j[12] - j[0]).norm()  # wrist to middle tip
    assert size(joints(0, 2.0)) > size(base) * 1.06  # beta0: overall size
    finger_len = lambda j: (j[12] - j[9]).norm()
    assert finger_len(joints(1, 2.0)) > finger_len(base) * 1.05  # beta1: finger length
    width = lambda j: (j[5] - j[17]).norm()
    assert width(joints(2, 2.0)) > width(base) * 1.05  # beta2: palm width
    palm_len = lambda j: (j[9] - j[0]).norm()
    assert palm_len(joints(5, 2.0)) > palm_len(base) * 1.05  # beta5: palm length
    thumb_len = lambda j: (j[4] - j[1]).norm()
    assert thumb_len(joints(6, 2.0)) > thumb_len(base) * 1.05  # beta6: thumb length
    for k in range(10):  # every direction changes the surface by > 1 mm somewhere
        assert layer.th_shapedirs[:, :, k].abs().max() * 2 > 1e-3


def test_smplx_loads_open_model_identically(layers):
    smplx = pytest.importorskip("smplx")
    g = torch.Generator().manual_seed(3)
    rot = _random_rot(2, seed=4)
    pca, betas = torch.randn(2, 45, generator=g) * 0.5, torch.randn(2, 10, generator=g)
    from scipy.spatial.transform import Rotation
    aa = torch.tensor(Rotation.from_matrix(rot.double().numpy()).as_rotvec(), dtype=torch.float32)
    for side in hm.SIDES:
        layer = layers[side]
        name = "MANO_RIGHT.pkl" if side == "right" else "MANO_LEFT.pkl"
        # smplx turns PCA off for 45 components, so give it pca @ comps; it adds hands_mean
        ref = smplx.MANO(str(OPEN_DIR / name), is_rhand=side == "right", use_pca=False,
                         flat_hand_mean=False, num_betas=10)
        r = ref(global_orient=aa, hand_pose=pca @ layer.th_comps, betas=betas)
        out = layer(_rot6d(rot), pca, betas)
        wrist = r.joints[:, :1]
        assert torch.allclose(out.vertices, r.vertices - wrist, atol=1e-4)
        assert torch.allclose(out.joints[:, 1:4], r.joints[:, 13:16] - wrist, atol=1e-4)


def test_gradients_random_poses_and_root_joint(layers):
    layer = layers["left"]
    g = torch.Generator().manual_seed(5)
    rot6d = torch.randn(8, 6, generator=g).requires_grad_(True)
    pca = (torch.randn(8, 45, generator=g) * 2).requires_grad_(True)
    betas = (torch.randn(8, 10, generator=g) * 2).requires_grad_(True)
    out = layer(rot6d, pca, betas)
    assert torch.isfinite(out.vertices).all() and torch.isfinite(out.joints).all()
    assert out.vertices.abs().max() < 0.5  # stays hand-sized (m)
    out.vertices.sum().backward()
    for t in (rot6d, pca, betas):
        assert t.grad is not None and t.grad.abs().sum() > 0
    lay9 = hm.build_hand_layers(root_joint=9)["left"]
    o9 = lay9(rot6d.detach(), pca.detach(), betas.detach())
    assert torch.allclose(o9.joints[:, 9], torch.zeros(8, 3), atol=1e-7)
    assert torch.allclose(o9.vertices, out.vertices.detach() - out.joints.detach()[:, 9:10],
                          atol=1e-5)
