"""Grasp state of each fitted hand: fingertip distances, hand aperture and a pinch flag with
hysteresis (state per hand side, cleared when the hand is lost).

Measures (metres, from the hand's 21 keypoints; they need only relative geometry, so a valid
hand without metric placement has them too):
  * thumb_index_m, thumb_middle_m: distance from the thumb tip (keypoint 4) to the index tip
    (8) and to the middle tip (12);
  * aperture_m: mean distance of the five fingertips (4, 8, 12, 16, 20) from the palm centre
    (mean of the wrist and the four finger MCPs: 0, 5, 9, 13, 17): how open the whole hand is,
    independent of which fingers close (synthetic open flat hand 103 mm, pinch 94 mm, fist
    44 mm; the sample photos' hands 54-73 mm).
  * pinch: True once thumb_index_m falls below PINCH_ENTER_M, False again once it rises above
    PINCH_EXIT_M (between the two the flag keeps its value); reset to False when the hand is
    lost (invalid), so a re-found hand starts released.
An invalid hand gives GraspState(valid=False) with NaN measures and pinch False.

Thresholds, chosen by measurement (benchmarks/benchmark_retarget.py --grasp prints these figures;
open hand model, landmark backend on samples/*.jpg with K = pinhole_K(w, h, 60)):
  * synthetic contact scan (right hand; index flexion 0-1.2 x thumb flexion 0-1.5 x thumb
    opposition 0-1.5 rad, 13 x 16 x 16 poses): where the surfaces of the thumb's and index's
    distal segments touch (< 3 mm apart, 73 poses) the fingertip keypoints are 11.2-31.5 mm
    apart (median 22.0 mm): pad-to-pad pinches at the low end, the thumb pressed on the side
    of the index (no pinch of the tips) at the high end; the synthetic pinch of
    dir_ros.robot.synthetic: 11.7 mm;
  * synthetic open flat hand: 100.8 mm thumb-index; synthetic fist: 69.0 mm (the thumb lies
    over the middle phalanges, its tip far from the index tip), so a fist is no pinch;
  * sample photos (none pinches): the closest thumb-index distances are 22.5 mm
    (person_table, left hand resting on the table, 20th frame of a still video) and 22.9 mm
    (person_room, the relaxed hanging left hand, one frame); every other hand 34-86 mm.
  So PINCH_ENTER_M = 18 mm: 6 mm above the synthetic pad-to-pad pinch (room for landmark
  noise) and 4.5 mm below the closest non-pinching real hands; PINCH_EXIT_M = 28 mm makes the
  band 10 mm: 2.4 standard deviations of the frame-to-frame noise of a tip distance with the
  project's 3 mm per-axis keypoint noise model (sqrt(2) x 3 = 4.2 mm). Measured with that
  noise on a still hand held at the enter threshold (3000 frames): the flag flips 46.2 times
  per 100 frames with one threshold, 3.9 times with the band.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Tuple

import numpy as np

from dir_ros.common.results import NUM_KEYPOINTS, SIDES

__all__ = ["PINCH_ENTER_M", "PINCH_EXIT_M", "GraspState", "grasp_measures", "GraspTracker"]

PINCH_ENTER_M = 0.018  # thumb-index tip distance below which a pinch starts (see docstring)
PINCH_EXIT_M = 0.028  # ... above which it ends (hysteresis band 10 mm, see docstring)
THUMB_TIP, INDEX_TIP, MIDDLE_TIP = 4, 8, 12  # contract keypoint order
FINGERTIPS = (4, 8, 12, 16, 20)
PALM_POINTS = (0, 5, 9, 13, 17)  # wrist and the four finger MCPs


@dataclass(frozen=True)
class GraspState:
    """One hand's grasp state (metres; NaN and pinch False when not valid)."""

    side: str
    valid: bool
    thumb_index_m: float
    thumb_middle_m: float
    aperture_m: float
    pinch: bool

    @classmethod
    def invalid(cls, side: str) -> "GraspState":
        """The state of a lost hand."""
        nan = float("nan")
        return cls(side, False, nan, nan, nan, False)


def grasp_measures(joints: np.ndarray) -> Tuple[float, float, float]:
    """(thumb-index tip distance, thumb-middle tip distance, aperture) in metres of keypoints
    (21,3) m; ValueError on a wrong shape or non-finite keypoints."""
    j = np.asarray(joints, dtype=np.float64)
    if j.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"need joints ({NUM_KEYPOINTS},3), got {j.shape}")
    if not np.all(np.isfinite(j)):
        raise ValueError("joints must be finite")
    palm = j[list(PALM_POINTS)].mean(axis=0)
    aperture = float(np.linalg.norm(j[list(FINGERTIPS)] - palm, axis=1).mean())
    return (float(np.linalg.norm(j[THUMB_TIP] - j[INDEX_TIP])),
            float(np.linalg.norm(j[THUMB_TIP] - j[MIDDLE_TIP])), aperture)


class GraspTracker:
    """Per-side grasp state with the pinch hysteresis; update() once per frame and hand."""

    def __init__(self, enter_m: float = PINCH_ENTER_M, exit_m: float = PINCH_EXIT_M) -> None:
        if not (math.isfinite(enter_m) and math.isfinite(exit_m) and 0.0 < enter_m < exit_m):
            raise ValueError(f"pinch thresholds need 0 < enter < exit, got enter {enter_m} m, "
                             f"exit {exit_m} m")
        self.enter_m, self.exit_m = float(enter_m), float(exit_m)
        self._pinch: Dict[str, bool] = {side: False for side in SIDES}

    def update(self, hand: Any) -> GraspState:
        """The grasp state of a HandsResult-like hand (side, valid, joints); an invalid hand
        or one with non-finite keypoints clears its side's pinch and reads invalid."""
        side = hand.side
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        if not hand.valid:
            self._pinch[side] = False
            return GraspState.invalid(side)
        try:
            ti, tm, aperture = grasp_measures(hand.joints)
        except ValueError:
            self._pinch[side] = False
            return GraspState.invalid(side)
        if self._pinch[side]:
            self._pinch[side] = ti <= self.exit_m
        else:
            self._pinch[side] = ti < self.enter_m
        return GraspState(side, True, ti, tm, aperture, self._pinch[side])

    def update_frame(self, hands: Iterable[Any]) -> Dict[str, GraspState]:
        """side -> GraspState for each hand of a frame (e.g. FrameResult.hands())."""
        return {h.side: self.update(h) for h in hands}

    def reset(self, side: Optional[str] = None) -> None:
        """Release the pinch of one side (or both)."""
        for s in (SIDES if side is None else (side,)):
            self._pinch[s] = False
