"""Temporal smoothing of FrameResults: exponential moving average and One-Euro filter.

Both filters blend each hand with its filtered previous state using one coefficient `a` per
hand and frame (out = a * new + (1 - a) * previous), so the mesh, joints, keypoints, pose and
shape of a hand stay consistent with each other (a mesh blended with the same weight as its
parameters is the mesh of the blended parameters to first order). The orientation is a
normalised, sign-aligned quaternion blend. A hand that is lost (invalid), changes `metric`,
changes its vertex count or jumps farther than `jump_reset_m` restarts its filter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from dir_ros.results import FrameResult, HandsResult

SMOOTHING_MODES = ("none", "ema", "one_euro")
# One-Euro defaults (Casiez et al., CHI 2012, "1 Euro filter"), chosen with
# scripts/tune_smoothing.py on synthetic 30 Hz sequences with 3 mm per-axis keypoint noise:
# the steadiest setting whose error on a hand moving at 0.5 m/s stays within 1.35x the
# unfiltered one. RMS keypoint error, unfiltered -> filtered: still hand 5.18 -> 2.69 mm,
# moving hand 5.22 -> 6.97 mm (the EMA with factor 0.5 gives 3.00 and 16.95 mm).
DEFAULT_MIN_CUTOFF_HZ = 0.25
DEFAULT_BETA = 20.0
# Cutoff of the speed estimate itself (Hz); the paper's recommended 1 Hz.
DEFAULT_D_CUTOFF_HZ = 1.0
# A wrist that moves farther than this between two frames is a new hand (re-detection, swap of
# sides), not motion to smooth: the filter restarts there (m; about a hand length).
DEFAULT_JUMP_RESET_M = 0.15
# Frame interval assumed when time stamps do not increase (s): 30 Hz camera.
FALLBACK_DT_S = 1.0 / 30.0


def _blend_hand(new: HandsResult, prev: HandsResult, a: float) -> HandsResult:
    """new blended with prev with weight a on new (one coefficient for every field)."""
    q_prev = np.where(np.dot(prev.wrist_quat, new.wrist_quat) < 0, -prev.wrist_quat,
                      prev.wrist_quat)
    quat = a * new.wrist_quat + (1 - a) * q_prev
    mix = lambda x, y: (a * x + (1 - a) * y).astype(np.float32)  # noqa: E731
    return replace(
        new, vertices=mix(new.vertices, prev.vertices), joints=mix(new.joints, prev.joints),
        wrist_position=a * new.wrist_position + (1 - a) * prev.wrist_position,
        wrist_quat=quat / np.linalg.norm(quat), pose=mix(new.pose, prev.pose),
        shape=mix(new.shape, prev.shape), keypoints_2d=mix(new.keypoints_2d, prev.keypoints_2d))


def _continues(new: HandsResult, prev: Optional[HandsResult], jump_reset_m: float) -> bool:
    """True when new is the same hand as prev and may be filtered against it."""
    if prev is None or not (new.valid and prev.valid) or prev.metric != new.metric \
            or prev.vertices.shape != new.vertices.shape:
        return False
    ref_new = new.wrist_position if new.metric else new.joints[0]
    ref_prev = prev.wrist_position if prev.metric else prev.joints[0]
    return float(np.linalg.norm(ref_new - ref_prev)) <= jump_reset_m


class EmaSmoother:
    """Exponential moving average per hand: out = a * new + (1 - a) * previous output.

    factor a in (0, 1] (1 = no smoothing); constant, so it lags moving hands as much as it
    steadies still ones (the One-Euro filter adapts).
    """

    def __init__(self, factor: float, jump_reset_m: float = DEFAULT_JUMP_RESET_M) -> None:
        if not 0.0 < factor <= 1.0:
            raise ValueError(f"smoothing factor must be in (0, 1], got {factor}")
        self.factor = factor
        self.jump_reset_m = jump_reset_m
        self._prev: dict[str, HandsResult] = {}

    def reset(self) -> None:
        """Forget the history."""
        self._prev.clear()

    def __call__(self, result: FrameResult, t: Optional[float] = None) -> FrameResult:
        """Filtered copy of result; t (s) is ignored (kept for the common call signature)."""
        hands = {}
        for h in result.hands():
            p = self._prev.get(h.side)
            if _continues(h, p, self.jump_reset_m):
                h = _blend_hand(h, p, self.factor)
            self._prev[h.side] = h
            hands[h.side] = h
        return replace(result, left=hands["left"], right=hands["right"])


def _alpha(cutoff_hz: float, dt_s: float) -> float:
    """Smoothing coefficient of a first-order low-pass at cutoff_hz sampled every dt_s."""
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt_s)


@dataclass
class _OneEuroState:
    """Filtered hand, its filtered keypoint speed (m/s) and time (s)."""

    hand: HandsResult
    speed: float
    t: float


class OneEuroSmoother:
    """One-Euro filter per hand (Casiez et al. 2012): the cutoff rises with the hand's speed,
    cutoff = min_cutoff + beta * speed, so a still hand is steady and a moving one keeps up.

    speed = filtered mean keypoint speed (m/s, camera frame; wrist-relative keypoints when
    not metric). Time comes from the caller (image stamps); a non-increasing time assumes
    FALLBACK_DT_S.
    """

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF_HZ, beta: float = DEFAULT_BETA,
                 d_cutoff: float = DEFAULT_D_CUTOFF_HZ,
                 jump_reset_m: float = DEFAULT_JUMP_RESET_M) -> None:
        for name, value in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"One-Euro {name} must be > 0 Hz, got {value}")
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"One-Euro beta must be >= 0, got {beta}")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.jump_reset_m = jump_reset_m
        self._state: dict[str, _OneEuroState] = {}

    def reset(self) -> None:
        """Forget the history."""
        self._state.clear()

    def _filter(self, h: HandsResult, t: float) -> HandsResult:
        s = self._state.get(h.side)
        if not _continues(h, None if s is None else s.hand, self.jump_reset_m):
            self._state[h.side] = _OneEuroState(h, 0.0, t)
            return h
        dt = t - s.t if t > s.t else FALLBACK_DT_S
        raw_speed = float(np.mean(np.linalg.norm(h.joints - s.hand.joints, axis=1))) / dt
        speed = s.speed + _alpha(self.d_cutoff, dt) * (raw_speed - s.speed)
        a = _alpha(self.min_cutoff + self.beta * speed, dt)
        out = _blend_hand(h, s.hand, a)
        self._state[h.side] = _OneEuroState(out, speed, t)
        return out

    def __call__(self, result: FrameResult, t: Optional[float] = None) -> FrameResult:
        """Filtered copy of result at time t (s; None = previous time + FALLBACK_DT_S)."""
        if t is None:
            last = max((s.t for s in self._state.values()), default=0.0)
            t = last + FALLBACK_DT_S
        hands = {h.side: self._filter(h, float(t)) for h in result.hands()}
        return replace(result, left=hands["left"], right=hands["right"])


Smoother = EmaSmoother | OneEuroSmoother


def make_smoother(mode: str, factor: float = 0.5, min_cutoff: float = DEFAULT_MIN_CUTOFF_HZ,
                  beta: float = DEFAULT_BETA) -> Optional[Smoother]:
    """Smoother for mode 'none' (None) | 'ema' (factor) | 'one_euro' (min_cutoff, beta)."""
    if mode == "none":
        return None
    if mode == "ema":
        return EmaSmoother(factor)
    if mode == "one_euro":
        return OneEuroSmoother(min_cutoff, beta)
    raise ValueError(f"smoothing '{mode}' is not one of {', '.join(SMOOTHING_MODES)}")
