"""The hands_node process around the node: SIGINT / SIGTERM handling for main() (Signals),
one malloc arena for the inference thread (share_main_malloc_arena) and rcl errors as one
line (rcl_reason)."""
from __future__ import annotations

import ctypes
import ctypes.util
import re
import signal
from typing import Any, Optional

# glibc mallopt() parameter M_ARENA_MAX (<malloc.h>) and the arena count the node asks for:
# one, so the inference thread allocates from the main arena. A thread of its own arena
# (glibc's default) gets heaps that glibc trims back on every free, so each frame's buffers
# fault their pages in again: OpenVINO's network (light config, 640x480) took 3.9-5.7 ms
# longer in a worker thread than in the main thread, and 0.1-0.8 ms longer with one arena
# (issue 20; same process, blocks alternating, 2-core Xeon).
M_ARENA_MAX = -8
MALLOC_ARENAS = 1


def share_main_malloc_arena() -> bool:
    """Ask glibc for MALLOC_ARENAS malloc arena(s), so threads started afterwards (the
    inference thread) allocate like the main thread (see M_ARENA_MAX). False where the C
    library is not glibc or refuses (nothing changes there)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):  # no C library found, or not glibc's
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, MALLOC_ARENAS))

def rcl_reason(error: Exception) -> str:
    """One line from an rcl error: without the C source locations (', at /.../x.c:415')."""
    return re.sub(r",? at \S+:\d+", "", str(error)).strip()


class Signals:
    """main()'s SIGINT / SIGTERM handler. While the node starts, the first signal interrupts
    it (KeyboardInterrupt); once it runs, a signal only asks for a stop, which the spin loop
    sees within node.SPIN_SLICE_S; signals during the shutdown are counted and ignored. So a
    second Ctrl-C (a terminal signals the whole process group and `ros2 launch` forwards one
    more) can never interrupt the shutdown, and the context stays valid until the worker has
    published the frame in progress (rclpy's own handler would shut it down at once)."""

    def __init__(self) -> None:
        self.received: Optional[int] = None  # the first signal's number
        self.count = 0
        self.interrupt = True  # raise KeyboardInterrupt (startup) or only record

    def install(self) -> None:
        """Handle SIGINT and SIGTERM (main thread only; elsewhere they stay as they are)."""
        self._set(self)

    def ignore(self) -> None:
        """Ignore SIGINT and SIGTERM from now on: at the very end, so that one arriving
        while the interpreter shuts down (which restores the default action of handled
        signals, not of ignored ones) cannot kill the process (exit -2)."""
        self._set(signal.SIG_IGN)

    @staticmethod
    def _set(handler: Any) -> None:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, handler)
        except ValueError:  # not the main thread: the caller handles signals
            pass

    def __call__(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.received is None:
            self.received = signum
        if self.interrupt:
            self.interrupt = False
            raise KeyboardInterrupt
