"""hands_node in a subprocess for the demo: its parameters, the command that starts it as a
user would (`ros2 launch dir_ros hands.launch.py`, else the installed executable, else the
module), its log (read on failure) and a clean stop (SIGINT, then SIGKILL)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

TF_PREFIX = "demo/"  # node frame_prefix: TF children demo/left_wrist, demo/right_wrist
NODE_EXIT_TIMEOUT_S = 15.0  # SIGINT -> wait this long -> SIGKILL
LOG_TAIL_LINES = 25  # lines of the node log printed on failure
LAUNCH_FILE = "hands.launch.py"


def stop_process(proc: subprocess.Popen, timeout_s: float = NODE_EXIT_TIMEOUT_S) -> Optional[int]:
    """Stop a node process: SIGINT (its clean shutdown), then SIGKILL when it has not exited
    within timeout_s. Returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def node_params(params_file: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The node's ros__parameters from a hands.yaml-style file, with `overrides` applied."""
    import yaml

    from dir_ros.config import ros_params_section

    with open(params_file, encoding="utf-8") as f:
        params = ros_params_section(yaml.safe_load(f) or {})
    params.update(overrides)
    return params


def launch_command(params_yaml: Path, namespace: str) -> Optional[list[str]]:
    """`ros2 launch dir_ros hands.launch.py ...` with the demo's params and topics, when the
    ROS 2 launch tools and the installed package are there; None otherwise."""
    import shutil

    ros2 = shutil.which("ros2")
    if ros2 is None:
        return None
    try:
        import launch_ros  # noqa: F401
        from ament_index_python.packages import get_package_share_directory

        if not (Path(get_package_share_directory("dir_ros")) / "launch" / LAUNCH_FILE).is_file():
            return None
    except Exception:  # no launch_ros / package not installed: run the executable
        return None
    return [ros2, "launch", "dir_ros", LAUNCH_FILE, f"config:={params_yaml}",
            f"namespace:={namespace.strip('/')}", "image:=image", "camera_info:=camera_info",
            f"frame_prefix:={TF_PREFIX}"]


def node_command() -> list[str]:
    """The installed hands_node executable run by this Python, else the module."""
    try:
        from ament_index_python.packages import get_package_prefix

        exe = Path(get_package_prefix("dir_ros")) / "lib" / "dir_ros" / "hands_node"
        if exe.is_file():
            return [sys.executable, str(exe)]
    except Exception:  # no ament index: fall back to the module (source checkout)
        pass
    return [sys.executable, "-m", "dir_ros.ros.node"]


# ---- the node subprocess -----------------------------------------------------------------

class NodeProcess:
    """hands_node in a subprocess; stdout+stderr go to a log file read on failure."""

    def __init__(self, params_yaml: Path, namespace: str, log_path: Path,
                 use_launch: bool = True) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w", encoding="utf-8")
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
        # The node runs the same dir_ros code as this demo (a source checkout first on the
        # path; the generated dir_ros.msg is still found in the install space, extend_path).
        code_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (code_root, env.get("PYTHONPATH", "")) if p)
        cmd = launch_command(params_yaml, namespace) if use_launch else None
        self.launched = cmd is not None  # through ros2 launch (else the executable itself)
        if cmd is None:
            cmd = node_command() + ["--ros-args", "-r", f"__ns:={namespace}",
                                    "--params-file", str(params_yaml)]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL)

    def alive(self) -> bool:
        """True while the node process runs."""
        return self.proc.poll() is None

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the node's output."""
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace").rstrip("\n")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> Optional[int]:
        """SIGINT (the node's clean shutdown), then SIGKILL after NODE_EXIT_TIMEOUT_S."""
        status = stop_process(self.proc)
        if not self._log.closed:
            self._log.close()
        return status
