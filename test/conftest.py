"""Shared test setup: keep ROS traffic on this machine and away from other test runs."""
import os

# DDS discovery stays on loopback; a domain id of its own per run avoids crosstalk with
# other ROS processes on the machine (ids 10..99 are valid on Linux for any participant count).
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
