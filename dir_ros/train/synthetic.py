"""Synthetic two-hand frames: two posed hands of a MANO-format model (the open hand model by
default) rendered with simple shading over varied backgrounds, deterministic by seed.

Frame i of seed s depends only on (s, i): its hand poses, shapes and placement come from
the generator seeded by (s, i, 0), its background, skin colours and light from (s, i, 1).
The same frames feed training (SyntheticDataset, the same targets as InterHand2.6M) and
`dir-ros make-bag --source synthetic` (a bag with /hands/gt for eval-bag).

Scene: a pinhole camera (field of view FOV_DEG across the width), both hands in front of
it side by side (their mesh centroids GAP_M apart, at DEPTH_M, with jitter), root rotations
turned from an upright view (fingers up, palm towards the camera; the left hand the mirror
image of the right) by a random axis and an angle up to rotation_deg (180: uniform on
SO(3)), finger poses N(0, pca_std) per PCA coefficient, shapes N(0, betas_std); hands may
touch or intersect (no collision handling).
"""
from __future__ import annotations

import argparse
import colorsys
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from dir_ros.eval.dataset import DEFAULT_FPS, DEFAULT_START_NS, DatasetError, DatasetFrame, GtHand
from dir_ros.hand_model import NUM_BETAS, NUM_POSE_COMPS, PCA_SLICE, SIDES, HandModelArrays

from .render import MeshPart, corner_origin, render_shaded
from .sample import (BETAS_PART, ROT6D_PART, AugmentConfig, BadFrameError, BadSample,
                     HandGeometry, HandTables, RawFrame, axis_angle_from_pca, double_layers,
                     make_sample, matrix_from_rot6d, posed_hand, rot6d_from_matrix)

# Scene parameters (chosen so that both hands fill a good part of the frame, like the
# InterHand2.6M crops, and the crop is not much larger than the network input).
FOV_DEG = 60.0                     # horizontal field of view
DEPTH_M = (0.30, 0.50)             # distance of the hands' midpoint from the camera
GAP_M = (0.04, 0.12)               # distance between the two hands' mesh centroids (x)
JITTER_M = 0.03                    # +- offset of each hand's centroid in y and z
CENTRE_JITTER = 0.15               # +- offset of the midpoint, fraction of the view width
PCA_STD = 0.8                      # finger pose: N(0, PCA_STD) per PCA coefficient
BETAS_STD = 1.0                    # shape: N(0, BETAS_STD) per beta
# Appearance.
SKIN_HUE = (0.02, 0.09)            # HSV hue range of skin albedo (reddish to yellowish)
SKIN_SAT = (0.25, 0.65)
SKIN_VAL = (0.35, 0.95)
AMBIENT = (0.25, 0.5)              # ambient share of the shading; diffuse = 1 - ambient
LIGHT_SPREAD = 0.7                 # light direction (+-spread, +-spread, -1) towards camera
BG_SHAPES = (3, 12)                # random rectangles / ellipses / lines in the background
BG_NOISE_CELLS = 8                 # low-frequency noise grid (cells per side)
BG_NOISE_AMPLITUDE = 40.0          # +- grey levels of that noise
DEFAULT_SIZE = (256, 256)          # training frames (width, height) px
STREAM_GEOMETRY, STREAM_APPEARANCE = 0, 1  # sub-streams of a frame's seed


# Upright view of a right hand in the camera frame: fingers up (-y), palm normal (the
# side cross(index MCP - wrist, pinky MCP - wrist) points to) towards the camera (-z).
UPRIGHT_FINGERS = np.array([0.0, -1.0, 0.0])
UPRIGHT_PALM = np.array([0.0, 0.0, -1.0])
MIRROR_X = np.diag([-1.0, 1.0, 1.0])
FULL_TURN_DEG = 180.0              # rotation_deg at or above this: uniform rotations


@dataclass
class SyntheticConfig:
    """Frame generator settings: seed, image size (width, height) px, field of view, and the
    spread of orientations, finger poses and shapes."""

    seed: int = 0
    width: int = DEFAULT_SIZE[0]
    height: int = DEFAULT_SIZE[1]
    fov_deg: float = FOV_DEG
    rotation_deg: float = FULL_TURN_DEG
    pca_std: float = PCA_STD
    betas_std: float = BETAS_STD

    def intrinsics(self) -> np.ndarray:
        """OpenCV K (3,3) of the synthetic camera: square pixels, principal point at the
        image centre."""
        f = self.width / 2.0 / math.tan(math.radians(self.fov_deg) / 2.0)
        return np.array([[f, 0.0, (self.width - 1) / 2.0], [0.0, f, (self.height - 1) / 2.0],
                         [0.0, 0.0, 1.0]])


class SyntheticHands:
    """The frame generator for one hand model (side -> HandModelArrays)."""

    def __init__(self, arrays: Mapping[str, HandModelArrays],
                 config: Optional[SyntheticConfig] = None) -> None:
        self.config = config or SyntheticConfig()
        self.tables = HandTables.from_arrays(arrays)
        self.layers = double_layers(arrays)
        self.K = self.config.intrinsics()
        self.upright = upright_rotations(self.layers)

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        """The generator of one sub-stream of frame `index`."""
        return np.random.default_rng([int(self.config.seed), int(index), stream])

    def geometry(self, index: int) -> dict[str, HandGeometry]:
        """Both hands of frame `index` in the camera frame (metres)."""
        rng = self._rng(index, STREAM_GEOMETRY)
        cfg = self.config
        depth = rng.uniform(*DEPTH_M)
        half_w = depth * cfg.width / 2.0 / self.K[0, 0]         # half view width at depth (m)
        half_h = depth * cfg.height / 2.0 / self.K[1, 1]
        mid = np.array([rng.uniform(-1, 1) * CENTRE_JITTER * half_w,
                        rng.uniform(-1, 1) * CENTRE_JITTER * half_h, depth])
        gap = rng.uniform(*GAP_M)
        out = {}
        for side, sign in (("left", -1.0), ("right", 1.0)):
            rot = self._rotation(rng, side)
            pca = rng.normal(0.0, cfg.pca_std, NUM_POSE_COMPS)
            betas = rng.normal(0.0, cfg.betas_std, NUM_BETAS)
            verts, joints = posed_hand(self.layers[side], rot[None], pca[None], betas[None])
            target = mid + np.array([sign * gap / 2.0, rng.uniform(-1, 1) * JITTER_M,
                                     rng.uniform(-1, 1) * JITTER_M])
            shift = target - verts[0].mean(axis=0)
            out[side] = HandGeometry(verts=verts[0] + shift, joints=joints[0] + shift,
                                     params=np.concatenate([rot6d_from_matrix(rot), pca, betas]))
        return out

    def _rotation(self, rng: np.random.Generator, side: str) -> np.ndarray:
        """A root rotation (3,3): uniform, or the upright view turned about a random axis by
        an angle uniform in [0, rotation_deg]."""
        spread = float(self.config.rotation_deg)
        if spread >= FULL_TURN_DEG:
            return Rotation.random(random_state=rng).as_matrix()
        axis = rng.normal(size=3)
        axis /= max(float(np.linalg.norm(axis)), 1e-12)
        turn = Rotation.from_rotvec(axis * math.radians(rng.uniform(0.0, spread))).as_matrix()
        return turn @ self.upright[side]

    def image(self, index: int, hands: Mapping[str, HandGeometry]) -> np.ndarray:
        """The rendered frame (H,W,3) uint8 RGB of the given hands over a random background."""
        rng = self._rng(index, STREAM_APPEARANCE)
        cfg = self.config
        bg = background(rng, cfg.width, cfg.height)
        parts = []
        for side in SIDES:
            albedo = colorsys.hsv_to_rgb(rng.uniform(*SKIN_HUE), rng.uniform(*SKIN_SAT),
                                         rng.uniform(*SKIN_VAL))
            parts.append(MeshPart(hands[side].verts, self.tables.faces[side], 0,
                                  np.asarray(albedo)))
        ambient = rng.uniform(*AMBIENT)
        light = np.array([rng.uniform(-1, 1) * LIGHT_SPREAD, rng.uniform(-1, 1) * LIGHT_SPREAD,
                          -1.0])
        rgb, mask = render_shaded(parts, corner_origin(self.K), (cfg.height, cfg.width), light,
                                  ambient, 1.0 - ambient)
        out = np.where(mask[..., None], np.round(rgb * 255.0), bg)
        return out.astype(np.uint8)

    def frame(self, index: int) -> RawFrame:
        """Frame `index`: image, intrinsics and both hands."""
        hands = self.geometry(index)
        return RawFrame(rgb=self.image(index, hands), K=self.K.copy(), hands=hands,
                        name=f"synthetic seed {self.config.seed} frame {index}")


def upright_rotations(layers: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """side -> root rotation (3,3) showing the rest hand upright (UPRIGHT_FINGERS,
    UPRIGHT_PALM); the left one is the mirror image of the right one's."""
    _, j = posed_hand(layers["right"], np.eye(3)[None], np.zeros((1, NUM_POSE_COMPS)),
                      np.zeros((1, NUM_BETAS)))
    j = j[0]
    f = j[9] - j[0]                                   # wrist -> middle MCP
    n = np.cross(j[5] - j[0], j[17] - j[0])           # palm normal
    f = f / np.linalg.norm(f)
    n = n - (n @ f) * f
    n = n / np.linalg.norm(n)
    src = np.stack([f, n, np.cross(f, n)], axis=1)
    dst = np.stack([UPRIGHT_FINGERS, UPRIGHT_PALM, np.cross(UPRIGHT_FINGERS, UPRIGHT_PALM)], axis=1)
    right = dst @ src.T
    return {"right": right, "left": MIRROR_X @ right @ MIRROR_X}


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A random background (H,W,3) uint8: a colour gradient, random shapes and
    low-frequency noise."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xx * math.cos(angle) + yy * math.sin(angle))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    img = (c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None])
    img = np.ascontiguousarray(img.astype(np.uint8))
    for _ in range(int(rng.integers(*BG_SHAPES))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        p = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        q = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            cv2.rectangle(img, p, q, colour, -1)
        elif kind == 1:
            axes = (int(rng.integers(3, max(4, width // 4))),
                    int(rng.integers(3, max(4, height // 4))))
            cv2.ellipse(img, p, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
            cv2.line(img, p, q, colour, int(rng.integers(1, 6)))
    noise = rng.uniform(-BG_NOISE_AMPLITUDE, BG_NOISE_AMPLITUDE,
                        (BG_NOISE_CELLS, BG_NOISE_CELLS, 3)).astype(np.float32)
    noise = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


class SyntheticDataset:
    """Training samples of frames [start, start + num_frames) of a SyntheticHands stream
    (same sample format as InterHandDataset). cache keeps rendered frames in memory."""

    def __init__(self, hands: SyntheticHands, num_frames: int, input_size: int,
                 root_joint: int = 0, augment: Optional[AugmentConfig] = None, seed: int = 0,
                 start: int = 0, cache: bool = False) -> None:
        if num_frames < 1:
            raise ValueError(f"a synthetic dataset needs at least one frame, got {num_frames}")
        self.hands = hands
        self.num_frames = int(num_frames)
        self.start = int(start)
        self.input_size = int(input_size)
        self.root_joint = int(root_joint)
        self.augment = augment
        self.seed = int(seed)
        self.cache: Optional[dict[int, RawFrame]] = {} if cache else None
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_frames

    def raw_frame(self, i: int) -> RawFrame:
        """Frame i of this dataset (rendered, or from the cache)."""
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        frame = self.hands.frame(self.start + int(i))
        if self.cache is not None:
            self.cache[i] = frame
        return frame

    def __getitem__(self, i: int) -> dict[str, Any] | BadSample:
        """The training sample of frame i (augmented with the generator (seed, epoch, i))."""
        try:
            rng = None
            if self.augment is not None and self.augment.enabled:
                rng = np.random.default_rng([self.seed, self.epoch, int(i)])
            return make_sample(self.raw_frame(int(i)), self.hands.tables, self.input_size,
                               self.root_joint, rng, self.augment)
        except BadFrameError as err:
            return BadSample(str(err))


# ---------------------------------------------------------------------------------------
# make-bag source (its command-line options are in dir_ros/train/bag_source.py)


class SyntheticBagFrame(DatasetFrame):
    """A synthetic frame for make-bag: ground truth at once, the image rendered on demand
    (and not kept: bags can be long)."""

    def __init__(self, gen: SyntheticHands, index: int, stamp_ns: int) -> None:
        geo = gen.geometry(index)
        hands = {}
        for side in SIDES:
            g = geo[side]
            rot = matrix_from_rot6d(g.params[ROT6D_PART])
            finger = axis_angle_from_pca(g.params[PCA_SLICE], gen.tables, side)
            hands[side] = GtHand(valid=True, joints=g.joints, vertices=g.verts,
                                 faces=gen.tables.faces[side],
                                 pose=np.concatenate([Rotation.from_matrix(rot).as_rotvec(),
                                                      finger]),
                                 shape=g.params[BETAS_PART])
        super().__init__(index=index, stamp_ns=stamp_ns, K=gen.K.copy(), hands=hands)
        self._gen, self._geo = gen, geo

    def load_rgb(self) -> np.ndarray:
        """The frame's image (H,W,3) uint8 RGB, rendered now."""
        return self._gen.image(self.index, self._geo)


def open_source(args: argparse.Namespace) -> tuple[list[DatasetFrame], dict[str, Any]]:
    """make-bag frames of the synthetic source (options of bag_source.add_source_arguments):
    (frames, info); every hand is annotated (joints, mesh, pose, shape)."""
    from dir_ros.hand_model import load_hand_model, open_hand_dir

    n = int(args.synthetic_frames)
    if n < 1:
        raise DatasetError(f"--synthetic-frames must be at least 1, got {n}")
    w, h = args.synthetic_size
    gen = SyntheticHands(load_hand_model(args.synthetic_hand_model or open_hand_dir()),
                         SyntheticConfig(seed=int(args.synthetic_seed), width=int(w),
                                         height=int(h)))
    fps = float(args.fps) if getattr(args, "fps", None) else DEFAULT_FPS
    if not fps > 0:
        raise DatasetError(f"--fps must be positive, got {fps}")
    frames: list[DatasetFrame] = [
        SyntheticBagFrame(gen, i, DEFAULT_START_NS + int(round(i * 1e9 / fps))) for i in range(n)]
    return frames, {"has_ground_truth": True}
