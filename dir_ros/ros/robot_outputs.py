"""The node's outputs for a robot (issue 22): grasp state (hands/grasp), robot-hand joint
commands (hands/<side>/joint_commands) and the keypoint frames added to /tf.

The computation is dir_ros.robot's (no ROS there); this module holds the per-stream state of
one node (the pinch hysteresis, one dex-retargeting optimiser per hand side) and builds the
messages. Used by the node's worker thread only (reset() included: the node runs it there).
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np
from sensor_msgs.msg import JointState
from std_msgs.msg import Header

from dir_ros.msg import HandGrasp, TwoHandGrasp
from dir_ros.common.results import FrameResult
from dir_ros.robot.grasp import GraspState, GraspTracker
from dir_ros.robot.joint_frames import JOINT_TF_MODES, hand_keypoint_frames
from dir_ros.robot.retarget import RETARGET_NONE, HandRetargeters
from dir_ros.ros.messages import Frame

__all__ = ["JOINT_TF_MODES", "RobotOutputs", "grasp_message", "joint_state"]

# HandGrasp.side of each side name (msg/HandGrasp.msg).
_SIDE_IDS = {"left": HandGrasp.LEFT, "right": HandGrasp.RIGHT}


def _hand_grasp(state: Optional[GraspState], side: str) -> HandGrasp:
    """One HandGrasp: the state's measures, or the documented zeros when not valid."""
    msg = HandGrasp(side=_SIDE_IDS[side])
    if state is None or not state.valid:
        return msg
    values = (state.thumb_index_m, state.thumb_middle_m, state.aperture_m)
    if not all(math.isfinite(v) for v in values):  # GraspTracker gives finite ones when valid
        return msg
    msg.valid = True
    msg.thumb_index_distance, msg.thumb_middle_distance, msg.aperture = (float(v)
                                                                         for v in values)
    msg.pinch = bool(state.pinch)
    return msg


def grasp_message(states: Mapping[str, GraspState], header: Header) -> TwoHandGrasp:
    """TwoHandGrasp of one frame's per-side grasp states (a missing side reads invalid),
    with the input image's header."""
    return TwoHandGrasp(header=header, left=_hand_grasp(states.get("left"), "left"),
                        right=_hand_grasp(states.get("right"), "right"))


def joint_state(names: Sequence[str], positions: np.ndarray, header: Header) -> JointState:
    """sensor_msgs/JointState with positions (J,) (rad / m) under `names` (J,), the image's
    header; velocity and effort empty (not commanded)."""
    q = np.asarray(positions, dtype=np.float64).reshape(-1)
    if len(names) != q.size:
        raise ValueError(f"{len(names)} joint names for {q.size} positions")
    return JointState(header=header, name=list(names), position=q.tolist())


class RobotOutputs:
    """Per-stream state and message building of the robot outputs of one node."""

    def __init__(self, joint_tf: str = "none", retargeters: Optional[HandRetargeters] = None,
                 grasp: bool = True) -> None:
        if joint_tf not in JOINT_TF_MODES:
            raise ValueError(f"publish_joint_tf must be one of {', '.join(JOINT_TF_MODES)}, "
                             f"got {joint_tf!r}")
        self.joint_tf = joint_tf
        self.retargeters = retargeters
        self.grasp: Optional[GraspTracker] = GraspTracker() if grasp else None
        self._names: dict[str, list[str]] = (
            {} if retargeters is None else
            {side: list(r.joint_names) for side, r in retargeters.retargeters.items()})

    @classmethod
    def from_params(cls, joint_tf: str, retarget: str, urdf_dir: str,
                    grasp: bool) -> "RobotOutputs":
        """From the node's parameters publish_joint_tf, retarget, retarget_urdf_dir ('' =
        bundled URDFs) and publish_grasp. dex-retargeting's optimisers are built here:
        RetargetConfigError naming the file that cannot be used."""
        retargeters = None
        if str(retarget).strip() != RETARGET_NONE:
            retargeters = HandRetargeters.from_spec(retarget, urdf_dir or None)
        return cls(joint_tf, retargeters, grasp)

    def joint_names(self) -> dict[str, list[str]]:
        """side -> the URDF's actuated joint names in URDF order (empty without retarget)."""
        return {side: list(names) for side, names in self._names.items()}

    def tf_frames(self, result: FrameResult, prefix: str) -> list[Frame]:
        """The publish_joint_tf frames `<prefix><side>_<finger>_<joint>` of the valid metric
        hands (keypoint position, bone orientation: dir_ros.robot.joint_frames)."""
        if self.joint_tf == "none":
            return []
        out: list[Frame] = []
        for hand in result.hands():
            frames = hand_keypoint_frames(hand, self.joint_tf)
            if frames is None:
                continue
            out += [(prefix + name, frames.positions[i], frames.quaternions[i])
                    for i, name in enumerate(frames.names)]
        return out

    def grasp_message(self, result: FrameResult, header: Header) -> Optional[TwoHandGrasp]:
        """This frame's TwoHandGrasp (updates the pinch hysteresis); None when off."""
        if self.grasp is None:
            return None
        return grasp_message(self.grasp.update_frame(result.hands()), header)

    def joint_commands(self, result: FrameResult, header: Header) -> dict[str, JointState]:
        """side -> JointState of each valid hand's robot joint commands (a lost hand gets
        none and its optimiser is reset); empty without retarget."""
        if self.retargeters is None:
            return {}
        return {side: joint_state(self._names[side], q, header)
                for side, q in self.retargeters.update(result.hands()).items() if q is not None}

    def reset(self) -> None:
        """Forget the stream: pinch flags released, optimisers back to their start."""
        if self.grasp is not None:
            self.grasp.reset()
        if self.retargeters is not None:
            self.retargeters.reset()
