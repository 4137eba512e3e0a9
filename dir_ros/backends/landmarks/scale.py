"""A hand keeps its size: each hand's metric size is estimated over the frames and held.

A person's hand does not change size between frames, but the hand front end's metric "world
landmarks" are re-estimated every frame, and their overall size wanders from one frame to the
next (measured on the 60-frame drifting clips of dir_ros.data.clips made from the three
photos of ../shared/images: mean bone-length sum 584-876 mm over the six hands, standard deviation
1.4-3.4 % of it, frame-to-frame steps up to 12.6 %, up to 15.8 % off the clip's mean). The
landmark backend places a hand so that its fitted 3D keypoints project onto the image
landmarks, so a 3 % larger hand is placed 3 % farther away: at 0.3 m, a 9 mm depth jump.

Model: the size of a hand is one scalar, the sum of its 20 bone lengths (pose-invariant: a
bending finger keeps its bones' lengths). Each frame measures it from the world landmarks
(a noisy measurement s_t); the held size S is the running mean of the measurements since the
hand was found, with at most HOLD_FRAMES frames of memory (an exponential forgetting after
that, so a wrong start is outgrown), and a measurement more than OUTLIER_RATIO off S does not
update it. Every frame's landmarks are rescaled to S about the wrist before the fit, so the
fitted hand, and with it the depth, keep the held size. The estimate restarts when the hand
is lost (not found in a frame) or on reset().
No ROS, no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from dir_ros.hand_model import BONE_PARENTS

# Memory of the running mean (frames): a plain mean over the first 150 frames (5 s at 30 Hz),
# an exponential one after. A hand's size never changes, so the memory is long: the held size
# then wanders by 1.4-3.4 % / sqrt(2 x 150 - 1) ~ 0.1-0.2 % (a 0.5 mm depth wobble at 0.3 m;
# a 30-frame memory left 0.3-0.6 %, 1-2 mm, slow enough to pass the depth filter), while a
# wrong start is still outgrown (and a lost hand starts afresh).
HOLD_FRAMES = 150
# A size measurement off the held size by more than this fraction is an outlier (a failed
# landmark frame: a hand's size never changes by a quarter) and does not update the estimate.
# The largest frame-to-frame size change measured on the three clips was 12.6 %, the largest
# deviation from a clip's mean size 15.8 %.
OUTLIER_RATIO = 0.25


def hand_size(world: np.ndarray) -> float:
    """Sum of the 20 bone lengths (m) of 21 keypoints (21,3) m in contract order."""
    world = np.asarray(world, dtype=np.float64)
    children = np.arange(1, len(BONE_PARENTS) + 1)
    return float(np.linalg.norm(world[children] - world[list(BONE_PARENTS)], axis=1).sum())


@dataclass
class _Held:
    """Held size (m) of one hand and how many measurements it averages (<= HOLD_FRAMES)."""

    size: float
    count: int


class ScaleHold:
    """Per-side held hand size (see module docstring); enabled=False passes landmarks through."""

    def __init__(self, enabled: bool = True, hold_frames: int = HOLD_FRAMES,
                 outlier_ratio: float = OUTLIER_RATIO) -> None:
        if hold_frames < 1 or not 0.0 < outlier_ratio:
            raise ValueError(f"need hold_frames >= 1 and outlier_ratio > 0, got {hold_frames}, "
                             f"{outlier_ratio}")
        self.enabled = bool(enabled)
        self.hold_frames = int(hold_frames)
        self.outlier_ratio = float(outlier_ratio)
        self._held: dict[str, _Held] = {}

    def reset(self, side: Optional[str] = None) -> None:
        """Forget one side's held size (a lost hand), or every side's (side None)."""
        if side is None:
            self._held.clear()
        else:
            self._held.pop(side, None)

    def size(self, side: str) -> Optional[float]:
        """The held size (m) of a side, None when it has none."""
        held = self._held.get(side)
        return None if held is None else held.size

    def __call__(self, side: str, world: np.ndarray) -> np.ndarray:
        """Keypoints world (21,3) m rescaled about their wrist to the side's held size (the
        measurement updates the estimate first); unchanged when disabled or degenerate."""
        world = np.asarray(world, dtype=np.float64)
        if not self.enabled:
            return world
        measured = hand_size(world)
        if not (np.isfinite(measured) and measured > 0):
            return world
        held = self._held.get(side)
        if held is None:
            held = self._held[side] = _Held(measured, 1)
        elif abs(measured / held.size - 1.0) <= self.outlier_ratio:
            held.count = min(held.count + 1, self.hold_frames)
            held.size += (measured - held.size) / held.count
        return world[0] + (world - world[0]) * (held.size / measured)
