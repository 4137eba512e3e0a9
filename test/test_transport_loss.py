"""TransportLossEstimator (dir_ros.ros.transport_loss): lost frames from the gaps of the
received header stamps; pure Python, no DDS."""
from __future__ import annotations

import numpy as np
import pytest

from dir_ros.ros.transport_loss import (LOSS_WINDOW_FRAMES, MAX_GAP_PERIODS,
                                        TransportLossEstimator, camera_period)


def _received(n: int, period: float, loss: float, seed: int, jitter: float = 0.0
              ) -> tuple[np.ndarray, int]:
    """Stamps of the frames a camera sent (n at `period` s) that survive random loss, and
    how many were lost between the first and last survivor."""
    rng = np.random.default_rng(seed)
    keep = rng.random(n) >= loss
    keep[0] = keep[-1] = True
    stamps = 100.0 + np.arange(n) * period + rng.normal(0.0, jitter * period, n)
    return stamps[keep], int((~keep).sum())


@pytest.mark.parametrize("loss", [0.0, 0.05, 0.34, 0.5, 0.7])
@pytest.mark.parametrize("period", [1 / 30, 1 / 15, 0.7])
def test_estimate_matches_true_loss(loss: float, period: float) -> None:
    stamps, lost = _received(LOSS_WINDOW_FRAMES * 2, period, loss, seed=int(loss * 100),
                             jitter=0.02)
    est = TransportLossEstimator(window=len(stamps))
    for s in stamps:
        est.add(float(s))
    e = est.estimate()
    assert e is not None and e.received == len(stamps)
    assert e.period_s == pytest.approx(period, rel=0.02)
    assert e.lost == lost  # whole periods: exact despite 2 % stamp jitter
    assert e.share == pytest.approx(lost / (lost + len(stamps)))


def test_window_and_pauses() -> None:
    """Only the last window counts; a pause longer than MAX_GAP_PERIODS is not a loss;
    stamps that go back (restarted bag) or repeat are skipped."""
    est = TransportLossEstimator(window=50)
    period = 0.1
    kept = [i for i in range(300) if i % 3 != 2]  # every third frame lost
    for i in kept:
        est.add(i * period)
    lost = (kept[-1] - kept[-50] + 1) - 50  # in the last 50 received frames
    e = est.estimate()
    assert e.received == 50 and e.lost == lost and e.share == pytest.approx(lost / (lost + 50))
    # a camera that loses exactly every other frame looks like one at half the rate (the
    # estimate's limit: nothing in the stamps tells them apart)
    est.reset()
    assert est.estimate() is None
    t = 0.0
    for i in range(40):
        t += period
        est.add(t)
    t += (MAX_GAP_PERIODS + 5) * period  # a pause
    est.add(t)
    est.add(t - 3.0)  # back in time
    est.add(t - 3.0)  # repeated
    e = est.estimate()
    assert e.lost == 0 and e.share == 0.0


def test_no_estimate_without_advancing_stamps() -> None:
    est = TransportLossEstimator()
    for _ in range(100):
        est.add(0.0)  # an unstamped camera
    assert est.estimate() is None
    with pytest.raises(ValueError, match="window"):
        TransportLossEstimator(window=3)


def test_camera_period_under_heavy_loss() -> None:
    """The plain median gap is two periods at 70 % loss; camera_period is not fooled."""
    stamps, _ = _received(1000, 0.05, 0.7, seed=3)
    gaps = np.diff(stamps)
    assert np.median(gaps) >= 0.1 - 1e-9
    assert camera_period(gaps) == pytest.approx(0.05, rel=1e-6)
