"""Where the package's data files are: the source checkout, or share/dir_ros when installed.

One lookup for every data file the core reads (configs, the open hand model, msg/*.msg),
so the source tree, a colcon install space and a pip install all behave the same.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

PACKAGE_NAME = "dir_ros"


def package_root() -> Path:
    """The source checkout root (the folder holding dir_ros/, config/, weights/, msg/)."""
    return Path(__file__).resolve().parents[2]  # <root>/dir_ros/common/resources.py


def resource_candidates(relative: Union[str, Path]) -> Iterator[Path]:
    """Places a package data path can be, most specific first: the source checkout, each
    ament prefix's share/dir_ros, the prefix above this installed module, sys.prefix."""
    rel = Path(relative)
    yield package_root() / rel
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            yield Path(prefix) / "share" / PACKAGE_NAME / rel
    # installed module: <prefix>/lib/pythonX.Y/site-packages/dir_ros/common/resources.py -> <prefix>
    for parent in Path(__file__).resolve().parents:
        yield parent / "share" / PACKAGE_NAME / rel
    yield Path(sys.prefix) / "share" / PACKAGE_NAME / rel


def find_resource(relative: Union[str, Path],
                  accept: Callable[[Path], bool] = Path.exists) -> Optional[Path]:
    """The first candidate of `relative` that `accept` takes, else None."""
    return next((c for c in resource_candidates(relative) if accept(c)), None)


def resolve_resource(path: Union[str, Path]) -> Path:
    """A user-given path: absolute or relative to the working directory when it exists
    there, else a package data path; returned unchanged when found nowhere (the caller's
    error then names it)."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute() or p.exists():
        return p
    return find_resource(p) or p
