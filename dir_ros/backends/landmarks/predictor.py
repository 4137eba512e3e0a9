"""Landmark backend: two hands without the DIR network, for users with no DIR checkpoint.

Per frame: the hand front end (frontend/hand_detector.HandDetector, MediaPipe's bundled models) gives each
hand's 21 image landmarks and 21 metric world landmarks (a hand it has just found, by any
route but following, is refined by a second, following pass on the same frame: detect());
per hand the world landmarks are
turned from the hand's own view into the camera's (geometry.ray_rotation), the hand model
(open hand or MANO) is fitted to them (fit.HandFitter: both hands in one batched
call, each warm-started from the previous frame), and with K the fitted keypoints are placed
in the camera frame so that they project onto the image landmarks (placement.place_hand).
Each hand's world landmarks are first rescaled to its held size (scale.ScaleHold: a hand
keeps its size from frame to frame), and two placed hands whose image regions meet are moved
together by the coupling step of contact.HandContact (touching, not passing through each
other; the finger step then turns interlocked fingers apart: contact.separate_pair, by
default on the frame where the interlock appears, its turns carried to the later frames).
Without K the hands are wrist-relative.
No ROS imports.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import replace
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from dir_ros.common import geometry as geo
from dir_ros.frontend.crop import detect_box
from dir_ros.backends.landmarks.contact import FINGER_PENETRATION_M
from dir_ros.common.results import SIDES, FrameResult, HandsResult, require_rgb

LOG = logging.getLogger("dir_ros.backends.landmarks.predictor")
# Torch threads for the fit: its tensors are tiny (21 keypoints, a 58-unknown solve), so a
# second thread only adds synchronisation, and on a loaded 2-core machine OpenMP workers
# waiting for a busy core made the fit 20x slower (24 ms -> 550 ms median, measured with
# benchmarks/benchmark_landmarks.py while another process trained a network).
FIT_TORCH_THREADS = 1
# The front end's route that runs the landmark model on the region of the hand's own previous
# landmarks (detection.Detection.source); every other route found the hand from another crop
# (palm box, pair or pose region, last region) whose landmarks are measurably worse: on the
# demo1 clip the first frame's world landmarks (the 'pair' route) were 34 mm (mean per joint,
# wrist-relative) off the clip's later ones and one 'follow' pass on the same frame brought
# them to 6 mm; root-relative joint jitter of that hand 1.76 -> 0.73 mm/frame^2
# (benchmarks/benchmark_steadiness.py).
FOLLOW_SOURCE = "follow"
# The finger step of interlocked fingers (hand_contact.separate_pair) per frame: 'off' never;
# 'always' on every frame where the coupled hands are still inside each other (12-17 ms a
# frame on this 2-core machine); 'onset' on the frame where the interlock first appears for a
# pair (a tested vertex deeper than hand_contact.FINGER_PENETRATION_M after the coupling, the
# depth under which the step itself does nothing), its finger turns then held (in each hand's
# own frame, so they turn with the hand) and applied to the later frames' fits (about 1 ms a
# frame), the step running again only when the pair is deeper than FINGER_RERUN_M inside each
# other with them; the held turns are forgotten when the pair is lost or apart and on
# reset(). They are held here, not in the fit's warm start (self._warm: the fit's own
# parameters): seeded with the turned pose, the next frame's fit (which converges to the same
# world landmarks) undid the turn (demo2 photo: 2.2 mm -> 8.7 mm on the next frame).
FINGER_STEP_MODES = ("off", "onset", "always")
# 'onset': the held turns are kept while the coupled pair's deepest tested vertex stays within
# this (m): issue 19's penetration target (3 mm); deeper, the step runs again on that frame.
FINGER_RERUN_M = 3e-3


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with `count` torch intra-op threads, then restore the previous count
    (process-wide while it runs: the landmark backend is the node's only torch user)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LandmarkPredictor:
    """Two hands from one RGB image through detected landmarks and a hand-model fit."""

    device = "cpu"  # the fit runs on the CPU: two hands, a few small batched steps
    precision = "fp32"

    def __init__(self, detector: Any, layers: Mapping[str, Any], min_confidence: float,
                 depth_range: Sequence[float], fitter_kwargs: Optional[dict] = None,
                 scale_hold: bool = True, hand_contact: bool = True,
                 refine_new_hands: bool = True, finger_step: Any = "onset") -> None:
        """scale_hold: hold each hand's size over the frames (hand_scale); hand_contact: the
        coupling step of two hands whose image regions meet (hand_contact); finger_step:
        after it, the finger step of interlocked fingers (hand_contact.separate_pair), one of
        FINGER_STEP_MODES (True/False: 'always'/'off'); on the demo2 photo it takes 8.3 mm
        of penetration to 2.2 mm at 12-17 ms, so by default ('onset') it runs on the frame
        where the interlock appears and its turns are carried to later frames;
        refine_new_hands: a newly found hand's landmarks refined by one landmark-tracking
        pass on the same frame (detect()); all False/'off' = the hands fitted
        and placed alone, frame by frame, with the front end's first landmarks (the
        behaviour before issue 19)."""
        from dir_ros.backends.landmarks.contact import HandContact
        from dir_ros.backends.landmarks.scale import ScaleHold
        from dir_ros.backends.landmarks.fit import HandFitter

        self.detector = detector
        self.layers = dict(layers)
        # one fitter for both sides: the two hands of a frame are fitted in one batch
        self.fitter = HandFitter({s: self.layers[s] for s in SIDES}, **(fitter_kwargs or {}))
        self.min_confidence = float(min_confidence)
        self.depth_range = (float(depth_range[0]), float(depth_range[1]))
        self.faces = {s: self.layers[s].faces.cpu().numpy().astype(np.int64) for s in SIDES}
        self.num_verts = {s: int(self.layers[s].num_verts) for s in SIDES}
        self._warm: dict[str, np.ndarray] = {}  # side -> last fit's params (warm start)
        self.scale = ScaleHold(enabled=scale_hold)  # held hand sizes (cleared by reset())
        self.contact: Optional[HandContact] = HandContact() if hand_contact else None
        self.refine_new_hands = bool(refine_new_hands)
        self.finger_step = finger_step  # checked, normalised (property)
        # 'onset': the finger turns held for the coupled pair, side -> finger id -> rotation
        # (3,3) in the hand's own frame (the fit's root frame; cleared by reset(), on loss)
        self._turns: dict[str, dict[int, np.ndarray]] = {}
        self.weights = {s: self.layers[s].th_weights.cpu().numpy().astype(np.float64)
                        for s in SIDES}  # (V,16) skinning weights, for the finger step
        from dir_ros.backends.landmarks.contact import finger_weights

        # (V,5) their sums per finger: the held turns' (finger_step 'onset')
        self.finger_w = {s: finger_weights(w) for s, w in self.weights.items()}

    @property
    def finger_step(self) -> str:
        """The finger step's mode, one of FINGER_STEP_MODES."""
        return self._finger_step

    @finger_step.setter
    def finger_step(self, mode: Any) -> None:
        """Set the mode (a FINGER_STEP_MODES name, or True/False for 'always'/'off');
        ValueError naming the modes otherwise. The held turns are forgotten."""
        if isinstance(mode, (bool, np.bool_)):
            mode = "always" if mode else "off"
        if mode not in FINGER_STEP_MODES:
            raise ValueError(f"finger_step must be one of {FINGER_STEP_MODES} (or a bool), "
                             f"got {mode!r}")
        self._finger_step = str(mode)
        self._turns = {}

    @classmethod
    def from_config(cls, config: Any) -> "LandmarkPredictor":
        """Build from a predictor config (dir_ros.config.DEFAULT_CONFIG keys; the network's keys
        are not used)."""
        from dir_ros.hand_model import build_hand_layers
        from dir_ros.config import hand_model_dir, load_config, make_detector

        cfg = load_config(config)
        layers = build_hand_layers(hand_model_dir(cfg["hand_model"]))
        return cls(make_detector(cfg), layers, min_confidence=float(cfg["min_confidence"]),
                   depth_range=cfg["depth_range"], scale_hold=bool(cfg["scale_hold"]),
                   hand_contact=bool(cfg["hand_contact"]), finger_step=cfg["finger_step"])

    def reset(self) -> None:
        """Forget the previous frames (detector tracks, warm starts, held hand sizes)."""
        self._warm.clear()
        self._turns = {}
        self.scale.reset()
        if self.contact is not None:
            self.contact.reset()
        self.detector.reset()

    def predict(self, rgb: np.ndarray, K: Optional[np.ndarray] = None) -> FrameResult:
        """rgb (H,W,3) uint8, K (3,3) intrinsics or None -> FrameResult (both hands)."""
        rgb = require_rgb(rgb)
        t0 = time.perf_counter()
        detections = self.detect(rgb)
        t1 = time.perf_counter()
        result = self.hands_from_detections(detections, (rgb.shape[1], rgb.shape[0]), K)
        result.timings = {"detect_ms": 1e3 * (t1 - t0), **result.timings}
        return result

    def detect(self, rgb: np.ndarray) -> dict[str, Any]:
        """The hand front end on rgb (H,W,3) uint8: side -> detection.Detection; with
        refine_new_hands and a front end that follows hands (video mode, track_landmarks),
        hands found by a route other than FOLLOW_SOURCE (new or re-found) are refined."""
        return self.refine(rgb, self.detector(rgb))

    def refine(self, rgb: np.ndarray, detections: Mapping[str, Any]) -> dict[str, Any]:
        """Detections of rgb with each newly found hand (source not FOLLOW_SOURCE) replaced
        by the front end's landmark-tracking pass on the same frame (it follows the hand from
        these first landmarks: the landmark model on its own landmarks' region, as on the
        next frame; a side that pass loses keeps its first detection). One more front-end
        call on the frames where a hand is (re)found, none otherwise; its route counts count
        that pass too."""
        detections = dict(detections)
        if not (self.refine_new_hands and getattr(self.detector, "track_landmarks", False)
                and any(d.source != FOLLOW_SOURCE for d in detections.values())):
            return detections
        again = self.detector(rgb)
        for side, det in again.items():
            if side in detections and detections[side].source != FOLLOW_SOURCE \
                    and det.source == FOLLOW_SOURCE:
                detections[side] = det
        return detections

    def hands_from_detections(self, detections: Mapping[str, Any], image_size: tuple[int, int],
                              K: Optional[np.ndarray]) -> FrameResult:
        """Detections (side -> detection.Detection) of an image of image_size (w, h) px ->
        FrameResult; the fit and placement half of predict()."""
        t0 = time.perf_counter()
        K = geo.usable_intrinsics(K)  # an uncalibrated CameraInfo carries K = 0
        hands = {}
        with torch_threads(FIT_TORCH_THREADS):
            ready = {}  # side -> (detection, image landmarks (21,2) px)
            targets = {}  # side -> fit target (21,3) m
            for side in SIDES:
                det = detections.get(side)
                prepared = None if det is None else self._target(side, det, K)
                if prepared is not None:
                    ready[side], targets[side] = (det, prepared[0]), prepared[1]
            fits = self._fit_hands(targets)
            for side in SIDES:
                hands[side] = self._hand(side, *ready[side], *fits[side], K) if side in ready \
                    else HandsResult.invalid(side, self.faces[side], self.num_verts[side])
                if not hands[side].valid:
                    self._warm.pop(side, None)
                if side not in ready:  # lost: its size is measured afresh when found again
                    self.scale.reset(side)
            t_contact = time.perf_counter()
            coupled = self.contact is not None and K is not None and self._couple(hands, K)
            contact_ms = 1e3 * (time.perf_counter() - t_contact)
        found = [d.landmarks_px for d in detections.values()]
        box = detect_box(found) if found else geo.full_frame_box(*image_size)
        result = FrameResult(left=hands["left"], right=hands["right"], box=box,
                             image_size=(int(image_size[0]), int(image_size[1])),
                             timings={"fit_ms": 1e3 * (time.perf_counter() - t0) - contact_ms})
        if coupled:  # the coupling step's cost, on the frames where it ran
            result.timings["contact_ms"] = contact_ms
        return result

    def _couple(self, hands: dict[str, HandsResult], K: np.ndarray) -> bool:
        """Move two valid metric hands whose image regions meet by the coupling step's
        offsets (in place; hand_contact.HandContact); True when it ran (the regions met)."""
        left, right = hands["left"], hands["right"]
        if not (left.valid and right.valid and left.metric and right.metric):
            self.contact.reset()  # a pair no longer: its relative depth starts afresh
            self._turns = {}  # and its fingers' interlock too
            return False
        if self._turns:  # 'onset': the pair's held finger turns on this frame's fits
            self._apply_held_turns(hands)
            left, right = hands["left"], hands["right"]
        offsets = self.contact.offsets(
            left.vertices, left.faces, left.keypoints_2d, left.wrist_position,
            right.vertices, right.faces, right.keypoints_2d, right.wrist_position)
        if offsets is None:
            self._turns = {}  # apart: an interlock later is a new one
            return False
        for side, d in zip(SIDES, offsets):
            h = hands[side]
            hands[side] = replace(h, vertices=(h.vertices + d).astype(np.float32),
                                  joints=(h.joints + d).astype(np.float32),
                                  wrist_position=h.wrist_position + d)
        depth = self.contact.depth_m  # deepest tested vertex left inside after the coupling
        if self.contact.inside and (self.finger_step == "always" or (
                self.finger_step == "onset" and depth > (
                    FINGER_RERUN_M if self._turns else FINGER_PENETRATION_M))):
            self._separate_fingers(hands, K)
        return True

    def _apply_held_turns(self, hands: dict[str, HandsResult]) -> None:
        """The held finger turns (hand frame) applied to this frame's hands, in place
        (hand_contact.turn_fingers; each hand's root rotation from its fitted pose)."""
        from dir_ros.backends.landmarks.contact import turn_fingers

        for side, local in self._turns.items():
            h = hands[side]
            pose = np.asarray(h.pose, np.float64).reshape(-1, 3)
            root = geo.axis_angle_to_matrix(pose[0])  # camera frame <- hand frame
            turns = {f: root @ rot @ root.T for f, rot in local.items()}
            step = turn_fingers(h.vertices, h.joints, self.finger_w[side], turns)
            hands[side] = replace(h, vertices=step.vertices.astype(np.float32),
                                  joints=step.joints.astype(np.float32),
                                  pose=self._turned_pose(pose, root, turns))

    @staticmethod
    def _turned_pose(pose: np.ndarray, root: np.ndarray, turns: dict) -> np.ndarray:
        """A hand's pose (16,3) axis-angle with each finger's base joint's local rotation
        taking its camera-frame turn (3,3): (48,) float32."""
        from dir_ros.backends.landmarks.contact import FINGER_BASE_JOINT

        pose = np.array(pose, np.float64).reshape(-1, 3)
        if turns:  # one batched conversion each way (scipy's cost is per call)
            fingers = list(turns)
            joints = [FINGER_BASE_JOINT[f] for f in fingers]  # children of the root:
            local = geo.axis_angle_to_matrix(pose[joints])  # local = root^T world
            world = np.stack([root.T @ turns[f] @ root for f in fingers])
            pose[joints] = geo.matrix_to_axis_angle(world @ local)
        return pose.reshape(-1).astype(np.float32)

    def _separate_fingers(self, hands: dict[str, HandsResult], K: np.ndarray) -> None:
        """The finger step (hand_contact.separate_pair) of two coupled hands, in place: the
        turned fingers' vertices and keypoints, and their base joints' local rotations."""
        from dir_ros.backends.landmarks.contact import separate_pair

        steps = separate_pair(*((hands[s].vertices, hands[s].joints, hands[s].faces,
                                 self.weights[s]) for s in SIDES), K)
        if steps is None:
            return
        for side, step in zip(SIDES, steps):
            if not step.turns:
                continue
            h = hands[side]
            pose = np.asarray(h.pose, np.float64).reshape(-1, 3)
            root = geo.axis_angle_to_matrix(pose[0])  # camera frame <- hand frame
            hands[side] = replace(h, vertices=step.vertices.astype(np.float32),
                                  joints=step.joints.astype(np.float32),
                                  pose=self._turned_pose(pose, root, step.turns))
            if self.finger_step == "onset":  # held in the hand's frame, on top of the held
                held = self._turns.setdefault(side, {})
                for finger, turn in step.turns.items():
                    held[finger] = root.T @ turn @ root @ held.get(finger, np.eye(3))

    def _target(self, side: str, det: Any, K: Optional[np.ndarray]
                ) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """One detection -> (image landmarks (21,2) px, fit target (21,3) m wrist-relative,
        camera-aligned); None when its landmarks are not finite."""
        px = np.asarray(det.landmarks_px, dtype=np.float64)
        world = np.asarray(det.world, dtype=np.float64)
        if not (np.all(np.isfinite(px)) and np.all(np.isfinite(world))):
            LOG.debug("%s hand: non-finite landmarks", side)
            return None
        # MediaPipe's world landmarks describe the hand as seen along the ray through it (its
        # landmark model sees a crop around the hand): rotate them into the camera's view.
        view = geo.ray_rotation(K, px.mean(axis=0)) if K is not None else np.eye(3)
        world = self.scale(side, world)  # the hand's held size (unchanged when off)
        return px, (world - world[0]) @ view.T

    def _fit_hands(self, targets: Mapping[str, np.ndarray]) -> dict[str, tuple[Any, int]]:
        """Fit every side's target (21,3) m in one batch, each warm-started from its previous
        frame (a NaN init row: cold); side -> (FitResult, its row)."""
        if not targets:
            return {}
        from dir_ros.backends.landmarks.fit import NUM_FIT_PARAMS

        sides = list(targets)
        init = None
        if any(s in self._warm for s in sides):
            init = np.stack([self._warm[s][0] if s in self._warm
                             else np.full(NUM_FIT_PARAMS, np.nan) for s in sides])
        fit = self.fitter.fit(np.stack([targets[s] for s in sides]), init=init, sides=sides)
        for row, side in enumerate(sides):
            self._warm[side] = fit.params[row:row + 1]
        return {side: (fit, row) for row, side in enumerate(sides)}

    def _hand(self, side: str, det: Any, px: np.ndarray, fit: Any, row: int,
              K: Optional[np.ndarray]) -> HandsResult:
        """One detection and its row of the batch's FitResult -> HandsResult in the camera
        frame (metric when K places it)."""
        joints_rel = np.asarray(fit.joints[row], dtype=np.float64)
        verts_rel = np.asarray(fit.vertices[row], dtype=np.float64) - joints_rel[0]
        joints_rel = joints_rel - joints_rel[0]
        root = None
        if K is not None:
            try:
                root = place_checked(joints_rel, px, K, self.depth_range)
            except ValueError as e:
                LOG.debug("%s hand: no metric placement (%s)", side, e)
        offset = root if root is not None else np.zeros(3)
        rotmats = np.asarray(fit.rotmats[row], dtype=np.float64)
        return HandsResult(
            side=side, valid=bool(det.score >= self.min_confidence),
            confidence=float(det.score),
            vertices=(verts_rel + offset).astype(np.float32),
            joints=(joints_rel + offset).astype(np.float32),
            wrist_position=offset.copy(), wrist_quat=geo.matrix_to_quat(rotmats[0]),
            metric=root is not None,
            pose=geo.matrix_to_axis_angle(rotmats).reshape(-1).astype(np.float32),
            shape=np.asarray(fit.shape[row], dtype=np.float32),
            keypoints_2d=px.astype(np.float32), faces=self.faces[side],
            fit_residual_mm=float(fit.residual_mm[row]), source=str(det.source))


def place_checked(joints_rel: np.ndarray, px: np.ndarray, K: np.ndarray,
                  depth_range: Sequence[float]) -> np.ndarray:
    """Camera-frame wrist position (3,) m of wrist-relative joints (21,3) m seen at px (21,2);
    ValueError when the solution is not finite or its depth is outside depth_range."""
    from dir_ros.backends.landmarks.placement import place_hand

    root = place_hand(joints_rel, px, K)
    if not (np.all(np.isfinite(root)) and depth_range[0] <= root[2] <= depth_range[1]):
        raise ValueError(f"wrist at {root} m is outside the depth range {tuple(depth_range)}")
    return root
