"""Shared test setup: keep ROS traffic on this machine and away from other test runs."""
import os

# DDS discovery stays on loopback; a domain id of its own per run avoids crosstalk with
# other ROS processes on the machine (ids 10..99 are valid on Linux for any participant count).
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))

import atexit  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import pytest  # noqa: E402

# Caches written by what the tests run (the default `runtime: auto` exports the network into
# $XDG_CACHE_HOME/dir_ros/export on the CPU) go to a folder of this run, removed at its end:
# nothing outside the repository outlives a test run, nothing of the user's is reused.
_CACHE = tempfile.mkdtemp(prefix="dir_ros_test_cache_")
os.environ["XDG_CACHE_HOME"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)

# launch.logging (imported by launch_testing's pytest plugin wherever the ROS 2 launch tools are
# installed) makes every logger created afterwards a LaunchLogger that does not propagate, so
# the records of dir_ros's loggers would never reach pytest's caplog (a root handler). The
# project's loggers are plain loggers, as in any process that does not import launch.
logging.setLoggerClass(logging.Logger)


@pytest.fixture(autouse=True)
def _propagating_project_loggers():
    """Before each test: dir_ros loggers made while launch.logging was in charge (or by a
    launch test run in this process) propagate to the root logger again."""
    if logging.getLoggerClass() is not logging.Logger:
        logging.setLoggerClass(logging.Logger)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if (name == "dir_ros" or name.startswith("dir_ros.")) and \
                isinstance(logger, logging.Logger) and type(logger) is not logging.Logger:
            logger.propagate = True
    yield


# The ROS domain of this test run (the environment's, else the pid-derived one set above).
DOMAIN_ID = int(os.environ["ROS_DOMAIN_ID"])


@pytest.fixture(scope="module")
def ctx():
    """An rclpy context on this run's ROS domain, one per test module (rclpy imported here,
    lazily: modules without ROS skip before asking for it)."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    yield context
    context.try_shutdown()


# Where the ROS 2 launch tools are installed (`make test` sets DIR_ROS_REQUIRE_LAUNCH=1 when
# `launch`, `launch_ros` and `launch_testing` import), a skipped launch test is a failure:
# the card's main command must be exercised, not silently passed over.
REQUIRE_LAUNCH_ENV = "DIR_ROS_REQUIRE_LAUNCH"
LAUNCH_TEST_MARK = "launch"  # test files with this in their name exercise ros2 launch


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skip of a launch test becomes a failure when the launch tools are required."""
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and os.environ.get(REQUIRE_LAUNCH_ENV) == "1"
            and LAUNCH_TEST_MARK in os.path.basename(str(item.fspath))):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = (f"{item.nodeid} was skipped ({reason}) although the ROS 2 launch "
                           f"tools are installed ({REQUIRE_LAUNCH_ENV}=1)")
