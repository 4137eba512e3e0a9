"""Colour-depth pairing by header stamp that waits for the pair (hands_node, use_depth).

The approximate-time idea of message_filters, for one colour stream (the master: every
colour frame is answered) and one depth stream: a colour frame waits until a depth frame
within `tolerance_s` of its stamp has arrived, at most `wait_s` after the colour frame
itself arrived; depth frames are kept in a short buffer, so a depth frame that arrives
first waits for its colour frame ("and vice versa"). The colour and depth of one capture
travel on two topics and arrive in either order, the depth often later on a busy machine:
a fixed short wait took the previous depth frame.

Rules (all times in seconds; stamps are header stamps, `now` a monotonic clock):
- A colour frame is released paired as soon as a depth frame within tolerance is buffered
  (at once when it already is).
- A newer colour frame that is released supersedes every older waiting one (they are
  dropped and counted, as the node's mailbox drops a replaced frame): the node always
  answers the newest frame. A waiting frame is not dropped merely because a newer one
  arrived, so a depth stream that lags by more than one frame period still pairs.
- It is released unpaired (the node then places hands by their size) when its wait ends,
  and at once when the depth stream is silent (no depth frame for `stale_s`, longer than a
  reliable stream's repair stall: no depth camera, or it stopped), so pairing never delays
  the image path of a node without a depth camera. A newer depth frame does not end the
  wait: DDS delivers a fragmented frame that needed a repair after the next one (seen: a
  depth frame 0.25 s after its colour, its successor already there); a colour frame whose
  depth was lost is superseded by the next paired one instead.
- Counted: paired, unpaired_missing (released without its depth), unpaired_late (its depth
  came after all: moved from missing to late when a depth frame within tolerance of a
  recently released unpaired frame arrives; the remedy is a longer wait), superseded; and
  the longest wait of a paired frame and the latest depth of a late one (s after its colour
  frame arrived): what a wait needs on this machine and network.

Pure Python, no ROS, not thread safe: the node calls it under its mailbox lock.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Optional

# Depth frames kept for pairing (newest last): a third of a second of a 30 Hz camera, so a
# colour frame that arrives late still finds its depth.
DEPTH_BUFFER_FRAMES = 10
# Colour frames waiting at most (oldest superseded first): more than a 60 Hz camera sends
# within the node's default 1 s wait, so no frame is dropped for the count while its depth
# can still come (a cap below wait x rate would drop every frame just before its depth
# arrives once the depth lags by more than the cap). Frames are references to messages
# already received: at 30 Hz and a 1 s wait, 30 frames, 28 MB of 640x480 rgb8.
MAX_WAITING_FRAMES = 64
# Fast DDS's default heartbeat period of a reliable writer (WriterTimes.heartbeat_period,
# 3 s): a reader asks the writer again for a lost fragment only when a heartbeat comes, so a
# reliable stream that lost a fragment stalls (later frames are held behind it, in order)
# for up to this long. Seen in test_node_depth.py on 2 busy cores: no depth frame for 2.2 s,
# then the held frames in a burst.
DDS_HEARTBEAT_PERIOD_S = 3.0
# A depth stream without a frame for this long is silent (no depth camera, or it stopped):
# colour frames are released at once. Longer than a repair stall (one heartbeat period,
# plus 1 s for the resend on busy cores) so that a stalled stream is not taken for an absent
# one (with 2 s, frames in a 2.2 s stall left unpaired and their depth came 0.27 s later),
# and longer than the frame period of slow RGB-D streams (the example sends a pair
# every 0.7 s).
DEPTH_STALE_S = DDS_HEARTBEAT_PERIOD_S + 1.0
# Unpaired releases remembered, to tell late depth frames from missing ones.
UNPAIRED_MEMORY = 30


@dataclass
class Released:
    """A colour frame leaving the pairing: its item, stamp (s), and the depth frame closest
    to that stamp (paired when within tolerance; else the closest one, for the reason)."""

    colour: Any
    stamp: float
    paired: bool
    depth: Optional[Any] = None  # the closest buffered depth item (None: none buffered)
    gap_s: Optional[float] = None  # its stamp minus the colour stamp (s)


@dataclass(eq=False)
class _Waiting:
    stamp: float
    item: Any
    deadline: float
    arrival: float


class StampPairer:
    """Pairs colour frames with depth frames by stamp (see module docstring)."""

    def __init__(self, tolerance_s: float, wait_s: float,
                 buffer_frames: int = DEPTH_BUFFER_FRAMES,
                 stale_s: float = DEPTH_STALE_S) -> None:
        if tolerance_s < 0 or wait_s < 0 or buffer_frames < 1 or stale_s <= 0:
            raise ValueError(f"pairing needs tolerance_s >= 0, wait_s >= 0, buffer_frames >= 1 "
                             f"and stale_s > 0; got {tolerance_s}, {wait_s}, {buffer_frames}, "
                             f"{stale_s}")
        self.tolerance_s = float(tolerance_s)
        self.wait_s = float(wait_s)
        self.stale_s = float(stale_s)
        self._depth: collections.deque = collections.deque(maxlen=buffer_frames)  # (stamp, item)
        self._waiting: list[_Waiting] = []  # arrival order
        self._unpaired: collections.deque = collections.deque(maxlen=UNPAIRED_MEMORY)
        self._last_depth_arrival = -float("inf")
        self.paired = 0
        self.unpaired_missing = 0
        self.unpaired_late = 0
        self.superseded = 0
        self.depth_received = 0
        self.longest_wait_s = 0.0  # colour arrival -> release, over paired frames
        self.latest_late_s = 0.0  # colour arrival -> its depth, over late frames

    def reset(self) -> None:
        """Forget buffered depth and waiting colour frames (counters are kept; the waiting
        frames count as superseded)."""
        self.superseded += len(self._waiting)
        self._waiting.clear()
        self._depth.clear()
        self._unpaired.clear()
        self._last_depth_arrival = -float("inf")

    @property
    def waiting(self) -> int:
        """Colour frames waiting for their depth."""
        return len(self._waiting)

    def next_deadline(self) -> Optional[float]:
        """The earliest time (monotonic s) a waiting frame's wait ends; None: none waits."""
        return min((w.deadline for w in self._waiting), default=None)

    # ---- inputs
    def add_colour(self, stamp: float, item: Any, now: float) -> Optional[Released]:
        """A colour frame arrived; returns it when it leaves at once (paired, or unpaired
        because waiting cannot help), else None (it waits)."""
        frame = _Waiting(float(stamp), item, now + self.wait_s, now)
        closest = self._closest(frame.stamp)
        if closest is not None and abs(closest[0]) <= self.tolerance_s:
            return self._release(frame, closest, paired=True, older_than=len(self._waiting),
                                 now=now)
        if self.wait_s <= 0 or self._silent(now):
            return self._release(frame, closest, paired=False, older_than=len(self._waiting))
        self._waiting.append(frame)
        if len(self._waiting) > MAX_WAITING_FRAMES:
            self._waiting.pop(0)
            self.superseded += 1
        return None

    def add_depth(self, stamp: float, item: Any, now: float) -> Optional[Released]:
        """A depth frame arrived; returns the newest waiting colour frame it pairs, else
        None."""
        stamp = float(stamp)
        self._depth.append((stamp, item))
        self._last_depth_arrival = now
        self.depth_received += 1
        for i, (t, arrival) in enumerate(self._unpaired):  # its colour frame left: late
            if abs(stamp - t) <= self.tolerance_s:
                del self._unpaired[i]
                self.unpaired_missing -= 1
                self.unpaired_late += 1
                self.latest_late_s = max(self.latest_late_s, now - arrival)
                break
        for i in range(len(self._waiting) - 1, -1, -1):  # newest first
            frame = self._waiting[i]
            closest = self._closest(frame.stamp)
            if closest is not None and abs(closest[0]) <= self.tolerance_s:
                return self._release(frame, closest, paired=True, older_than=i, now=now)
        return None

    def poll(self, now: float) -> Optional[Released]:
        """Release the newest waiting frame whose wait has ended (unpaired; older ended ones
        are superseded), else None."""
        ended = [i for i, w in enumerate(self._waiting) if w.deadline <= now]
        if not ended:
            return None
        i = ended[-1]
        frame = self._waiting[i]
        return self._release(frame, self._closest(frame.stamp), paired=False, older_than=i)

    # ---- internals
    def _closest(self, t: float) -> Optional[tuple[float, Any]]:
        """(stamp gap s, item) of the buffered depth frame closest to t; None: none."""
        if not self._depth:
            return None
        s, item = min(self._depth, key=lambda f: abs(f[0] - t))
        return s - t, item

    def _silent(self, now: float) -> bool:
        """True when no depth frame arrived within stale_s."""
        return now - self._last_depth_arrival > self.stale_s

    def _release(self, frame: _Waiting, closest: Optional[tuple[float, Any]], paired: bool,
                 older_than: int, now: Optional[float] = None) -> Released:
        """Take `frame` out of the waiting list (when it is there), drop the waiting frames
        before index `older_than` (superseded), count, and return it."""
        index = next((k for k, w in enumerate(self._waiting) if w is frame), None)
        if index is not None:  # a waiting frame: the ones before it are older
            del self._waiting[index]
        self.superseded += min(older_than, len(self._waiting))
        del self._waiting[:older_than]
        if paired:
            self.paired += 1
            if now is not None:
                self.longest_wait_s = max(self.longest_wait_s, now - frame.arrival)
        else:
            self.unpaired_missing += 1
            self._unpaired.append((frame.stamp, frame.arrival))
        gap, depth = closest if closest is not None else (None, None)
        return Released(frame.item, frame.stamp, paired, depth, gap)
