"""Hand front end: per-side 2D/3D hand landmarks from one RGB image with MediaPipe Hands.

No ROS here. MediaPipe 0.10.21 runs offline on the models inside its wheel (palm detector,
hand landmark model, pose model: requirements/detect.txt); nothing downloads at run time.

Conventions (those of dir_ros.common.geometry):
  * landmarks_px: image pixels, origin at the top-left *corner* of the top-left pixel.
    MediaPipe's normalised landmarks span the image extent [0, 1] (x * width is a
    corner-origin coordinate), so landmarks_px = (x * W, y * H).
  * Landmark order: MediaPipe's = the contract's (wrist, thumb 1-4, index, middle, ring,
    pinky, each base to tip).
  * side: the person's own hand. MediaPipe labels handedness as if the image were mirrored
    (a selfie view), so for an ordinary camera (mirrored_input False) its "Right" is the
    person's left hand; with mirrored_input True the label is taken as it is.

Per frame (video mode, track_landmarks on, the default):
  0. exposure  a dim frame is brightened first (exposure_gain; counted as 'exposure').
  1. follow    each hand of the previous frame is looked for by the landmark model alone
               (MediaPipe's HandLandmarkCpu subgraph, both regions in one graph, run in
               parallel) in the region its last landmarks predict (follow_region, the rule
               of MediaPipe's own tracking). Its side is carried over; its score is the
               landmark model's probability of that side. No palm detector.
  2. palm      only while a side is missing: the palm detector + landmark model on the full
               frame (static pass); a new hand takes the missing side. While a hand is
               followed and the missing one has not been seen for REGION_MEMORY_FRAMES, the
               pass rests with the recovery (one frame in RECOVERY_COOLDOWN_FRAMES + 1).
  3. recovery  the routes below, only while a side is still missing, also when step 2
               found no hand at all.
With track_landmarks off (the old way, kept as the baseline) step 1 is MediaPipe's own
tracking graph (palm detector whenever fewer than two hands are tracked), step 2 every frame.
Photos (video False) run steps 0, 2, 3.

Second-hand recovery (interacting hands): the palm detector often finds one hand of two
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
(The rows above are of the old way: track_landmarks did not exist yet.)
Landmark tracking (issue 19; benchmarks/benchmark_landmarks.py): the issue-19 clips (each photo
in a 640x480 frame drifting 0.5 px/frame, 60 frames), the old way (track_landmarks False)
and the new one in one run, frame by frame in turn, load average 1.7-3.5 on the 2 cores:
         detector median ms  both hands  landmark jitter L/R (px/frame^2)  hands per route
  demo1   80.2 -> 22.5       60 -> 60    8.83/2.26 -> 2.18/1.58   palm 71 track 48 pair 1 ->
                                                                  palm 1 follow 118 pair 1
  demo2   68.7 -> 24.1       60 -> 60    14.84/6.52 -> 4.69/2.58  palm 76 track 44 ->
                                                                  palm 2 follow 118
  demo3   63.5 -> 21.4       60 -> 60    19.97/3.02 -> 3.32/4.27  palm 60 track 49 pair 11 ->
                                                                  palm 1 follow 118 pair 1
  Whole landmark backend (detector + fit + placement), same run: 114.5/85.4/77.5 ms ->
  43.4/36.7/34.0 ms (docs/figures/benchmark_landmarks.json).
  The lite landmark model for following was 1.7x faster but lost the half-hidden hands
  (their landmarks jittered 41-54 px/frame^2; demo3 had both hands valid on 1 frame of 60).
  One hand in view (person_room / person_table, the other hand greyed out, 60 frames): the
  palm pass runs on 10 frames of 60, median 31 / 16 ms against 77 / 38 ms the old way.
  Dim photos (0.3x and 0.12x): the palm detector and every recovery route found no hand;
  with the exposure step both hands on all six. Dim clips (0.3x, 20 frames): old way 0, 0, 0
  frames with both hands, now 20, 20, 8.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from dir_ros.common import geometry as geo

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

# --- landmark tracking ('follow', video mode with track_landmarks) ------------------------
# The region fed to the landmark model for a hand seen in the previous frame, the rule of
# MediaPipe's own hand tracking (its HandLandmarkLandmarksToRoi subgraph; the numbers are
# MediaPipe's): the bounding box, in the hand's upright frame (wrist -> middle-finger base
# pointing up), of the wrist, thumb and finger-base landmarks below ...
FOLLOW_ROI_LANDMARKS = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)
# ... made square on its longer side and scaled by this ...
FOLLOW_ROI_SCALE = 2.0
# ... and moved this fraction of its side towards the fingers.
FOLLOW_ROI_SHIFT = 0.1
# A followed hand is kept while the landmark model's hand-presence score is at least this
# fraction of min_tracking_confidence (0.2 with MediaPipe's default 0.5). Measured on the
# three drifting clips: the half-hidden hand of demo2 scores 0.39-0.64 on its regions
# (median 0.49: MediaPipe's 0.5 lost it on every third frame), the other hands 0.95-0.99;
# the same regions on a grey frame, on the photo moved away or on noise score at most 0.01.
FOLLOW_PRESENCE_FRACTION = 0.4
# A followed hand is dropped (so that the palm pass runs on that very frame) when the landmark
# model's handedness gives its side a probability under this: MediaPipe's handedness is a
# two-class score, so under 0.5 the model sees the other side's hand there. After a scene cut
# the old region lands on another hand or on clutter: samples/person_room.jpg -> person_table
# kept following a 'right' region the model scored 0.49 -> 0.10 for that side, which the
# backend (min_confidence 0.5 too) marks invalid: both hands on none of the 15 frames after
# the cut, and on 6 of 15 after three other cuts of the 12 between the samples; with the drop,
# on all 15 after every cut (benchmarks/benchmark_landmarks.py, scene cuts). person_room's lower
# left hand (side score 0.25-0.8 on its followed region) was valid on 7 of 60 frames of its
# drifting clip, 60 of 60 with the drop (the palm pass's side assignment gives it). The hands
# of the three interacting-hand clips score at least 0.5 on every frame (no drop: same
# routes, both hands 60/60).
FOLLOW_MIN_SIDE_SCORE = 0.5
# The 'track' route (crops around a hand's last known region, palm detector on the crop)
# keeps trying a lost hand's region for this many frames after it was last seen: 15 = half
# a second at 30 Hz (a hand gone longer than that has likely moved on; the palm pass and the
# pose routes still look for it). The switch-off (track_landmarks False) keeps the old rule:
# the previous frame only.
REGION_MEMORY_FRAMES = 15

# --- exposure ------------------------------------------------------------------------------
# A dim frame is brightened (one gain on every channel) before any model sees it. The palm
# detector finds no hand on the three photos dimmed to 0.3x (luma 99th percentile 69-70),
# and the whole front end none either. Brought up to a 99th percentile of 240, the 7 photos
# (shared/images, shared/samples) dimmed to 0.3/0.12/0.05x gave 39 of their 42 hands (the
# front end with recovery; 37 at 200, 32 at 150); undimmed, their 99th percentiles are
# 188-245 and they are left alone. The gain is full below EXPOSURE_FULL_BELOW, 1 above
# EXPOSURE_NONE_ABOVE and blends linearly between, so a stream near the limit does not
# flicker between two exposures.
EXPOSURE_TARGET_P99 = 240.0
EXPOSURE_FULL_BELOW = 120.0
EXPOSURE_NONE_ABOVE = 160.0
# Largest gain: a 0.05x frame (99th percentile about 11) needs 22; above 16, JPEG and
# sensor noise dominate what is left of an 8-bit image.
MAX_EXPOSURE_GAIN = 16.0
# The percentile is taken on every EXPOSURE_STRIDE-th pixel of every EXPOSURE_STRIDE-th row:
# a 640x480 frame still gives 19,200 samples, in well under a millisecond.
EXPOSURE_STRIDE = 4
# Which percentile of the luma (OpenCV's ITU-R BT.601 grey) the exposure rule reads: a
# bright highlight, not the mean, so that a dark background with a lit hand is left alone.
EXPOSURE_PERCENTILE = 99.0

# Every source a Detection can name (route_counts keys): the full-frame palm pass, the
# landmark tracking step, and the recovery routes.
SOURCES = ("palm", "follow") + RECOVERY_ROUTES


@dataclass
class Detection:
    """One detected hand: the person's side, confidence, 2D landmarks (px), 3D world landmarks.

    score: MediaPipe's handedness score in [0, 1] (for 'follow' and for a hand placed beside a
    followed one: the probability of this side; the hand-presence score is not returned,
    hands under the detection/tracking thresholds are dropped). landmarks_px (21,2) float64
    image pixels, corner-origin, MediaPipe order; world (21,3) float64 metres, MediaPipe
    world landmarks (origin near the hand's centre, axes of the camera: x right, y down, z
    forward). source: 'palm' (the full-frame MediaPipe graph: palm detector, and with
    track_landmarks off in video mode its own tracking), 'follow' (the landmark model alone
    on the region of the previous frame's hand), or the recovery route that found it
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
    presence: float = float("nan")  # hand-presence score in [0, 1] where the graph gives it


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


def _upright_angle(points: np.ndarray) -> float:
    """Angle (rad, clockwise from image 'up') of the hand's wrist -> middle-finger-base
    direction in points (21,2) px: turning the image by it makes the hand point up."""
    pointing = points[MIDDLE_MCP] - points[WRIST]
    return float(np.arctan2(pointing[0], -pointing[1]))


def follow_region(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The region where the landmark model looks for a hand of the previous frame, from its
    landmarks points (21,2) px: (centre (2,) px, side px, angle rad clockwise from up);
    MediaPipe's tracking rule (FOLLOW_ROI_* constants)."""
    pts = np.asarray(points, dtype=np.float64)
    angle = _upright_angle(pts)
    c, s = np.cos(angle), np.sin(angle)
    to_hand = np.array([[c, s], [-s, c]])  # image offsets -> the hand's upright frame
    q = (pts[list(FOLLOW_ROI_LANDMARKS)] - pts[WRIST]) @ to_hand.T
    lo, hi = q.min(axis=0), q.max(axis=0)
    side = max(float(np.max(hi - lo)) * FOLLOW_ROI_SCALE, geo.MIN_CROP_PX)
    centre_hand = (lo + hi) / 2.0 + np.array([0.0, -FOLLOW_ROI_SHIFT * side])  # up = fingers
    return pts[WRIST] + centre_hand @ to_hand, side, angle


def exposure_gain(image: np.ndarray) -> float:
    """Gain (>= 1) for image (H,W,3) uint8 RGB: full (its luma EXPOSURE_PERCENTILE brought to
    EXPOSURE_TARGET_P99, at most MAX_EXPOSURE_GAIN) below EXPOSURE_FULL_BELOW, 1 above
    EXPOSURE_NONE_ABOVE, blended linearly between."""
    luma = cv2.cvtColor(np.ascontiguousarray(image[::EXPOSURE_STRIDE, ::EXPOSURE_STRIDE]),
                        cv2.COLOR_RGB2GRAY)
    # the percentile from the 256-bin histogram (uint8 levels): no sort
    cumulative = np.cumsum(np.bincount(luma.ravel(), minlength=256))
    level = float(np.searchsorted(cumulative, EXPOSURE_PERCENTILE / 100.0 * cumulative[-1]))
    if level >= EXPOSURE_NONE_ABOVE:
        return 1.0
    full = min(EXPOSURE_TARGET_P99 / max(level, 1.0), MAX_EXPOSURE_GAIN)
    weight = min((EXPOSURE_NONE_ABOVE - level) / (EXPOSURE_NONE_ABOVE - EXPOSURE_FULL_BELOW), 1.0)
    return 1.0 + weight * (full - 1.0)


def _landmark_graph_text(count: int) -> str:
    """Text proto of a MediaPipe graph running its hand landmark subgraph (HandLandmarkCpu:
    the landmark model alone, no palm detector) on `count` regions of one image: input
    streams image, roi0..; outputs landmarks{i}, world{i}, handedness{i} (the nodes run in
    parallel on MediaPipe's executor)."""
    lines = ['input_stream: "image"', 'input_side_packet: "model_complexity"']
    for i in range(count):
        lines += [f'input_stream: "roi{i}"', f'output_stream: "landmarks{i}"',
                  f'output_stream: "world{i}"', f'output_stream: "handedness{i}"',
                  f'node {{ name: "follow{i}" calculator: "HandLandmarkCpu" '
                  f'input_stream: "IMAGE:image" input_stream: "ROI:roi{i}" '
                  f'input_side_packet: "MODEL_COMPLEXITY:model_complexity" '
                  f'output_stream: "LANDMARKS:landmarks{i}" '
                  f'output_stream: "WORLD_LANDMARKS:world{i}" '
                  f'output_stream: "HANDEDNESS:handedness{i}" }}']
    return "\n".join(lines)


class HandDetector:
    """MediaPipe Hands front end: at most one Detection per side of the person, per frame.

    video True: frames of one stream, in order; False: every call independent (static-image
    mode). track_landmarks (video only): follow each hand of the previous frame with the
    landmark model alone on its predicted region and run the palm detector only while a
    hand is missing; False: MediaPipe's own tracking graph, as before (the baseline).
    recover_second_hand: look for a missing hand on crops (routes in the module docstring).
    recovery_routes: the ladder to try, in order. normalise_exposure: brighten dim frames
    (exposure_gain) before any model sees them.
    route_counts (source -> hands it delivered, plus 'exposure': frames brightened) and
    route_runs (stage -> times it ran, plus 'frames') add up over the detector's life (reset()
    keeps them; clear_counts() empties them): how often each route fires.
    """

    def __init__(self, mirrored_input: bool = False, video: bool = True,
                 min_detection_confidence: float = DEFAULT_MIN_DETECTION_CONFIDENCE,
                 min_tracking_confidence: float = DEFAULT_MIN_TRACKING_CONFIDENCE,
                 model_complexity: int = 1, recover_second_hand: bool = True,
                 recovery_routes: Sequence[str] = DEFAULT_RECOVERY_ROUTES,
                 track_landmarks: bool = True, normalise_exposure: bool = True,
                 follow_min_side_score: float = FOLLOW_MIN_SIDE_SCORE) -> None:
        """Build the MediaPipe graphs (bundled models only: no download).
        follow_min_side_score: a followed hand whose side the landmark model scores under
        this is dropped and the palm pass runs (0: never dropped, the behaviour before)."""
        import mediapipe as mp  # local: importing dir_ros must not need mediapipe

        from dir_ros.common.native_log import quiet_native_logs

        quiet_native_logs()  # MediaPipe's C++ log lines stay off the console (native_log.py)

        if model_complexity not in BUNDLED_HAND_COMPLEXITIES:
            raise ValueError(f"model_complexity must be one of {BUNDLED_HAND_COMPLEXITIES} "
                             f"(the models inside the mediapipe wheel), got {model_complexity}")
        unknown = [r for r in recovery_routes if r not in RECOVERY_ROUTES]
        if unknown:
            raise ValueError(f"unknown recovery routes {unknown}; known: {RECOVERY_ROUTES}")
        self.mirrored_input = bool(mirrored_input)
        self.video = bool(video)
        self.track_landmarks = bool(track_landmarks) and self.video
        self.recover_second_hand = bool(recover_second_hand)
        self.recovery_routes = tuple(recovery_routes)
        self.normalise_exposure = bool(normalise_exposure)
        if not 0.0 <= follow_min_side_score <= 1.0:
            raise ValueError(f"follow_min_side_score must be in [0, 1], got "
                             f"{follow_min_side_score}")
        self.follow_min_side_score = float(follow_min_side_score)
        self._mp = mp
        # Full-frame graph: MediaPipe's tracking graph only for the old video way; with our
        # own tracking (or for photos) every palm pass is an independent static pass.
        self._hands = mp.solutions.hands.Hands(
            static_image_mode=not self.video or self.track_landmarks, max_num_hands=2,
            model_complexity=model_complexity,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence)
        # hand-presence threshold of the landmark tracking ('follow') step
        self._follow_presence = FOLLOW_PRESENCE_FRACTION * float(min_tracking_confidence)
        self._crop_hands = None  # static-mode graph for recovery crops, built on first use
        self._pose = None  # pose graph, built on first use
        self._follow_graphs: dict[int, object] = {}  # regions -> landmark-only graph, on use
        self._model_complexity = model_complexity
        self._previous: dict[str, Detection] = {}
        # side -> (last Detection of that side, frame number it was seen on): 'track' regions
        self._last_seen: dict[str, tuple[Detection, int]] = {}
        self._frame = 0
        self._cooldown = 0
        # Seconds spent per stage in the last call ('palm' and each route tried): diagnostics.
        self.last_timings: dict[str, float] = {}
        self.route_counts: dict[str, int] = {}
        self.route_runs: dict[str, int] = {}
        self.clear_counts()

    # --- public API ---------------------------------------------------------------------

    def __call__(self, rgb: np.ndarray) -> dict[str, Detection]:
        """Hands in rgb (H,W,3) uint8 RGB: side -> Detection, at most one per side, {} if none."""
        image = np.ascontiguousarray(rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an (H,W,3) uint8 RGB image, got {image.shape} {image.dtype}")
        self.last_timings = {}
        self._frame += 1
        self.route_runs["frames"] += 1
        if self.normalise_exposure:
            gain = exposure_gain(image)
            if gain > 1.0:
                image = cv2.convertScaleAbs(image, alpha=gain)  # saturating uint8 gain
                self.route_counts["exposure"] += 1
        found: dict[str, Detection] = {}
        if self.track_landmarks and self._previous:
            found = self._follow(image)
        if len(found) < len(SIDES) and self._palm_pass_due(found):
            t0 = time.perf_counter()
            cands = self._run_full(image)
            self.route_runs["palm"] += 1
            if found:
                self._add_new_hand(cands, found)
            else:
                found = self._assign_sides(cands)
            self.last_timings["palm"] = time.perf_counter() - t0
        if self.recover_second_hand and len(found) < len(SIDES):
            self._recover(image, found)
        for d in found.values():
            self.route_counts[d.source] += 1
        if self.video:
            self._previous = dict(found)
            for side, d in found.items():
                self._last_seen[side] = (d, self._frame)
        return found

    def _palm_pass_due(self, found: dict[str, Detection]) -> bool:
        """Whether the full-frame palm pass runs on a frame where a side is missing: always,
        except with track_landmarks while a hand is followed, the missing side has not been
        seen for REGION_MEMORY_FRAMES frames and the recovery is resting after a failed
        search (RECOVERY_COOLDOWN_FRAMES): a stream with one hand in view then pays the
        landmark model alone on 5 frames of 6, and a second hand coming in is picked up
        within 6 frames (0.2 s at 30 Hz)."""
        if not self.track_landmarks or not found or self._cooldown == 0:
            return True
        return any(self._region(s) is not None for s in SIDES if s not in found)

    def clear_counts(self) -> None:
        """Empty route_counts and route_runs (every key present, at 0)."""
        self.route_counts = {k: 0 for k in SOURCES + ("exposure", "follow_dropped")}
        self.route_runs = {k: 0 for k in ("frames",) + SOURCES}

    def reset(self) -> None:
        """Forget all tracking state (MediaPipe's and ours): the next frame starts a new stream."""
        self._hands.reset()
        self._previous = {}
        self._last_seen = {}
        self._cooldown = 0

    def close(self) -> None:
        """Release the MediaPipe graphs."""
        for graph in (self._hands, self._crop_hands, self._pose, *self._follow_graphs.values()):
            if graph is not None:
                graph.close()
        self._hands = self._crop_hands = self._pose = None
        self._follow_graphs = {}

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

    # --- landmark tracking ----------------------------------------------------------------

    def _follow_graph(self, count: int) -> object:
        """The landmark-only graph for `count` regions (built on first use): MediaPipe's
        hand landmark subgraph, its presence threshold FOLLOW_PRESENCE_FRACTION x
        min_tracking_confidence."""
        if count not in self._follow_graphs:
            from google.protobuf import text_format
            from mediapipe.framework import calculator_pb2
            from mediapipe.python.solution_base import SolutionBase

            config = text_format.Parse(_landmark_graph_text(count),
                                       calculator_pb2.CalculatorGraphConfig())
            outputs = [f"{k}{i}" for i in range(count) for k in ("landmarks", "world",
                                                                  "handedness")]
            # The subgraph's hand-presence score (an inner stream of the expanded graph).
            outputs += [f"follow{i}__hand_presence_score" for i in range(count)]
            self._follow_graphs[count] = SolutionBase(
                graph_config=config, side_inputs={"model_complexity": self._model_complexity},
                outputs=outputs,
                calculator_params={f"follow{i}__ThresholdingCalculator.threshold":
                                   self._follow_presence for i in range(count)})
        return self._follow_graphs[count]

    def _run_regions(self, image: np.ndarray, regions: list[tuple[np.ndarray, float, float]]
                     ) -> list[Optional[_Candidate]]:
        """The landmark model alone on each region (centre (2,) px, side px, angle rad) of
        image: per region the hand it sees (image pixels, image-aligned world axes) or None
        when its hand-presence score is under the follow threshold."""
        from mediapipe.framework.formats import rect_pb2

        h, w = image.shape[:2]
        inputs: dict[str, object] = {"image": image}
        for i, (centre, side, angle) in enumerate(regions):
            # MediaPipe's NormalizedRect: centre and size as fractions of the image's width
            # and height, rotation clockwise in image coordinates (radians).
            inputs[f"roi{i}"] = rect_pb2.NormalizedRect(
                x_center=float(centre[0]) / w, y_center=float(centre[1]) / h,
                width=side / w, height=side / h, rotation=angle)
        out = self._follow_graph(len(regions)).process(inputs)
        hands: list[Optional[_Candidate]] = []
        for i in range(len(regions)):
            lms, world, handed = (getattr(out, f"{k}{i}")
                                  for k in ("landmarks", "world", "handedness"))
            if lms is None or world is None or handed is None:
                hands.append(None)
                continue
            cls = handed.classification[0]
            px = np.array([[p.x * w, p.y * h] for p in lms.landmark], dtype=np.float64)
            xyz = np.array([[p.x, p.y, p.z] for p in world.landmark], dtype=np.float64)
            hands.append(_Candidate(cls.label, float(cls.score), px, xyz,
                                    float(getattr(out, f"follow{i}__hand_presence_score"))))
        return hands

    def _follow(self, image: np.ndarray) -> dict[str, Detection]:
        """Each hand of the previous frame, looked for by the landmark model alone in the
        region its landmarks predict (MediaPipe's tracking, no palm detector): side ->
        Detection ('follow'). A hand is kept when it is present, of a plausible size against
        the previous frame's, and not the other followed hand again (when both regions
        slid onto one hand, the one whose label agrees with its side, or the more confident,
        keeps it)."""
        t0 = time.perf_counter()
        sides = [s for s in SIDES if s in self._previous]
        regions = [follow_region(self._previous[s].landmarks_px) for s in sides]
        self.route_runs["follow"] += 1
        kept: list[tuple[str, _Candidate, float]] = []  # (side, hand, P(side))
        for side, hand in zip(sides, self._run_regions(image, regions)):
            if hand is None:
                continue
            ratio = _hand_size(hand.landmarks_px) / self._previous[side].size
            if not 1.0 / MAX_SIZE_RATIO <= ratio <= MAX_SIZE_RATIO:
                continue
            p_side = hand.score if self._side_of(hand.label) == side else 1.0 - hand.score
            if p_side < self.follow_min_side_score:  # the other side's hand: palm pass
                self.route_counts["follow_dropped"] += 1
                continue
            kept.append((side, hand, p_side))
        if len(kept) == 2 and _is_same_hand(kept[0][1].landmarks_px, kept[1][1].landmarks_px):
            kept = [max(kept, key=lambda k: k[2])]
        self.last_timings["follow"] = time.perf_counter() - t0
        return {side: Detection(side, p_side, hand.landmarks_px, hand.world, "follow")
                for side, hand, p_side in kept}

    def _add_new_hand(self, cands: list[_Candidate], found: dict[str, Detection]) -> None:
        """Palm-pass candidates beside followed hand(s): the most confident candidate that is
        not a found hand again takes the missing side, preferring one labelled so (a second
        hand labelled like the followed one is still the other hand: the same-label rule of
        _assign_sides). In place."""
        missing = [s for s in SIDES if s not in found]
        new = [c for c in sorted(cands, key=lambda c: -c.score)
               if not any(_is_same_hand(c.landmarks_px, d.landmarks_px) for d in found.values())]
        if not missing or not new:
            return
        side = missing[0]
        best = next((c for c in new if self._side_of(c.label) == side), new[0])
        score = best.score if self._side_of(best.label) == side else 1.0 - best.score
        found[side] = Detection(side, score, best.landmarks_px, best.world, "palm")

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
