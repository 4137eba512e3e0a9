"""What machine a figure was measured on (benchmarks print it beside their numbers)."""
from __future__ import annotations

import json
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


def write_figures(path: Path, figures: dict[str, Any]) -> None:
    """Write a benchmark's figures as indented JSON (folders created) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {path}")
