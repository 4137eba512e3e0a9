"""The pinned test runner works beside ROS 2 Jazzy's launch_testing pytest plugin."""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE_REQUIREMENTS = REPO / "requirements" / "core.txt"
# pytest majors whose hook specs still accept the legacy py.path `path` hook argument that
# Jazzy's launch_testing plugin declares (removed in pytest 9.0).
ACCEPTED_PYTEST_MAJORS = (7, 8)


def _pinned_pytest() -> str:
    """The version requirements/core.txt pins pytest to."""
    pins = re.findall(r"^pytest==(\S+)\s*$", CORE_REQUIREMENTS.read_text(), re.MULTILINE)
    assert len(pins) == 1, f"expected one 'pytest==' pin in {CORE_REQUIREMENTS}, got {pins}"
    return pins[0]


def test_pinned_pytest_is_one_launch_testing_accepts() -> None:
    assert int(_pinned_pytest().split(".")[0]) in ACCEPTED_PYTEST_MAJORS


class _LaunchTestingLikePlugin:
    """The hook signature of Jazzy's launch_testing pytest plugin (legacy `path` argument)."""

    def pytest_pycollect_makemodule(self, path: Any, parent: Any) -> None:
        """Collect nothing: only the signature matters here."""
        return None


def test_running_pytest_accepts_launch_testing_hook_signature(
        request: pytest.FixtureRequest) -> None:
    """Registering a plugin whose hookimpl asks for `path` must validate (pytest 9 raises
    PluginValidationError, which stops every test run where apt ROS is installed)."""
    manager = request.config.pluginmanager
    plugin = _LaunchTestingLikePlugin()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytest 8 warns that `path` is deprecated
        manager.register(plugin, name="launch_testing_like")
    try:
        assert manager.is_registered(plugin)
    finally:
        manager.unregister(plugin)


def test_installed_pytest_matches_the_pin() -> None:
    """The environment runs the pinned version (make setup installs requirements/core.txt)."""
    assert pytest.__version__ == _pinned_pytest()
