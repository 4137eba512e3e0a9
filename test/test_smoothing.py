"""One-Euro and EMA smoothing of FrameResults."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dir_ros import geometry as geo
from dir_ros.results import FrameResult, HandsResult
from dir_ros.smoothing import EmaSmoother, OneEuroSmoother, make_smoother

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
    """make_smoother knows none/ema/one_euro and refuses bad parameters by name."""
    assert make_smoother("none") is None
    assert isinstance(make_smoother("ema", 0.3), EmaSmoother)
    assert isinstance(make_smoother("one_euro"), OneEuroSmoother)
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
