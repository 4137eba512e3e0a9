"""Synthetic two-hand frames: two posed hands of a MANO-format model (the open hand model by
default) rendered with simple shading over varied backgrounds, deterministic by seed.

Frame i of seed s depends only on (s, i): its hand poses, shapes and placement come from
the generator seeded by (s, i, 0), its background, skin colours and light from (s, i, 1).
The same frames feed training (dir_ros.train.datasets.SyntheticDataset, the same targets as
InterHand2.6M) and
`dir-ros make-bag --source synthetic` (a bag with /hands/gt for eval-bag).

Scene: a pinhole camera (field of view FOV_DEG across the width), both hands in front of
it side by side (their mesh centroids GAP_M apart, at DEPTH_M, with jitter), root rotations
turned from an upright view (fingers up, palm towards the camera; the left hand the mirror
image of the right) by a random axis and an angle up to rotation_deg (180: uniform on
SO(3)), finger poses N(0, pca_std) per PCA coefficient, shapes N(0, betas_std); hands may
touch or intersect (no collision handling).

Sequences for make-bag (SequenceConfig, SyntheticHands.sequence): frame 0's scene moved
smoothly as one rigid pair (a circle parallel to the image plane; with sway also a turn
about the vertical axis and finger motion), and in contact mode the two hands palm to palm
as mirror images across a plane, CONTACT_GAP_M apart, never inside each other. A sequence
keeps frame 0's background, skin and light, so only the hands move.
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

from dir_ros.data.dataset import DEFAULT_FPS, DEFAULT_START_NS, DatasetError, DatasetFrame, GtHand
from dir_ros.hand_model import NUM_BETAS, NUM_POSE_COMPS, PCA_SLICE, SIDES, HandModelArrays

from dir_ros.data.render import MeshPart, corner_origin, render_shaded
from dir_ros.data.hands import (BETAS_PART, ROT6D_PART, HandGeometry, HandTables, RawFrame,
                                axis_angle_from_pca, double_layers, matrix_from_rot6d,
                                mirror_params, posed_hand, rot6d_from_matrix)

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
STREAM_SEQUENCE = 2                # sub-stream of frame 0: a sequence's own draws

# Sequences (make-bag --synthetic-motion circle|sway, --synthetic-contact): one scene moved
# smoothly. Defaults give a hand speed and acceleration of everyday hand motion seen by a
# 30 Hz camera: a 3 cm circle in 3 s is 6 cm/s, 0.15 mm/frame^2 of jitter-free motion.
MOTIONS = ("random", "circle", "sway")  # random: independent frames (the training frames)
SEQUENCE_RADIUS_M = 0.03           # radius of the pair midpoint's circle
SEQUENCE_PERIOD_FRAMES = 90.0      # frames per turn of the circle (and of the sway)
SWAY_DEG = 20.0                    # sway: the pair turns +- this about the vertical axis
FINGER_SWAY = 0.3                  # sway: +- change of each finger PCA coefficient
CONTACT_GAP_M = 0.001              # contact: smallest distance between the two meshes
CONTACT_YAW_DEG = 45.0             # contact: pair turned +- this (uniform) about the vertical
                                   #   axis, else the camera sees it edge-on
CONTACT_ROLL_DEG = 30.0            # contact: hands turned +- this in their contact plane


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


@dataclass
class SequenceConfig:
    """A smooth sequence: motion (MOTIONS: random = independent frames; circle = the pair
    translated on a circle of radius_m parallel to the image plane, period_frames per turn,
    nothing else moving; sway = circle + the pair turning +-SWAY_DEG about the vertical axis
    and the fingers moving, same period), contact (the two hands palm to palm, mirror
    images, gap_m apart at their closest vertices, moving as one)."""

    motion: str = "random"
    contact: bool = False
    radius_m: float = SEQUENCE_RADIUS_M
    period_frames: float = SEQUENCE_PERIOD_FRAMES
    gap_m: float = CONTACT_GAP_M

    def check(self) -> None:
        """DatasetError naming the bad value."""
        if self.motion not in MOTIONS:
            raise DatasetError(f"--synthetic-motion must be one of {', '.join(MOTIONS)}, "
                               f"got {self.motion!r}")
        if not (math.isfinite(self.radius_m) and self.radius_m >= 0):
            raise DatasetError(f"--synthetic-radius must be >= 0 m, got {self.radius_m}")
        if not (math.isfinite(self.period_frames) and self.period_frames > 0):
            raise DatasetError(f"--synthetic-period must be positive (frames), got "
                               f"{self.period_frames}")
        if not (math.isfinite(self.gap_m) and self.gap_m >= 0):
            raise DatasetError(f"contact gap must be >= 0 m, got {self.gap_m}")

    @property
    def smooth(self) -> bool:
        """True for a sequence (one scene moving), False for independent random frames."""
        return self.motion != "random" or self.contact


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

    def _draw_scene(self, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, tuple]]:
        """One random scene: the pair's midpoint (3,) m and per side (root rotation (3,3),
        PCA coefficients (45,), betas (10,), offset of the mesh centroid from the midpoint
        (3,) m)."""
        cfg = self.config
        depth = rng.uniform(*DEPTH_M)
        half_w = depth * cfg.width / 2.0 / self.K[0, 0]         # half view width at depth (m)
        half_h = depth * cfg.height / 2.0 / self.K[1, 1]
        mid = np.array([rng.uniform(-1, 1) * CENTRE_JITTER * half_w,
                        rng.uniform(-1, 1) * CENTRE_JITTER * half_h, depth])
        gap = rng.uniform(*GAP_M)
        drawn = {}
        for side, sign in (("left", -1.0), ("right", 1.0)):
            rot = self._rotation(rng, side)
            pca = rng.normal(0.0, cfg.pca_std, NUM_POSE_COMPS)
            betas = rng.normal(0.0, cfg.betas_std, NUM_BETAS)
            offset = np.array([sign * gap / 2.0, rng.uniform(-1, 1) * JITTER_M,
                               rng.uniform(-1, 1) * JITTER_M])
            drawn[side] = (rot, pca, betas, offset)
        return mid, drawn

    def geometry(self, index: int) -> dict[str, HandGeometry]:
        """Both hands of frame `index` in the camera frame (metres)."""
        mid, drawn = self._draw_scene(self._rng(index, STREAM_GEOMETRY))
        out = {}
        for side, (rot, pca, betas, offset) in drawn.items():
            verts, joints = posed_hand(self.layers[side], rot[None], pca[None], betas[None])
            shift = (mid + offset) - verts[0].mean(axis=0)
            out[side] = HandGeometry(verts=verts[0] + shift, joints=joints[0] + shift,
                                     params=np.concatenate([rot6d_from_matrix(rot), pca, betas]))
        return out

    def sequence(self, num_frames: int, seq: "SequenceConfig") -> list[dict[str, HandGeometry]]:
        """Both hands of frames 0..num_frames-1 of a smooth sequence (see SequenceConfig):
        the scene of frame 0's geometry stream (the contact pose instead when seq.contact),
        moved as one rigid pair: world = mid(t) + R_pair(t) @ local, with mid(t) on a circle
        parallel to the image plane and R_pair(t) = R_y(yaw + sway(t)) about the camera's
        vertical axis; with sway the finger PCA coefficients oscillate too."""
        seq.check()
        mid0, drawn = self._draw_scene(self._rng(0, STREAM_GEOMETRY))
        rng = self._rng(0, STREAM_SEQUENCE)
        yaw = rng.uniform(-1, 1) * math.radians(CONTACT_YAW_DEG)  # drawn always: fixed order
        roll = rng.uniform(-1, 1) * math.radians(CONTACT_ROLL_DEG)
        finger_phase = rng.uniform(0.0, 2.0 * math.pi, NUM_POSE_COMPS)
        t = np.arange(int(num_frames), dtype=np.float64)
        wt = 2.0 * math.pi / float(seq.period_frames) * t  # (T,) rad
        radius = seq.radius_m if seq.motion != "random" else 0.0  # contact alone: still
        mids = mid0 + radius * np.stack([np.cos(wt) - 1.0, np.sin(wt), np.zeros_like(wt)], 1)
        sway = seq.motion == "sway"
        angle = (yaw if seq.contact else 0.0) + (math.radians(SWAY_DEG) * np.sin(wt) if sway else 0.0 * wt)
        pair = Rotation.from_rotvec(np.outer(angle, [0.0, 1.0, 0.0])).as_matrix()  # (T,3,3)
        finger = FINGER_SWAY * np.sin(wt[:, None] + finger_phase) if sway else np.zeros((len(t), 1))
        local: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        if seq.contact:
            local = self._contact_pair(drawn["right"], roll, finger, seq.gap_m)
        else:
            for side, (rot, pca, betas, offset) in drawn.items():
                pcas = pca[None] + finger
                rots = np.repeat(rot[None], len(t), axis=0)
                bet = np.repeat(betas[None], len(t), axis=0)
                verts, joints = posed_hand(self.layers[side], rots, pcas, bet)
                shift = offset - verts.mean(axis=1, keepdims=True)
                local[side] = (verts + shift, joints + shift, rots, np.concatenate([pcas, bet], 1))
        frames: list[dict[str, HandGeometry]] = [{} for _ in range(len(t))]
        for side, (verts, joints, rots, rest) in local.items():
            v = mids[:, None] + np.einsum("tij,tvj->tvi", pair, verts)
            j = mids[:, None] + np.einsum("tij,tvj->tvi", pair, joints)
            r6 = rot6d_from_matrix(pair @ rots)
            for i in range(len(t)):
                frames[i][side] = HandGeometry(verts=v[i], joints=j[i],
                                               params=np.concatenate([r6[i], rest[i]]))
        return frames

    def _contact_pair(self, right: tuple, roll: float, finger: np.ndarray, gap_m: float
                      ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Two hands touching, in the pair's frame (origin at the midpoint): the right hand
        palm towards -x (fingers up, turned by `roll` about x) with its drawn finger pose
        (+ finger (T,45) or (T,1)) and shape, the left hand its mirror image (mirror_params)
        across the plane x = 0; the right hand's lowest x is +gap/2, so the plane separates
        them (no penetration) and their smallest vertex distance is exactly gap_m.
        side -> (verts (T,V,3), joints (T,21,3), root rotations (T,3,3), pca|betas (T,55))."""
        _, pca, betas, _ = right
        n = len(finger)
        rot = (Rotation.from_rotvec([roll, 0.0, 0.0]).as_matrix()
               @ Rotation.from_rotvec([0.0, math.pi / 2.0, 0.0]).as_matrix()
               @ self.upright["right"])  # upright palm (-z) turned to face -x
        pcas = pca[None] + finger
        params = {"right": np.concatenate([np.broadcast_to(rot6d_from_matrix(rot), (n, 6)), pcas,
                                           np.broadcast_to(betas, (n, NUM_BETAS))], 1)}
        params["left"] = np.stack([mirror_params(p, self.tables, "right", "left")
                                   for p in params["right"]])
        out = {}
        for side, p in params.items():
            rots = matrix_from_rot6d(p[:, ROT6D_PART])
            verts, joints = posed_hand(self.layers[side], rots, p[:, PCA_SLICE], p[:, BETAS_PART])
            centre = verts.mean(axis=1, keepdims=True)
            if side == "right":
                x = gap_m / 2.0 - verts[..., 0].min(axis=1)
            else:
                x = -gap_m / 2.0 - verts[..., 0].max(axis=1)
            shift = np.concatenate([x[:, None, None], -centre[..., 1:]], axis=-1)  # (T,1,3)
            out[side] = (verts + shift, joints + shift, rots, p[:, PCA_SLICE.start:])
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


# ---------------------------------------------------------------------------------------
# make-bag source (its command-line options are in dir_ros/data/bag_source.py)


class SyntheticBagFrame(DatasetFrame):
    """A synthetic frame for make-bag: ground truth at once, the image rendered on demand
    (and not kept: bags can be long)."""

    def __init__(self, gen: SyntheticHands, index: int, stamp_ns: int,
                 geo: Optional[dict[str, HandGeometry]] = None,
                 appearance: Optional[int] = None) -> None:
        """geo: the frame's hands (default: gen.geometry(index)); appearance: the frame
        whose background, skin and light it uses (default: its own; a sequence keeps
        frame 0's)."""
        geo = gen.geometry(index) if geo is None else geo
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
        self._appearance = index if appearance is None else int(appearance)

    def load_rgb(self) -> np.ndarray:
        """The frame's image (H,W,3) uint8 RGB, rendered now."""
        return self._gen.image(self._appearance, self._geo)


def open_source(args: argparse.Namespace) -> tuple[list[DatasetFrame], dict[str, Any]]:
    """make-bag frames of the synthetic source (options of bag_source.add_source_arguments):
    (frames, info); every hand is annotated (joints, mesh, pose, shape)."""
    from dir_ros.hand_model import load_hand_model, open_hand_dir

    n = int(args.synthetic_frames)
    if n < 1:
        raise DatasetError(f"--synthetic-frames must be at least 1, got {n}")
    w, h = args.synthetic_size
    seq = SequenceConfig(motion=getattr(args, "synthetic_motion", "random"),
                         contact=bool(getattr(args, "synthetic_contact", False)),
                         radius_m=float(getattr(args, "synthetic_radius", SEQUENCE_RADIUS_M)),
                         period_frames=float(getattr(args, "synthetic_period",
                                                     SEQUENCE_PERIOD_FRAMES)))
    seq.check()  # before the hand model is loaded
    rotation = float(getattr(args, "synthetic_rotation_deg", FULL_TURN_DEG))
    if not (math.isfinite(rotation) and rotation >= 0):
        raise DatasetError(f"--synthetic-rotation-deg must be >= 0, got {rotation}")
    gen = SyntheticHands(load_hand_model(args.synthetic_hand_model or open_hand_dir()),
                         SyntheticConfig(seed=int(args.synthetic_seed), width=int(w),
                                         height=int(h), rotation_deg=rotation))
    fps = float(args.fps) if getattr(args, "fps", None) else DEFAULT_FPS
    if not fps > 0:
        raise DatasetError(f"--fps must be positive, got {fps}")
    stamps = [DEFAULT_START_NS + int(round(i * 1e9 / fps)) for i in range(n)]
    if not seq.smooth:
        return [SyntheticBagFrame(gen, i, stamps[i]) for i in range(n)], {"has_ground_truth": True}
    geos = gen.sequence(n, seq)
    frames: list[DatasetFrame] = [SyntheticBagFrame(gen, i, stamps[i], geos[i], appearance=0)
                                  for i in range(n)]
    return frames, {"has_ground_truth": True}
