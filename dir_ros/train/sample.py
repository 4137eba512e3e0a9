"""From a camera frame with two posed hands to one training sample of DIR.

The release crops each frame once (`cut_img`: a square around both hands' projected meshes,
the hands spanning 0.8 of its side), then augments the crop (scale, in-plane rotation,
translation, horizontal flip with left/right swapped, motion blur, colour noise) and
re-derives the 3D labels from the augmented 2D labels with the unchanged camera. Here the
same augmentations are applied as one exact camera model instead:

* the in-plane rotation rotates the hands' 3D geometry about the camera's optical axis and
  warps the image with the homography K Rz K^-1 (exact for any K);
* scale and translation move the square crop (crop camera K_crop = crop affine . K);
* the flip mirrors the crop and the 3D geometry (x -> -x, cx -> S - cx): a mirrored left hand
  is a right hand, so the sides swap (the release does the same).

Targets follow dir_ros/model/losses.py: uv in [-1,1] over the crop from the perspective
projection with K_crop, xyz root-relative in metres in the crop camera frame, offset =
(right root - left root) / 0.15, segmentation (0 background, 1 left, 2 right) and
dense-correspondence colour maps rendered from the meshes (dir_ros/data/render.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

import cv2
import numpy as np
import torch

from dir_ros.common import geometry as geo
from dir_ros.hand_model import SIDES
from dir_ros.model.losses import DIRTarget, HandTarget
from dir_ros.model.normalize import normalize_image
from dir_ros.model.outputs import XYZ_SCALE

from dir_ros.data.hands import (MIRROR_X, ROT6D_PART, BadFrameError, HandTables, RawFrame,
                                matrix_from_rot6d, mirror_params, rot6d_from_matrix)
from dir_ros.data.render import MeshPart, corner_origin, project, render_labels

# Segmentation classes of the seg head (DIR_ARCHITECTURE.md "Decoder": background, left,
# right).
SEG_LABELS: dict[str, int] = {"left": 1, "right": 2}
# The release's crop side (px): its augmentation translation is given in these pixels.
RELEASE_CROP_PX = 256
# Seg/dense targets are rendered at this fraction of the input size (the loss resizes them
# to the head's resolution, 1/8 of the input: nearest for seg, area average for dense).
MAP_SIZE_DIVISOR = 4


@dataclass
class BadSample:
    """What a dataset returns for a frame it cannot use: the reason, naming the frame. It
    travels through the data loader to the main process, which skips or stops on it."""

    reason: str


# ---------------------------------------------------------------------------------------
# Augmentation


@dataclass
class AugmentConfig:
    """Training augmentation (release values: utils.get_aug_config(0.1, 180, 10, True),
    motion blur p 0.3, add_noise(alpha 0.3, beta 0.05, noise 0.01))."""

    enabled: bool = True
    scale: float = 0.1              # crop zoom 1 +- scale (uniform)
    rotation_deg: float = 180.0     # in-plane rotation +- deg (uniform)
    translation: float = 10.0 / RELEASE_CROP_PX  # crop shift +- fraction of its side (10 px @ 256)
    flip: float = 0.5               # probability of a horizontal flip (sides swap)
    motion_blur: float = 0.3        # probability of a motion blur
    motion_blur_max: float = 10.0 / RELEASE_CROP_PX  # kernel length < this fraction of the side
    color_gain: float = 0.3         # per-channel gain 1 +- color_gain (uniform)
    brightness: float = 0.05        # offset +- brightness * 255 (uniform)
    noise_std: float = 0.01         # Gaussian pixel noise, std as a fraction of 255

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "AugmentConfig":
        """From a config mapping; unknown keys are refused (typos)."""
        d = dict(d or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown augment keys {unknown}; known: {sorted(known)}")
        return cls(**d)


@dataclass
class AugmentDraw:
    """One draw of the geometric and photometric augmentation of a sample."""

    scale: float = 1.0
    rotation_deg: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    flip: bool = False
    blur: Optional[tuple[int, float]] = None     # (kernel px, angle deg)
    gain: Optional[np.ndarray] = None            # (3,)
    offset: float = 0.0
    noise: bool = False

    @classmethod
    def draw(cls, rng: np.random.Generator, aug: AugmentConfig, input_size: int) -> "AugmentDraw":
        """Random augmentation for one sample (identity when aug is disabled)."""
        if not aug.enabled:
            return cls()
        u = lambda: float(rng.uniform(-1.0, 1.0))  # noqa: E731 - one uniform in [-1, 1]
        out = cls(scale=1.0 + u() * aug.scale, rotation_deg=u() * aug.rotation_deg,
                  shift=(u() * aug.translation, u() * aug.translation),
                  flip=bool(rng.random() < aug.flip))
        if rng.random() < aug.motion_blur:
            longest = max(3, int(round(aug.motion_blur_max * input_size)))
            out.blur = (int(rng.integers(3, longest)) if longest > 3 else 3,
                        float(rng.uniform(-180.0, 180.0)))
        out.gain = rng.uniform(1.0 - aug.color_gain, 1.0 + aug.color_gain, 3)
        out.offset = 255.0 * aug.brightness * u()
        out.noise = aug.noise_std > 0
        return out


def _rot_z(deg: float) -> np.ndarray:
    """Rotation (3,3) about the camera's optical axis by deg (image-plane rotation)."""
    t = math.radians(deg)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _affine3(a: np.ndarray) -> np.ndarray:
    """(2,3) affine -> (3,3) homogeneous."""
    return np.vstack([a, [0.0, 0.0, 1.0]])


def warp_image(rgb: np.ndarray, m: np.ndarray, out_size: int) -> np.ndarray:
    """Warp rgb (H,W,3) uint8 with m (3,3) taking corner-origin image pixels to
    corner-origin output pixels -> (S,S,3); bilinear, black outside (as the release's
    cv.warpAffine). Strong minification first box-averages by an integer factor."""
    m = np.asarray(m, np.float64)
    zoom = math.sqrt(abs(np.linalg.det(m[:2, :2])))              # output px per image px
    k = int(1.0 / (2.0 * zoom)) if zoom < 0.5 else 1
    if k > 1:
        h, w = (rgb.shape[0] // k) * k, (rgb.shape[1] // k) * k
        rgb = cv2.resize(rgb[:h, :w], (w // k, h // k), interpolation=cv2.INTER_AREA)
        m = m @ np.diag([float(k), float(k), 1.0])               # small px -> image px
    m_cv = m[:2].copy()                                          # OpenCV: pixel centres
    m_cv[:, 2] += m[:2, :2] @ np.array([0.5, 0.5]) - 0.5
    return cv2.warpAffine(rgb, m_cv, (out_size, out_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def _photometric(img: np.ndarray, draw: AugmentDraw, aug: AugmentConfig,
                 rng: np.random.Generator) -> np.ndarray:
    """Motion blur, colour gain, brightness and Gaussian noise (release order) on uint8."""
    if draw.blur is not None:
        size, angle = draw.blur
        k = np.zeros((size, size), np.float32)
        k[(size - 1) // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), angle, 1.0)
        k = cv2.warpAffine(k, rot, (size, size))
        img = cv2.filter2D(img, -1, k / max(float(k.sum()), 1e-6))
    out = img.astype(np.float32)
    if draw.gain is not None:
        out = out * draw.gain.astype(np.float32) + draw.offset
    if draw.noise:
        out = out + rng.normal(0.0, 255.0 * aug.noise_std, out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# The sample


def crop_box(frame: RawFrame, rot_aug: np.ndarray | None = None) -> geo.CropBox:
    """The release crop of a frame (`cut_img`): the square around both hands' projected
    meshes (after an optional in-plane rotation rot_aug), hands spanning 0.8 of its side;
    corner-origin image pixels."""
    Kc = corner_origin(frame.K)
    verts = np.concatenate([frame.hands[s].verts for s in SIDES])
    if rot_aug is not None:
        verts = verts @ rot_aug.T
    if not np.all(verts[:, 2] > 0):
        raise BadFrameError(f"{frame.name}: hand vertices at or behind the camera plane")
    return geo.box_from_points(project(verts, Kc), geo.DEFAULT_CROP_FILL)


def make_sample(frame: RawFrame, tables: HandTables, input_size: int, root_joint: int = 0,
                rng: Optional[np.random.Generator] = None,
                aug: Optional[AugmentConfig] = None,
                map_size: Optional[int] = None) -> dict[str, Any]:
    """Crop, augment (when rng is given and aug enabled) and derive every target.

    Returns a dict of numpy arrays: rgb (S,S,3) uint8; K (3,3) OpenCV intrinsics of the
    crop; seg (m,m) int64; dense (3,m,m) float32; offset (3,); per side
    `{side}/joints_uv` (21,2), `{side}/verts_uv` (V,2), `{side}/joints_xyz` (21,3),
    `{side}/verts_xyz` (V,3) root-relative m, `{side}/root` (3,) m crop camera frame,
    `{side}/params` (61,); `flip` (bool) and `name`.
    """
    aug = aug or AugmentConfig(enabled=False)
    draw = AugmentDraw.draw(rng, aug, input_size) if rng is not None else AugmentDraw()
    size = int(input_size)
    m_size = int(map_size or max(size // MAP_SIZE_DIVISOR, 1))
    rz = _rot_z(draw.rotation_deg)
    box = crop_box(frame, rz)
    side_px = box.size / draw.scale
    box = geo.CropBox(box.cx + draw.shift[0] * side_px, box.cy + draw.shift[1] * side_px,
                      side_px)
    Kc = corner_origin(frame.K)
    a3 = _affine3(geo.crop_affine(box, size))                     # rotated image -> crop
    k_crop = a3 @ Kc                                              # corner-origin crop camera
    image = warp_image(frame.rgb, a3 @ Kc @ rz @ np.linalg.inv(Kc), size)
    hands: dict[str, dict[str, np.ndarray]] = {}
    for side in SIDES:
        h = frame.hands[side]
        rot = rz @ matrix_from_rot6d(h.params[ROT6D_PART])
        params = np.concatenate([rot6d_from_matrix(rot), h.params[6:]])
        hands[side] = {"verts": h.verts @ rz.T, "joints": h.joints @ rz.T, "params": params}
    if draw.flip:
        image = np.ascontiguousarray(image[:, ::-1])
        k_crop[0, 2] = size - k_crop[0, 2]
        hands = {dst: {"verts": hands[src]["verts"] @ MIRROR_X,
                       "joints": hands[src]["joints"] @ MIRROR_X,
                       "params": mirror_params(hands[src]["params"], tables, src, dst)}
                 for src, dst in (("left", "right"), ("right", "left"))}
    out: dict[str, Any] = {"name": frame.name, "flip": draw.flip}
    roots = {}
    for side in SIDES:
        h = hands[side]
        root = h["joints"][root_joint]
        roots[side] = root
        out[f"{side}/joints_uv"] = project(h["joints"], k_crop) / size * 2.0 - 1.0
        out[f"{side}/verts_uv"] = project(h["verts"], k_crop) / size * 2.0 - 1.0
        out[f"{side}/joints_xyz"] = h["joints"] - root
        out[f"{side}/verts_xyz"] = h["verts"] - root
        out[f"{side}/root"] = root
        out[f"{side}/params"] = h["params"]
    out["offset"] = (roots["right"] - roots["left"]) / XYZ_SCALE
    k_map = np.diag([m_size / size, m_size / size, 1.0]) @ k_crop
    parts = [MeshPart(hands[s]["verts"], tables.faces[s], SEG_LABELS[s], tables.dense_colours)
             for s in SIDES]
    seg, dense = render_labels(parts, k_map, m_size)
    out["seg"] = seg
    out["dense"] = np.ascontiguousarray(dense.transpose(2, 0, 1))
    if rng is not None and aug.enabled:
        image = _photometric(image, draw, aug, rng)
    out["rgb"] = image
    k_cv = k_crop.copy()
    k_cv[0, 2] -= 0.5
    k_cv[1, 2] -= 0.5
    out["K"] = k_cv
    for key, value in out.items():
        if isinstance(value, np.ndarray) and value.dtype == np.float64:
            out[key] = value.astype(np.float32)
    return out


# ---------------------------------------------------------------------------------------
# Batches


@dataclass
class Batch:
    """A collated batch: images (B,3,S,S) network input (ImageNet-normalised), target,
    params side -> (B,61), K (B,3,3) crop intrinsics, names of the frames."""

    images: torch.Tensor
    target: DIRTarget
    params: dict[str, torch.Tensor]
    K: torch.Tensor
    names: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> "Batch":
        """Copy to a device (non-blocking from pinned memory)."""
        def mv(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if t is None else t.to(device, non_blocking=True)

        tgt = self.target
        hands = {s: HandTarget(*(mv(getattr(tgt.hand(s), k)) for k in
                                 ("joints_uv", "verts_uv", "joints_xyz", "verts_xyz", "valid")))
                 for s in SIDES}
        return Batch(mv(self.images), DIRTarget(hands["left"], hands["right"], mv(tgt.offset),
                                                mv(tgt.seg), mv(tgt.dense)),
                     {s: mv(p) for s, p in self.params.items()}, mv(self.K), self.names)


def collate(items: Iterable[dict[str, Any] | BadSample]) -> tuple[Optional[Batch], list[str]]:
    """Stack samples into a Batch, leaving BadSample entries out: (batch or None when
    nothing is left, the reasons of the bad ones)."""
    items = list(items)
    bad = [s.reason for s in items if isinstance(s, BadSample)]
    samples = [s for s in items if not isinstance(s, BadSample)]
    if not samples:
        return None, bad

    def stack(key: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([s[key] for s in samples]))

    hands = {s: HandTarget(stack(f"{s}/joints_uv"), stack(f"{s}/verts_uv"),
                           stack(f"{s}/joints_xyz"), stack(f"{s}/verts_xyz")) for s in SIDES}
    target = DIRTarget(hands["left"], hands["right"], stack("offset"), seg=stack("seg"),
                       dense=stack("dense"))
    return Batch(images=normalize_image(stack("rgb")), target=target,
                 params={s: stack(f"{s}/params") for s in SIDES}, K=stack("K"),
                 names=[s["name"] for s in samples]), bad

