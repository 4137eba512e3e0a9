"""HandsPredictor: everything between a camera image and two reconstructed hands.

decode (raw / compressed) -> choose the crop (Cropper) -> warp to the network input ->
ImageNet-normalise -> DIR forward (inference mode, optional autocast) -> final level ->
camera-frame geometry through K -> FrameResult.  Pure Python + torch: no ROS imports.
"""
from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol, Sequence, Union

import numpy as np

from dir_ros.resources import resolve_resource

from dir_ros import geometry as geo

LOG = logging.getLogger("dir_ros.predictor")

SIDES = ("left", "right")
NUM_KEYPOINTS = 21  # contract keypoint order
NUM_POSE = 48  # axis-angle: root (3) + 15 finger joints (45)
NUM_SHAPE = 10  # MANO betas
# Default validity threshold on HandsResult.confidence (seg-head hand probability, see
# _seg_confidence): above a 3-class chance level of 1/3 with some margin.
DEFAULT_MIN_CONFIDENCE = 0.5
# Plausible camera-to-wrist distances (m) for metric placement; outside, the hand is
# published root-relative (metric False) instead of at an absurd position.
DEFAULT_DEPTH_RANGE = (0.05, 10.0)
# Seg-head class indices (DIR_ARCHITECTURE.md: background, left, right).
SEG_CLASS = {"left": 1, "right": 2}
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16")
CROP_MODES = ("full", "roi", "track")
# Raw encodings accepted: channels and the OpenCV conversion to RGB (None = already RGB).
RAW_ENCODINGS: dict[str, tuple[int, Optional[str]]] = {
    "rgb8": (3, None),
    "bgr8": (3, "COLOR_BGR2RGB"),
    "rgba8": (4, "COLOR_RGBA2RGB"),
    "bgra8": (4, "COLOR_BGRA2RGB"),
    "mono8": (1, "COLOR_GRAY2RGB"),
    "8UC3": (3, "COLOR_BGR2RGB"),  # OpenCV type names: BGR by OpenCV convention
    "8UC1": (1, "COLOR_GRAY2RGB"),
}


# --- results ----------------------------------------------------------------------------

@dataclass
class HandsResult:
    """One hand. V vertices, F faces; camera optical frame, metres (wrist-relative if not metric).

    vertices (V,3) float32; joints (21,3) float32; wrist_position (3,) float64 (zeros when not
    metric); wrist_quat (4,) xyzw root orientation; pose (48,) axis-angle rad (mean pose
    included); shape (10,); keypoints_2d (21,2) input-image px (corner-origin); faces (F,3) int64.
    """

    side: str
    valid: bool
    confidence: float
    vertices: np.ndarray
    joints: np.ndarray
    wrist_position: np.ndarray
    wrist_quat: np.ndarray
    metric: bool
    pose: np.ndarray
    shape: np.ndarray
    keypoints_2d: np.ndarray
    faces: np.ndarray

    @classmethod
    def invalid(cls, side: str, faces: np.ndarray, num_verts: int) -> "HandsResult":
        """An all-zero, invalid hand (identity orientation) keeping the faces."""
        return cls(side=side, valid=False, confidence=0.0,
                   vertices=np.zeros((num_verts, 3), np.float32),
                   joints=np.zeros((NUM_KEYPOINTS, 3), np.float32),
                   wrist_position=np.zeros(3), wrist_quat=np.array([0.0, 0.0, 0.0, 1.0]),
                   metric=False, pose=np.zeros(NUM_POSE, np.float32),
                   shape=np.zeros(NUM_SHAPE, np.float32),
                   keypoints_2d=np.zeros((NUM_KEYPOINTS, 2), np.float32),
                   faces=np.asarray(faces, np.int64))


@dataclass
class FrameResult:
    """Both hands of one image, the crop used (image px) and per-step timings (ms)."""

    left: HandsResult
    right: HandsResult
    box: geo.CropBox
    image_size: tuple[int, int] = (0, 0)  # (width, height) px
    timings: dict[str, float] = field(default_factory=dict)

    def hand(self, side: str) -> HandsResult:
        """The hand of side 'left' or 'right'."""
        return {"left": self.left, "right": self.right}[side]

    def hands(self) -> tuple[HandsResult, HandsResult]:
        """(left, right)."""
        return (self.left, self.right)


# --- decoding ---------------------------------------------------------------------------

def _as_bytes_array(data: Any) -> np.ndarray:
    """bytes / bytearray / memoryview / array.array / ndarray / list of ints -> 1-D uint8 view."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def decode_image(data: Union[bytes, bytearray, memoryview, np.ndarray, Sequence[int]], width: int,
                 height: int, encoding: str, step: int = 0) -> np.ndarray:
    """A raw sensor_msgs/Image buffer -> RGB uint8 (H,W,3); honours row padding (`step`).

    Raises ValueError naming encoding and sizes for unsupported encodings or short buffers.
    """
    import cv2

    if encoding not in RAW_ENCODINGS:
        raise ValueError(f"unsupported image encoding '{encoding}' "
                         f"(supported: {', '.join(RAW_ENCODINGS)})")
    channels, conversion = RAW_ENCODINGS[encoding]
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise ValueError(f"image '{encoding}' has an empty size {width}x{height}")
    row = width * channels
    step = int(step) or row
    if step < row:
        raise ValueError(f"image '{encoding}' {width}x{height}: step {step} < width*channels {row}")
    buf = _as_bytes_array(data)
    needed = step * (height - 1) + row
    if buf.size < needed:
        raise ValueError(f"image '{encoding}' {width}x{height} step {step} needs at least "
                         f"{needed} bytes, got {buf.size}")
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row), strides=(step, 1))
    img = rows.reshape(height, width, channels)
    if conversion is None:
        return np.ascontiguousarray(img)
    src = img[..., 0] if channels == 1 else np.ascontiguousarray(img)
    return cv2.cvtColor(src, getattr(cv2, conversion))


def decode_compressed(data: Union[bytes, bytearray, memoryview, np.ndarray, Sequence[int]],
                      fmt: str = "") -> np.ndarray:
    """A sensor_msgs/CompressedImage buffer (jpeg / png) -> RGB uint8 (H,W,3)."""
    import cv2

    if "compresseddepth" in fmt.lower():
        raise ValueError(f"compressed depth images are not supported (format '{fmt}')")
    buf = _as_bytes_array(data)
    if buf.size == 0:
        raise ValueError(f"compressed image (format '{fmt}') is empty")
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)  # BGR, alpha dropped, grey expanded
    if img is None:
        raise ValueError(f"cannot decode compressed image (format '{fmt}', {buf.size} bytes)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_image_msg(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image or CompressedImage (rclpy, rosbags or any object with those
    fields) -> RGB uint8 (H,W,3); ValueError names what is wrong. The node and the bag
    tools decode through here."""
    if hasattr(msg, "format"):  # CompressedImage
        return decode_compressed(msg.data, msg.format)
    if getattr(msg, "is_bigendian", 0) and msg.encoding not in RAW_ENCODINGS:
        raise ValueError(f"big-endian image encoding '{msg.encoding}' is not supported")
    return decode_image(msg.data, msg.width, msg.height, msg.encoding, msg.step)


# --- croppers ---------------------------------------------------------------------------

class Cropper(Protocol):
    """Chooses the square two-hand crop of an image; a hand detector plugs in here."""

    def __call__(self, rgb: np.ndarray, previous: Optional[FrameResult]) -> geo.CropBox:
        """rgb (H,W,3) uint8; previous = last FrameResult of this stream (or None)."""
        ...


class FullFrameCropper:
    """The centred square over the whole frame (short side padded)."""

    def __call__(self, rgb: np.ndarray, previous: Optional[FrameResult]) -> geo.CropBox:
        return geo.full_frame_box(rgb.shape[1], rgb.shape[0])


class RoiCropper:
    """A fixed region of interest [x, y, w, h] px, made square around its centre."""

    def __init__(self, roi: Sequence[float]) -> None:
        self.box = geo.roi_box(roi)

    def __call__(self, rgb: np.ndarray, previous: Optional[FrameResult]) -> geo.CropBox:
        return self.box


class TrackCropper:
    """Box around the previous frame's valid hands' keypoints; full frame when none."""

    def __init__(self, fill: float = geo.DEFAULT_CROP_FILL) -> None:
        self.fill = fill
        self.fallback = FullFrameCropper()

    def __call__(self, rgb: np.ndarray, previous: Optional[FrameResult]) -> geo.CropBox:
        if previous is not None:
            pts = [h.keypoints_2d for h in previous.hands() if h.valid]
            if pts:
                box = geo.box_from_points(np.concatenate(pts), self.fill)
                full = self.fallback(rgb, previous)
                if box.size <= full.size:  # a box larger than the frame helps nobody
                    return box
        return self.fallback(rgb, previous)


def make_cropper(mode: str, roi: Optional[Sequence[float]] = None) -> Cropper:
    """Cropper for mode 'full' | 'roi' (needs roi [x, y, w, h]) | 'track'."""
    if mode == "full":
        return FullFrameCropper()
    if mode == "roi":
        if roi is None or len(roi) != 4:
            raise ValueError(f"crop mode 'roi' needs roi = [x, y, w, h], got {roi}")
        return RoiCropper(roi)
    if mode == "track":
        return TrackCropper()
    raise ValueError(f"crop mode '{mode}' is not one of {', '.join(CROP_MODES)}")


# --- temporal smoothing -------------------------------------------------------------------

class EmaSmoother:
    """Exponential moving average per hand: out = a * new + (1 - a) * previous.

    factor a in (0, 1] (1 = no smoothing). Positions, keypoints, pose and shape are averaged;
    the orientation is a normalised quaternion average (sign-aligned). A hand that becomes
    invalid or changes `metric` restarts the filter.
    """

    def __init__(self, factor: float) -> None:
        if not 0.0 < factor <= 1.0:
            raise ValueError(f"smoothing factor must be in (0, 1], got {factor}")
        self.factor = factor
        self._prev: dict[str, HandsResult] = {}

    def reset(self) -> None:
        """Forget the history."""
        self._prev.clear()

    def __call__(self, result: FrameResult) -> FrameResult:
        hands = {}
        a = self.factor
        for h in result.hands():
            p = self._prev.get(h.side)
            if h.valid and p is not None and p.valid and p.metric == h.metric \
                    and p.vertices.shape == h.vertices.shape:
                q = np.where(np.dot(p.wrist_quat, h.wrist_quat) < 0, -p.wrist_quat, p.wrist_quat)
                quat = a * h.wrist_quat + (1 - a) * q
                h = replace(
                    h,
                    vertices=(a * h.vertices + (1 - a) * p.vertices).astype(np.float32),
                    joints=(a * h.joints + (1 - a) * p.joints).astype(np.float32),
                    wrist_position=a * h.wrist_position + (1 - a) * p.wrist_position,
                    wrist_quat=quat / np.linalg.norm(quat),
                    pose=(a * h.pose + (1 - a) * p.pose).astype(np.float32),
                    shape=(a * h.shape + (1 - a) * p.shape).astype(np.float32),
                    keypoints_2d=(a * h.keypoints_2d + (1 - a) * p.keypoints_2d).astype(np.float32))
            self._prev[h.side] = h
            hands[h.side] = h
        return replace(result, left=hands["left"], right=hands["right"])


# --- resources ----------------------------------------------------------------------------

def is_unset(value: Any) -> bool:
    """'' / None / 'none' / 'random' mean 'not given'."""
    return value is None or str(value).strip().lower() in ("", "none", "null", "random")


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when available else 'cpu'; 'cuda' without a GPU raises."""
    import torch

    if device not in DEVICES:
        raise ValueError(f"device '{device}' is not one of {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device "
                           "(use device 'auto' or 'cpu')")
    return device


# --- the predictor ------------------------------------------------------------------------

DEFAULT_CONFIG: dict[str, Any] = {
    "model_config": "config/model/dir_release.yaml",
    "weights": "",
    "hand_model": "",
    "device": "auto",
    "precision": "fp32",
    "crop": "full",
    "roi": [],
    "min_confidence": DEFAULT_MIN_CONFIDENCE,
    "depth_range": list(DEFAULT_DEPTH_RANGE),
    "seed": 0,
}


def ros_params_section(loaded: Mapping[str, Any]) -> dict[str, Any]:
    """The `ros__parameters` of a ROS params file (any node key: `hands_node`, `/**`,
    `/**/hands_node`, ...); a plain mapping without that nesting is returned as it is."""
    for value in loaded.values():
        if isinstance(value, Mapping) and "ros__parameters" in value:
            return dict(value["ros__parameters"] or {})
    return dict(loaded)


class HandsPredictor:
    """Two hands from one RGB image with a DIR network (see module docstring)."""

    def __init__(self, model: Any, device: str = "cpu", precision: str = "fp32",
                 cropper: Optional[Cropper] = None,
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                 depth_range: Sequence[float] = DEFAULT_DEPTH_RANGE) -> None:
        import torch

        if precision not in PRECISIONS:
            raise ValueError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
        self.device = torch.device(device)
        self.precision = precision
        if precision != "fp32" and self.device.type != "cuda":
            LOG.warning("precision %s is only used on CUDA; running fp32 on %s",
                        precision, self.device.type)
            self.precision = "fp32"
        self.model = model.to(self.device).eval()
        self.input_size = int(model.input_size)
        self.cropper: Cropper = cropper or FullFrameCropper()
        self.min_confidence = float(min_confidence)
        self.depth_range = (float(depth_range[0]), float(depth_range[1]))
        self.previous: Optional[FrameResult] = None
        self.faces = {s: model.faces(s).cpu().numpy().astype(np.int64) for s in SIDES}
        self.num_verts = {s: int(model.hand_layers[s].num_verts) for s in SIDES}

    # ---- construction
    @classmethod
    def from_config(cls, config: Union[str, Path, Mapping[str, Any]]) -> "HandsPredictor":
        """Build from a YAML file or dict with the DEFAULT_CONFIG keys (documented in
        config/hands.yaml). Weights '' = random init (loud warning)."""
        import torch
        import yaml

        if not isinstance(config, Mapping):
            with open(resolve_resource(config), encoding="utf-8") as f:
                config = ros_params_section(yaml.safe_load(f) or {})
        unknown = set(config) - set(DEFAULT_CONFIG)
        if unknown:
            LOG.debug("predictor ignores config keys %s", sorted(unknown))
        cfg = {**DEFAULT_CONFIG, **{k: v for k, v in config.items() if k in DEFAULT_CONFIG}}

        model_cfg_path = resolve_resource(cfg["model_config"])
        if not model_cfg_path.is_file():
            raise FileNotFoundError(f"model_config '{cfg['model_config']}' not found "
                                    f"(looked at {model_cfg_path})")
        hand_dir = None if is_unset(cfg["hand_model"]) else resolve_resource(cfg["hand_model"])
        if hand_dir is not None and not hand_dir.is_dir():
            raise FileNotFoundError(f"hand_model folder '{cfg['hand_model']}' not found "
                                    f"(it must hold MANO_LEFT.pkl and MANO_RIGHT.pkl)")
        device = resolve_device(str(cfg["device"]))
        from dir_ros.model import build_dir, load_model_config

        torch.manual_seed(int(cfg["seed"]))  # reproducible random init (no weights)
        model = build_dir(load_model_config(model_cfg_path), hand_model_dir=hand_dir)
        if is_unset(cfg["weights"]):
            msg = ("NO WEIGHTS GIVEN: the DIR network is RANDOMLY INITIALISED; its hands are "
                   "meaningless. Set `weights` to a trained checkpoint.")
            LOG.warning(msg)
            warnings.warn(msg, stacklevel=2)
        else:
            wpath = resolve_resource(cfg["weights"])
            if not wpath.is_file():
                raise FileNotFoundError(f"weights file '{cfg['weights']}' not found")
            from dir_ros.model import load_release_checkpoint

            report = load_release_checkpoint(model, wpath)
            LOG.info("loaded weights %s: %s", wpath, report)
        return cls(model, device=device, precision=str(cfg["precision"]),
                   cropper=make_cropper(str(cfg["crop"]), cfg["roi"] or None),
                   min_confidence=float(cfg["min_confidence"]),
                   depth_range=cfg["depth_range"])

    def reset(self) -> None:
        """Forget the previous frame (tracking crop)."""
        self.previous = None

    def _autocast(self) -> contextlib.AbstractContextManager:
        import torch

        if self.precision == "fp32" or self.device.type != "cuda":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type="cuda", dtype=dtype)

    # ---- inference
    def predict(self, rgb: np.ndarray, K: Optional[np.ndarray] = None) -> FrameResult:
        """rgb (H,W,3) uint8, K (3,3) intrinsics or None -> FrameResult (both hands)."""
        import torch

        from dir_ros.model.normalize import normalize_image

        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"predict() needs an RGB uint8 (H,W,3) image, got "
                             f"{rgb.dtype} {rgb.shape}")
        t0 = time.perf_counter()
        box = self.cropper(rgb, self.previous)
        crop = geo.warp_crop(rgb, box, self.input_size)
        t1 = time.perf_counter()
        with torch.inference_mode():
            x = normalize_image(torch.from_numpy(crop).to(self.device)[None])
            with self._autocast():
                out = self.model(x)
            level = out.final
            seg = torch.softmax(out.seg.float(), dim=1)[0].cpu().numpy() \
                if out.seg is not None else None
            preds = {s: level.hand(s) for s in SIDES}
            rotmats = {s: self.model.hand_layers[s].forward_params(
                preds[s].params.float()).rotmats[0].cpu().numpy() for s in SIDES}
            arrays = {s: {k: getattr(preds[s], k)[0].float().cpu().numpy() for k in
                          ("joints_uv", "verts_uv", "joints_xyz", "verts_xyz", "camera",
                           "params")} for s in SIDES}
        t2 = time.perf_counter()
        K = None if K is None else np.asarray(K, dtype=np.float64).reshape(3, 3)
        if K is not None and not (K[0, 0] > 0 and K[1, 1] > 0):
            K = None  # an uncalibrated CameraInfo carries K = 0
        hands = {s: self._hand(s, arrays[s], rotmats[s], seg, box, K) for s in SIDES}
        t3 = time.perf_counter()
        result = FrameResult(left=hands["left"], right=hands["right"], box=box,
                             image_size=(rgb.shape[1], rgb.shape[0]),
                             timings={"crop_ms": 1e3 * (t1 - t0), "network_ms": 1e3 * (t2 - t1),
                                      "post_ms": 1e3 * (t3 - t2)})
        self.previous = result
        return result

    def _hand(self, side: str, a: dict[str, np.ndarray], rotmats: np.ndarray,
              seg: Optional[np.ndarray], box: geo.CropBox, K: Optional[np.ndarray]) -> HandsResult:
        """Network outputs of one hand (no batch axis) -> HandsResult in the camera frame."""
        finite = all(np.all(np.isfinite(v)) for v in a.values()) and np.all(np.isfinite(rotmats))
        if not finite:
            LOG.warning("non-finite network output for the %s hand", side)
            return HandsResult.invalid(side, self.faces[side], self.num_verts[side])
        confidence = _seg_confidence(seg, a["verts_uv"], SEG_CLASS[side]) if seg is not None \
            else 1.0
        joints_rel = a["joints_xyz"].astype(np.float64)
        verts_rel = a["verts_xyz"].astype(np.float64)
        root = None
        if K is not None:
            try:
                # The network's (s, tx, ty) fits its 2D mesh/joints best at their mean depth:
                # that is the weak-perspective reference (see geometry.weak_perspective_to_camera).
                root = geo.weak_perspective_to_camera(
                    a["camera"], box, K, ref_depth_offset=float(verts_rel[:, 2].mean()))
                if not self.depth_range[0] <= root[2] <= self.depth_range[1]:
                    root = None
            except ValueError:
                root = None
            if root is None:
                LOG.debug("%s hand: implausible weak-perspective camera %s", side, a["camera"])
        if root is not None:
            joints, verts = joints_rel + root, verts_rel + root
        else:  # wrist-relative (message contract: wrist at the origin when not metric)
            joints, verts = joints_rel - joints_rel[0], verts_rel - joints_rel[0]
        return HandsResult(
            side=side, valid=bool(confidence >= self.min_confidence), confidence=float(confidence),
            vertices=verts.astype(np.float32), joints=joints.astype(np.float32),
            wrist_position=joints[0].astype(np.float64) if root is not None else np.zeros(3),
            wrist_quat=geo.matrix_to_quat(rotmats[0]), metric=root is not None,
            pose=geo.matrix_to_axis_angle(rotmats).reshape(-1).astype(np.float32),
            shape=a["params"][51:61].astype(np.float32),
            keypoints_2d=geo.uv_to_image(a["joints_uv"], box).astype(np.float32),
            faces=self.faces[side])


def _seg_confidence(seg: np.ndarray, verts_uv: np.ndarray, cls: int) -> float:
    """Mean seg-head probability of class `cls` over the grid cells hit by the hand's
    projected vertices (its footprint). seg (3,h,w) softmaxed; verts_uv (V,2) in [-1,1].
    0 when the hand projects entirely outside the crop."""
    _, h, w = seg.shape
    cols = np.floor((verts_uv[:, 0] + 1.0) * w / 2.0).astype(np.int64)
    rows = np.floor((verts_uv[:, 1] + 1.0) * h / 2.0).astype(np.int64)
    inside = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    if not np.any(inside):
        return 0.0
    cells = np.unique(rows[inside] * w + cols[inside])
    return float(seg[cls].reshape(-1)[cells].mean())
