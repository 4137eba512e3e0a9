"""What the dir-ros subcommands share: the program name and the checks of output folders
(a run refuses an unwritable output before its work starts, not after it)."""
from __future__ import annotations

import os
from pathlib import Path

PROG = "dir-ros"


def existing_parent(path: Path) -> Path:
    """The nearest existing folder above path (where creating it starts)."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    return parent


def check_writable_folder(folder: Path, what: str) -> None:
    """ValueError unless folder is a folder this process may create files in."""
    if not folder.is_dir():
        raise ValueError(f"{what} {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {folder} is not writable")

