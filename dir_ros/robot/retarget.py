"""Robot-hand joint commands from a fitted hand: dex-retargeting on the hand's own wrist frame.

One ``Retargeter`` per hand side wraps one dex-retargeting optimiser (vector or DexPilot type)
built from a dex-retargeting YAML and the URDF it names. Per frame it takes the fitted hand's
21 keypoints (camera frame, metres) and the hand model's fitted root orientation (quaternion
xyzw, ``HandsResult.wrist_quat``: NOT re-estimated from three keypoints as dex-retargeting's
MediaPipe example does), expresses the keypoints in dex-retargeting's input frame and returns
the robot's joint positions in the URDF's actuated-joint order, under the URDF's joint names.

Frames (both hands, both backends):
  * Hand model root frame (dir_ros.hand_model, MANO's canonical convention, see
    tools/make_open_hand.py and test_open_hand): right hand fingers along -x, thumb side +z,
    back of the hand +y (palm -y); the left model is the right mirrored in x (fingers +x,
    thumb side +z, back +y). The fitted ``wrist_quat`` rotates this frame into the camera
    frame: keypoint - wrist = R_root @ canonical offset.
  * dex-retargeting's input frame ("MANO convention" in its code; its example reaches it with
    a wrist frame estimated from keypoints 0, 5, 9 times a fixed OPERATOR2MANO matrix per
    side): x palmar (out of the palm), z from the wrist toward the fingers, y = z cross x
    (toward the thumb on a right hand, toward the little finger on a left hand), origin at
    the wrist. The robot URDFs' base frames follow it (Allegro/LEAP at zero joints: fingers
    +z, right thumb +y, left thumb -y).
  * So keypoints_in = (joints - joints[0]) @ R_root @ HAND_TO_RETARGET_FRAME[side].T, with
    the fixed per-side rotations below (a signed permutation, derived from the axes above).
    Checked against dex-retargeting's own estimate on the open hand model's flat hand: its
    three-keypoint frame differs from this exact one by 5.5 degrees (the palm plane through
    wrist, index and middle MCP is not the model's axis plane), which is the error this
    module removes.

Joint order: dex-retargeting returns pinocchio's joint order (``SeqRetargeting.joint_names``),
which is not the URDF's (Allegro: 0-3, 12-15, 4-11); outputs are mapped by name onto the
URDF's actuated joints in document order, clipped to the URDF limits (the optimiser's bounds
are the limits widened by 1e-3 rad).

State: the optimiser warm-starts from the previous solution (and DexPilot keeps a pinch
projection flag per finger pair); ``reset()`` (called by HandRetargeters for a lost hand)
returns it to the mid-range start. ``build()`` of dex-retargeting writes a URDF copy into a
new temporary folder and never removes it: here that folder is created inside a private
temporary directory that is deleted right after the build.

Cost (benchmarks/benchmark_retarget.py, docs/figures/benchmark_retarget.json; 2-core Xeon VM
shared with other jobs, load average 4-5; samples/*.jpg, 20 frames each, landmark backend):
a warm call (the same hand on the next frame) 2.9-6.9 ms median per hand (p90 8-18 ms), the
first call of a hand 14-26 ms (the optimiser starts mid-range); for the 1.8 hands of a frame
17-19 % of the backend's frame time in the same run. Synthetic still hands settle to ~2.5 ms.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

import numpy as np
import yaml

from dir_ros.common import geometry as geo
from dir_ros.common.resources import find_resource, resolve_resource
from dir_ros.robot.joint_frames import checked_hand_pose
from dir_ros.common.results import NUM_KEYPOINTS, SIDES

LOG = logging.getLogger(__name__)

__all__ = [
    "RETARGET_CHOICES", "ROBOT_CONFIG_FILES", "DEFAULT_URDF_DIR", "HAND_TO_RETARGET_FRAME",
    "SUPPORTED_TYPES", "RetargetConfigError", "UrdfJoint", "urdf_actuated_joints",
    "urdf_link_names", "retarget_frame_keypoints", "resolve_retarget_config",
    "resolve_urdf_dir", "Retargeter", "HandRetargeters",
]

# `retarget` parameter values besides a YAML path: none (off) or a bundled robot.
RETARGET_NONE = "none"
# Bundled dex-retargeting configs (config/retarget/), one per side ({side} = left | right).
ROBOT_CONFIG_FILES: Dict[str, str] = {
    "allegro": "allegro_hand_{side}.yml",
    "leap": "leap_hand_{side}.yml",
}
RETARGET_CHOICES = (RETARGET_NONE, *ROBOT_CONFIG_FILES)
# Package data folders (source tree or share/dir_ros): the bundled configs and URDFs.
CONFIG_SUBDIR = Path("config") / "retarget"
DEFAULT_URDF_DIR = Path("config") / "robot_hands"
# A user YAML path may hold this placeholder, replaced by left / right per hand.
SIDE_PLACEHOLDER = "{side}"
# dex-retargeting optimiser types this module drives. 'position' matches absolute link
# positions in the robot's base frame (its offline mode for a free-floating hand) and is not
# offered: it needs a 6-DoF dummy root the URDF does not have.
SUPPORTED_TYPES = ("vector", "dexpilot")
# URDF joint types that carry one actuated coordinate (pinocchio: nq = 1). 'continuous' has
# nq = 2 in pinocchio (cos, sin), which dex-retargeting refuses.
ACTUATED_JOINT_TYPES = ("revolute", "prismatic")
# Link-name keys of a dex-retargeting config whose names must exist in the URDF.
_LINK_KEYS = ("target_origin_link_names", "target_task_link_names", "finger_tip_link_names",
              "target_link_names")

# Fixed rotation from the hand model's root frame to dex-retargeting's input frame, per side
# (rows: the input frame's x, y, z axes in hand-model coordinates; see the module docstring).
#   right: x palmar = -y_model, y thumb side = +z_model, z fingers = -x_model
#   left:  x palmar = -y_model, y little-finger side = -z_model, z fingers = +x_model
HAND_TO_RETARGET_FRAME: Dict[str, np.ndarray] = {
    "right": np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]]),
    "left": np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]),
}

# dex-retargeting's build() is made to write its temporary URDF copy into a private folder by
# pointing tempfile's process-wide default at it for the duration of the build: one at a time.
_BUILD_LOCK = threading.Lock()
# Its URDF reader logs a warning per mesh file it cannot resolve (the bundled URDFs ship
# without meshes: only kinematics is needed); quiet during the build.
_YOURDFPY_LOGGER = "dex_retargeting.yourdfpy"
_TEMP_PREFIX = "dir_ros_retarget-"


class RetargetConfigError(ValueError):
    """A retargeting config or URDF that cannot be used; the message names the file."""


@dataclass(frozen=True)
class UrdfJoint:
    """One actuated URDF joint: name, type and position limits (rad or m)."""

    name: str
    type: str
    lower: float
    upper: float


def _parse_xml(path: Path, what: str) -> ET.Element:
    """The root element of an XML file; RetargetConfigError naming the file otherwise."""
    if not path.is_file():
        raise RetargetConfigError(f"{what} not found: {path}")
    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise RetargetConfigError(f"{what} {path} cannot be read: {exc}") from exc


def urdf_actuated_joints(path: Union[str, Path]) -> List[UrdfJoint]:
    """The URDF's actuated joints (revolute, prismatic) in document order, with limits;
    RetargetConfigError naming the file if it is missing, unreadable, has a joint without
    limits, a continuous or floating joint, or no actuated joint at all."""
    path = Path(path)
    root = _parse_xml(path, "URDF")
    if root.tag != "robot":
        raise RetargetConfigError(f"URDF {path}: root element is <{root.tag}>, not <robot>")
    joints = []
    for el in root.iter("joint"):
        jtype, name = el.get("type", ""), el.get("name", "")
        if jtype in ("continuous", "floating", "planar"):
            raise RetargetConfigError(f"URDF {path}: joint '{name}' is {jtype} (only revolute, "
                                      "prismatic and fixed joints can be retargeted)")
        if jtype not in ACTUATED_JOINT_TYPES:
            continue
        lim = el.find("limit")
        try:
            lower, upper = float(lim.get("lower")), float(lim.get("upper"))
        except (AttributeError, TypeError, ValueError):
            raise RetargetConfigError(f"URDF {path}: joint '{name}' has no lower/upper "
                                      "limit") from None
        joints.append(UrdfJoint(name, jtype, lower, upper))
    if not joints:
        raise RetargetConfigError(f"URDF {path}: no revolute or prismatic joint")
    return joints


def urdf_link_names(path: Union[str, Path]) -> List[str]:
    """Names of the URDF's links (document order); RetargetConfigError naming the file."""
    return [el.get("name", "") for el in _parse_xml(Path(path), "URDF").iter("link")]


def retarget_frame_keypoints(joints: np.ndarray, wrist_quat: np.ndarray, side: str) -> np.ndarray:
    """(21,3) keypoints m in dex-retargeting's input frame (wrist at the origin, x palmar, z
    toward the fingers) from camera-frame keypoints (21,3) m and the hand model's root
    orientation (4,) xyzw; ValueError on a wrong shape, side or non-finite input."""
    j, q = checked_hand_pose(joints, wrist_quat, side)
    rot = geo.quat_to_matrix(q / np.linalg.norm(q))
    return (j - j[0]) @ rot @ HAND_TO_RETARGET_FRAME[side].T


def resolve_retarget_config(spec: str, side: str) -> Optional[Path]:
    """The dex-retargeting YAML for `side` that a `retarget` value names: None for 'none', the
    bundled config/retarget/ file for 'allegro' / 'leap', else the path itself ('{side}' in it
    replaced by left / right; relative paths looked up in the working directory, then the
    package data). RetargetConfigError when a bundled config is missing."""
    spec = str(spec).strip()
    if spec == RETARGET_NONE:
        return None
    if spec in ROBOT_CONFIG_FILES:
        rel = CONFIG_SUBDIR / ROBOT_CONFIG_FILES[spec].format(side=side)
        found = find_resource(rel, Path.is_file)
        if found is None:
            raise RetargetConfigError(f"retargeting config not found: {rel} (bundled with "
                                      f"'{spec}'; is the package installed completely?)")
        return found
    if not spec:
        raise RetargetConfigError(f"retarget is empty: use one of {', '.join(RETARGET_CHOICES)}"
                                  " or the path of a dex-retargeting YAML")
    return resolve_resource(spec.replace(SIDE_PLACEHOLDER, side))


def resolve_urdf_dir(urdf_dir: Union[str, Path, None]) -> Path:
    """The folder URDF paths of the configs are relative to ('' / None: the bundled
    config/robot_hands); RetargetConfigError if it is not a folder."""
    if urdf_dir is None or str(urdf_dir) == "":
        found = find_resource(DEFAULT_URDF_DIR, Path.is_dir)
        path = found if found is not None else DEFAULT_URDF_DIR
    else:
        path = resolve_resource(urdf_dir)
    if not path.is_dir():
        raise RetargetConfigError(f"URDF folder not found: {path}")
    return path


def _read_config(path: Path) -> Dict[str, Any]:
    """The `retargeting` mapping of a dex-retargeting YAML (a copy), checked for the keys this
    module relies on; RetargetConfigError naming the file otherwise."""
    if not path.is_file():
        raise RetargetConfigError(f"retargeting config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RetargetConfigError(f"retargeting config {path} cannot be read: {exc}") from exc
    cfg = data.get("retargeting") if isinstance(data, dict) else None
    if not isinstance(cfg, dict):
        raise RetargetConfigError(f"retargeting config {path}: no 'retargeting' mapping "
                                  "(dex-retargeting's YAML format)")
    cfg = dict(cfg)
    rtype = str(cfg.get("type", "")).lower()
    if rtype not in SUPPORTED_TYPES:
        raise RetargetConfigError(f"retargeting config {path}: type {cfg.get('type')!r} is not "
                                  f"one of {', '.join(SUPPORTED_TYPES)}")
    if not isinstance(cfg.get("urdf_path"), str) or not cfg["urdf_path"]:
        raise RetargetConfigError(f"retargeting config {path}: 'urdf_path' missing")
    if cfg.get("add_dummy_free_joint"):
        raise RetargetConfigError(f"retargeting config {path}: add_dummy_free_joint is not "
                                  "supported (the wrist pose is published as TF instead)")
    if rtype == "vector" and "target_link_human_indices" not in cfg:
        raise RetargetConfigError(f"retargeting config {path}: vector type needs "
                                  "'target_link_human_indices'")
    if "target_link_human_indices" in cfg:
        idx = np.asarray(cfg["target_link_human_indices"])
        if (idx.dtype.kind not in "iu" or idx.ndim != 2 or idx.shape[0] != 2
                or idx.min() < 0 or idx.max() >= NUM_KEYPOINTS):
            raise RetargetConfigError(
                f"retargeting config {path}: target_link_human_indices must be 2 rows of "
                f"keypoint indices 0..{NUM_KEYPOINTS - 1}")
    return cfg


def _check_config_against_urdf(cfg: Mapping[str, Any], config_path: Path, urdf: Path) -> None:
    """RetargetConfigError (naming both files) when the config names links or joints the
    URDF lacks."""
    links = set(urdf_link_names(urdf))
    named = [cfg["wrist_link_name"]] if cfg.get("wrist_link_name") else []
    for key in _LINK_KEYS:
        named += list(cfg.get(key) or [])
    missing = [n for n in named if n not in links]
    if missing:
        raise RetargetConfigError(f"retargeting config {config_path} names links that URDF "
                                  f"{urdf} lacks: {', '.join(sorted(set(map(str, missing))))}")
    joints = {j.name for j in urdf_actuated_joints(urdf)}
    missing = [n for n in (cfg.get("target_joint_names") or []) if n not in joints]
    if missing:
        raise RetargetConfigError(f"retargeting config {config_path} names joints that URDF "
                                  f"{urdf} lacks: {', '.join(sorted(map(str, missing)))}")


@contextlib.contextmanager
def _quiet(sink: io.StringIO):
    """Capture dex-retargeting's prints (stdout) into `sink`."""
    with contextlib.redirect_stdout(sink):
        yield


def _build(cfg: Dict[str, Any], config_path: Path, urdf: Path) -> Any:
    """dex-retargeting's SeqRetargeting for cfg (urdf_path made absolute), built with its
    temporary URDF copy inside a private folder that is removed afterwards."""
    try:
        from dex_retargeting.retargeting_config import RetargetingConfig
    except ImportError as exc:
        raise RetargetConfigError(
            f"retargeting needs dex-retargeting (requirements/retarget.txt, installed by "
            f"make setup): {exc}") from exc
    cfg = dict(cfg, urdf_path=str(urdf.resolve()))
    if "target_link_human_indices" in cfg:
        cfg["target_link_human_indices"] = np.asarray(cfg["target_link_human_indices"])
    sink = io.StringIO()
    urdf_log = logging.getLogger(_YOURDFPY_LOGGER)
    with _BUILD_LOCK, tempfile.TemporaryDirectory(prefix=_TEMP_PREFIX) as private:
        saved_tempdir, saved_level = tempfile.tempdir, urdf_log.level
        tempfile.tempdir = private
        urdf_log.setLevel(logging.ERROR)
        try:
            with _quiet(sink):
                return RetargetingConfig.from_dict(cfg).build()
        except Exception as exc:  # noqa: BLE001 - any failure is a refused config
            raise RetargetConfigError(f"retargeting config {config_path} with URDF {urdf}: "
                                      f"{type(exc).__name__}: {exc}") from exc
        finally:
            tempfile.tempdir = saved_tempdir
            urdf_log.setLevel(saved_level)
            if sink.getvalue().strip():
                LOG.debug("dex-retargeting build: %s", sink.getvalue().strip())


class Retargeter:
    """One hand side's dex-retargeting optimiser: fitted hand -> robot joint positions in the
    URDF's actuated-joint order (``joint_names``), rad (revolute) or m (prismatic)."""

    def __init__(self, config_path: Union[str, Path], side: str,
                 urdf_dir: Union[str, Path, None] = None) -> None:
        """Load and check the YAML and its URDF, then build the optimiser;
        RetargetConfigError naming the file on any problem."""
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        self.side = side
        self.config_path = Path(config_path)
        cfg = _read_config(self.config_path)
        urdf = Path(cfg["urdf_path"])
        if not urdf.is_absolute():
            urdf = resolve_urdf_dir(urdf_dir) / urdf
        self.urdf_path = urdf
        self.type = str(cfg["type"]).lower()
        urdf_joints = urdf_actuated_joints(urdf)
        _check_config_against_urdf(cfg, self.config_path, urdf)
        self._seq = _build(cfg, self.config_path, urdf)
        pin_names = list(self._seq.joint_names)
        self.joint_names: List[str] = [j.name for j in urdf_joints]
        if sorted(pin_names) != sorted(self.joint_names):
            raise RetargetConfigError(
                f"URDF {urdf}: its actuated joints {self.joint_names} differ from the "
                f"optimiser's {pin_names}")
        # Output index i takes pinocchio coordinate _pin_index[i].
        self._pin_index = np.array([pin_names.index(n) for n in self.joint_names], dtype=np.int64)
        self.lower = np.array([j.lower for j in urdf_joints])
        self.upper = np.array([j.upper for j in urdf_joints])
        indices = np.asarray(self._seq.optimizer.target_link_human_indices, dtype=np.int64)
        self._origin, self._task = indices[0], indices[1]
        self.calls = 0

    def retarget(self, joints: np.ndarray, wrist_quat: np.ndarray) -> np.ndarray:
        """(J,) joint positions in URDF order (within the URDF limits) for one fitted hand:
        keypoints (21,3) m in any frame with the hand model's root orientation (4,) xyzw in
        the same frame; ValueError on bad input or a non-finite solution."""
        kp = retarget_frame_keypoints(joints, wrist_quat, self.side)
        ref = kp[self._task] - kp[self._origin]
        sink = io.StringIO()
        with _quiet(sink):
            qpos = self._seq.retarget(ref)
        if sink.getvalue().strip():  # nlopt stopped early (e.g. roundoff-limited)
            LOG.debug("%s retargeting: %s", self.side, sink.getvalue().strip())
        out = np.asarray(qpos, dtype=np.float64)[self._pin_index]
        if not np.all(np.isfinite(out)):
            self.reset()
            raise ValueError(f"{self.side} retargeting gave non-finite joint positions")
        self.calls += 1
        return np.clip(out, self.lower, self.upper)

    def reset(self) -> None:
        """Forget the hand: the next call starts from the mid-range pose (warm start, filter
        and DexPilot's pinch projection flags cleared)."""
        self._seq.reset()
        if self._seq.filter is not None:
            self._seq.filter.reset()
        projected = getattr(self._seq.optimizer, "projected", None)
        if projected is not None:
            projected[:] = False

    def link_poses(self, q: np.ndarray) -> Dict[str, np.ndarray]:
        """URDF link name -> (4,4) pose in the robot's base frame (m) at joint positions q
        (J,) in URDF order (forward kinematics, for drawing the robot hand)."""
        import pinocchio as pin

        robot = self._seq.optimizer.robot
        full = np.zeros(robot.dof)
        full[self._pin_index] = np.asarray(q, dtype=np.float64)
        pin.forwardKinematics(robot.model, robot.data, full)
        pin.updateFramePlacements(robot.model, robot.data)
        return {f.name: robot.data.oMf[i].homogeneous.copy()
                for i, f in enumerate(robot.model.frames) if f.type == pin.FrameType.BODY}

    @property
    def optimizer_joint_names(self) -> List[str]:
        """pinocchio's joint order (dex-retargeting's raw output order), for reference."""
        return list(self._seq.joint_names)


class HandRetargeters:
    """Both sides' Retargeters for one `retarget` value; per frame, joint commands for each
    valid hand (None for a lost one, whose state is reset)."""

    def __init__(self, retargeters: Mapping[str, Retargeter]) -> None:
        self.retargeters: Dict[str, Retargeter] = dict(retargeters)

    @classmethod
    def from_spec(cls, spec: str, urdf_dir: Union[str, Path, None] = None
                  ) -> Optional["HandRetargeters"]:
        """None for 'none'; else both sides' Retargeters (RetargetConfigError naming the file
        that cannot be used: the node refuses to start with that one line)."""
        paths = {side: resolve_retarget_config(spec, side) for side in SIDES}
        if any(p is None for p in paths.values()):
            return None
        return cls({side: Retargeter(paths[side], side, urdf_dir) for side in SIDES})

    def update(self, hands: Iterable[Any]) -> Dict[str, Optional[np.ndarray]]:
        """side -> (J,) joint positions (URDF order) for each valid hand with finite
        keypoints, None otherwise (that side is reset). `hands`: HandsResult-like objects
        (side, valid, joints, wrist_quat). A failing hand is logged and reset, never raised."""
        out: Dict[str, Optional[np.ndarray]] = {}
        for hand in hands:
            r = self.retargeters.get(hand.side)
            if r is None:
                continue
            if not hand.valid:
                r.reset()
                out[hand.side] = None
                continue
            try:
                out[hand.side] = r.retarget(hand.joints, hand.wrist_quat)
            except ValueError as exc:
                LOG.debug("%s hand not retargeted: %s", hand.side, exc)
                r.reset()
                out[hand.side] = None
        return out

    def reset(self) -> None:
        """Reset every side (node reset, new stream)."""
        for r in self.retargeters.values():
            r.reset()
