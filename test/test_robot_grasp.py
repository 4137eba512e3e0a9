"""Grasp state (dir_ros.robot.grasp): distances and aperture against a hand computation, the
pinch flag's hysteresis, invalid hands, and the named synthetic poses."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dir_ros.common.results import HandsResult
from dir_ros.robot import grasp as gr
from dir_ros.robot.synthetic import synthetic_hand

DIST_TOL_M = 1e-9  # float64 arithmetic on the same numbers


def _hand(side: str, thumb_index_m: float) -> HandsResult:
    """An open synthetic hand whose thumb tip sits thumb_index_m from the index tip."""
    hand = synthetic_hand(side, "open")
    j = hand.joints.astype(np.float64)
    d = j[4] - j[8]
    j[4] = j[8] + d / np.linalg.norm(d) * thumb_index_m
    return HandsResult(**{**hand.__dict__, "joints": j})


def test_measures_equal_a_hand_computation():
    rng = np.random.default_rng(3)
    j = rng.normal(0.0, 0.05, (21, 3)) + [0.0, 0.0, 0.5]
    ti, tm, ap = gr.grasp_measures(j)
    assert abs(ti - math.dist(j[4], j[8])) <= DIST_TOL_M
    assert abs(tm - math.dist(j[4], j[12])) <= DIST_TOL_M
    palm = (j[0] + j[5] + j[9] + j[13] + j[17]) / 5
    expected = sum(math.dist(j[k], palm) for k in (4, 8, 12, 16, 20)) / 5
    assert abs(ap - expected) <= DIST_TOL_M


@pytest.mark.parametrize("side", ("left", "right"))
def test_synthetic_poses(side):
    tracker = gr.GraspTracker()
    open_ = tracker.update(synthetic_hand(side, "open"))
    assert open_.valid and not open_.pinch and open_.thumb_index_m > 0.08
    assert tracker.update(synthetic_hand(side, "pinch")).pinch
    tracker.reset()
    fist = tracker.update(synthetic_hand(side, "fist"))
    assert not fist.pinch  # the thumb lies over the fingers, far from the index tip
    assert fist.aperture_m < open_.aperture_m - 0.04


def test_pinch_hysteresis():
    tracker = gr.GraspTracker()
    enter, leave = gr.PINCH_ENTER_M, gr.PINCH_EXIT_M
    between = (enter + leave) / 2
    sequence = [(0.06, False), (between, False), (enter - 0.002, True), (between, True),
                (leave - 0.0005, True), (leave + 0.001, False), (between, False),
                (enter - 0.001, True)]
    for distance, expected in sequence:
        state = tracker.update(_hand("right", distance))
        assert abs(state.thumb_index_m - distance) < 1e-6
        assert state.pinch is expected, (distance, expected)
    # the other side keeps its own state
    assert tracker.update(_hand("left", between)).pinch is False


def test_lost_hand_reads_invalid_and_releases_the_pinch():
    tracker = gr.GraspTracker()
    assert tracker.update(_hand("left", 0.01)).pinch
    lost = tracker.update(HandsResult.invalid("left", np.zeros((1, 3), np.int64), 1))
    assert not lost.valid and not lost.pinch and math.isnan(lost.thumb_index_m)
    assert math.isnan(lost.aperture_m)
    between = (gr.PINCH_ENTER_M + gr.PINCH_EXIT_M) / 2
    assert tracker.update(_hand("left", between)).pinch is False  # starts released
    bad = _hand("left", 0.01)
    bad.joints[8] = np.nan
    assert tracker.update(bad).valid is False
    frame = tracker.update_frame([_hand("left", 0.01), _hand("right", 0.05)])
    assert frame["left"].pinch and not frame["right"].pinch


def test_thresholds_are_checked():
    with pytest.raises(ValueError, match="enter"):
        gr.GraspTracker(enter_m=0.03, exit_m=0.02)
    with pytest.raises(ValueError, match="enter"):
        gr.GraspTracker(enter_m=float("nan"))
    assert gr.PINCH_ENTER_M < gr.PINCH_EXIT_M
