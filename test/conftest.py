"""Shared test setup: keep ROS traffic on this machine and away from other test runs."""
import os

# DDS discovery stays on loopback; a domain id of its own per run avoids crosstalk with
# other ROS processes on the machine (ids 10..99 are valid on Linux for any participant count).
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))

import pytest  # noqa: E402

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
