"""Robot-hand joint commands (dir_ros.robot.retarget): dex-retargeting driven from the hand's
own fitted wrist frame, on synthetic hands of the open hand model (dir_ros.robot.synthetic).

Joint groups of both bundled robots (Allegro and LEAP, URDF names): finger f = 0, 1, 2 (the
finger next to the thumb first on the right hand) has joints 4f (abduction), 4f+1 (MCP
flexion), 4f+2 (PIP), 4f+3 (DIP); 12-15 are the thumb.
"""
from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

pytest.importorskip("dex_retargeting")

from dir_ros.common import geometry as geo  # noqa: E402
from dir_ros.common.results import HandsResult  # noqa: E402
from dir_ros.robot import retarget as rt  # noqa: E402
from dir_ros.robot.synthetic import synthetic_hand  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
URDF_DIR = REPO / "config" / "robot_hands"
CONFIG_DIR = REPO / "config" / "retarget"
ROBOTS = ("allegro", "leap")
SIDES = ("left", "right")
# Frames of a still hand before judging its pose: the optimiser starts mid-range and is pulled
# toward its previous solution, so a still hand settles over a few frames (measured: within
# 0.01 rad after 5 frames).
SETTLE_FRAMES = 10
# Open flat hand: finger flexion joints (MCP, PIP, DIP of the three fingers) within this of
# zero, the robots' straight-finger pose (measured after 10 frames: |q| <= 0.10 rad).
OPEN_TOL_RAD = 0.15
# Fist: each finger's flexion joints as fractions of their range from the lower limit
# (measured after 10 frames: MCP >= 0.26, PIP and DIP >= 0.77).
FIST_MCP_MIN_FRAC = 0.2
FIST_PIP_DIP_MIN_FRAC = 0.7
FIST_MEAN_MIN_FRAC = 0.6
# Rotation invariance: the wrist frame removes the hand's rotation (issue 22: 1e-6 rad;
# measured: bit-identical commands, the float32 inputs of the optimiser round alike).
ROTATION_TOL_RAD = 1e-6
# Pinch: the flexed index's MCP/PIP (4f+1, 4f+2 of the finger next to the thumb) flexes at
# least this much more than the same joints of the middle finger (measured >= 0.4 rad).
PINCH_MARGIN_RAD = 0.25


def _urdf_actuated_names(path: Path) -> List[str]:
    """Actuated joints of a URDF in document order, parsed here independently."""
    root = ET.parse(path).getroot()
    return [j.get("name") for j in root.findall("joint")
            if j.get("type") in ("revolute", "prismatic")]


@pytest.fixture(scope="module")
def retargeters() -> Dict[tuple, rt.Retargeter]:
    """One Retargeter per (robot, side), built once."""
    return {(robot, side): rt.Retargeter(rt.resolve_retarget_config(robot, side), side)
            for robot in ROBOTS for side in SIDES}


def _settled(r: rt.Retargeter, hand) -> np.ndarray:
    """Joint command for a still hand after SETTLE_FRAMES frames (from a reset)."""
    r.reset()
    for _ in range(SETTLE_FRAMES):
        q = r.retarget(hand.joints, hand.wrist_quat)
    return q


def _joint(r: rt.Retargeter, q: np.ndarray, number: int) -> float:
    """Value of URDF joint `number` (Allegro joint_<n>.0, LEAP '<n>')."""
    names = [f"joint_{number}.0", str(number)]
    return float(q[next(i for i, n in enumerate(r.joint_names) if n in names)])


def _frac(r: rt.Retargeter, q: np.ndarray, number: int) -> float:
    """Joint `number` as a fraction of its range from the lower limit."""
    i = next(i for i, n in enumerate(r.joint_names) if n in (f"joint_{number}.0", str(number)))
    return float((q[i] - r.lower[i]) / (r.upper[i] - r.lower[i]))


@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize("side", SIDES)
def test_joint_names_are_the_urdf_actuated_joints_in_urdf_order(retargeters, robot, side):
    r = retargeters[(robot, side)]
    urdf = URDF_DIR / f"{robot}_hand" / f"{robot}_hand_{side}.urdf"
    assert r.urdf_path.resolve() == urdf.resolve()  # left hand -> left URDF, right -> right
    assert r.joint_names == _urdf_actuated_names(urdf)
    # pinocchio's order (dex-retargeting's raw output) is another one: the map is needed
    assert r.optimizer_joint_names != r.joint_names
    assert sorted(r.optimizer_joint_names) == sorted(r.joint_names)
    q = r.retarget(*(lambda h: (h.joints, h.wrist_quat))(synthetic_hand(side, "open")))
    assert q.shape == (len(r.joint_names),)


@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize("side", SIDES)
def test_open_flat_hand_gives_the_open_pose(retargeters, robot, side):
    r = retargeters[(robot, side)]
    q = _settled(r, synthetic_hand(side, "open"))
    flex = [_joint(r, q, 4 * f + k) for f in range(3) for k in (1, 2, 3)]
    assert np.max(np.abs(flex)) < OPEN_TOL_RAD, flex
    assert np.all(np.isfinite(q)) and np.all(q >= r.lower) and np.all(q <= r.upper)


@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize("side", SIDES)
def test_fist_flexes_every_finger_toward_its_limits(retargeters, robot, side):
    r = retargeters[(robot, side)]
    q = _settled(r, synthetic_hand(side, "fist"))
    for f in range(3):
        mcp, pip, dip = (_frac(r, q, 4 * f + k) for k in (1, 2, 3))
        assert mcp >= FIST_MCP_MIN_FRAC, (f, mcp)
        assert min(pip, dip) >= FIST_PIP_DIP_MIN_FRAC, (f, pip, dip)
        assert (mcp + pip + dip) / 3 >= FIST_MEAN_MIN_FRAC, (f, mcp, pip, dip)
    assert np.all(q >= r.lower) and np.all(q <= r.upper)


@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize("side", SIDES)
def test_pinch_flexes_the_index_of_the_matching_robot_hand(retargeters, robot, side):
    """The human index drives the robot finger next to the robot's thumb: on the right
    Allegro and both LEAPs that is joints 0-3; the left Allegro URDF mirrors only its thumb,
    so there it is joints 8-11 (a left hand on the right URDF would flex the wrong finger)."""
    r = retargeters[(robot, side)]
    q = _settled(r, synthetic_hand(side, "pinch"))
    index = 2 if (robot, side) == ("allegro", "left") else 0
    flex_index = _joint(r, q, 4 * index + 1) + _joint(r, q, 4 * index + 2)
    flex_middle = _joint(r, q, 5) + _joint(r, q, 6)
    assert flex_index > flex_middle + PINCH_MARGIN_RAD, (flex_index, flex_middle)


@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize("side", SIDES)
def test_same_hand_rotated_anywhere_gives_the_same_commands(retargeters, robot, side):
    r = retargeters[(robot, side)]
    hand = synthetic_hand(side, "pinch")
    joints = hand.joints.astype(np.float64)
    r.reset()
    ref = r.retarget(joints, hand.wrist_quat)
    rng = np.random.default_rng(7)
    root = geo.quat_to_matrix(hand.wrist_quat)
    for rot in Rotation.random(6, random_state=3).as_matrix():
        moved = (joints - joints[0]) @ rot.T + rng.uniform(-0.5, 0.5, 3) + [0, 0, 1.0]
        quat = geo.matrix_to_quat(rot @ root)
        r.reset()
        q = r.retarget(moved, quat)
        assert np.max(np.abs(q - ref)) <= ROTATION_TOL_RAD
    # and a fresh retargeter agrees with the reset one
    fresh = rt.Retargeter(r.config_path, side)
    assert np.max(np.abs(fresh.retarget(joints, hand.wrist_quat) - ref)) <= ROTATION_TOL_RAD


def test_wrist_frame_is_dex_retargetings_palm_frame():
    """Input frame: x out of the palm, z toward the fingers, y toward the thumb (right) or the
    little finger (left): checked on the open flat hand, rotated arbitrarily."""
    rot = Rotation.from_euler("xyz", [30, -50, 110], degrees=True).as_matrix()
    for side in SIDES:
        hand = synthetic_hand(side, "open", rotation=rot)
        kp = rt.retarget_frame_keypoints(hand.joints, hand.wrist_quat, side)
        assert np.allclose(kp[0], 0.0, atol=1e-7)
        assert kp[12, 2] > 0.15  # middle tip ~18 cm toward +z
        thumb_side = kp[4, 1] - kp[20, 1]  # thumb tip minus little-finger tip along y
        assert (thumb_side > 0.08) if side == "right" else (thumb_side < -0.08)
        fist = rt.retarget_frame_keypoints(*(lambda h: (h.joints, h.wrist_quat))(
            synthetic_hand(side, "fist", rotation=rot)), side)
        assert fist[12, 0] > 0.02  # a curled middle tip lies palmar (+x)


def test_state_reset_and_lost_hands(retargeters):
    r = retargeters[("allegro", "right")]
    group = rt.HandRetargeters({"right": r})
    fist, open_ = synthetic_hand("right", "fist"), synthetic_hand("right", "open")
    r.reset()
    first_open = r.retarget(open_.joints, open_.wrist_quat)
    for _ in range(5):
        group.update([fist])
    warm_open = group.update([open_])["right"]
    assert np.max(np.abs(warm_open - first_open)) > 1e-3  # warm start remembers the fist
    lost = group.update([HandsResult.invalid("right", open_.faces, 1)])
    assert lost == {"right": None}
    after_loss = group.update([open_])["right"]
    assert np.max(np.abs(after_loss - first_open)) <= ROTATION_TOL_RAD  # reset on loss
    bad = synthetic_hand("right", "open")
    bad.joints[3] = np.nan
    assert group.update([bad]) == {"right": None}  # refused, not raised


def test_from_spec_none_and_both_sides():
    assert rt.HandRetargeters.from_spec("none") is None
    group = rt.HandRetargeters.from_spec("leap")
    assert set(group.retargeters) == set(SIDES)
    assert group.retargeters["left"].urdf_path.name == "leap_hand_left.urdf"
    assert group.retargeters["right"].urdf_path.name == "leap_hand_right.urdf"


def test_dexpilot_config_runs_and_resets(tmp_path):
    cfg = {"retargeting": {
        "type": "DexPilot", "urdf_path": "allegro_hand/allegro_hand_right.urdf",
        "wrist_link_name": "wrist",
        "finger_tip_link_names": ["link_15.0_tip", "link_3.0_tip", "link_7.0_tip",
                                  "link_11.0_tip"],
        "scaling_factor": 1.6, "low_pass_alpha": -1}}
    path = tmp_path / "dexpilot.yml"
    path.write_text(yaml.safe_dump(cfg))
    r = rt.Retargeter(path, "right")
    pinch = synthetic_hand("right", "pinch")
    q1 = r.retarget(pinch.joints, pinch.wrist_quat)
    assert r.type == "dexpilot" and np.all(np.isfinite(q1))
    assert np.all(q1 >= r.lower) and np.all(q1 <= r.upper)
    r.reset()
    assert np.max(np.abs(r.retarget(pinch.joints, pinch.wrist_quat) - q1)) <= ROTATION_TOL_RAD


# ---------------------------------------------------------------------------------------------
# Refused configs: one error naming the file
# ---------------------------------------------------------------------------------------------
def _bundled(robot: str = "allegro", side: str = "right") -> dict:
    return yaml.safe_load((CONFIG_DIR / f"{robot}_hand_{side}.yml").read_text())


def _write(tmp_path: Path, cfg: dict, name: str = "cfg.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_missing_yaml_is_named(tmp_path):
    path = tmp_path / "nope_{side}.yml"
    with pytest.raises(rt.RetargetConfigError, match=str(tmp_path / "nope_left.yml")):
        rt.HandRetargeters.from_spec(str(path))


def test_unreadable_yaml_is_named(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("retargeting: [unclosed\n")
    with pytest.raises(rt.RetargetConfigError, match=str(path)):
        rt.Retargeter(path, "right")
    path.write_text("just a string\n")
    with pytest.raises(rt.RetargetConfigError, match=str(path)):
        rt.Retargeter(path, "right")


def test_missing_urdf_is_named(tmp_path):
    cfg = _bundled()
    cfg["retargeting"]["urdf_path"] = "allegro_hand/no_such_hand.urdf"
    path = _write(tmp_path, cfg)
    with pytest.raises(rt.RetargetConfigError, match="no_such_hand.urdf"):
        rt.Retargeter(path, "right")


def test_unreadable_urdf_is_named(tmp_path):
    (tmp_path / "bad.urdf").write_text("<robot name='x'><link name='a'>")
    cfg = _bundled()
    cfg["retargeting"]["urdf_path"] = "bad.urdf"
    path = _write(tmp_path, cfg)
    with pytest.raises(rt.RetargetConfigError, match=str(tmp_path / "bad.urdf")):
        rt.Retargeter(path, "right", urdf_dir=tmp_path)


def test_urdf_folder_missing_is_named(tmp_path):
    with pytest.raises(rt.RetargetConfigError, match=str(tmp_path / "nowhere")):
        rt.Retargeter(CONFIG_DIR / "leap_hand_left.yml", "left", urdf_dir=tmp_path / "nowhere")


def test_config_naming_links_the_urdf_lacks_is_refused_naming_both(tmp_path):
    cfg = _bundled("leap", "left")  # LEAP link names against the Allegro URDF
    cfg["retargeting"]["urdf_path"] = "allegro_hand/allegro_hand_left.urdf"
    path = _write(tmp_path, cfg)
    with pytest.raises(rt.RetargetConfigError) as err:
        rt.Retargeter(path, "left")
    assert str(path) in str(err.value) and "allegro_hand_left.urdf" in str(err.value)
    assert "thumb_tip_head" in str(err.value)


def test_config_naming_joints_the_urdf_lacks_is_refused(tmp_path):
    cfg = _bundled()
    cfg["retargeting"]["target_joint_names"] = ["joint_0.0", "joint_99.0"]
    path = _write(tmp_path, cfg)
    with pytest.raises(rt.RetargetConfigError, match="joint_99.0") as err:
        rt.Retargeter(path, "right")
    assert str(path) in str(err.value)


@pytest.mark.parametrize("change", [{"type": "position"},
                                    {"target_link_human_indices": [[0, 0, 0, 0],
                                                                   [4, 8, 12, 21]]},
                                    {"add_dummy_free_joint": True},
                                    {"no_such_option": 3}])
def test_bad_config_values_are_refused_naming_the_file(tmp_path, change):
    cfg = _bundled()
    cfg["retargeting"].update(change)
    path = _write(tmp_path, cfg)
    with pytest.raises(rt.RetargetConfigError, match=str(path)):
        rt.Retargeter(path, "right")


def test_unknown_robot_name_is_a_missing_file():
    with pytest.raises(rt.RetargetConfigError, match="shadow"):
        rt.HandRetargeters.from_spec("shadow")


# ---------------------------------------------------------------------------------------------
# Temporary folders
# ---------------------------------------------------------------------------------------------
def test_build_leaves_no_temporary_folder(tmp_path, monkeypatch):
    """dex-retargeting's build() leaves a dex_retargeting-* folder with a URDF copy in the
    temporary directory (shown first, so this test can fail); the Retargeter leaves none."""
    from dex_retargeting.retargeting_config import RetargetingConfig

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cfg = _bundled()["retargeting"]
    cfg["urdf_path"] = str(URDF_DIR / cfg["urdf_path"])
    RetargetingConfig.from_dict(cfg).build()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert len(leftovers) == 1 and leftovers[0].startswith("dex_retargeting-")
    for p in tmp_path.iterdir():
        for f in p.iterdir():
            f.unlink()
        p.rmdir()
    rt.Retargeter(CONFIG_DIR / "allegro_hand_right.yml", "right")
    rt.HandRetargeters.from_spec("leap")
    assert list(tmp_path.iterdir()) == []
    assert tempfile.tempdir == str(tmp_path)  # the process-wide default is restored


@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize("side", SIDES)
def test_robot_base_frames_follow_the_input_frame(retargeters, robot, side):
    """The URDFs' base frames use the input frame's axes: with straight fingers (zero, clipped
    to the limits) the middle fingertip lies along +z from the wrist link and the thumb tip
    is on +y for a right hand, -y for a left one."""
    r = retargeters[(robot, side)]
    cfg = yaml.safe_load(r.config_path.read_text())["retargeting"]
    poses = r.link_poses(np.clip(np.zeros(len(r.joint_names)), r.lower, r.upper))
    wrist = poses[cfg["target_origin_link_names"][0]][:3, 3]
    thumb, middle = (poses[cfg["target_task_link_names"][k]][:3, 3] - wrist for k in (0, 2))
    assert middle[2] > 0.9 * np.linalg.norm(middle)
    assert (thumb[1] > 0.05) if side == "right" else (thumb[1] < -0.05)


def test_installed_versions_match_requirements():
    """make setup installs requirements/retarget.txt beside numpy < 2 (core.txt's pin)."""
    from importlib.metadata import version

    pins = dict(line.split("==") for line in
                (REPO / "requirements" / "retarget.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    for name in ("dex-retargeting", "pin", "nlopt", "six"):
        assert version(name) == pins[name].strip(), name
    assert version("numpy").startswith("1.")
