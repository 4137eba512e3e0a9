"""Hand front end: per-side 2D/3D hand landmarks from one RGB image with MediaPipe Hands.

No ROS here. MediaPipe 0.10.21 runs offline on the models inside its wheel (palm detector,
hand landmark model, pose model: requirements/detect.txt); nothing downloads at run time.

Conventions (those of dir_ros.geometry):
  * landmarks_px: image pixels, origin at the top-left *corner* of the top-left pixel.
    MediaPipe's normalised landmarks span the image extent [0, 1] (x * width is a
    corner-origin coordinate), so landmarks_px = (x * W, y * H).
  * Landmark order: MediaPipe's = the contract's (wrist, thumb 1-4, index, middle, ring,
    pinky, each base to tip).
  * side: the person's own hand. MediaPipe labels handedness as if the image were mirrored
    (a selfie view), so for an ordinary camera (mirrored_input False) its "Right" is the
    person's left hand; with mirrored_input True the label is taken as it is.

Second-hand recovery (interacting hands): the palm detector often finds one hand of two
when the hands touch or interlock. A missing side is then searched by re-running the hand
model (static mode) on crops: the routes below, tried in order until both sides are found.
  track        (video only) a crop around that side's hand of the previous frame.
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

Same-label conflicts: if the full-frame pass returns two hands with the same label, the
more confident hand keeps its side and the other gets the other side; in video mode, when
the last frame had both sides, the assignment nearest to the last frame's wrists wins
instead. (Image position is not used: it flips between a facing and an egocentric camera.)

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
Video mode, 640x480 frames (each photo scaled into the frame, drifting 15 px), 60 frames:
  per-frame median / mean (ms), frames with both hands
  palm only (MediaPipe tracking)  demo1 13/13, 8/60   demo2 11/12, 44/60  demo3 13/13, 0/60
  default                          demo1 39/67, 55/60  demo2 17/32, 60/60  demo3 86/120, 60/60
  palm only, model_complexity 0    demo1 7/9, 39/60    demo2 10/9, 11/60   demo3 9/9, 5/60
  one hand in view (default)       median 12, mean 23 (the recovery rests 5 frames of 6)
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from dir_ros import geometry as geo

SIDES = ("left", "right")
NUM_LANDMARKS = 21
# MediaPipe landmark indices used here (hand_landmark model, MediaPipe order).
WRIST = 0
MIDDLE_MCP = 9

# --- MediaPipe settings -------------------------------------------------------------------
# MediaPipe's own defaults (solutions.hands.Hands): palm detection / landmark presence.
DEFAULT_MIN_DETECTION_CONFIDENCE = 0.5
DEFAULT_MIN_TRACKING_CONFIDENCE = 0.5
# Hand landmark models inside the 0.10.21 wheel: 0 = lite, 1 = full (no download needed).
BUNDLED_HAND_COMPLEXITIES = (0, 1)
# Pose landmark model inside the wheel: only 'full' (complexity 1); 0 and 2 would download.
BUNDLED_POSE_COMPLEXITY = 1
# Palm-detector threshold on recovery crops: lower than the full-frame default because a
# recovered hand must pass the geometric checks below as well; 0.3 is the value the
# measurements in the header were made with (0.5 lost the occluded hand of demo1).
RECOVERY_MIN_DETECTION_CONFIDENCE = 0.3
# Pose model thresholds: MediaPipe's defaults for solutions.pose.Pose.
POSE_MIN_DETECTION_CONFIDENCE = 0.5
# A pose wrist below this visibility is not used to look for a hand (MediaPipe's own
# drawing utility hides landmarks below 0.5).
POSE_MIN_VISIBILITY = 0.5

# --- recovery geometry (all sizes relative to a hand size: the longer side of the
# landmarks' bounding box, px) ------------------------------------------------------------
# Side of the square crops fed to the hand model (px): above the palm detector's 192 px
# and the landmark model's 224 px input; 512 px crops found the same hands, slower.
CROP_OUT_PX = 256
# 'pair' crops around the found hand: (side / hand size). 2.0 found the partner hand on
# demo1 and demo2; 3.0 is a second chance with more context.
PAIR_CROP_SCALES = (2.0, 3.0)
# 'pose' / 'pose_masked' crops: (centre offset from the pose wrist along the forearm,
# side, rotate forearm-up), offsets and sides / reference hand size. Chosen from a grid
# (offsets 0.3-0.9, sides 1.5-3, rotated or not) over the three photos (header).
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
# Same hand as an accepted one if the wrists are closer than this (x its size) ...
DUP_WRIST_FRACTION = 0.5
# ... or the mean landmark distance is below this (x its size). Interlocked hands overlap
# in the image but their wrists lie about a hand size apart (0.9-1.2 on the photos).
DUP_MEAN_FRACTION = 0.3
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

RECOVERY_ROUTES = ("track", "pair", "pose", "pose_masked", "mirror")
DEFAULT_RECOVERY_ROUTES = ("track", "pair", "pose", "pose_masked")


@dataclass
class Detection:
    """One detected hand: the person's side, confidence, 2D landmarks (px), 3D world landmarks.

    score: MediaPipe's handedness score in [0, 1] (the solutions API does not return the
    hand-presence score; hands under min_detection/min_tracking_confidence are dropped).
    landmarks_px (21,2) float64 image pixels, corner-origin, MediaPipe order; world (21,3)
    float64 metres, MediaPipe world landmarks (origin near the hand's centre, axes of the
    camera: x right, y down, z forward). source: 'palm' (the full-frame MediaPipe graph:
    palm detector, and in video mode its own tracking), or the recovery route that found it
    ('track', 'pair', 'pose', 'pose_masked', 'mirror').
    """

    side: str
    score: float
    landmarks_px: np.ndarray
    world: np.ndarray
    source: str

    def box(self, fill: float = geo.DEFAULT_CROP_FILL) -> geo.CropBox:
        """Square box around the landmarks, side = their longer extent / fill (pixels)."""
        return geo.box_from_points(self.landmarks_px, fill)

    @property
    def size(self) -> float:
        """Hand size in pixels: the longer side of the landmarks' bounding box."""
        return _hand_size(self.landmarks_px)


@dataclass
class _Candidate:
    """A hand from one MediaPipe pass, mapped back to the full image.

    label: MediaPipe's handedness label ('Left'/'Right', mirrored-image convention) for the
    image as given (already swapped back when the pass ran on a mirrored view)."""

    label: str
    score: float
    landmarks_px: np.ndarray  # (21,2) px, corner-origin
    world: np.ndarray  # (21,3) m


def _hand_size(points: np.ndarray) -> float:
    """Longer side (px) of the bounding box of points (N,2): the hand-size unit used here."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return max(float(np.max(np.ptp(pts, axis=0))), geo.MIN_CROP_PX)


def _is_same_hand(a: np.ndarray, b: np.ndarray) -> bool:
    """True when landmark sets a, b (21,2) px are one hand (close wrists or landmarks)."""
    size = max(_hand_size(a), _hand_size(b))
    wrist_dist = float(np.linalg.norm(a[WRIST] - b[WRIST]))
    mean_dist = float(np.mean(np.linalg.norm(a - b, axis=1)))
    return wrist_dist < DUP_WRIST_FRACTION * size or mean_dist < DUP_MEAN_FRACTION * size


def _swap_label(label: str) -> str:
    """MediaPipe 'Left' <-> 'Right'."""
    return "Right" if label == "Left" else "Left"


def _other(side: str) -> str:
    """'left' <-> 'right'."""
    return "right" if side == "left" else "left"


def _crop_affine(centre: np.ndarray, side_px: float, angle_rad: float, mirror: bool,
                 out_px: int) -> np.ndarray:
    """(2,3) affine taking image px to crop px (both corner-origin): a square of side_px
    centred at centre (px), turned by angle_rad (the image direction at angle_rad from 'up',
    clockwise, becomes the crop's up), optionally mirrored left-right, scaled to out_px."""
    s = out_px / side_px
    c, si = np.cos(angle_rad), np.sin(angle_rad)
    # Rotation taking direction (sin a, -cos a) (angle a clockwise from up) to (0, -1).
    rot = np.array([[c, si], [-si, c]])
    lin = s * rot
    if mirror:
        lin = np.diag([-1.0, 1.0]) @ lin
    offset = np.array([out_px / 2.0, out_px / 2.0]) - lin @ np.asarray(centre, dtype=np.float64)
    return np.hstack([lin, offset[:, None]])


class HandDetector:
    """MediaPipe Hands front end: at most one Detection per side of the person, per frame.

    video True: MediaPipe's tracking graph (frames of one stream, in order); False: every
    call independent (static-image mode). recover_second_hand: look for a missing hand on
    crops (routes in the module docstring). recovery_routes: the ladder to try, in order.
    """

    def __init__(self, mirrored_input: bool = False, video: bool = True,
                 min_detection_confidence: float = DEFAULT_MIN_DETECTION_CONFIDENCE,
                 min_tracking_confidence: float = DEFAULT_MIN_TRACKING_CONFIDENCE,
                 model_complexity: int = 1, recover_second_hand: bool = True,
                 recovery_routes: Sequence[str] = DEFAULT_RECOVERY_ROUTES) -> None:
        """Build the MediaPipe graphs (bundled models only: no download)."""
        import mediapipe as mp  # local: importing dir_ros must not need mediapipe

        from dir_ros.native_log import quiet_native_logs

        quiet_native_logs()  # MediaPipe's C++ log lines stay off the console (native_log.py)

        if model_complexity not in BUNDLED_HAND_COMPLEXITIES:
            raise ValueError(f"model_complexity must be one of {BUNDLED_HAND_COMPLEXITIES} "
                             f"(the models inside the mediapipe wheel), got {model_complexity}")
        unknown = [r for r in recovery_routes if r not in RECOVERY_ROUTES]
        if unknown:
            raise ValueError(f"unknown recovery routes {unknown}; known: {RECOVERY_ROUTES}")
        self.mirrored_input = bool(mirrored_input)
        self.video = bool(video)
        self.recover_second_hand = bool(recover_second_hand)
        self.recovery_routes = tuple(recovery_routes)
        self._mp = mp
        self._hands = mp.solutions.hands.Hands(
            static_image_mode=not self.video, max_num_hands=2, model_complexity=model_complexity,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence)
        self._crop_hands = None  # static-mode graph for recovery crops, built on first use
        self._pose = None  # pose graph, built on first use
        self._model_complexity = model_complexity
        self._previous: dict[str, Detection] = {}
        self._cooldown = 0
        # Seconds spent per stage in the last call ('palm' and each route tried): diagnostics.
        self.last_timings: dict[str, float] = {}

    # --- public API ---------------------------------------------------------------------

    def __call__(self, rgb: np.ndarray) -> dict[str, Detection]:
        """Hands in rgb (H,W,3) uint8 RGB: side -> Detection, at most one per side, {} if none."""
        image = np.ascontiguousarray(rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an (H,W,3) uint8 RGB image, got {image.shape} {image.dtype}")
        self.last_timings = {}
        t0 = time.perf_counter()
        found = self._assign_sides(self._run_full(image))
        self.last_timings["palm"] = time.perf_counter() - t0
        if self.recover_second_hand and len(found) < len(SIDES):
            self._recover(image, found)
        if self.video:
            self._previous = dict(found)
        return found

    def reset(self) -> None:
        """Forget all tracking state (MediaPipe's and ours): the next frame starts a new stream."""
        self._hands.reset()
        self._previous = {}
        self._cooldown = 0

    def close(self) -> None:
        """Release the MediaPipe graphs."""
        for graph in (self._hands, self._crop_hands, self._pose):
            if graph is not None:
                graph.close()
        self._hands = self._crop_hands = self._pose = None

    def __enter__(self) -> "HandDetector":
        """Context manager: closes the graphs on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving a with block."""
        self.close()

    # --- MediaPipe passes ---------------------------------------------------------------

    def _side_of(self, label: str) -> str:
        """The person's side for a MediaPipe handedness label of the image as given."""
        side = label.lower()
        return side if self.mirrored_input else _other(side)

    @staticmethod
    def _candidates(result: object, width: int, height: int) -> list[_Candidate]:
        """MediaPipe Hands result -> candidates in the pixels of the (width x height) input."""
        out: list[_Candidate] = []
        if not result.multi_hand_landmarks:
            return out
        worlds = result.multi_hand_world_landmarks or [None] * len(result.multi_hand_landmarks)
        for lms, handed, world in zip(result.multi_hand_landmarks, result.multi_handedness, worlds):
            cls = handed.classification[0]
            px = np.array([[p.x * width, p.y * height] for p in lms.landmark], dtype=np.float64)
            xyz = (np.array([[p.x, p.y, p.z] for p in world.landmark], dtype=np.float64)
                   if world is not None else np.full((NUM_LANDMARKS, 3), np.nan))
            out.append(_Candidate(cls.label, float(cls.score), px, xyz))
        return out

    def _run_full(self, image: np.ndarray) -> list[_Candidate]:
        """The full-frame MediaPipe graph (video or static mode) on image (H,W,3) RGB."""
        result = self._hands.process(image)
        return self._candidates(result, image.shape[1], image.shape[0])

    def _run_crop(self, image: np.ndarray, affine: np.ndarray,
                  out_px: int = CROP_OUT_PX) -> list[_Candidate]:
        """Static hand graph on the crop given by affine (image px -> crop px, an out_px
        square); candidates mapped back to image pixels and image-aligned world axes."""
        if self._crop_hands is None:
            self._crop_hands = self._mp.solutions.hands.Hands(
                static_image_mode=True, max_num_hands=2, model_complexity=self._model_complexity,
                min_detection_confidence=RECOVERY_MIN_DETECTION_CONFIDENCE)
        a_cv = affine.copy()  # cv2 uses centre-origin pixels: shift by half a pixel in and out
        a_cv[:, 2] += affine[:, :2] @ np.full(2, geo.HALF_PIXEL) - geo.HALF_PIXEL
        mean_colour = tuple(int(v) for v in image.reshape(-1, 3).mean(axis=0))  # pad outside
        crop = cv2.warpAffine(image, a_cv, (out_px, out_px), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=mean_colour)
        cands = self._candidates(self._crop_hands.process(crop), out_px, out_px)
        inv = geo.invert_affine(affine)
        lin = inv[:, :2]
        det = float(np.linalg.det(lin))
        rot = lin / np.sqrt(abs(det))  # crop axes -> image axes (rotation, maybe mirrored)
        for c in cands:
            c.landmarks_px = geo.apply_affine(inv, c.landmarks_px)
            c.world = c.world.copy()
            c.world[:, :2] = c.world[:, :2] @ rot.T
            if det < 0:  # a mirrored view sees the other chirality
                c.label = _swap_label(c.label)
        return cands

    def _run_pose(self, image: np.ndarray) -> Optional[dict[str, np.ndarray]]:
        """Pose model on image: {'LEFT'|'RIGHT': (5,3) [elbow, wrist, index, pinky, thumb] as
        (x px, y px, visibility)}, labels as the pose model gives them; None if no person."""
        if self._pose is None:
            self._pose = self._mp.solutions.pose.Pose(
                static_image_mode=True, model_complexity=BUNDLED_POSE_COMPLEXITY,
                enable_segmentation=False, min_detection_confidence=POSE_MIN_DETECTION_CONFIDENCE)
        result = self._pose.process(image)
        if result.pose_landmarks is None:
            return None
        lms = result.pose_landmarks.landmark
        names = self._mp.solutions.pose.PoseLandmark
        h, w = image.shape[:2]
        arms = {}
        for arm in ("LEFT", "RIGHT"):
            pts = []
            for part in ("ELBOW", "WRIST", "INDEX", "PINKY", "THUMB"):
                p = lms[names[f"{arm}_{part}"]]
                pts.append((p.x * w, p.y * h, p.visibility))
            arms[arm] = np.array(pts, dtype=np.float64)
        return arms

    # --- sides --------------------------------------------------------------------------

    def _assign_sides(self, cands: list[_Candidate]) -> dict[str, Detection]:
        """Full-frame candidates -> side -> Detection. Duplicates of one hand: the more
        confident is kept. Two hands with the same label: in video mode the assignment
        nearest to the previous frame's wrists wins; otherwise the more confident hand keeps
        its label and the other hand gets the other side."""
        kept: list[_Candidate] = []
        for c in sorted(cands, key=lambda c: -c.score):
            if not any(_is_same_hand(c.landmarks_px, k.landmarks_px) for k in kept):
                kept.append(c)
        kept = kept[:len(SIDES)]
        sides = [self._side_of(c.label) for c in kept]
        if len(kept) == 2 and sides[0] == sides[1]:
            if all(s in self._previous for s in SIDES):
                def cost(order: tuple[str, str]) -> float:
                    return sum(float(np.linalg.norm(c.landmarks_px[WRIST]
                                                    - self._previous[s].landmarks_px[WRIST]))
                               for c, s in zip(kept, order))
                sides = list(min((("left", "right"), ("right", "left")), key=cost))
            else:
                sides[1] = _other(sides[0])  # kept is sorted by score: the first keeps its label
        return {s: Detection(s, c.score, c.landmarks_px, c.world, "palm")
                for s, c in zip(sides, kept)}

    # --- second-hand recovery -----------------------------------------------------------

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
            t0 = time.perf_counter()
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
            prev = self._previous.get(side) if self.video else None
            if prev is None:
                return None
            box = prev.box(1.0)
            # Turned so that the hand points up (wrist -> middle finger base), as MediaPipe's
            # own tracking turns its crops: the landmark model expects upright hands.
            pointing = prev.landmarks_px[MIDDLE_MCP] - prev.landmarks_px[WRIST]
            angle = float(np.arctan2(pointing[0], -pointing[1]))
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
