"""What machine a figure was measured on (benchmarks print it beside their numbers)."""
from __future__ import annotations

import ctypes
import ctypes.util
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


# glibc mallopt parameters (malloc.h): M_TRIM_THRESHOLD, M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# Blocks up to this size come from the heap and stay there when freed (glibc's own cap on
# its dynamic mmap threshold is 32 MB; the release network's eager temporaries reach 75 MB).
REUSE_BLOCKS_UP_TO_BYTES = 1 << 30


def reuse_freed_memory() -> bool:
    """Make glibc keep freed large blocks for reuse instead of returning them to the OS.

    Eager CPU PyTorch allocates big temporaries on every call (oneDNN re-lays the release
    network's 75 MB attention-conv weights per call); served by fresh mmap they page-fault
    on every call, and whether they are depends on the process's allocation history (the
    released eager network took 140 or 195 ms per call on the 2-core AMD EPYC depending on
    what ran before it). A benchmark calls this first so that every runtime is timed from
    the same, fastest, allocator state. Returns False where it does not apply (not glibc).
    """
    name = ctypes.util.find_library("c")
    if platform.system() != "Linux" or not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, REUSE_BLOCKS_UP_TO_BYTES)
                    and libc.mallopt(_M_TRIM_THRESHOLD, REUSE_BLOCKS_UP_TO_BYTES))
    except (OSError, AttributeError):
        return False
