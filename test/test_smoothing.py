"""One-Euro and EMA smoothing of FrameResults."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dir_ros.common import geometry as geo
from dir_ros.common.results import FrameResult, HandsResult
from dir_ros.post.smoothing import (DEFAULT_DEPTH_PARAMS, DEFAULT_SIGNAL_PARAMS, DepthKalman,
                                DepthParams, EmaSmoother, EuroParams, OneEuroSmoother,
                                SignalOneEuroSmoother, make_smoother)

FPS = 30.0
RNG_SEED = 3


def _frame(joints: np.ndarray, valid: bool = True) -> FrameResult:
    """FrameResult with a metric right hand at joints (21,3) (vertices = joints) and no left."""
    right = HandsResult(side="right", valid=valid, confidence=1.0, vertices=joints.astype(np.float32),
                        joints=joints.astype(np.float32), wrist_position=joints[0].copy(),
                        wrist_quat=np.array([0.0, 0.0, 0.0, 1.0]), metric=True,
                        pose=np.zeros(48, np.float32), shape=np.zeros(10, np.float32),
                        keypoints_2d=np.zeros((21, 2), np.float32), faces=np.zeros((0, 3), np.int64))
    return FrameResult(HandsResult.invalid("left", np.zeros((0, 3)), 0), right, geo.CropBox(0, 0, 1))


def _run(smoother, truth: np.ndarray, noisy: np.ndarray, settle: int = 15) -> float:
    """RMS keypoint error (m) of the smoothed sequence against the truth after settle frames."""
    errs = [np.linalg.norm(smoother(_frame(n), i / FPS).right.joints - t, axis=1)
            for i, (t, n) in enumerate(zip(truth, noisy))][settle:]
    return float(np.sqrt(np.mean(np.square(errs))))


def test_one_euro_steadies_a_still_hand_and_follows_a_moving_one() -> None:
    """Still hand: jitter cut by at least a third; moving hand at 0.5 m/s: error stays within
    1.5x the unfiltered one, where an EMA of similar steadiness lags far more."""
    rng = np.random.default_rng(RNG_SEED)
    base = rng.uniform(-0.05, 0.05, (21, 3)) + np.array([0, 0, 0.5])
    n = 200
    still = np.repeat(base[None], n, axis=0)
    moving = still + (np.arange(n) / FPS * 0.5)[:, None, None] * np.array([1.0, 0, 0])
    noise = rng.normal(0, 3e-3, (2, n, 21, 3))
    raw_still = _run(lambda f, t: f, still, still + noise[0])
    raw_moving = _run(lambda f, t: f, moving, moving + noise[1])
    euro_still = _run(OneEuroSmoother(), still, still + noise[0])
    euro_moving = _run(OneEuroSmoother(), moving, moving + noise[1])
    ema_moving = _run(EmaSmoother(0.5), moving, moving + noise[1])
    assert euro_still < raw_still * 2 / 3
    assert euro_moving < 1.5 * raw_moving
    assert ema_moving > 2 * euro_moving


def test_one_euro_restarts_on_loss_and_jump() -> None:
    """A hand that was invalid, or jumps 30 cm, is passed through unfiltered."""
    base = np.zeros((21, 3)) + np.array([0, 0, 0.5])
    sm = OneEuroSmoother()
    sm(_frame(base), 0.0)
    jumped = base + np.array([0.3, 0, 0])
    assert np.allclose(sm(_frame(jumped), 1 / FPS).right.joints, jumped, atol=1e-6)
    sm(_frame(base, valid=False), 2 / FPS)
    moved = jumped + 0.01
    assert np.allclose(sm(_frame(moved), 3 / FPS).right.joints, moved, atol=1e-6)
    near = moved + 0.01  # a small step after a restart is filtered (pulled back)
    out = sm(_frame(near), 4 / FPS).right.joints
    assert np.all(np.abs(out - moved) < 0.01 - 1e-4)


def test_smoother_modes_and_bad_values() -> None:
    """make_smoother knows none/ema/one_euro/one_euro_single and refuses bad parameters by
    name."""
    assert make_smoother("none") is None
    assert isinstance(make_smoother("ema", 0.3), EmaSmoother)
    assert isinstance(make_smoother("one_euro"), SignalOneEuroSmoother)
    assert isinstance(make_smoother("one_euro_single"), OneEuroSmoother)
    custom = make_smoother("one_euro", signals={"pose": EuroParams(0.5, 1.0)},
                           depth=DepthParams(0.02, 3.0))
    assert custom.params["pose"] == EuroParams(0.5, 1.0)
    assert custom.params["plane"] == DEFAULT_SIGNAL_PARAMS["plane"]
    assert custom.depth == DepthParams(0.02, 3.0)
    with pytest.raises(ValueError, match="depth accel"):
        DepthParams(0.01, 0.0)
    with pytest.raises(ValueError, match="unknown smoothing signals"):
        SignalOneEuroSmoother({"speed": EuroParams(1.0, 1.0)})
    with pytest.raises(ValueError, match="d_cutoff"):
        EuroParams(1.0, 1.0, d_cutoff=0.0)
    with pytest.raises(ValueError, match="smoothing 'kalman'"):
        make_smoother("kalman")
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroSmoother(min_cutoff=0.0)
    with pytest.raises(ValueError, match="beta"):
        OneEuroSmoother(beta=-1.0)
    # a non-increasing time stamp assumes one camera frame: still filters, no division by 0
    sm = OneEuroSmoother()
    a = _frame(np.zeros((21, 3)) + 0.5)
    sm(a, 1.0)
    out = sm(replace(a, right=replace(a.right, joints=a.right.joints + 0.001)), 1.0)
    assert np.all(np.isfinite(out.right.joints))


def _posed_frame(wrist: np.ndarray, rotvec: np.ndarray, local: np.ndarray,
                 valid: bool = True) -> FrameResult:
    """Metric right hand: hand-frame joints local (21,3) m turned by rotvec (rad) and put at
    wrist (3,) m (vertices = joints)."""
    rot = geo.axis_angle_to_matrix(rotvec)
    joints = wrist + local @ rot.T
    frame = _frame(joints, valid)
    return replace(frame, right=replace(frame.right, wrist_quat=geo.matrix_to_quat(rot)))


def _local_hand(rng: np.random.Generator) -> np.ndarray:
    """Hand-frame keypoints (21,3) m, wrist at the origin, ~10 cm across."""
    local = rng.uniform(-0.05, 0.05, (21, 3)) + np.array([0.0, 0.06, 0.0])
    local[0] = 0.0
    return local


def _jitter_mm(x: np.ndarray) -> float:
    """Mean second-difference norm (mm/frame^2) over frames of a (T, ..., 3) m series."""
    return 1e3 * float(np.mean(np.linalg.norm(x[2:] - 2 * x[1:-1] + x[:-2], axis=-1)))


def test_signal_one_euro_steadies_noisy_depth_and_follows_motion() -> None:
    """Per-signal filter: a still hand with the measured kind of noise (depth noisier than the
    image plane, orientation and finger noise) comes out at least 3x steadier than the raw
    input and than the single-coefficient filter; a hand moving at 0.5 m/s across the image
    is followed within a frame of motion (17 mm)."""
    rng = np.random.default_rng(RNG_SEED)
    local = _local_hand(rng)
    n = 120
    wrist = np.array([0.05, 0.0, 0.4])
    ray = wrist / wrist[2]
    depth_noise = rng.normal(0, 4e-3, n)  # along the ray: the noisy signal
    plane_noise = rng.normal(0, 1.5e-3, (n, 3)) * np.array([1.0, 1.0, 0.0])
    rot_noise = rng.normal(0, 0.02, (n, 3))
    pose_noise = rng.normal(0, 1.5e-3, (n, 21, 3))
    frames = [_posed_frame(wrist + depth_noise[i] * ray + plane_noise[i], rot_noise[i],
                           local + pose_noise[i]) for i in range(n)]
    raw = np.array([f.right.joints for f in frames])
    signal = SignalOneEuroSmoother()
    single = OneEuroSmoother()
    out = np.array([signal(f, i / FPS).right.joints for i, f in enumerate(frames)])
    out_single = np.array([single(f, i / FPS).right.joints for i, f in enumerate(frames)])
    settle = 15
    for series in (out, out_single, raw):
        assert np.all(np.isfinite(series))
    wrist_j = _jitter_mm(out[settle:, 0])
    assert wrist_j * 3 < _jitter_mm(raw[settle:, 0])
    assert wrist_j * 3 < _jitter_mm(out_single[settle:, 0])
    rel = out[settle:, 1:] - out[settle:, :1]
    assert _jitter_mm(rel) * 3 < _jitter_mm(raw[settle:, 1:] - raw[settle:, :1])
    # moving across the image at 0.5 m/s with the same noise: lag within one frame's motion
    speed = 0.5
    truth = [wrist + np.array([speed * i / FPS, 0.0, 0.0]) for i in range(n)]
    moving = SignalOneEuroSmoother()
    err = [np.linalg.norm(moving(_posed_frame(truth[i] + depth_noise[i] * ray + plane_noise[i],
                                              rot_noise[i], local), i / FPS).right.joints[0]
                          - truth[i]) for i in range(n)]
    assert float(np.sqrt(np.mean(np.square(err[settle:])))) < speed / FPS


def test_signal_one_euro_keeps_the_hand_whole_and_restarts_on_jump() -> None:
    """The filtered hand is one rigid hand-frame shape turned and placed (joint distances of a
    still noiseless hand are kept exactly, orientation and wrist follow a still input
    exactly); a loss or a 30 cm jump restarts the filters (the new hand passes unfiltered)."""
    rng = np.random.default_rng(RNG_SEED + 1)
    local = _local_hand(rng)
    wrist = np.array([0.0, 0.02, 0.5])
    sm = SignalOneEuroSmoother()
    first = _posed_frame(wrist, np.array([0.3, -0.2, 0.1]), local)
    for i in range(5):
        out = sm(first, i / FPS).right
    assert np.allclose(out.joints, first.right.joints, atol=1e-6)
    assert np.allclose(out.wrist_position, wrist, atol=1e-9)
    assert np.allclose(out.vertices, first.right.vertices, atol=1e-6)
    # a turned hand: the filtered output lies between, but keeps the hand's shape
    turned = _posed_frame(wrist, np.array([0.3, -0.2, 0.4]), local)
    out = sm(turned, 5 / FPS).right
    dist = lambda j: np.linalg.norm(j[:, None] - j[None], axis=-1)  # noqa: E731
    assert np.allclose(dist(out.joints), dist(first.right.joints), atol=1e-5)
    assert not np.allclose(out.joints, turned.right.joints, atol=1e-4)
    jumped = _posed_frame(wrist + np.array([0.3, 0.0, 0.0]), np.zeros(3), local)
    assert np.allclose(sm(jumped, 6 / FPS).right.joints, jumped.right.joints, atol=1e-6)
    sm(_posed_frame(wrist, np.zeros(3), local, valid=False), 7 / FPS)
    back = _posed_frame(wrist, np.array([1.0, 0.0, 0.0]), local)
    assert np.allclose(sm(back, 8 / FPS).right.joints, back.right.joints, atol=1e-6)
    sm.reset()
    assert np.allclose(sm(turned, 9 / FPS).right.joints, turned.right.joints, atol=1e-6)


def test_signal_one_euro_wrist_relative_hand() -> None:
    """A hand without metric placement (wrist at the origin) is filtered in orientation and
    pose only: its wrist stays at the origin."""
    rng = np.random.default_rng(RNG_SEED + 2)
    local = _local_hand(rng)
    sm = SignalOneEuroSmoother()
    for i in range(10):
        noise = rng.normal(0, 1e-3, (21, 3))
        noise[0] = 0.0  # the contract: a wrist-relative hand has its wrist at the origin
        frame = _posed_frame(np.zeros(3), rng.normal(0, 0.05, 3), local + noise)
        frame = replace(frame, right=replace(frame.right, metric=False,
                                             wrist_position=np.zeros(3)))
        out = sm(frame, i / FPS).right
        assert np.allclose(out.joints[0], 0.0, atol=1e-7)
        assert np.allclose(out.wrist_position, 0.0)


def test_depth_kalman_settles_a_still_depth_and_tracks_a_moving_one() -> None:
    """The depth filter's noise model: a still depth with 1.3 % noise comes out with less than
    half the noise; a depth moving at a constant 0.25 m/s is followed without lag (its
    constant-velocity model), within the noise."""
    rng = np.random.default_rng(RNG_SEED + 3)
    params = DEFAULT_DEPTH_PARAMS
    n, z0 = 150, 0.35
    noisy = z0 * (1 + rng.normal(0, params.noise_ratio, n))
    f = DepthKalman(float(noisy[0]), params)
    out = np.array([f.step(float(z), 1 / FPS) for z in noisy[1:]])
    assert np.std(out[30:] - z0) < 0.5 * np.std(noisy[30:] - z0)
    truth = z0 + 0.25 * np.arange(n) / FPS
    moving = truth * (1 + rng.normal(0, params.noise_ratio, n))
    f = DepthKalman(float(moving[0]), params)
    out = np.array([f.step(float(z), 1 / FPS) for z in moving[1:]])
    err = out[30:] - truth[31:]
    assert abs(float(np.mean(err))) < 1e-3 and np.std(err) < np.std(moving[31:] - truth[31:])


def test_depth_kalman_learns_a_noisier_hand() -> None:
    """A depth flipping +-5 mm every frame (a front end alternating between two fits) is
    learnt as noisier than the nominal model: the output zig-zag stays under a tenth of the
    input's and under 0.8 of what the nominal-noise filter lets through."""
    params = DEFAULT_DEPTH_PARAMS
    z0, amp, n = 0.35, 5e-3, 90
    flips = z0 + amp * (-1.0) ** np.arange(n)
    f = DepthKalman(float(flips[0]), params)
    out = np.array([f.step(float(z), 1 / FPS) for z in flips[1:]])
    assert f.noise2 > 2 * (params.noise_ratio * z0) ** 2
    zigzag = lambda x: float(np.mean(np.abs(np.diff(x[30:], 2))))  # noqa: E731
    assert zigzag(out) < 0.1 * zigzag(flips)
    # the same filter without the learnt noise (noise estimate frozen at the nominal)
    fixed = DepthKalman(float(flips[0]), params)
    frozen = []
    for z in flips[1:]:
        fixed.noise2 = 0.0
        frozen.append(fixed.step(float(z), 1 / FPS))
    assert zigzag(out) < 0.8 * zigzag(np.array(frozen))


def test_one_euro_speed_bound_keeps_a_refit_from_opening_the_filter() -> None:
    """A root orientation that jumps by 2.5 rad in one frame (a re-fit) counts at most as
    MAX_ANGULAR_SPEED_RAD_S: the filter takes under half of the jump in that frame and keeps
    closing on the new orientation afterwards."""
    from dir_ros.post.smoothing import MAX_ANGULAR_SPEED_RAD_S

    rng = np.random.default_rng(RNG_SEED + 4)
    local = _local_hand(rng)
    wrist = np.array([0.0, 0.0, 0.4])
    sm = SignalOneEuroSmoother()
    start = _posed_frame(wrist, np.zeros(3), local)
    for i in range(10):
        sm(start, i / FPS)
    jumped = _posed_frame(wrist, np.array([0.0, 0.0, 2.5]), local)
    angles = []
    for i in range(10, 40):
        out = sm(jumped, i / FPS).right
        angles.append(geo.matrix_to_axis_angle(geo.quat_to_matrix(out.wrist_quat))[2])
    assert MAX_ANGULAR_SPEED_RAD_S < 2.5 * FPS
    assert 0.0 < angles[0] < 0.5 * 2.5
    assert np.all(np.diff(angles) > -1e-9) and angles[-1] > angles[0]


def test_closed_form_rotations_match_scipy() -> None:
    """The closed forms used instead of scipy per call (issue 20): geometry.quat_to_matrix (one
    quaternion or a batch) and the smoother's quaternion -> axis-angle agree with scipy's
    Rotation on random quaternions, unnormalised and of both signs, and on the identity; a
    zero quaternion is refused."""
    from scipy.spatial.transform import Rotation

    from dir_ros.post.smoothing import _quat_log

    rng = np.random.default_rng(RNG_SEED)
    quats = np.vstack([rng.normal(size=(200, 4)) * rng.uniform(0.5, 2.0, (200, 1)),
                       [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, -1.0]]])
    reference = Rotation.from_quat(quats).as_matrix()
    np.testing.assert_allclose(geo.quat_to_matrix(quats), reference, atol=1e-6)
    with pytest.raises(ValueError, match="zero-norm"):
        geo.quat_to_matrix(np.zeros(4))
    for q, ref in zip(quats, reference):
        np.testing.assert_allclose(geo.quat_to_matrix(q), ref, atol=1e-6)
        unit = q / np.linalg.norm(q)
        np.testing.assert_allclose(_quat_log(unit),
                                   geo.matrix_to_axis_angle(geo.quat_to_matrix(unit)), atol=1e-5)
