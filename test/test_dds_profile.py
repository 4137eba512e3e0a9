"""hands_node's Fast DDS profile: the shipped XML says what it claims, and the node uses it
only where the environment names no profile of its own and the RMW is Fast DDS."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dir_ros.common.resources import package_root
from dir_ros.ros.dds_profile import PROFILE, PROFILE_ENVS, use_package_profile

NS = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}


def test_node_profile_answers_heartbeats_at_once() -> None:
    """The default data_reader profile sets heartbeatResponseDelay to exactly 0 s."""
    root = ET.parse(package_root() / PROFILE).getroot()
    readers = [r for r in root.findall("f:data_reader", NS)
               if r.get("is_default_profile") == "true"]
    assert len(readers) == 1
    delay = readers[0].find("f:times/f:heartbeatResponseDelay", NS)
    assert (delay.findtext("f:sec", namespaces=NS), delay.findtext("f:nanosec", namespaces=NS)) \
        == ("0", "0")
    # nothing else: the node's participant and writers keep Fast DDS's defaults
    assert [child.tag.split("}")[1] for child in root] == ["data_reader"]


def test_camera_example_profile_has_one_frame_sized_segment() -> None:
    """config/fastdds_camera.xml: one SHM transport holding four 640x480 bgr8 frames, used
    with UDPv4 in place of the built-in transports."""
    root = ET.parse(package_root() / "config/fastdds_camera.xml").getroot()
    shm = [t for t in root.iter(f"{{{NS['f']}}}transport_descriptor")
           if t.findtext("f:type", namespaces=NS) == "SHM"]
    assert [int(t.findtext("f:segment_size", namespaces=NS)) for t in shm] == [4 * 640 * 480 * 3]
    rtps = root.find("f:participant/f:rtps", NS)
    assert rtps.findtext("f:useBuiltinTransports", namespaces=NS) == "false"
    assert [t.text for t in rtps.findall("f:userTransports/f:transport_id", NS)] == \
        ["shm_frames", "udp"]


def test_unset_environment_gets_the_package_profile() -> None:
    env: dict[str, str] = {}
    path = use_package_profile(env)
    assert path is not None and path.is_file() and path.name == Path(PROFILE).name
    assert all(env[name] == str(path) for name in PROFILE_ENVS)


@pytest.mark.parametrize("name", PROFILE_ENVS)
def test_a_users_profile_wins(name: str) -> None:
    env = {name: "/my/profile.xml"}
    assert use_package_profile(env) is None
    assert env == {name: "/my/profile.xml"}


@pytest.mark.parametrize("rmw,used", [("rmw_fastrtps_cpp", True),
                                      ("rmw_fastrtps_dynamic_cpp", True),
                                      ("rmw_cyclonedds_cpp", False), ("rmw_zenoh_cpp", False)])
def test_only_fast_dds_gets_it(rmw: str, used: bool) -> None:
    env = {"RMW_IMPLEMENTATION": rmw}
    assert (use_package_profile(env) is not None) is used
    assert (PROFILE_ENVS[0] in env) is used
