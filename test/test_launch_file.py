"""launch/hands.launch.py checked without ROS 2 launch installed: the file is run against
small stand-ins of the launch / launch_ros classes it uses, which record their arguments,
and its OpaqueFunction is called with a stand-in launch context.
(The real launch run is test/test_hands_launch.py, on a full ROS 2 install.)"""
from __future__ import annotations

import importlib.util
import os
import stat
import sys
import types
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_FILE = ROOT / "launch" / "hands.launch.py"
RVIZ_TEMPLATE = ROOT / "rviz" / "hands.rviz"
SHARE = str(ROOT)  # what the stand-in ament index answers: the source tree has the same layout
EXPECTED_ARGS = {"image", "camera_info", "config", "namespace", "frame_prefix", "fixed_frame",
                 "use_sim_time", "rviz", "camera", "camera_index", "video", "loop", "rate",
                 "fov_deg", "camera_calibration", "retarget", "publish_joint_tf"}
ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "person_room.jpg"


class Recorder:
    """Stand-in for any launch class: keeps its positional and keyword arguments."""

    created: list["Recorder"] = []  # every instance, in creation order (reset per test)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs
        Recorder.created.append(self)


class LaunchConfigurationStandIn(Recorder):
    """LaunchConfiguration: perform() reads the context's launch configurations."""

    def perform(self, context: "Context") -> str:
        return context.launch_configurations[self.args[0]]


class PackageNotFoundError(KeyError):
    """ament_index_python.packages.PackageNotFoundError stand-in."""


class Context:
    """The part of launch.LaunchContext the launch file uses."""

    def __init__(self, configurations: dict[str, str]) -> None:
        self.launch_configurations = configurations


def _module(name: str, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


class Loaded:
    """The launch module loaded against stand-ins, with the knobs the tests turn."""

    def __init__(self, module: types.ModuleType, classes: dict[str, type],
                 index: dict[str, Optional[str]]) -> None:
        self.module, self.classes = module, classes
        self._index = index  # what the stand-in ament index knows about rviz2
        self.ld = module.generate_launch_description()

    def set_rviz_prefix(self, prefix: Optional[str]) -> None:
        """Make the stand-in ament index find rviz2 under `prefix` (None = not installed)."""
        self._index["rviz_prefix"] = prefix

    def declared(self) -> dict[str, dict[str, Any]]:
        """Declared launch arguments: name -> keyword arguments."""
        return {e.args[0]: e.kwargs for e in self.ld.args[0]
                if isinstance(e, self.classes["DeclareLaunchArgument"])}

    def run(self, **overrides: str) -> list[Any]:
        """The actions the OpaqueFunction returns for the defaults plus `overrides`."""
        values = {name: kw["default_value"] for name, kw in self.declared().items()}
        values.update(overrides)
        opaque = [e for e in self.ld.args[0] if isinstance(e, self.classes["OpaqueFunction"])]
        assert len(opaque) == 1
        kw = opaque[0].kwargs
        Recorder.created.clear()
        return kw["function"](Context(values), *kw.get("args", ()), **kw.get("kwargs", {}))

    def nodes(self, actions: list[Any]) -> dict[str, dict[str, Any]]:
        """Node actions by executable name (its basename for a path)."""
        return {os.path.basename(n.kwargs["executable"]): n.kwargs for n in actions
                if isinstance(n, self.classes["Node"])}


@pytest.fixture()
def loaded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Loaded:
    """The launch module with stand-in launch modules; rviz2 absent from index and PATH."""
    classes: dict[str, type] = {n: type(n, (Recorder,), {}) for n in (
        "LaunchDescription", "DeclareLaunchArgument", "OpaqueFunction", "LogInfo",
        "RegisterEventHandler", "Shutdown", "OnShutdown", "Node", "ParameterValue")}
    classes["LaunchConfiguration"] = LaunchConfigurationStandIn
    state: dict[str, Optional[str]] = {"rviz_prefix": None}

    def get_package_prefix(pkg: str) -> str:
        if pkg == "rviz2" and state["rviz_prefix"]:
            return state["rviz_prefix"]
        raise PackageNotFoundError(pkg)

    stubs = {
        "launch": _module("launch", LaunchDescription=classes["LaunchDescription"]),
        "launch.actions": _module("launch.actions", **{n: classes[n] for n in (
            "DeclareLaunchArgument", "OpaqueFunction", "LogInfo", "RegisterEventHandler",
            "Shutdown")}),
        "launch.event_handlers": _module("launch.event_handlers", OnShutdown=classes["OnShutdown"]),
        "launch.substitutions": _module("launch.substitutions",
                                        LaunchConfiguration=classes["LaunchConfiguration"]),
        "launch_ros": _module("launch_ros"),
        "launch_ros.actions": _module("launch_ros.actions", Node=classes["Node"]),
        "launch_ros.parameter_descriptions": _module("launch_ros.parameter_descriptions",
                                                     ParameterValue=classes["ParameterValue"]),
        "ament_index_python": _module("ament_index_python"),
        "ament_index_python.packages": _module(
            "ament_index_python.packages", get_package_share_directory=lambda pkg: SHARE,
            get_package_prefix=get_package_prefix, PackageNotFoundError=PackageNotFoundError),
    }
    for name, mod in stubs.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setenv("PATH", str(tmp_path / "empty_path"))  # no rviz2 on PATH either
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # generated RViz configs land here
    spec = importlib.util.spec_from_file_location("hands_launch_under_test", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Loaded(module, classes, state)


def _install_fake_rviz(root: Path) -> str:
    """An ament-style prefix with an executable lib/rviz2/rviz2; returns the prefix."""
    exe = root / "lib" / "rviz2" / "rviz2"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(root)


def _shutdown_reason(node_kwargs: dict[str, Any], classes: dict[str, type]) -> str:
    """The reason of the Shutdown action the node's on_exit holds (asserts there is one)."""
    on_exit = node_kwargs["on_exit"]
    assert len(on_exit) == 1 and isinstance(on_exit[0], classes["Shutdown"])
    return on_exit[0].kwargs["reason"]


def test_declared_arguments(loaded: Loaded) -> None:
    """The arguments the README documents, with their defaults and a description each."""
    declared = loaded.declared()
    assert set(declared) == EXPECTED_ARGS
    assert declared["config"]["default_value"] == f"{SHARE}/config/hands.yaml"
    assert declared["use_sim_time"]["default_value"] == "false"
    assert declared["rviz"]["default_value"] == "false"
    assert declared["frame_prefix"]["default_value"] == ""
    assert declared["retarget"]["default_value"] == ""  # '' = the params file's value
    assert declared["publish_joint_tf"]["default_value"] == ""
    assert declared["fixed_frame"]["default_value"] == "camera_color_optical_frame"
    assert all(kw.get("description") for kw in declared.values())
    # arguments first, then the one function that starts everything
    kinds = [type(e).__name__ for e in loaded.ld.args[0]]
    assert kinds == ["DeclareLaunchArgument"] * len(EXPECTED_ARGS) + ["OpaqueFunction"]


def test_hands_node_defaults(loaded: Loaded) -> None:
    """rviz:=false: only hands_node, with namespace, params file + use_sim_time, both remaps,
    and a Shutdown of the whole launch when it exits."""
    actions = loaded.run()
    nodes = loaded.nodes(actions)
    assert set(nodes) == {"hands_node"}
    hands = nodes["hands_node"]
    assert hands["package"] == "dir_ros"
    assert hands["namespace"] == ""
    assert hands["parameters"] == [f"{SHARE}/config/hands.yaml", {"use_sim_time": False}]
    assert dict(hands["remappings"]) == {"image": "/camera/color/image_raw",
                                         "camera_info": "/camera/color/camera_info"}
    assert "hands_node" in _shutdown_reason(hands, loaded.classes)


def test_arguments_reach_the_node(loaded: Loaded) -> None:
    """namespace, topics, use_sim_time and frame_prefix (as the node parameter)."""
    actions = loaded.run(namespace="left_cam", image="cam/image", camera_info="cam/info",
                         use_sim_time="True", frame_prefix="1_", config="/tmp/p.yaml")
    hands = loaded.nodes(actions)["hands_node"]
    assert hands["namespace"] == "left_cam"
    params_file, sim, prefix = hands["parameters"]
    assert (params_file, sim) == ("/tmp/p.yaml", {"use_sim_time": True})
    value = prefix["frame_prefix"]  # kept a string: launch would read 1_ as the integer 1
    assert isinstance(value, loaded.classes["ParameterValue"])
    assert value.args == ("1_",) and value.kwargs == {"value_type": str}
    assert dict(hands["remappings"]) == {"image": "cam/image", "camera_info": "cam/info"}


def test_robot_arguments_reach_the_node(loaded: Loaded) -> None:
    """retarget and publish_joint_tf, when given, override the params file's values (as
    string parameters after it); not given, the params file's values stand."""
    actions = loaded.run(camera="none", retarget="allegro", publish_joint_tf="fingertips",
                         config="/tmp/p.yaml")
    params = loaded.nodes(actions)["hands_node"]["parameters"]
    assert params[:2] == ["/tmp/p.yaml", {"use_sim_time": False}]
    overrides = {k: v for p in params[2:] for k, v in p.items()}
    assert set(overrides) == {"retarget", "publish_joint_tf"}
    for name, value in (("retarget", "allegro"), ("publish_joint_tf", "fingertips")):
        assert isinstance(overrides[name], loaded.classes["ParameterValue"])
        assert overrides[name].args == (value,) and overrides[name].kwargs == {"value_type": str}
    # a YAML path with the {side} placeholder passes through unchanged
    actions = loaded.run(retarget="/robots/my_hand_{side}.yml")
    (extra,) = loaded.nodes(actions)["hands_node"]["parameters"][2:]
    assert extra["retarget"].args == ("/robots/my_hand_{side}.yml",)
    # beside a camera_node (video:= here; camera:=webcam needs a webcam)
    actions = loaded.run(video=str(SAMPLE), retarget="leap")
    nodes = loaded.nodes(actions)
    assert set(nodes) == {"hands_node", "camera_node"}
    assert nodes["hands_node"]["parameters"][2]["retarget"].args == ("leap",)


@pytest.mark.parametrize("name", ["rviz", "use_sim_time"])
def test_bad_boolean_refused(loaded: Loaded, name: str) -> None:
    """A boolean argument that is not true/false/1/0 stops the launch, naming it."""
    with pytest.raises(RuntimeError, match=name):
        loaded.run(**{name: "maybe"})
    assert not any(isinstance(a, loaded.classes["Node"]) for a in Recorder.created)


def test_rviz_missing_fails_before_anything_starts(loaded: Loaded) -> None:
    """rviz:=true without rviz2: one clear error and no Node action created at all (the
    launch used to start hands_node, then fail on rviz2 and leave the node orphaned)."""
    with pytest.raises(RuntimeError) as err:
        loaded.run(rviz="true")
    text = str(err.value)
    assert "rviz2" in text and "rviz:=false" in text and "Nothing was started" in text
    assert not any(isinstance(a, loaded.classes["Node"]) for a in Recorder.created)


def test_rviz_follows_topics_and_frame(loaded: Loaded, tmp_path: Path) -> None:
    """rviz:=true with rviz2 installed: RViz gets a generated config with the image topic,
    the node's marker / debug topics in its namespace and the fixed frame; both nodes shut
    the launch down on exit; the config is removed at shutdown."""
    loaded.set_rviz_prefix(_install_fake_rviz(tmp_path / "rviz_prefix"))
    actions = loaded.run(rviz="1", namespace="/left_cam/", image="cam/image",
                         fixed_frame="left_cam_optical")
    nodes = loaded.nodes(actions)
    assert set(nodes) == {"hands_node", "rviz2"}
    rviz = nodes["rviz2"]
    assert rviz["package"] == "rviz2"
    assert "RViz" in _shutdown_reason(rviz, loaded.classes)
    assert "hands_node" in _shutdown_reason(nodes["hands_node"], loaded.classes)
    assert rviz["parameters"] == [{"use_sim_time": False}]
    flag, path = rviz["arguments"]
    assert flag == "-d" and Path(path).parent == tmp_path and path.endswith(".rviz")
    config = yaml.safe_load(Path(path).read_text())
    manager = config["Visualization Manager"]
    topics = {d["Name"]: d.get("Topic", {}).get("Value") for d in manager["Displays"]}
    assert topics["Camera image"] == "/left_cam/cam/image"
    assert topics["Debug image"] == "/left_cam/hands/debug_image"
    assert topics["Hands"] == "/left_cam/hands/markers"
    assert manager["Global Options"]["Fixed Frame"] == "left_cam_optical"
    # everything else is the template's
    template = yaml.safe_load(RVIZ_TEMPLATE.read_text())
    assert [d["Class"] for d in manager["Displays"]] == [
        d["Class"] for d in template["Visualization Manager"]["Displays"]]
    assert config["Window Geometry"] == template["Window Geometry"]
    # cleanup handler registered for shutdown
    handlers = [a for a in actions if isinstance(a, loaded.classes["RegisterEventHandler"])]
    assert len(handlers) == 1
    on_shutdown = handlers[0].args[0]
    assert isinstance(on_shutdown, loaded.classes["OnShutdown"])
    on_shutdown.kwargs["on_shutdown"](None, None)
    assert not Path(path).exists()


def test_rviz_default_topics(loaded: Loaded, tmp_path: Path) -> None:
    """No namespace, absolute image topic: the shipped defaults come out."""
    loaded.set_rviz_prefix(_install_fake_rviz(tmp_path / "rviz_prefix"))
    rviz = loaded.nodes(loaded.run(rviz="true"))["rviz2"]
    manager = yaml.safe_load(Path(rviz["arguments"][1]).read_text())["Visualization Manager"]
    topics = {d["Name"]: d.get("Topic", {}).get("Value") for d in manager["Displays"]}
    assert topics["Camera image"] == "/camera/color/image_raw"
    assert topics["Hands"] == "/hands/markers"
    assert topics["Debug image"] == "/hands/debug_image"
    assert manager["Global Options"]["Fixed Frame"] == "camera_color_optical_frame"


def test_rviz_on_path_only(loaded: Loaded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """rviz2 not in the ament index but on PATH: started by its path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "rviz2"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    rviz = [n.kwargs for n in loaded.run(rviz="true") if isinstance(n, loaded.classes["Node"])
            and "rviz2" in n.kwargs["executable"]]
    assert len(rviz) == 1
    assert rviz[0]["executable"] == str(exe) and "package" not in rviz[0]


def test_template_has_the_displays_the_launch_sets() -> None:
    """rviz/hands.rviz keeps the display names / classes the generator looks for."""
    manager = yaml.safe_load(RVIZ_TEMPLATE.read_text())["Visualization Manager"]
    names = {d["Name"] for d in manager["Displays"]}
    classes = {d["Class"] for d in manager["Displays"]}
    assert {"Camera image", "Debug image"} <= names
    assert "rviz_default_plugins/MarkerArray" in classes
    assert "Fixed Frame" in manager["Global Options"]


def test_video_starts_camera_node(loaded: Loaded) -> None:
    """video:=FILE: camera_node beside hands_node in the same namespace, hands_node listening
    to the camera's topics, the source and frame as strings, both tied to the launch."""
    actions = loaded.run(video=str(SAMPLE), namespace="cam", loop="true", rate="7.5",
                         fov_deg="70", fixed_frame="my_optical")
    nodes = loaded.nodes(actions)
    assert set(nodes) == {"hands_node", "camera_node"}
    cam, hands = nodes["camera_node"], nodes["hands_node"]
    assert cam["package"] == "dir_ros" and cam["namespace"] == hands["namespace"] == "cam"
    assert dict(cam["remappings"]) == {"image_raw": "camera/image_raw",
                                       "camera_info": "camera/camera_info"}
    assert dict(hands["remappings"]) == {"image": "camera/image_raw",
                                         "camera_info": "camera/camera_info"}
    (params,) = cam["parameters"]
    assert params["source"].args == (str(SAMPLE),)
    assert params["source"].kwargs == {"value_type": str}
    assert params["frame_id"].args == ("my_optical",)
    assert (params["loop"], params["rate"], params["fov_deg"]) == (True, 7.5, 70.0)
    assert _shutdown_reason(cam, loaded.classes) == "camera_node exited"


@pytest.mark.parametrize("overrides, words", [
    ({"video": "/no/such/clip.mp4"}, "camera source '/no/such/clip.mp4': no such file"),
    ({"camera": "webcam", "camera_index": "97"}, "webcam 97: no such camera"),
    ({"camera": "webcam", "camera_index": "front"}, "camera_index:='front'"),
    ({"camera": "usb"}, "camera:='usb' is not one of none, webcam"),
    ({"camera": "webcam", "video": str(SAMPLE)}, "choose one"),
    ({"video": str(SAMPLE), "rate": "fast"}, "must be numbers"),
    ({"video": str(SAMPLE), "camera_calibration": "/no/cal.yaml"}, "calibration '/no/cal.yaml'"),
])
def test_bad_camera_source_starts_nothing(loaded: Loaded, overrides: dict, words: str) -> None:
    """A camera source that cannot be used stops the launch with one message naming it,
    before any node is created."""
    with pytest.raises(RuntimeError) as err:
        loaded.run(**overrides)
    assert words in str(err.value)
    assert not any(isinstance(a, loaded.classes["Node"]) for a in Recorder.created)
