"""Transport loss estimated from the header stamps of the frames that did arrive.

A node cannot count the frames DDS never delivered, but a camera stamps its frames at a
steady rate: a gap of n camera periods between two consecutive received stamps means n - 1
frames were lost on the way. The camera's period is found from the gaps themselves: under
heavy loss the plain median gap is two or more periods (70 % loss: half of the gaps are
>= 2 periods), so a low percentile of the gaps gives a first period, each gap is divided by
its nearest whole number of those periods, and the median of the quotients is the period
(refined once more). Gaps longer than MAX_GAP_PERIODS periods are pauses of the camera (a
stream stopped and restarted, photos sent one by one), not losses; a stamp that does not
advance (reordered, repeated, a restarted bag) is skipped.

Pure Python and numpy, no ROS: the node adds each received stamp (its image callback) and
estimates once per diagnostics period.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Optional

import numpy as np

# Stamps of the last received frames the estimate covers: 10 s of a 30 Hz camera.
LOSS_WINDOW_FRAMES = 300
# Fewest stamp gaps for an estimate (fewer: none is given).
MIN_GAPS = 10
# Percentile of the gaps taken as the first guess of the camera period: the one-period gaps
# are the shortest ones and stay above this share up to ~90 % loss.
PERIOD_GUESS_PERCENTILE = 10
# A gap longer than this many periods is a pause of the camera, not a run of lost frames
# (1 s at 30 Hz).
MAX_GAP_PERIODS = 30
# Refinements of the period after the first guess (each: median of gap / its whole number
# of periods).
PERIOD_REFINEMENTS = 2


@dataclass
class LossEstimate:
    """Transport loss over the window: frames received there, frames estimated lost between
    them, lost / (lost + received), and the camera period found (s)."""

    received: int
    lost: int
    share: float
    period_s: float


class TransportLossEstimator:
    """Running estimate of the frames lost between a camera and the node (module docstring)."""

    def __init__(self, window: int = LOSS_WINDOW_FRAMES) -> None:
        if window < MIN_GAPS + 1:
            raise ValueError(f"transport loss window must be >= {MIN_GAPS + 1} frames, got "
                             f"{window}")
        self._stamps: collections.deque = collections.deque(maxlen=int(window))

    def add(self, stamp_s: float) -> None:
        """One received frame's header stamp (s)."""
        self._stamps.append(stamp_s)

    def reset(self) -> None:
        """Forget the stamps (a new stream)."""
        self._stamps.clear()

    def snapshot(self) -> "TransportLossEstimator":
        """A copy of the window: estimate it outside the lock that guards this one."""
        copy = TransportLossEstimator(self._stamps.maxlen)
        copy._stamps.extend(self._stamps)
        return copy

    def estimate(self) -> Optional[LossEstimate]:
        """The estimate over the window; None while there are fewer than MIN_GAPS advancing
        stamp gaps (too few frames, or stamps that do not advance, e.g. all zero)."""
        stamps = np.fromiter(self._stamps, np.float64, len(self._stamps))  # (n,) s
        gaps = np.diff(stamps)
        gaps = gaps[gaps > 0]  # (m,) s; reordered or repeated stamps are skipped
        if gaps.size < MIN_GAPS:
            return None
        period = camera_period(gaps)
        periods = np.rint(gaps / period)
        lost_per_gap = np.where(periods > MAX_GAP_PERIODS, 0.0, np.maximum(periods - 1.0, 0.0))
        lost = int(lost_per_gap.sum())
        received = int(stamps.size)
        return LossEstimate(received, lost, lost / (lost + received), float(period))


def camera_period(gaps: np.ndarray) -> float:
    """The camera's frame period (s) from (m,) positive stamp gaps (s) that are mostly whole
    multiples of it (see module docstring)."""
    period = float(np.percentile(gaps, PERIOD_GUESS_PERCENTILE))
    for _ in range(PERIOD_REFINEMENTS):
        multiples = np.maximum(np.rint(gaps / period), 1.0)
        period = float(np.median(gaps / multiples))
    return period
