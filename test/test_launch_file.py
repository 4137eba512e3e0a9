"""launch/hands.launch.py checked without ROS 2 launch installed: the file is run against
small stand-ins of the launch / launch_ros classes it uses, which record their arguments.
(The real launch run is test/test_hands_launch.py, on a full ROS 2 install.)"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

LAUNCH_FILE = Path(__file__).resolve().parent.parent / "launch" / "hands.launch.py"
SHARE = "/opt/share/dir_ros"  # what the stand-in ament index answers


class Recorder:
    """Stand-in for any launch class: keeps its positional and keyword arguments."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


@pytest.fixture()
def description(monkeypatch):
    """The LaunchDescription the file builds, with stand-in launch modules."""
    classes = {n: type(n, (Recorder,), {}) for n in (
        "LaunchDescription", "DeclareLaunchArgument", "IfCondition", "LaunchConfiguration",
        "Node", "ParameterValue")}
    stubs = {
        "launch": _module("launch", LaunchDescription=classes["LaunchDescription"]),
        "launch.actions": _module("launch.actions", DeclareLaunchArgument=classes["DeclareLaunchArgument"]),
        "launch.conditions": _module("launch.conditions", IfCondition=classes["IfCondition"]),
        "launch.substitutions": _module("launch.substitutions",
                                        LaunchConfiguration=classes["LaunchConfiguration"]),
        "launch_ros": _module("launch_ros"),
        "launch_ros.actions": _module("launch_ros.actions", Node=classes["Node"]),
        "launch_ros.parameter_descriptions": _module("launch_ros.parameter_descriptions",
                                                     ParameterValue=classes["ParameterValue"]),
        "ament_index_python": _module("ament_index_python"),
        "ament_index_python.packages": _module("ament_index_python.packages",
                                               get_package_share_directory=lambda pkg: SHARE),
    }
    for name, mod in stubs.items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("hands_launch_under_test", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description(), classes


def _config_name(value) -> str:
    """The launch-configuration name behind a LaunchConfiguration stand-in."""
    return value.args[0]


def test_declared_arguments(description) -> None:
    """The arguments the README documents, with their defaults."""
    ld, classes = description
    entities = ld.args[0]
    declared = {e.args[0]: e.kwargs for e in entities if isinstance(e, classes["DeclareLaunchArgument"])}
    assert set(declared) == {"image", "camera_info", "config", "namespace", "use_sim_time", "rviz"}
    assert declared["config"]["default_value"] == f"{SHARE}/config/hands.yaml"
    assert declared["use_sim_time"]["default_value"] == "false"
    assert declared["rviz"]["default_value"] == "false"
    assert all(kw.get("description") for kw in declared.values())


def test_hands_node_and_rviz(description) -> None:
    """hands_node: executable, namespace, params file + use_sim_time, both topic remaps;
    RViz: only when rviz:=true, with the shipped config."""
    ld, classes = description
    nodes = {n.kwargs["executable"]: n.kwargs for n in ld.args[0] if isinstance(n, classes["Node"])}
    hands = nodes["hands_node"]
    assert hands["package"] == "dir_ros"
    assert _config_name(hands["namespace"]) == "namespace"
    params_file, sim = hands["parameters"]
    assert _config_name(params_file) == "config"
    assert _config_name(sim["use_sim_time"].args[0]) == "use_sim_time"
    remaps = {src: _config_name(dst) for src, dst in hands["remappings"]}
    assert remaps == {"image": "image", "camera_info": "camera_info"}
    rviz = nodes["rviz2"]
    assert rviz["arguments"] == ["-d", f"{SHARE}/rviz/hands.rviz"]
    assert _config_name(rviz["condition"].args[0]) == "rviz"
