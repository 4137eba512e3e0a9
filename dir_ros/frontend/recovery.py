"""Second-hand recovery (interacting hands): the palm detector often finds one hand of two
when the hands touch or interlock. A missing side is then searched by re-running the hand
model (static mode) on crops: the routes below, tried in order until both sides are found.
  track        (video only) crops around that side's last known hand: the previous frame's,
               with track_landmarks one seen within REGION_MEMORY_FRAMES frames.
  pair         crops centred on the hand that was found (the other hand of an interacting
               pair lies next to it).
  pose         the pose model's other arm: crops at its wrist, along the forearm, rotated
               so that the forearm points up (the hand model's preferred orientation).
  pose_masked  the same crops with the found hand(s) painted over, so that the palm
               detector stops locking onto the visible hand.
  mirror       the whole image flipped left-right (not in the default ladder).
A recovered hand is accepted only if its handedness label gives the missing side, it is
not the found hand again (wrist and landmark distances), its size is plausible, and (pose,
track) its wrist lies near the expected wrist.

MEASURED RESULTS (2-core x86_64 shared with other jobs, model_complexity 1, static mode).
Photos: shared/images/interwild_demo{1,2,3}_input.jpg, about 950x1100 px, interlocked hands,
non-mirrored (the person's right arm enters from the image's left). Hands found per photo
(of 2), each checked on overlays: landmarks on the hand, side agreeing with its arm.
Time: that route's own cost per image after the full-frame pass (ms, median of 3).
  route (alone after 'palm')   demo1     demo2     demo3     notes
  palm (full frame only)       1  13     1  13     1  13     demo1/3: left, demo2: right
  pair                         2  26     2  31     1  57
  pose                         2  71     2  50     1  89     pose model alone ~45-60 ms
  pose_masked                  2 118     2  64     2  62     demo1 score 0.51 (weak)
  mirror (full res)            1  34     2  33     1  32
  default ladder               2  38     2  43     2 212     track, pair, pose, pose_masked
      (totals incl. palm; demo1/2 stop after 'pair', demo3 needs 'pose_masked')
Also tried, on crops of 1.5/2/3 x the found hand, centred or shifted half a hand sideways,
256 and 512 px: plain 6/18 crops (demo1), 8/18 (demo2), 0/18 (demo3) found the other hand;
the same crops with the found hand's hull masked (x1.0 or x1.3): 0/54 (the mask hides the
interlocked hand too); the whole photo at 0.5/1.5/2x: 1 hand on each. Pose crops: a grid
of offsets 0.3-0.9 and sides 1.5-3 (rotated or not) found demo1/demo2's hand on most cells
and demo3's on none without masking, on 13/90 cells with (hull x0.6 best). The demo3 hand
is a fist almost hidden behind the other hand: its recovered landmarks give the right wrist
and region, not a reliable finger pose. With no hand from the palm pass, the pose route
alone found 2/2/2 hands (demo3's hidden one again approximate).
"""
from __future__ import annotations

import time
from typing import Optional

import cv2
import numpy as np

from dir_ros.common import geometry as geo
from dir_ros.frontend.detection import (DUP_WRIST_FRACTION, SIDES, WRIST, Detection, _Candidate,
                                        _hand_size, _is_same_hand, _other)
from dir_ros.frontend.models import POSE_MIN_VISIBILITY
from dir_ros.frontend.regions import CROP_OUT_PX, _crop_affine, _upright_angle

# --- recovery geometry (all sizes relative to a hand size: the longer side of the
# landmarks' bounding box, px) ------------------------------------------------------------
# 'pair' crops around the found hand: (side / hand size). 2.0 found the partner hand on
# demo1 and demo2; 3.0 is a second chance with more context.
PAIR_CROP_SCALES = (2.0, 3.0)
# 'pose' / 'pose_masked' crops: (centre offset from the pose wrist along the forearm,
# side, rotate forearm-up), offsets and sides / reference hand size. Chosen from a grid
# (offsets 0.3-0.9, sides 1.5-3, rotated or not) over the three photos (module docstring).
POSE_CROPS = ((0.6, 3.0, True), (0.3, 2.0, False), (0.9, 3.0, True))
# Reference hand size from the pose model when no hand was found: hand size / distance
# from the pose wrist to the mean of its index, pinky and thumb points; 1.7-3.4 over the six
# hands of the three photos, median 2.4.
POSE_EXTENT_TO_HAND_SIZE = 2.5
# 'pose_masked': the found hands' landmark hull, scaled about its centroid by this, is
# filled with the image's mean colour. 0.6 leaves the fingers of the found hand that
# overlap the hidden hand; 0.8 and 1.0 found fewer and worse hands on demo3.
MASK_HULL_SCALE = 0.6
# 'track': crop side / the previous frame's hand size (as the first 'pair' crop).
TRACK_CROP_SCALES = (2.0, 3.0)

# --- acceptance of a recovered hand --------------------------------------------------------
# A recovered hand's size must be within this factor of the reference size (found hand,
# previous frame or pose): the rejected hallucinations on demo3 were 3x too small.
MAX_SIZE_RATIO = 2.0
# The recovered wrist must lie within this (x reference size) of the expected wrist (pose
# wrist or the previous frame's wrist); the accepted hands on the photos were within 0.3.
ANCHOR_TOLERANCE = 0.8
# Video mode: after a failed recovery, the expensive routes (all but 'track') rest for this
# many frames (unless the hands found changed since the frame before), so that a stream
# with really only one hand in view pays the pose model (about 60 ms on 2 cores) and the
# crops on one frame in 6 only.
RECOVERY_COOLDOWN_FRAMES = 5

# The 'track' route (crops around a hand's last known region, palm detector on the crop)
# keeps trying a lost hand's region for this many frames after it was last seen: 15 = half
# a second at 30 Hz (a hand gone longer than that has likely moved on; the palm pass and the
# pose routes still look for it). The switch-off (track_landmarks False) keeps the old rule:
# the previous frame only.
REGION_MEMORY_FRAMES = 15


class SecondHandRecovery:
    """The recovery routes of HandDetector (a mixin): they run on its state (video,
    mirrored_input, track_landmarks, recovery_routes, _previous, _last_seen, _frame,
    _cooldown, route_runs, last_timings) and its MediaPipe passes (_run_crop, _run_pose,
    _side_of)."""

    def _accept(self, cands: list[_Candidate], side: str, found: dict[str, Detection],
                ref_size: Optional[float], anchor: Optional[np.ndarray]) -> Optional[_Candidate]:
        """The most confident candidate that is a new hand of the missing side: right label,
        not a found hand again, size within MAX_SIZE_RATIO of ref_size, and its wrist within
        ANCHOR_TOLERANCE * ref_size of anchor (px) when an anchor is given."""
        best = None
        for c in cands:
            if self._side_of(c.label) != side:
                continue
            if any(_is_same_hand(c.landmarks_px, d.landmarks_px) for d in found.values()):
                continue
            size = _hand_size(c.landmarks_px)
            if ref_size is not None:
                if not 1.0 / MAX_SIZE_RATIO <= size / ref_size <= MAX_SIZE_RATIO:
                    continue
                if anchor is not None and (np.linalg.norm(c.landmarks_px[WRIST] - anchor)
                                           > ANCHOR_TOLERANCE * ref_size):
                    continue
            if best is None or c.score > best.score:
                best = c
        return best

    def _recover(self, image: np.ndarray, found: dict[str, Detection]) -> None:
        """Try the recovery routes in order for the missing side(s); adds to found in place.
        Video mode: after a failed try, the routes other than 'track' rest for
        RECOVERY_COOLDOWN_FRAMES frames, unless the hands changed since the last frame."""
        missing = [s for s in SIDES if s not in found]
        eager = (not self.video or self._cooldown == 0 or set(found) != set(self._previous)
                 or any(s in self._previous for s in missing))
        if self._cooldown > 0:
            self._cooldown -= 1
        pose_cache: dict[str, Optional[dict[str, np.ndarray]]] = {}
        for route in self.recovery_routes:
            missing = [s for s in SIDES if s not in found]
            if not missing:
                break
            if route != "track" and not eager:
                continue
            if route == "track" and all(self._region(s) is None for s in missing):
                continue  # no last known region to look in
            t0 = time.perf_counter()
            self.route_runs[route] += 1
            for side in missing:
                hit = self._route(route, image, side, found, pose_cache)
                if hit is not None:
                    found[side] = Detection(side, hit.score, hit.landmarks_px, hit.world, route)
            self.last_timings[route] = time.perf_counter() - t0
        if eager and self.video:
            self._cooldown = RECOVERY_COOLDOWN_FRAMES if len(found) < len(SIDES) else 0

    def _route(self, route: str, image: np.ndarray, side: str, found: dict[str, Detection],
               pose_cache: dict) -> Optional[_Candidate]:
        """One recovery route for one missing side: the accepted candidate or None."""
        if route == "track":
            prev = self._region(side)
            if prev is None:
                return None
            box = prev.box(1.0)
            # Turned so that the hand points up (wrist -> middle finger base), as MediaPipe's
            # own tracking turns its crops: the landmark model expects upright hands.
            angle = _upright_angle(prev.landmarks_px)
            # Plain first; then with the found hands painted over, since on a crop centred on
            # a hidden hand the palm detector tends to return only the visible one.
            views = (image, self._masked(image, found)) if found else (image,)
            for view in views:
                for scale in TRACK_CROP_SCALES:
                    affine = _crop_affine(np.array([box.cx, box.cy]), scale * prev.size, angle,
                                          False, CROP_OUT_PX)
                    hit = self._accept(self._run_crop(view, affine), side, found, prev.size,
                                       prev.landmarks_px[WRIST])
                    if hit is not None:
                        return hit
            return None
        if route == "pair":
            for other in found.values():
                box = other.box(1.0)
                for scale in PAIR_CROP_SCALES:
                    affine = _crop_affine(np.array([box.cx, box.cy]), scale * other.size, 0.0,
                                          False, CROP_OUT_PX)
                    hit = self._accept(self._run_crop(image, affine), side, found, other.size, None)
                    if hit is not None:
                        return hit
            return None
        if route in ("pose", "pose_masked"):
            if route == "pose_masked" and not found:
                return None  # nothing to mask: the same crops as 'pose'
            if "arms" not in pose_cache:
                pose_cache["arms"] = self._run_pose(image)
            arm = self._arm_for(side, found, pose_cache["arms"])
            if arm is None:
                return None
            elbow, wrist, tips = arm[0, :2], arm[1, :2], arm[2:, :2]
            if found:
                ref_size = float(np.mean([d.size for d in found.values()]))
            else:
                ref_size = POSE_EXTENT_TO_HAND_SIZE * float(
                    np.linalg.norm(tips.mean(axis=0) - wrist))
            ref_size = max(ref_size, geo.MIN_CROP_PX)
            forearm = wrist - elbow
            norm = float(np.linalg.norm(forearm))
            direction = forearm / norm if norm > 0 else np.array([0.0, -1.0])
            angle = float(np.arctan2(direction[0], -direction[1]))  # clockwise from up
            view = self._masked(image, found) if route == "pose_masked" else image
            for along, scale, rotate in POSE_CROPS:
                centre = wrist + direction * along * ref_size
                affine = _crop_affine(centre, scale * ref_size, angle if rotate else 0.0, False,
                                      CROP_OUT_PX)
                hit = self._accept(self._run_crop(view, affine), side, found, ref_size, wrist)
                if hit is not None:
                    return hit
            return None
        if route == "mirror":
            h, w = image.shape[:2]
            side_px = max(h, w)  # the whole image, mirrored, at full resolution
            affine = _crop_affine(np.array([w / 2.0, h / 2.0]), float(side_px), 0.0, True, side_px)
            ref = float(np.mean([d.size for d in found.values()])) if found else None
            return self._accept(self._run_crop(image, affine, side_px), side, found, ref, None)
        raise ValueError(f"unknown recovery route {route!r}")

    def _region(self, side: str) -> Optional[Detection]:
        """side's last known hand for the 'track' route: the previous frame's, or with
        track_landmarks one seen within REGION_MEMORY_FRAMES frames; None in photo mode."""
        if not self.video or side not in self._last_seen:
            return None
        det, frame = self._last_seen[side]
        memory = REGION_MEMORY_FRAMES if self.track_landmarks else 1
        return det if self._frame - frame <= memory else None

    def _arm_for(self, side: str, found: dict[str, Detection],
                 arms: Optional[dict[str, np.ndarray]]) -> Optional[np.ndarray]:
        """The pose arm (5,3) expected to hold the missing side's hand, or None. With a found
        hand: the arm whose wrist is not the found hand's (nearest wrist), so the pose
        model's own left/right labels do not matter; without: the arm labelled side (the
        pose model labels as for a non-mirrored image)."""
        if arms is None:
            return None
        if found:
            other = next(iter(found.values()))
            near = min(arms, key=lambda a: np.linalg.norm(arms[a][1, :2]
                                                          - other.landmarks_px[WRIST]))
            arm = arms["RIGHT" if near == "LEFT" else "LEFT"]
            gap = float(np.linalg.norm(arm[1, :2] - other.landmarks_px[WRIST]))
            if gap < DUP_WRIST_FRACTION * other.size:
                return None  # both pose wrists on the found hand: no second arm to follow
        else:
            label = side.upper() if not self.mirrored_input else _other(side).upper()
            arm = arms[label]
        return arm if arm[1, 2] >= POSE_MIN_VISIBILITY else None

    @staticmethod
    def _masked(image: np.ndarray, found: dict[str, Detection]) -> np.ndarray:
        """image with each found hand's landmark hull (scaled by MASK_HULL_SCALE about its
        centroid) filled with the image's mean colour."""
        out = image.copy()
        fill = tuple(int(v) for v in image.reshape(-1, 3).mean(axis=0))
        for d in found.values():
            hull = cv2.convexHull(d.landmarks_px.astype(np.float32)).reshape(-1, 2)
            centre = hull.mean(axis=0)
            hull = (hull - centre) * MASK_HULL_SCALE + centre - geo.HALF_PIXEL  # to cv2 pixels
            cv2.fillConvexPoly(out, np.round(hull).astype(np.int32), fill)
        return out
