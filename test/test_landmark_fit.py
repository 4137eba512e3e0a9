"""Tests of the landmark fit, dir_ros.backends.landmarks.{placement,rotations,kinematics,fit}
(placement of world landmarks, rotation helpers, hand-model fit) and of
dir_ros.common.geometry.ray_rotation, on the bundled open hand model.

Fit accuracy is measured as the max-joint error per hand (the worst of its 21 keypoints),
averaged over the hands of a batch ("max-joint mean"), plus a bound on the worst hand.
"""
from __future__ import annotations

import copy
from typing import Dict, Tuple

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dir_ros.common import geometry as geo
from dir_ros import hand_model as hm
from dir_ros.backends.landmarks import fit as lf
from dir_ros.backends.landmarks import kinematics
from dir_ros.backends.landmarks import rotations
from dir_ros.backends.landmarks.placement import place_hand

# 640x480 camera with a 60 degree horizontal field of view: fx = 320 / tan(30 deg).
IMAGE_W, IMAGE_H = 640, 480
FX = (IMAGE_W / 2) / np.tan(np.radians(30.0))
K = np.array([[FX, 0.0, 319.5], [0.0, FX, 239.5], [0.0, 0.0, 1.0]])
# Random plausible poses: the open hand model's first PCA rows are synergies (grasp, hook,
# spread, thumb opposition/flexion, pointing, ulnar/radial; tools/make_open_hand.py) in
# +-1.5, the other (orthonormal, radian-valued) rows add small joint deviations in +-0.3 rad.
NUM_SYNERGIES, SYNERGY_RANGE, OTHER_PCA_RANGE = 7, 1.5, 0.3
BETA_RANGE = 1.0
M_TO_MM = 1e3


@pytest.fixture(scope="module")
def layers() -> Dict[str, hm.HandLayer]:
    return hm.build_hand_layers()


@pytest.fixture(scope="module")
def fitters(layers) -> Dict[str, lf.HandFitter]:
    return {side: lf.HandFitter(layer) for side, layer in layers.items()}


def _random_hands(layer: hm.HandLayer, n: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Root-relative keypoints (n,21,3) m of random plausible hands and their rotmats."""
    rng = np.random.default_rng(seed)
    rot = Rotation.random(n, random_state=rng).as_matrix()
    rot6d = np.concatenate([rot[:, :, 0], rot[:, :, 1]], 1)
    pca = np.concatenate([rng.uniform(-SYNERGY_RANGE, SYNERGY_RANGE, (n, NUM_SYNERGIES)),
                          rng.uniform(-OTHER_PCA_RANGE, OTHER_PCA_RANGE,
                                      (n, hm.NUM_POSE_COMPS - NUM_SYNERGIES))], 1)
    betas = rng.uniform(-BETA_RANGE, BETA_RANGE, (n, hm.NUM_BETAS))
    with torch.no_grad():
        out = layer(*(torch.tensor(x, dtype=torch.float32) for x in (rot6d, pca, betas)))
    return out.joints.double().numpy(), out.rotmats.double().numpy()


def _max_joint_mm(joints: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(B,) worst keypoint distance per hand, mm."""
    return np.linalg.norm(joints - truth, axis=-1).max(-1) * M_TO_MM


# ---------------------------------------------------------------------------------------------
# place_hand
# ---------------------------------------------------------------------------------------------
def test_place_hand_every_wrist_within_2_percent_from_noisy_projections(layers):
    # The check: hand-model keypoints (exact world shape) projected with 1 px of
    # image noise, 12 random hands at 0.3-1.0 m (arm's reach of a robot camera), off-centre:
    # every wrist within 2 % of depth. (The depth error grows with depth / hand size in
    # pixels: at 1.5 m a hand spans ~40 px and 1.5 px of noise is ~4 % of its scale.)
    rng = np.random.default_rng(11)
    hands, _ = _random_hands(layers["left"], 12, seed=5)
    for rel in hands:
        depth = rng.uniform(0.3, 1.0)
        off = rng.uniform(-0.6, 0.6, 2) * np.array([IMAGE_W, IMAGE_H]) / 2 / FX * depth
        wrist = np.array([off[0], off[1], depth])
        cam = rel + wrist
        px = geo.project_points(cam, K) + rng.normal(0.0, 1.0, (21, 2))
        world = cam - cam.mean(0)
        t = place_hand(world, px, K)
        assert np.linalg.norm(world[0] + t - wrist) < 0.02 * depth


def test_place_hand_with_world_noise_median_within_2_percent(layers):
    # 12 random hands 0.3-1.5 m away, off-centre, 1.5 px image noise, 3 mm world noise.
    # The world noise alone leaves ~1 % scale (= depth) uncertainty on a hand ~10 cm across,
    # so single hands can exceed 2 % (over 300 hands: median 1.3 %, 90th percentile 3.0 %,
    # max 6.7 %): the median must be within 2 % of the depth and every hand within 6 %.
    rng = np.random.default_rng(7)
    hands, _ = _random_hands(layers["right"], 12, seed=3)
    rel_err = []
    for rel in hands:
        depth = rng.uniform(0.3, 1.5)
        # off-centre: up to 60 % of the half field of view away from the principal point
        off = rng.uniform(-0.6, 0.6, 2) * np.array([IMAGE_W, IMAGE_H]) / 2 / FX * depth
        wrist = np.array([off[0], off[1], depth])
        cam = rel + wrist
        px = geo.project_points(cam, K) + rng.normal(0.0, 1.5, (21, 2))
        world = cam - cam.mean(0)  # hand-centred, as MediaPipe's world landmarks
        t = place_hand(world + rng.normal(0.0, 3e-3, (21, 3)), px, K)
        rel_err.append(np.linalg.norm(world[0] + t - wrist) / depth)
    rel_err = np.array(rel_err)
    assert np.median(rel_err) < 0.02 and rel_err.max() < 0.06, rel_err


def test_place_hand_exact_and_weights():
    rng = np.random.default_rng(1)
    world = rng.normal(0.0, 0.04, (21, 3))
    t_true = np.array([-0.12, 0.08, 0.7])
    px = geo.project_points(world + t_true, K)
    assert np.allclose(place_hand(world, px, K), t_true, atol=1e-9)
    # an outlier with weight 0 (even NaN) is ignored
    px_bad, world_bad = px.copy(), world.copy()
    px_bad[3] = [1e4, -1e4]
    world_bad[5] = np.nan
    w = np.ones(21)
    w[[3, 5]] = 0.0
    assert np.allclose(place_hand(world_bad, px_bad, K, weights=w), t_true, atol=1e-9)


def test_place_hand_rejects_degenerate_input():
    rng = np.random.default_rng(2)
    world = rng.normal(0.0, 0.04, (21, 3))
    px = geo.project_points(world + np.array([0.0, 0.0, 0.5]), K)
    with pytest.raises(ValueError, match="behind"):  # the rays' solution lies behind
        place_hand(world, geo.project_points(world + np.array([0.0, 0.0, -0.5]), K), K)
    bad = px.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        place_hand(world, bad, K)
    with pytest.raises(ValueError):
        place_hand(world, px, K, weights=np.r_[1.0, np.zeros(20)])  # one point only
    with pytest.raises(ValueError):
        place_hand(world[:, :2], px, K)
    with pytest.raises(ValueError):  # all points at one place on one ray: t not determined
        place_hand(np.zeros((21, 3)), np.full((21, 2), 100.0), K)


# ---------------------------------------------------------------------------------------------
# HandFitter
# ---------------------------------------------------------------------------------------------
def test_kinematic_model_matches_layer_and_jacobian(layers):
    # Internal 21-point model: the same keypoints as the layer; analytic Jacobian = finite
    # differences. With non-zero pose correctives (posedirs), as the MANO files have.
    layer = _mano_like_layer("left", 4)
    fitter = lf.HandFitter(layer)
    g = torch.Generator().manual_seed(0)
    root = rotations.rodrigues(torch.randn(3, 3, dtype=torch.float64, generator=g))
    finger = fitter.pose_mean + 0.5 * torch.randn(3, 45, dtype=torch.float64, generator=g)
    betas = torch.randn(3, 10, dtype=torch.float64, generator=g)
    state = fitter._forward(root, finger, betas)
    rot6d = torch.cat([root[:, :, 0], root[:, :, 1]], -1)
    out = layer(rot6d.float(), ((finger - fitter.pose_mean) @ fitter.comps_pinv).float(),
                betas.float())
    kps = state["kps"] - state["kps"][:, :1]
    assert torch.allclose(kps, out.joints.double(), atol=1e-6)
    jac = fitter._jacobian(state, finger)
    eps = 1e-6
    for col in (0, 2, 3, 10, 20, 33, 47, 48, 52, 57):  # root, fingers, betas
        d = torch.zeros(3, kinematics.NUM_UNKNOWNS, dtype=torch.float64)
        d[:, col] = eps
        moved = fitter._forward(root @ rotations.rodrigues(d[:, :3]), finger + d[:, 3:48],
                                betas + d[:, 48:])["kps"]
        numeric = ((moved - state["kps"]) / eps).reshape(3, -1)
        assert torch.allclose(jac[:, :, col], numeric, atol=1e-5), col


def _mano_like_layer(side: str, seed: int) -> hm.HandLayer:
    """The open hand model with random non-zero pose correctives (posedirs), as the MANO
    files have, so that the fit's pose-corrective paths are exercised too."""
    arrays = hm.load_hand_model(hm.open_hand_dir())[side]
    rng = np.random.default_rng(seed)
    return hm.HandLayer(hm.HandModelArrays(**{**arrays.__dict__, "posedirs": rng.normal(
        0.0, 1e-3, arrays.posedirs.shape)}))


@pytest.mark.parametrize("mano_like", (False, True))
def test_fit_mesh_and_joints_equal_the_layer(layers, mano_like):
    # Exact-math shortcuts: the fit's joint-only model (J_regressor folded with the shape
    # blend shapes) and its own skinning of the mesh give the layer's joints and vertices
    # for the fitted parameters, within float32 rounding of the layer's output.
    layer = _mano_like_layer("right", 6) if mano_like else layers["right"]
    fitter = lf.HandFitter(layer)
    truth, _ = _random_hands(layer, 4, seed=51)
    res = fitter.fit(truth + np.array([0.05, 0.0, 0.4]), steps=2)
    root = torch.as_tensor(res.rotmats[:, 0])
    rot6d = torch.cat([root[:, :, 0], root[:, :, 1]], -1)
    pca = (torch.as_tensor(res.pose[:, 3:]) - fitter.pose_mean) @ fitter.comps_pinv
    with torch.no_grad():
        out = layer(rot6d.float(), pca.float(), torch.as_tensor(res.shape).float())
    wrist = res.translation[:, None]
    assert np.allclose(res.joints - wrist, out.joints.numpy(), atol=2e-6)
    assert np.allclose(res.vertices - wrist, out.vertices.numpy(), atol=2e-6)
    assert np.allclose(res.rotmats[:, 1:], out.rotmats[:, 1:].numpy(), atol=1e-6)


def test_rotation_helpers_exact():
    # Constant-basis skew matrices and Shepperd candidates, clamped small-angle Rodrigues:
    # the same maths as the textbook forms (scipy), float64 rounding apart.
    rng = np.random.default_rng(9)
    v, w = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    assert np.allclose((rotations.skew(torch.as_tensor(v)) @ torch.as_tensor(w)[..., None])
                       .squeeze(-1).numpy(), np.cross(v, w), atol=1e-12)
    axes = rng.normal(size=(60, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    angles = np.concatenate([[0.0, 1e-9, 1e-5, 1e-4, 2e-4], rng.uniform(0.0, np.pi, 50),
                             [np.pi - 1e-7, np.pi - 1e-3, np.pi, 2.5, 3.0]])
    rotvec = axes * angles[:, None]
    mats = rotations.rodrigues(torch.as_tensor(rotvec)).numpy()
    assert np.allclose(mats, Rotation.from_rotvec(rotvec).as_matrix(), atol=1e-12)
    back = rotations.matrix_to_axis_angle(torch.as_tensor(mats)).numpy()
    assert np.allclose(Rotation.from_rotvec(back).as_matrix(), mats, atol=1e-9)
    assert np.all(np.linalg.norm(back, axis=-1) <= np.pi + 1e-12)
    keep = angles < np.pi - 1e-3  # away from pi the axis-angle itself is unique
    assert np.allclose(back[keep], rotvec[keep], atol=1e-9)
    # right Jacobian: exp(theta + d) = exp(theta) exp(Jr d) to first order
    theta = torch.as_tensor(rotvec[:-3])
    d = torch.as_tensor(rng.normal(0.0, 1e-7, theta.shape))
    lhs = rotations.rodrigues(theta + d)
    rhs = rotations.rodrigues(theta) @ rotations.rodrigues(
        (rotations.right_jacobian(theta) @ d[..., None])[..., 0])
    assert torch.allclose(lhs, rhs, atol=1e-12)


@pytest.mark.parametrize("side", hm.SIDES)
def test_fit_recovers_random_poses(layers, fitters, side):
    truth, rotmats = _random_hands(layers[side], 8, seed=11 if side == "right" else 12)
    truth = truth + np.array([0.1, -0.05, 0.6])  # camera frame
    res = fitters[side].fit(truth)
    err = _max_joint_mm(res.joints, truth)
    assert err.mean() < 5.0 and err.max() < 10.0, err
    # result layout and consistency
    assert res.params.shape == (8, lf.NUM_FIT_PARAMS) and res.joints.dtype == np.float32
    assert res.vertices.shape == (8, layers[side].num_verts, 3)
    assert res.rotmats.shape == (8, 16, 3, 3) and res.shape.shape == (8, 10)
    assert np.allclose(res.rotmats @ np.swapaxes(res.rotmats, -1, -2), np.eye(3), atol=1e-9)
    assert np.allclose(geo.axis_angle_to_matrix(res.pose.reshape(8, 16, 3)), res.rotmats,
                       atol=1e-9)
    assert np.allclose(res.translation, res.joints[:, 0], atol=1e-5)
    tips = res.vertices[:, layers[side].tip_ids.numpy()]
    assert np.allclose(tips, res.joints[:, [4, 8, 12, 16, 20]], atol=1e-6)
    rms = np.sqrt((np.linalg.norm(res.joints - truth, axis=-1) ** 2).mean(-1)) * M_TO_MM
    assert np.allclose(res.residual_mm, rms, atol=1e-3)
    # the closed-form root rotation is exact up to shape: the fitted wrist frame is close
    ang = np.degrees(np.linalg.norm(geo.matrix_to_axis_angle(
        np.swapaxes(res.rotmats[:, 0], -1, -2) @ rotmats[:, 0]), axis=-1))
    assert ang.max() < 5.0, ang


def test_fit_noisy_targets_stay_plausible(layers, fitters):
    truth, _ = _random_hands(layers["right"], 8, seed=21)
    rng = np.random.default_rng(5)
    noisy = truth * 1.05 + rng.normal(0.0, 3e-3, truth.shape)  # MediaPipe-like: scale, noise
    res = fitters["right"].fit(noisy)
    assert np.all(np.isfinite(res.vertices)) and np.all(res.residual_mm < 6.0)
    assert np.abs(res.shape).max() < 3.0  # the shape prior keeps betas in a plausible range
    centred = res.joints - res.joints.mean(1, keepdims=True)
    ref = truth * 1.05
    assert np.linalg.norm(centred - (ref - ref.mean(1, keepdims=True)), axis=-1).mean() < 5e-3


def test_warm_start_converges_in_fewer_steps(layers, fitters):
    fitter = fitters["right"]
    truth, _ = _random_hands(layers["right"], 4, seed=31)
    cold = fitter.fit(truth)
    again = fitter.fit(truth, init=cold.params)  # same frame: already converged
    assert again.steps < cold.steps
    assert np.all(again.residual_mm <= cold.residual_mm + 0.05)
    # next frame: the hand moved and bent a little; the same step budget is not exceeded
    rng = np.random.default_rng(8)
    moved = truth @ Rotation.from_rotvec([0.0, 0.1, 0.0]).as_matrix().T \
        + rng.normal(0.0, 1e-3, truth.shape) + 0.01
    cold2, warm2 = fitter.fit(moved), fitter.fit(moved, init=cold.params)
    assert warm2.steps <= cold2.steps
    assert np.all(warm2.residual_mm <= cold2.residual_mm + 0.1)
    # one LM step from the warm start is as good as one from scratch, or better
    cold1, warm1 = fitter.fit(moved, steps=1), fitter.fit(moved, init=cold.params, steps=1)
    assert warm1.residual_mm.mean() <= cold1.residual_mm.mean() + 0.05


def test_early_stop_keeps_the_converged_accuracy(layers, fitters):
    # The relative stop (DEFAULT_REL_TOL) against running to numerical convergence, on
    # MediaPipe-like targets (5 % scale error, 3 mm noise: residuals stay at a few mm, where
    # the absolute floor alone never ends the fit early): fewer steps, same keypoints.
    truth, _ = _random_hands(layers["left"], 8, seed=61)
    rng = np.random.default_rng(12)
    noisy = truth * 1.05 + rng.normal(0.0, 3e-3, truth.shape)
    full = lf.HandFitter(layers["left"], steps=50, rel_tol=0.0).fit(noisy)
    early = fitters["left"].fit(noisy)
    assert early.steps < full.steps
    assert np.linalg.norm(early.joints - full.joints, axis=-1).max() < 5e-4  # < 0.5 mm
    assert np.all(early.residual_mm <= full.residual_mm + 0.05)
    clean = fitters["left"].fit(truth)
    assert _max_joint_mm(clean.joints, truth).mean() < 2.0


@pytest.mark.parametrize("mano_like_right", (False, True))
def test_both_sides_in_one_batch_equal_separate_fits(layers, mano_like_right):
    # One fitter for both layers: each hand of a mixed batch is fitted exactly as alone
    # (its own buffers, its own stop), cold and warm, and with a cold hand beside a warm one;
    # also with pose correctives on one side only.
    if mano_like_right:
        layers = {"left": layers["left"], "right": _mano_like_layer("right", 8)}
    fitters = {side: lf.HandFitter(layer) for side, layer in layers.items()}
    both = lf.HandFitter(layers)
    left, _ = _random_hands(layers["left"], 1, seed=71)
    right, _ = _random_hands(layers["right"], 1, seed=72)
    target = np.concatenate([right, left]) + np.array([0.0, 0.0, 0.5])
    sides = ["right", "left"]
    alone = [fitters[s].fit(target[i:i + 1]) for i, s in enumerate(sides)]
    res = both.fit(target, sides=sides)
    for i, one in enumerate(alone):
        assert np.allclose(res.params[i], one.params[0], atol=1e-9)
        assert np.allclose(res.vertices[i], one.vertices[0], atol=1e-6)
        assert np.allclose(res.joints[i], one.joints[0], atol=1e-6)
    moved = target + np.random.default_rng(3).normal(0.0, 1e-3, target.shape)
    warm = both.fit(moved, init=res.params, sides=sides)
    warm_alone = fitters["left"].fit(moved[1:], init=alone[1].params)
    assert np.allclose(warm.params[1], warm_alone.params[0], atol=1e-9)
    init = res.params.copy()
    init[0] = np.nan  # the right hand is new this frame: cold; the left one warm
    mixed = both.fit(moved, init=init, sides=sides)
    cold_alone = fitters["right"].fit(moved[:1])
    assert np.allclose(mixed.params[0], cold_alone.params[0], atol=1e-9)
    assert np.allclose(mixed.params[1], warm_alone.params[0], atol=1e-9)
    with pytest.raises(ValueError, match="sides"):
        both.fit(target)  # a two-layer fitter needs the sides
    with pytest.raises(ValueError, match="sides"):
        both.fit(target, sides=["right", "middle"])
    with pytest.raises(ValueError, match="sides"):
        fitters["left"].fit(target, sides=sides)  # one layer: no sides
    init[0, :3] = 0.0  # partly NaN: neither a previous fit nor none
    with pytest.raises(ValueError, match="NaN"):
        both.fit(moved, init=init, sides=sides)


def test_fit_input_checks_and_degenerate_target(fitters):
    fitter = fitters["right"]
    with pytest.raises(ValueError):
        fitter.fit(np.zeros((2, 20, 3)))
    with pytest.raises(ValueError):
        fitter.fit(np.full((1, 21, 3), np.nan))
    with pytest.raises(ValueError):
        fitter.fit(np.zeros((2, 21, 3)), init=np.zeros((1, lf.NUM_FIT_PARAMS)))
    res = fitter.fit(np.zeros((1, 21, 3)))  # all keypoints at one point: finite result
    assert np.all(np.isfinite(res.vertices)) and np.all(np.isfinite(res.params))
    with pytest.raises(ValueError):
        lf.HandFitter(fitter.layer, lr=0.0)
    with pytest.raises(ValueError, match="rel_tol"):
        lf.HandFitter(fitter.layer, rel_tol=1.0)
    other_tree = copy.deepcopy(fitter.layer)
    other_tree.parents[4] = 3  # middle MCP hung under the index DIP: not MANO's tree
    with pytest.raises(ValueError, match="kinematic tree"):
        lf.HandFitter(other_tree)


# ---------------------------------------------------------------------------------------------
# geometry.ray_rotation
# ---------------------------------------------------------------------------------------------
def test_ray_rotation_maps_axis_onto_ray():
    for px in ([0.0, 0.0], [640.0, 480.0], [100.5, 400.25], [320.0, 240.0]):
        r = geo.ray_rotation(K, np.array(px))
        ray = geo.backproject_pixel(np.array(px), 1.0, K)
        assert np.allclose(r @ [0.0, 0.0, 1.0], ray / np.linalg.norm(ray), atol=1e-12)
        assert np.allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(r), 1.0)
        # minimal rotation: its axis is perpendicular to both z and the ray (z x ray)
        axis = geo.matrix_to_axis_angle(r)
        assert abs(axis[2]) < 1e-12
    principal = K[:2, 2] + geo.HALF_PIXEL  # corner-origin pixel of the principal point
    assert np.allclose(geo.ray_rotation(K, principal), np.eye(3), atol=1e-12)
    with pytest.raises(ValueError):
        geo.ray_rotation(K, np.array([np.nan, 1.0]))


def test_ray_rotation_off_axis_hand(layers):
    rel, _ = _random_hands(layers["right"], 1, seed=41)
    rel = rel[0]  # root-relative keypoints, metres
    angle = np.radians(25.0)
    direction = np.array([np.sin(angle) * np.cos(0.3), np.sin(angle) * np.sin(0.3),
                          np.cos(angle)])
    centre = 0.6 * direction  # 25 degrees off the optical axis
    r = geo.ray_rotation(K, geo.project_points(centre, K))
    assert np.degrees(np.arccos(r[2, 2])) == pytest.approx(25.0, abs=1e-6)
    virtual = rel @ r  # rows: R^T x, root-relative geometry in the virtual (crop) camera
    assert np.allclose(virtual @ r.T, rel, atol=1e-6)
    # the virtual camera looks straight at the hand: its centre is on the virtual z axis
    assert np.allclose(r.T @ centre, [0.0, 0.0, np.linalg.norm(centre)], atol=1e-9)
