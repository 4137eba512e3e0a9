# dir_ros: one-command environment, build, demo and tests.
#   make setup   create .venv, install pinned dependencies, build the ROS package (idempotent)
#   make test    setup if needed, then every test (core, ROS, message round trips)
#   make demo    setup if needed, then run the demo on the sample images
# Torch: TORCH_SPEC picks the build. Here the default resolves to the CPU wheel on disk; on
# a machine with an NVIDIA GPU the default PyPI wheel is the CUDA build. For a CPU-only build
# elsewhere pass the PyTorch CPU wheel index: make setup TORCH_INDEX_URL=<PyTorch CPU index>.

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
ROS_ENV := tools/ros_env.sh
# colcon builds through a folder of symlinks so that the package's CMake source directory
# does not contain .venv (CMake refuses exported include dirs, like numpy's, inside it).
WS := .ws
PKG_ITEMS := package.xml CMakeLists.txt msg dir_ros launch config weights rviz scripts test samples
STAMP := $(VENV)/.stamp
# The ROS 2 launch / CLI tools (ros2 launch, ros2 topic, launch_testing) have no PyPI wheels:
# set-up installs them from their Jazzy sources when this tarball is there (developers' and
# CI's ../shared/vendor); elsewhere set-up goes on without them (see README, "ROS 2 tools").
ROS_CLI_TARBALL ?= ../shared/vendor/ros2-jazzy-launch-cli-src.tar.gz
# Photos of `make demo`: the committed samples (plus ../shared/images where it exists).
IMAGES ?= samples $(wildcard ../shared/images)

.PHONY: setup build roscli test demo clean
setup: $(STAMP)/deps roscli build

$(STAMP)/venv:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 'setuptools<80' wheel
	mkdir -p $(STAMP) && touch $@

$(STAMP)/torch: $(STAMP)/venv
	$(PIP) install -q $(TORCH_SPEC) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	touch $@

$(STAMP)/deps: $(STAMP)/torch requirements/core.txt requirements/ros.txt requirements/detect.txt requirements/export.txt requirements/retarget.txt setup.py tools/fix_ros_wheel_cmake.py
	$(PIP) install -q -r requirements/core.txt -r requirements/ros.txt
	# MediaPipe without its declared deps (jax, opencv-contrib): see requirements/detect.txt.
	$(PIP) install -q --no-deps -r requirements/detect.txt
	# ONNX Runtime path; core/detect pins as constraints keep numpy 1.26 and protobuf 4.
	$(PIP) install -q -r requirements/export.txt -c requirements/core.txt -c requirements/detect.txt
	# Robot-hand retargeting (dex-retargeting 0.4.6, the last release for numpy < 2).
	$(PIP) install -q -r requirements/retarget.txt -c requirements/core.txt -c requirements/detect.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PY) tools/fix_ros_wheel_cmake.py $(VENV)
	touch $@

roscli: $(STAMP)/deps
	if [ -f $(STAMP)/roscli ] && [ $(STAMP)/roscli -nt tools/install_ros_cli.sh ] && \
	   [ $(STAMP)/roscli -nt requirements/ros_cli.txt ]; then :; \
	elif [ -f "$(ROS_CLI_TARBALL)" ]; then \
	  echo "setup: installing the ROS 2 launch / CLI tools from $(ROS_CLI_TARBALL)"; \
	  tools/install_ros_cli.sh $(VENV) "$(ROS_CLI_TARBALL)" && touch $(STAMP)/roscli; \
	else \
	  echo "setup: note: no $(ROS_CLI_TARBALL): ros2 launch / ros2 topic are not installed" \
	       "into .venv (an apt ROS 2 Jazzy has them; see README, 'ROS 2 tools'); the node," \
	       "demo and tests run without them"; \
	fi

build: $(STAMP)/deps
	mkdir -p $(WS)/src/dir_ros
	for item in $(PKG_ITEMS); do ln -sfn ../../../$$item $(WS)/src/dir_ros/$$item; done
	# tf2_msgs: the distro's when there is one, else the test-environment stand-in.
	if [ -d "$(VENV)/share/tf2_msgs" ] || [ -n "$$(ls -d /opt/ros/*/share/tf2_msgs 2>/dev/null)" ]; then \
	  rm -f $(WS)/src/tf2_msgs; else ln -sfn ../../tools/tf2_msgs $(WS)/src/tf2_msgs; fi
	source $(VENV)/bin/activate && \
	  export AMENT_PREFIX_PATH="$$VIRTUAL_ENV" CMAKE_PREFIX_PATH="$$VIRTUAL_ENV" && \
	  colcon --log-base log build --base-paths $(WS)/src --build-base build --install-base install \
	    --event-handlers console_direct- --cmake-args -DBUILD_TESTING=OFF \
	    -DPython3_EXECUTABLE="$$VIRTUAL_ENV/bin/python" -Wno-dev

test: setup
	# The ROS tests skip themselves where messages cannot be imported; here they must run.
	$(ROS_ENV) python -c "import rclpy, tf2_msgs.msg, dir_ros.msg"
	# Where the launch tools are installed, the launch tests must run: a skip fails the run.
	if $(ROS_ENV) python -c "import launch, launch_ros, launch_testing" 2>/dev/null; then \
	  export DIR_ROS_REQUIRE_LAUNCH=1; fi; \
	$(ROS_ENV) python -m pytest test -q -ra --durations=10

demo: setup
	$(ROS_ENV) python -m dir_ros.ros.demo $(foreach d,$(IMAGES),--images $(d)) --out out/demo

clean:
	rm -rf build install log $(WS)
