"""Per-stage timing of the node's frames: a running window of durations (ms) per stage,
summarised as median / mean / p90 for /diagnostics, so that the time between the camera's
stamp and the published messages can be split into transport, decode, predict, smoothing,
message building and publishing (issue 10, Speed item 3).

No ROS imports. One writer (the node's worker) and one reader (its diagnostics timer): the
caller serialises commit() and snapshot() (the node holds its lock) and summarises the
snapshot outside it; add() / lap() touch only the current frame, which only the writer uses.
"""
from __future__ import annotations

import time
import warnings
from typing import Iterable

import numpy as np

# Frames in the running window: the last 100 frames, as the node's latency window (about
# 3 s at 30 Hz, several seconds at the release network's rate).
STAGE_WINDOW = 100
STAGE_PERCENTILE = 90  # reported beside median and mean
# Growth step of the window's columns when a stage is met for the first time (a backend's
# own step names arrive with its first result).
_GROW_COLUMNS = 4


class StageTimes:
    """Durations (ms) per stage over the last `window` frames. A stage that did not run in a
    frame (markers off, no TF) is NaN there and left out of its statistics."""

    def __init__(self, stages: Iterable[str] = (), window: int = STAGE_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"stage timing window must be >= 1 frame, got {window}")
        self.window = int(window)
        self._columns: dict[str, int] = {}
        self._table = np.full((self.window, _GROW_COLUMNS), np.nan)  # (window, stages) ms
        self._frame: dict[str, float] = {}  # the frame being timed: stage -> ms
        self._frames = 0  # frames committed since start
        self._mark = time.perf_counter()  # lap() measures from here
        for stage in stages:
            self._column(stage)

    @property
    def stages(self) -> tuple[str, ...]:
        """Stage names in the order they were first declared or met."""
        return tuple(self._columns)

    @property
    def frames(self) -> int:
        """Frames committed since start."""
        return self._frames

    def _column(self, stage: str) -> int:
        """The table column of `stage`, added (NaN history) when new."""
        col = self._columns.get(stage)
        if col is None:
            col = self._columns[stage] = len(self._columns)
            if col >= self._table.shape[1]:
                grown = np.full((self.window, col + _GROW_COLUMNS), np.nan)
                grown[:, :self._table.shape[1]] = self._table
                self._table = grown
        return col

    def add(self, stage: str, ms: float) -> None:
        """Add `ms` to `stage` in the current frame (a stage met twice in a frame sums)."""
        self._frame[stage] = self._frame.get(stage, 0.0) + ms

    def start(self) -> None:
        """Start the stopwatch of lap() now."""
        self._mark = time.perf_counter()

    def lap(self, stage: str) -> None:
        """Add the time since the previous lap() (or start()) to `stage`; restart there."""
        now = time.perf_counter()
        self.add(stage, 1e3 * (now - self._mark))
        self._mark = now

    def commit(self) -> None:
        """End the current frame: its durations replace the oldest row of the window."""
        for stage in self._frame:  # first: a new stage grows the table
            self._column(stage)
        row = self._table[self._frames % self.window]
        row.fill(np.nan)
        for stage, ms in self._frame.items():
            row[self._columns[stage]] = ms
        self._frame.clear()
        self._frames += 1

    def discard(self) -> None:
        """Forget the current frame (it was not processed to the end: decode error, ...)."""
        self._frame.clear()

    def snapshot(self) -> "StageTimes":
        """A copy of the window (without the frame being timed): summarise it outside the
        lock that guards this one."""
        copy = StageTimes(window=self.window)
        copy._columns = dict(self._columns)
        copy._table = self._table.copy()
        copy._frames = self._frames
        return copy

    def values(self, stage: str) -> np.ndarray:
        """(n,) the durations (ms) of `stage` over the window, in no particular order; empty
        when it did not run."""
        col = self._columns.get(stage)
        if col is None:
            return np.zeros(0)
        column = self._table[:min(self._frames, self.window), col]
        return column[~np.isnan(column)]

    def summary(self) -> dict[str, tuple[float, float, float, int]]:
        """stage -> (median, mean, p90 in ms, frames it ran in) over the window; stages that
        did not run in any frame of the window are left out."""
        filled = self._table[:min(self._frames, self.window), :len(self._columns)]
        if filled.size == 0:
            return {}
        counts = np.count_nonzero(~np.isnan(filled), axis=0)
        with warnings.catch_warnings():  # all-NaN columns: skipped below
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(filled, axis=0)
            mean = np.nanmean(filled, axis=0)
            p90 = np.nanpercentile(filled, STAGE_PERCENTILE, axis=0)
        return {stage: (float(median[c]), float(mean[c]), float(p90[c]), int(counts[c]))
                for stage, c in self._columns.items() if counts[c]}


def format_stage(median: float, mean: float, p90: float, n: int) -> str:
    """One /diagnostics value: 'median=1.23 mean=1.30 p90=1.52 n=100' (ms, frames)."""
    return f"median={median:.2f} mean={mean:.2f} p90={p90:.2f} n={n}"
