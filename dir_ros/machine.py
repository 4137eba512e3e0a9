"""What machine a figure was measured on (benchmarks print it beside their numbers)."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform's guess where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """CPU model, core count and Python version, for a benchmark's report."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()}
