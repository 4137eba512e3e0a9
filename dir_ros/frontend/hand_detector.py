"""Hand front end: per-side 2D/3D hand landmarks from one RGB image with MediaPipe Hands,
frame by frame: exposure, landmark tracking, palm pass, side assignment and the recovery
routes (dir_ros.frontend.recovery), with counts of how often each fires. No ROS here.
Conventions: dir_ros.frontend.detection.

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
  3. recovery  the routes of dir_ros.frontend.recovery, only while a side is still
               missing, also when step 2 found no hand at all.
With track_landmarks off (the old way, kept as the baseline) step 1 is MediaPipe's own
tracking graph (palm detector whenever fewer than two hands are tracked), step 2 every frame.
Photos (video False) run steps 0, 2, 3.

Same-label conflicts: if the full-frame pass returns two hands with the same label, the
more confident hand keeps its side and the other gets the other side; in video mode, when
the last frame had both sides, the assignment nearest to the last frame's wrists wins
instead. (Image position is not used: it flips between a facing and an egocentric camera.)

MEASURED RESULTS (2-core x86_64 shared with other jobs, model_complexity 1): the photos and
routes in dir_ros.frontend.recovery.
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
from typing import Sequence

import cv2
import numpy as np

from dir_ros.frontend.detection import (DEFAULT_RECOVERY_ROUTES, RECOVERY_ROUTES, SIDES,
                                        SOURCES, WRIST, Detection, _Candidate, _hand_size,
                                        _is_same_hand, _other)
from dir_ros.frontend.exposure import exposure_gain
from dir_ros.frontend.models import (BUNDLED_HAND_COMPLEXITIES, DEFAULT_MIN_DETECTION_CONFIDENCE,
                                     DEFAULT_MIN_TRACKING_CONFIDENCE, MediaPipeGraphs)
from dir_ros.frontend.recovery import MAX_SIZE_RATIO, SecondHandRecovery
from dir_ros.frontend.regions import follow_region

# --- landmark tracking ('follow', video mode with track_landmarks) ------------------------
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


class HandDetector(MediaPipeGraphs, SecondHandRecovery):
    """MediaPipe Hands front end: at most one Detection per side of the person, per frame.

    video True: frames of one stream, in order; False: every call independent (static-image
    mode). track_landmarks (video only): follow each hand of the previous frame with the
    landmark model alone on its predicted region and run the palm detector only while a
    hand is missing; False: MediaPipe's own tracking graph, as before (the baseline).
    recover_second_hand: look for a missing hand on crops (routes: dir_ros.frontend.recovery).
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
