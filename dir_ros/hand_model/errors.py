"""Errors of loading a hand model file: one base class, each with a message naming what
was wrong (file, key or refused class)."""
from __future__ import annotations

import pickle


class HandModelError(Exception):
    """Any problem loading or validating a hand model file."""


class HandModelFileNotFoundError(HandModelError, FileNotFoundError):
    """A hand model folder or file is missing (message names it)."""

    def __str__(self) -> str:  # FileNotFoundError with one arg prints it plainly already
        return str(self.args[0]) if self.args else ""


class HandModelKeyError(HandModelError, KeyError):
    """A required key is missing from a hand model file (message names the key and file)."""

    def __str__(self) -> str:  # KeyError would print the repr() of the message
        return str(self.args[0]) if self.args else ""


class UnsafePickleError(HandModelError, pickle.UnpicklingError):
    """The pickle references a class outside the allow-list (message names module.class)."""
