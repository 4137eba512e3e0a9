#!/usr/bin/env python3
"""Point the ROS 2 Jazzy PyPI wheels' CMake export files at this interpreter.

The wheels were built under /opt/python/cp311-cp311 and their CMake exports name that
builder's Python include dir and numpy include dir. Without this rewrite, `colcon build`
of a message package that depends on other message packages fails at CMake time
(see ../shared/spec/ENVIRONMENT.md). Idempotent: a second run changes nothing.
"""
from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import numpy

# The wheel builder's paths, as they appear in the exported CMake files.
BUILDER_PY_INCLUDE = "/opt/python/cp311-cp311/include/python3.11"
BUILDER_NUMPY_INCLUDE = "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"


def main(prefix: str) -> int:
    """Rewrite every *.cmake under PREFIX/share; print how many files changed."""
    replacements = {
        BUILDER_NUMPY_INCLUDE: numpy.get_include(),
        BUILDER_PY_INCLUDE: sysconfig.get_paths()["include"],
    }
    changed = 0
    for path in Path(prefix, "share").rglob("*.cmake"):
        text = path.read_text()
        new = text
        for old, repl in replacements.items():  # numpy first: it contains the other prefix
            new = new.replace(old, repl)
        if new != text:
            path.write_text(new)
            changed += 1
    print(f"fix_ros_wheel_cmake: {changed} file(s) rewritten under {prefix}/share")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else sys.prefix))
