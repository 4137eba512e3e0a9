#!/usr/bin/env bash
# Install the ROS 2 Jazzy launch and command-line tools (ros2 launch / topic / node / param /
# interface, launch_testing) into the project's venv from their Jazzy source tarball.
#
#   tools/install_ros_cli.sh VENV TARBALL
#
# Why: the ROS 2 wheels on PyPI have rclpy but no launch, launch_ros, launch_testing or
# ros2cli. A real ROS 2 install (apt) has them; the venv route gets them from their sources:
# every pure-Python package with `pip install --no-deps`, their PyPI dependencies
# (requirements/ros_cli.txt), and the two CMake packages (composition_interfaces, a message
# package launch_ros imports; launch_testing_ament_cmake) built with CMake into the venv
# prefix, which is also the ament prefix of the ROS wheels.
set -eo pipefail
venv="${1:?usage: install_ros_cli.sh VENV TARBALL}"
tarball="${2:?usage: install_ros_cli.sh VENV TARBALL}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(cd "$venv" && pwd)"
[ -f "$tarball" ] || { echo "install_ros_cli: no tarball '$tarball'" >&2; exit 2; }
py="$venv/bin/python"
pip=("$py" -m pip --disable-pip-version-check install -q)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work"

# Pure-Python packages, dependencies first (pip --no-deps does not order them; order only
# matters for readability of a failure).
python_pkgs=(
  rosidl_runtime_py/rosidl_runtime_py
  launch/launch launch/launch_xml launch/launch_yaml launch/launch_testing launch/launch_pytest
  ros2cli/ros2cli ros2cli/ros2pkg ros2cli/ros2run ros2cli/ros2node ros2cli/ros2topic
  ros2cli/ros2service ros2cli/ros2param ros2cli/ros2interface ros2cli/ros2action
  ros2cli/ros2lifecycle
  launch_ros/launch_ros launch_ros/launch_testing_ros launch_ros/ros2launch
)
log="$work/install.log"
"${pip[@]}" -r "$root/requirements/ros_cli.txt" -c "$root/requirements/core.txt" > "$log" 2>&1 \
  || { tail -30 "$log" >&2; exit 1; }
for pkg in "${python_pkgs[@]}"; do
  [ -f "$work/$pkg/setup.py" ] || { echo "install_ros_cli: '$pkg' missing in $tarball" >&2; exit 2; }
done
paths=()
for pkg in "${python_pkgs[@]}"; do paths+=("$work/$pkg"); done
# (setuptools' deprecation warnings about these setup.py files go to the log only)
"${pip[@]}" --no-deps --no-build-isolation "${paths[@]}" > "$log" 2>&1 \
  || { tail -30 "$log" >&2; exit 1; }

# CMake packages into the venv prefix (an ament prefix like /opt/ros/jazzy).
# shellcheck disable=SC1091
source "$venv/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
for pkg in rcl_interfaces/composition_interfaces launch/launch_testing_ament_cmake; do
  src="$work/$pkg"
  [ -f "$src/CMakeLists.txt" ] || { echo "install_ros_cli: '$pkg' missing in $tarball" >&2; exit 2; }
  cmake -S "$src" -B "$work/build/$(basename "$pkg")" -DCMAKE_INSTALL_PREFIX="$VIRTUAL_ENV" \
    -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$py" -Wno-dev > "$log" 2>&1 \
    || { tail -30 "$log" >&2; exit 1; }
  cmake --build "$work/build/$(basename "$pkg")" -j "$(nproc)" > "$log" 2>&1 \
    || { tail -30 "$log" >&2; exit 1; }
  cmake --install "$work/build/$(basename "$pkg")" > /dev/null
done

# The check a user would make: every tool imports and the ros2 command answers.
"$py" -c "import launch, launch_ros, launch_testing, ros2cli, composition_interfaces.srv"
"$venv/bin/ros2" --help > /dev/null
echo "install_ros_cli: ros2 launch / topic / node / param / interface and launch_testing installed into $venv"
