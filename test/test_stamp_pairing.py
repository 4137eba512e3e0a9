"""StampPairer (dir_ros.ros.stamp_pairing): colour frames wait for their depth within the
stamp tolerance up to a bounded wait; pure Python, no DDS."""
from __future__ import annotations

import numpy as np
import pytest

from dir_ros.ros.stamp_pairing import DDS_HEARTBEAT_PERIOD_S, DEPTH_STALE_S, StampPairer

TOL = 0.017  # the node's default depth_stamp_tolerance
WAIT = 0.25


def _pairer(wait: float = WAIT) -> StampPairer:
    p = StampPairer(TOL, wait)
    p.add_depth(0.0, "d0", now=0.0)  # the depth stream is alive
    return p



def _replay_30hz(p: StampPairer, frames: int, lag: float) -> list:
    """Colour frames at 30 Hz from t = 1 s, each depth `lag` s after its colour, fed to `p`
    in time order; the released frames."""
    period = 1 / 30
    events = []
    for i in range(frames):
        t = 1.0 + i * period
        events += [(t, "colour", t), (t + lag, "depth", t)]
    released = []
    for now, kind, stamp in sorted(events, key=lambda e: e[0]):
        r = (p.add_colour if kind == "colour" else p.add_depth)(stamp, kind, now)
        if r is not None:
            released.append(r)
    return released

def test_depth_first_pairs_at_once() -> None:
    """A depth frame that came first waits for its colour frame (and vice versa)."""
    p = _pairer()
    assert p.add_depth(1.0, "d1", now=1.0) is None
    r = p.add_colour(1.005, "c1", now=1.01)
    assert r is not None and r.paired and r.colour == "c1" and r.depth == "d1"
    assert r.gap_s == pytest.approx(-0.005)
    assert (p.paired, p.unpaired_missing, p.unpaired_late) == (1, 0, 0)


def test_colour_waits_for_late_depth() -> None:
    """A colour frame waits until its depth arrives (80 ms later here), then leaves paired."""
    p = _pairer()
    assert p.add_colour(1.0, "c1", now=1.0) is None
    assert p.waiting == 1 and p.next_deadline() == pytest.approx(1.0 + WAIT)
    assert p.poll(now=1.05) is None
    r = p.add_depth(1.0, "d1", now=1.08)
    assert r is not None and r.paired and (r.colour, r.depth) == ("c1", "d1")
    assert p.waiting == 0 and p.paired == 1


def test_wait_is_bounded_and_late_depth_counted() -> None:
    """No depth within the wait: released unpaired when it ends; the depth arriving after
    that moves the frame from missing to late."""
    p = _pairer()
    assert p.add_colour(1.0, "c1", now=1.0) is None
    assert p.poll(now=1.0 + WAIT - 1e-3) is None
    r = p.poll(now=1.0 + WAIT)
    assert r is not None and not r.paired and r.colour == "c1"
    assert r.depth == "d0" and r.gap_s == pytest.approx(-1.0)  # the closest, for the reason
    assert (p.unpaired_missing, p.unpaired_late) == (1, 0)
    assert p.add_depth(1.0, "d1", now=1.4) is None
    assert (p.paired, p.unpaired_missing, p.unpaired_late) == (0, 0, 1)


def test_newer_paired_frame_supersedes_waiting_ones() -> None:
    """The newest released frame drops the older waiting ones (counted as superseded)."""
    p = _pairer()
    assert p.add_colour(1.0, "c1", now=1.0) is None
    assert p.add_colour(1.033, "c2", now=1.03) is None
    r = p.add_depth(1.033, "d2", now=1.05)
    assert r is not None and r.paired and r.colour == "c2"
    assert p.waiting == 0 and p.superseded == 1
    # a frame that arrives paired at once drops older waiting frames too
    assert p.add_colour(1.066, "c3", now=1.07) is None
    assert p.add_depth(1.133, "d5", now=1.09) is None  # c3's depth lost (or still coming)
    assert p.waiting == 1
    r = p.add_colour(1.133, "c5", now=1.1)
    assert r.paired and r.colour == "c5" and p.waiting == 0 and p.superseded == 2


def test_depth_lagging_more_than_a_period_still_pairs() -> None:
    """30 Hz colour, each depth 80 ms late: a waiting frame is not dropped merely because a
    newer colour frame came, so every depth still finds its colour frame (no starvation)."""
    p = _pairer()
    lag = 0.08
    released = _replay_30hz(p, 60, lag)
    assert len(released) >= 55 and all(r.paired for r in released)
    assert p.unpaired_missing == 0 and p.paired == len(released)


def test_depth_out_of_order_still_pairs() -> None:
    """DDS may deliver a repaired fragmented depth frame after its successor: the colour
    frame keeps waiting and pairs when its own depth comes; with no depth of its stamp it
    leaves at the end of its wait, naming the closest depth frame's gap."""
    p = _pairer()
    assert p.add_colour(1.0, "c1", now=1.0) is None
    assert p.add_depth(1.1, "d2", now=1.01) is None  # the next capture's depth first
    r = p.add_depth(1.0, "d1", now=1.25)  # then its own, 0.25 s late
    assert r is not None and r.paired and r.depth == "d1"
    assert p.add_colour(1.3, "c3", now=1.3) is None  # depth 100 ms off only: no pair
    p.add_depth(1.4, "d4", now=1.31)
    r = p.poll(now=1.3 + WAIT)
    assert r is not None and not r.paired and r.gap_s == pytest.approx(0.1)


def test_no_wait_without_a_depth_stream() -> None:
    """No depth frame yet (no depth camera), or none for DEPTH_STALE_S: colour frames leave
    at once, so pairing never delays the image path; wait 0 never waits either."""
    p = StampPairer(TOL, WAIT)
    r = p.add_colour(1.0, "c1", now=1.0)
    assert r is not None and not r.paired and r.depth is None
    p.add_depth(2.0, "d", now=2.0)
    assert p.add_colour(2.5, "c2", now=2.0 + DEPTH_STALE_S / 2) is None  # alive: waits
    r = p.add_colour(4.0, "c3", now=2.0 + 2 * DEPTH_STALE_S)
    assert r is not None and not r.paired and p.superseded == 1
    p = _pairer(wait=0.0)
    r = p.add_colour(1.0, "c1", now=1.0)
    assert r is not None and not r.paired


def test_a_repair_stall_is_not_a_silent_stream() -> None:
    """A reliable depth stream that lost a fragment holds every later frame until the
    writer's heartbeat brings the resend (up to DDS_HEARTBEAT_PERIOD_S): colour frames in
    that stall wait and pair when the held depth frames come in a burst (with a 2 s silence
    threshold the frame 2.2 s after the last depth left unpaired, its depth 0.27 s later)."""
    from dir_ros.ros.parameters import DEFAULT_DEPTH_WAIT_S

    assert DEPTH_STALE_S > DDS_HEARTBEAT_PERIOD_S and DEFAULT_DEPTH_WAIT_S > DDS_HEARTBEAT_PERIOD_S
    p = StampPairer(TOL, DEFAULT_DEPTH_WAIT_S)
    period = 0.25
    for k in range(4):  # a live stream, one pair every 0.25 s
        p.add_depth(k * period, f"d{k}", now=k * period + 0.01)
        assert p.add_colour(k * period, f"c{k}", now=k * period + 0.02).paired
    stall_end = 3 * period + 0.01 + DDS_HEARTBEAT_PERIOD_S  # depth 4.. held this long
    colours = range(4, 16)
    assert all(p.add_colour(k * period, f"c{k}", now=k * period) is None for k in colours
               if k * period < stall_end)
    released = [p.add_depth(k * period, f"d{k}", now=stall_end + 0.001 * k) for k in colours]
    paired = [r for r in released if r is not None]
    assert paired and all(r.paired for r in paired)
    assert p.unpaired_missing == 0 and p.unpaired_late == 0


def test_reset_forgets_state() -> None:
    p = _pairer()
    p.add_depth(1.0, "d1", now=1.0)
    assert p.add_colour(2.0, "c2", now=1.1) is None
    p.reset()
    assert p.waiting == 0 and p.next_deadline() is None and p.superseded == 1
    r = p.add_colour(1.0, "c1", now=1.2)  # d1 is gone, and the stream counts as silent
    assert r is not None and not r.paired and r.depth is None


def test_random_order_within_tolerance_all_paired() -> None:
    """Colour and depth of one capture, depth 0-80 ms after or up to 10 ms before its colour
    (the DDS test's schedule): every colour frame leaves paired."""
    rng = np.random.default_rng(0)
    p = _pairer()
    events = []
    for i in range(200):
        t = 1.0 + 0.1 * i
        arrive_c = t + rng.uniform(0.0, 0.01)
        events += [(arrive_c, "colour", t), (arrive_c + rng.uniform(-0.01, 0.08), "depth", t)]
    released = []
    for now, kind, stamp in sorted(events, key=lambda e: e[0]):
        r = (p.add_colour if kind == "colour" else p.add_depth)(stamp, kind, now)
        if r is not None:
            released.append(r)
    assert len(released) == 200 and all(r.paired for r in released)


def test_bad_settings_refused() -> None:
    with pytest.raises(ValueError, match="tolerance_s >= 0"):
        StampPairer(-1.0, WAIT)


def test_depth_lagging_many_periods_still_pairs() -> None:
    """30 Hz, every depth 0.4 s late (12 periods) within a 1 s wait: still all paired."""
    p = StampPairer(TOL, 1.0)
    p.add_depth(0.0, "d0", now=0.0)
    lag = 0.4
    released = _replay_30hz(p, 90, lag)
    assert len(released) >= 80 and all(r.paired for r in released)
    assert p.longest_wait_s == pytest.approx(lag, abs=1e-6)
