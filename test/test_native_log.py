"""dir_ros.common.native_log: MediaPipe/TFLite/absl C++ log lines stay off the console, everything
else (partial lines of progress bars too) still reaches it, and a switch shows them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dir_ros.common.native_log import SHOW_ENV, is_native_line

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "person_room.jpg"
# Lines as MediaPipe 0.10.21 printed them on the first frame of its graphs (this project's
# node, demo and dir-ros infer before the filter).
NATIVE = [
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "W0000 00:00:1796599892.157528    5529 inference_feedback_manager.cc:114] Feedback "
    "manager requires a model with a single signature inference.",
    "W0000 00:00:1796599892.191347    5528 landmark_projection_calculator.cc:186] Using "
    "NORM_RECT without IMAGE_DIMENSIONS is only supported for the square ROI.",
    "E1206 23:28:12.123456 42 calculator_graph.cc:887] an error line",
]
KEPT = [
    "[INFO] [1796599892.1] [hands_node]: ready",
    "WARNING: not a native line",
    "Info: hands found",
    "W0000 is a word here",
]


def run_child(code: str, show: bool = False) -> subprocess.CompletedProcess:
    """Run Python `code` in a child with the repository on the path; stdout and stderr
    captured as text without newline translation (a progress bar's \\r stays)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop(SHOW_ENV, None)
    if show:
        env[SHOW_ENV] = "1"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env,
                         timeout=120, cwd=ROOT)
    out.stdout, out.stderr = out.stdout.decode(), out.stderr.decode()
    return out


def test_line_patterns() -> None:
    """Exactly the native formats are recognised."""
    assert all(is_native_line(line) for line in NATIVE)
    assert not any(is_native_line(line) for line in KEPT)


WRITER = """
import os, sys, time
from dir_ros.common.native_log import quiet_native_logs
print(quiet_native_logs(), flush=True)
lines = {lines!r}
for line in lines:
    os.write(2, (line + "\\n").encode())          # as the C++ libraries write: fd 2
sys.stderr.write("bar  10%\\r"); sys.stderr.flush()  # a progress bar, no newline
sys.stderr.write("bar 100%\\n"); sys.stderr.flush()
os.write(2, b"INFO: ")                              # TFLite writes its prefix separately
time.sleep(0.05)
os.write(2, b"Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
os.write(2, b"last words before os._exit\\n")
os._exit(0)                                         # the filter still passes them on
"""


def test_filter_drops_native_lines_and_keeps_the_rest() -> None:
    """Through the filter: native lines gone, every other line and partial line intact,
    also what is written just before os._exit."""
    out = run_child(WRITER.format(lines=NATIVE + KEPT))
    assert out.stdout.strip() == "True"
    err = out.stderr
    for line in NATIVE:
        assert line not in err
    for line in KEPT + ["bar  10%\r", "bar 100%\n", "last words before os._exit"]:
        assert line in err
    assert "Created TensorFlow Lite" not in err


def test_switch_shows_native_lines() -> None:
    """DIR_ROS_NATIVE_LOGS=1 leaves fd 2 alone: the native lines are shown."""
    out = run_child(WRITER.format(lines=NATIVE + KEPT), show=True)
    assert out.stdout.strip() == "False"
    for line in NATIVE + KEPT:
        assert line in out.stderr


DETECT = """
import cv2
from dir_ros.frontend.hand_detector import HandDetector
rgb = cv2.cvtColor(cv2.imread({sample!r}), cv2.COLOR_BGR2RGB)
with HandDetector(video=False) as det:
    print(sorted(det(rgb)), flush=True)
"""


@pytest.mark.parametrize("show", [False, True])
def test_mediapipe_lines_off_the_console(show: bool) -> None:
    """The real hand front end on a sample photo: its C++ lines appear only when asked for."""
    pytest.importorskip("mediapipe")
    out = run_child(DETECT.format(sample=str(SAMPLE)), show=show)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "left" in out.stdout and "right" in out.stdout
    native = [line for line in out.stderr.splitlines() if is_native_line(line)]
    if show:
        assert native, "with the switch the native lines should be shown"
    else:
        assert native == [], native
