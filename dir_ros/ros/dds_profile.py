"""The node's Fast DDS profile (config/fastdds_node.xml), chosen before rclpy.init.

Fast DDS reads its profile file once, when the process creates its first participant, from
the environment; a ROS parameter would come too late. The package's file makes the node's
subscriptions answer a publisher's heartbeat at once, which halves the repair wait of large
fragmented camera frames (see the file's comment for the figures).
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Optional

from dir_ros.common.resources import find_resource

PROFILE = "config/fastdds_node.xml"
# The camera side's profile (a shared-memory segment that holds whole frames), used by the
# package's own camera publisher (dir_ros/ros/camera.py).
CAMERA_PROFILE = "config/fastdds_camera.xml"
# Profile-file variables of Fast DDS 2.x (ROS 2 Jazzy) and 3.x: a user's own file wins.
PROFILE_ENVS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
# ROS 2's default RMW when RMW_IMPLEMENTATION is unset (Jazzy).
DEFAULT_RMW = "rmw_fastrtps_cpp"


def profile_in_use(environ: Optional[MutableMapping[str, str]] = None) -> Optional[str]:
    """The Fast DDS profile file the environment names (first of PROFILE_ENVS), or None."""
    env = os.environ if environ is None else environ
    return next((env[name] for name in PROFILE_ENVS if env.get(name)), None)


def use_package_profile(environ: Optional[MutableMapping[str, str]] = None,
                        profile: str = PROFILE) -> Optional[Path]:
    """Point Fast DDS at the package's `profile` unless the environment names one already or
    the RMW is not Fast DDS. environ: os.environ by default. Returns the file set, or None."""
    env = os.environ if environ is None else environ
    if profile_in_use(env):
        return None
    if not (env.get("RMW_IMPLEMENTATION") or DEFAULT_RMW).startswith("rmw_fastrtps"):
        return None
    path = find_resource(profile, Path.is_file)
    if path is not None:
        for name in PROFILE_ENVS:
            env[name] = str(path)
    return path
