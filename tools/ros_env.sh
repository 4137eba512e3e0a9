#!/usr/bin/env bash
# Run a command inside the project's environment: the .venv (torch, ROS 2 Jazzy wheels) and
# the colcon install space (dir_ros.msg, tf2_msgs). Usage: tools/ros_env.sh CMD [ARGS...]
# `make setup` must have run first.
set -eo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -f "$root/.venv/bin/activate" ] || [ ! -f "$root/install/setup.bash" ]; then
  echo "ros_env.sh: environment missing; run 'make setup' first" >&2
  exit 2
fi
# shellcheck disable=SC1091
source "$root/.venv/bin/activate"
# The ROS wheels live in the venv itself: it is an ament prefix like /opt/ros/jazzy.
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
# Keep DDS discovery on this machine (tests, demo); a caller may override it.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
set +u
# shellcheck disable=SC1091
source "$root/install/setup.bash"
exec "$@"
