"""A hand keeps its size: hand_scale.hand_size and ScaleHold."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dir_ros.hand_model import BONE_PARENTS
from dir_ros.backends.landmarks.scale import ScaleHold, hand_size

RNG_SEED = 5
SETTLED = 30  # frames after which the held size is scored


def _hand(rng: np.random.Generator) -> np.ndarray:
    """Random keypoints (21,3) m with the wrist at the origin, ~10 cm across."""
    pts = rng.uniform(-0.05, 0.05, (21, 3))
    pts[0] = 0.0
    return pts


def test_hand_size_is_the_bone_sum_and_ignores_pose_and_placement() -> None:
    """hand_size = sum of the 20 bone lengths; unchanged by a rotation and a translation,
    doubled by doubling the hand."""
    rng = np.random.default_rng(RNG_SEED)
    pts = _hand(rng)
    expected = sum(np.linalg.norm(pts[c + 1] - pts[p]) for c, p in enumerate(BONE_PARENTS))
    assert hand_size(pts) == pytest.approx(expected, rel=1e-12)
    moved = pts @ Rotation.from_euler("xyz", [30, -50, 80], degrees=True).as_matrix().T + 0.4
    assert hand_size(moved) == pytest.approx(expected, rel=1e-9)
    assert hand_size(2 * pts) == pytest.approx(2 * expected, rel=1e-12)


def test_scale_hold_holds_the_running_mean_size() -> None:
    """Landmarks whose size wobbles by 3 % per frame come out at the running mean size (within
    2 % after SETTLED frames, where each frame alone is off by up to ~9 %); the shape is only
    scaled about the wrist; the other side has its own size."""
    rng = np.random.default_rng(RNG_SEED + 1)
    pts = _hand(rng)
    true = hand_size(pts)
    hold = ScaleHold()
    factors = 1.0 + rng.normal(0, 0.03, 60)
    sizes = []
    for f in factors:
        out = hold("left", pts * f + np.array([0.1, 0.0, 0.5]))
        sizes.append(hand_size(out))
        # only scaled about the wrist: directions from the wrist are kept
        rel = out[1:] - out[0]
        assert np.allclose(rel / np.linalg.norm(rel, axis=1, keepdims=True),
                           pts[1:] / np.linalg.norm(pts[1:], axis=1, keepdims=True), atol=1e-9)
        assert np.allclose(out[0], [0.1, 0.0, 0.5])
    sizes = np.array(sizes)
    assert np.max(np.abs(sizes[SETTLED:] / true - 1)) < 0.02
    assert np.max(np.abs(factors[SETTLED:] - 1)) > 0.04  # the input really wobbled
    assert np.std(np.diff(sizes[SETTLED:])) < 0.1 * np.std(np.diff(factors * true))
    assert hold.size("right") is None
    hold("right", 0.5 * pts)
    assert hold.size("right") == pytest.approx(0.5 * true)
    assert hold.size("left") == pytest.approx(np.mean(sizes[-1:]), rel=1e-9)


def test_scale_hold_ignores_outliers_resets_and_can_be_off() -> None:
    """A frame 40 % off does not move the held size (it is rescaled to it); reset(side) and
    reset() forget; disabled, landmarks pass unchanged."""
    rng = np.random.default_rng(RNG_SEED + 2)
    pts = _hand(rng)
    hold = ScaleHold()
    for _ in range(5):
        hold("right", pts)
    before = hold.size("right")
    out = hold("right", 1.4 * pts)
    assert hold.size("right") == pytest.approx(before)
    assert hand_size(out) == pytest.approx(before)
    hold.reset("right")
    assert hold.size("right") is None
    hold("right", 1.4 * pts)
    assert hold.size("right") == pytest.approx(1.4 * hand_size(pts))
    hold.reset()
    assert hold.size("right") is None
    off = ScaleHold(enabled=False)
    assert np.array_equal(off("left", 1.4 * pts), 1.4 * pts)
    assert off.size("left") is None
    with pytest.raises(ValueError, match="hold_frames"):
        ScaleHold(hold_frames=0)
