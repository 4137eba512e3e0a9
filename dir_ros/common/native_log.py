"""Keep MediaPipe / TFLite / absl C++ log lines off the console.

MediaPipe's graphs log from their own C++ threads straight to file descriptor 2, e.g.
``W0000 00:00:... inference_feedback_manager.cc:114] Feedback manager requires ...`` and
``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``, on the first frame of every
graph. Neither absl nor TFLite reads an environment variable for that (GLOG_minloglevel,
TF_CPP_MIN_LOG_LEVEL and ABSL_MIN_LOG_LEVEL were tried on mediapipe 0.10.21: no effect), so
the only switch is the descriptor itself: ``quiet_native_logs()`` puts a small filter
process between fd 2 and the real stderr that drops lines in those libraries' formats and
passes everything else on at once (partial lines too, so progress bars keep drawing).

A child process, not a thread: it needs no GIL, so a faulthandler dump of a hung process
and whatever is written just before ``os._exit`` or a kill still come through; it exits when
the last writer of the pipe (this process and the children that inherited fd 2) is gone.

Set ``DIR_ROS_NATIVE_LOGS=1`` to see the native lines (debugging MediaPipe itself).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

# Environment switch: 1 / true / yes = leave fd 2 alone (native log lines are shown).
SHOW_ENV = "DIR_ROS_NATIVE_LOGS"
# Lines dropped: glog / absl format "W0000 00:00:1796599892.157528    5529 file.cc:114] ...",
# absl's notice before InitializeLog, and TFLite's own "INFO: Created TensorFlow Lite ..."
# (the three kinds MediaPipe 0.10.21 prints; measured on the node, demo and dir-ros infer).
NATIVE_LINE = (r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ :\]]+:\d+\] "
               r"|WARNING: All log messages before absl::InitializeLog\(\)"
               r"|INFO: Created TensorFlow Lite )")

# The filter process: reads fd 0, writes kept text to fd 1 as soon as it arrives. A partial
# line (no newline yet) is held back only when it starts like a native line (capital I, W, E
# or F: the libraries write each line in one call, so this is rare); anything else, such as
# a progress bar redrawn with carriage returns, is written through at once. Ctrl-C and
# SIGTERM are for the parent: the filter ends when its input does.
_FILTER = r"""
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
native = re.compile(sys.argv[1].encode())
held = b""
while True:
    try:
        chunk = os.read(0, 65536)
    except InterruptedError:
        continue
    if not chunk:
        break
    data = held + chunk
    held = b""
    out = []
    for seg in re.split(rb"(?<=[\n\r])", data):
        if not seg:
            continue
        if seg[-1:] in (b"\n", b"\r"):
            if not native.match(seg):
                out.append(seg)
        elif seg[:1] in (b"I", b"W", b"E", b"F"):
            held = seg
        else:
            out.append(seg)
    if out:
        os.write(1, b"".join(out))
if held and not native.match(held):
    os.write(1, held)
"""

_lock = threading.Lock()
_filter: "subprocess.Popen[bytes] | None" = None  # the running filter process, once installed


def native_logs_shown() -> bool:
    """True when the user asked to see the native log lines (DIR_ROS_NATIVE_LOGS)."""
    return os.environ.get(SHOW_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def is_native_line(line: str) -> bool:
    """True for a line in one of the dropped native formats (see NATIVE_LINE)."""
    return re.match(NATIVE_LINE, line) is not None


def quiet_native_logs() -> bool:
    """Route fd 2 through the native-log filter, once per process; True when installed
    (now or before). Does nothing when DIR_ROS_NATIVE_LOGS is set or fd 2 is not open."""
    global _filter
    with _lock:
        if _filter is not None:
            return True
        if native_logs_shown():
            return False
        try:
            os.fstat(2)
        except OSError:
            return False
        sys.stderr.flush()
        # -I -S: no site (the ROS wheels' .pth would re-exec Python), no user paths.
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _FILTER, NATIVE_LINE],
            stdin=subprocess.PIPE, stdout=2, stderr=subprocess.DEVNULL, close_fds=True)
        assert proc.stdin is not None
        os.dup2(proc.stdin.fileno(), 2)
        # Our copy of the write end now lives on as fd 2 only; the filter sees end of input
        # when this process (and children that inherited fd 2) have exited.
        proc.stdin.close()
        _filter = proc
        return True
