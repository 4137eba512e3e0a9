"""StageTimes: the node's per-stage timing window (median / mean / p90 per stage)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from dir_ros.ros.stage_timing import STAGE_PERCENTILE, StageTimes, format_stage


def _frame(times: StageTimes, **stages: float) -> None:
    for name, ms in stages.items():
        times.add(name, ms)
    times.commit()


def test_statistics_over_the_window() -> None:
    """median / mean / p90 over the frames a stage ran in; the oldest frames leave."""
    times = StageTimes(("decode", "predict"), window=4)
    for ms in (100.0, 1.0, 2.0, 3.0, 10.0):  # the first frame is pushed out by the fifth
        _frame(times, decode=ms, predict=2 * ms)
    summary = times.summary()
    window = np.array([1.0, 2.0, 3.0, 10.0])
    for name, scale in (("decode", 1.0), ("predict", 2.0)):
        median, mean, p90, n = summary[name]
        assert median == pytest.approx(np.median(scale * window))
        assert mean == pytest.approx(np.mean(scale * window))
        assert p90 == pytest.approx(np.percentile(scale * window, STAGE_PERCENTILE))
        assert n == 4
    assert times.frames == 5


def test_stages_not_run_are_left_out() -> None:
    """A stage missing from some frames counts only where it ran; one never run is absent."""
    times = StageTimes(("decode", "markers_build", "tf"))
    _frame(times, decode=1.0, markers_build=4.0)
    _frame(times, decode=3.0)
    summary = times.summary()
    assert summary["decode"][3] == 2 and summary["decode"][0] == pytest.approx(2.0)
    assert summary["markers_build"] == pytest.approx((4.0, 4.0, 4.0, 1))
    assert "tf" not in summary
    assert times.stages == ("decode", "markers_build", "tf")


def test_new_stage_in_a_later_frame() -> None:
    """A backend's own steps appear with its first result (more than the table's spare
    columns at once): earlier frames are NaN for them."""
    times = StageTimes(("decode",))
    _frame(times, decode=1.0)
    new = {f"predict_step{i}": float(i) for i in range(10)}
    _frame(times, decode=2.0, **new)
    summary = times.summary()
    assert summary["decode"][3] == 2
    for name, ms in new.items():
        assert summary[name] == pytest.approx((ms, ms, ms, 1))
    assert times.stages[:2] == ("decode", "predict_step0")


def test_same_stage_twice_sums_and_discard_forgets() -> None:
    times = StageTimes()
    times.add("publish", 1.0)
    times.add("publish", 2.5)
    times.commit()
    times.add("publish", 100.0)
    times.discard()  # a frame that failed half way
    times.add("publish", 0.5)
    times.commit()
    assert times.summary()["publish"] == pytest.approx((2.0, 2.0, 3.2, 2))  # 3.5 and 0.5


def test_lap_measures_between_calls() -> None:
    """lap() adds the time since the previous lap (or start) to its stage."""
    times = StageTimes()
    times.start()
    time.sleep(0.02)
    times.lap("a")
    times.lap("b")  # right after: far less than a
    times.commit()
    summary = times.summary()
    assert summary["a"][0] >= 20.0
    assert summary["b"][0] < summary["a"][0]


def test_empty_and_bad_window() -> None:
    assert StageTimes(("decode",)).summary() == {}
    with pytest.raises(ValueError, match="window"):
        StageTimes(window=0)


def test_format_stage() -> None:
    assert format_stage(1.234, 1.5, 2.0, 100) == "median=1.23 mean=1.50 p90=2.00 n=100"


def test_snapshot_is_independent() -> None:
    """A snapshot summarises the window as it was; later frames do not reach it."""
    times = StageTimes(("decode",), window=3)
    _frame(times, decode=1.0)
    snap = times.snapshot()
    _frame(times, decode=5.0, tf=1.0)
    assert snap.summary() == {"decode": (1.0, 1.0, 1.0, 1)}
    assert times.summary()["decode"][3] == 2 and "tf" in times.summary()


def test_values_are_one_stages_durations_over_the_window() -> None:
    """values(stage): that stage's durations in the window (what the node's latency_ms_median
    and latency_ms_max come from); skipped frames and unknown stages give nothing."""
    t = StageTimes(("total", "tf"), window=3)
    for ms in (5.0, 7.0, 9.0, 11.0):  # the first falls out of the 3-frame window
        t.add("total", ms)
        if ms != 7.0:
            t.add("tf", ms / 10)
        t.commit()
    assert sorted(t.values("total").tolist()) == [7.0, 9.0, 11.0]
    assert sorted(t.values("tf").tolist()) == pytest.approx([0.9, 1.1])
    assert t.values("markers").size == 0
    assert StageTimes(("total",)).values("total").size == 0
