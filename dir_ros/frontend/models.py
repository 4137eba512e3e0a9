"""Running MediaPipe's bundled hand models: the full-frame Hands graph, the static graph on
recovery crops, the pose model, and the landmark model alone on followed regions, each
result mapped back to image pixels as candidates. MediaPipe 0.10.21 runs offline on the
models inside its wheel (palm detector, hand landmark model, pose model:
requirements/detect.txt); nothing downloads at run time."""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from dir_ros.common import geometry as geo
from dir_ros.frontend.detection import NUM_LANDMARKS, _Candidate, _swap_label
from dir_ros.frontend.regions import CROP_OUT_PX

# --- MediaPipe settings -------------------------------------------------------------------
# MediaPipe's own defaults (solutions.hands.Hands): palm detection / landmark presence.
DEFAULT_MIN_DETECTION_CONFIDENCE = 0.5
DEFAULT_MIN_TRACKING_CONFIDENCE = 0.5
# Hand landmark models inside the 0.10.21 wheel: 0 = lite, 1 = full (no download needed).
BUNDLED_HAND_COMPLEXITIES = (0, 1)
# Pose landmark model inside the wheel: only 'full' (complexity 1); 0 and 2 would download.
BUNDLED_POSE_COMPLEXITY = 1
# Palm-detector threshold on recovery crops: lower than the full-frame default because a
# recovered hand must pass the geometric checks of dir_ros.frontend.recovery as well; 0.3 is
# the value its measurements were made with (0.5 lost the occluded hand of demo1).
RECOVERY_MIN_DETECTION_CONFIDENCE = 0.3
# Pose model thresholds: MediaPipe's defaults for solutions.pose.Pose.
POSE_MIN_DETECTION_CONFIDENCE = 0.5
# A pose wrist below this visibility is not used to look for a hand (MediaPipe's own
# drawing utility hides landmarks below 0.5).
POSE_MIN_VISIBILITY = 0.5


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


class MediaPipeGraphs:
    """The MediaPipe passes of HandDetector (a mixin): it builds _hands (the full-frame
    graph) and sets _mp, _model_complexity, _follow_presence, _crop_hands, _pose and
    _follow_graphs (the last three built here on first use)."""

    _mp: object
    _hands: object
    _crop_hands: object
    _pose: object
    _follow_graphs: dict[int, object]
    _model_complexity: int
    _follow_presence: float

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

    def _follow_graph(self, count: int) -> object:
        """The landmark-only graph for `count` regions (built on first use): MediaPipe's
        hand landmark subgraph, its presence threshold FOLLOW_PRESENCE_FRACTION (hand_detector) x
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
