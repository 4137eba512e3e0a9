"""Frames with ground truth (DatasetFrame, GtHand) and the ``folder`` source of
``dir-ros make-bag``: a folder of images + a JSON ground-truth file.

The sources are pluggable (dir_ros/data/sources.py: SOURCES, register_source): ``folder``
(this module) and ``synthetic`` (seeded two-hand frames rendered from the hand model,
dir_ros/data/synthetic.py) are shipped.

Ground-truth JSON format (``format: "dir_ros.dataset/1"``), all geometry in metres in the
camera optical frame (x right, y down, z forward), keypoint order of the project
(0 wrist; thumb 1-4; index 5-8; middle 9-12; ring 13-16; pinky 17-20)::

    {
      "format": "dir_ros.dataset/1",          # optional, checked when present
      "frame_id": "camera_color_optical_frame", # optional, overridden by --frame-id
      "fps": 30.0,                            # optional, stamps of frames without "stamp"
      "K": [[fx,0,cx],[0,fy,cy],[0,0,1]],     # optional default intrinsics (px)
      "faces": {"left": [[a,b,c],...], "right": [...]},  # optional default faces
      "frames": [
        {
          "image": "000000.png",              # path relative to the images folder
          "stamp": 1700000000.033,            # optional: seconds (float) or
                                              #   {"sec": int, "nanosec": int}
          "K": [[...],[...],[...]],           # 3x3, required unless given at top level
          "left":  {"valid": true,
                    "joints": [[x,y,z], ...21],   # required when valid
                    "joint_valid": [1, 1, 0, ...21],  # optional per-joint validity
                                                  #   (InterHand2.6M's joint_valid); the
                                                  #   positions of invalid joints are ignored
                    "vertices": [[x,y,z], ...],   # optional (V,3): mesh metrics need it
                    "faces": [[a,b,c], ...],      # optional (F,3) (else top-level faces)
                    "pose": [...48],              # optional axis-angle, MANO order
                    "shape": [...10]},            # optional betas
          "right": {"valid": false}
        }
      ]
    }

A top-level JSON list is accepted as the ``frames`` list. A missing hand entry means
``valid: false``; a file in which no frame has a "left" or "right" entry has no ground
truth at all (make-bag then writes no /hands/gt topic). Images: anything OpenCV reads
(PNG, JPEG, ...), colour or grey; truncated JPEG / PNG files are refused.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from dir_ros.common.results import NUM_KEYPOINTS, SIDES

DATASET_FORMAT = "dir_ros.dataset/1"  # value of the optional "format" key
DEFAULT_FPS = 30.0  # stamp spacing when frames carry no stamp (typical camera rate)
# First stamp when frames carry none: a fixed, recent epoch (2023-11-14) keeps bags
# reproducible and avoids time 0, which some tools treat as "unset".
DEFAULT_START_NS = 1_700_000_000 * 10**9
POSE_DIM = 48  # HandMesh.pose length
SHAPE_DIM = 10  # HandMesh.shape length
# File signatures and end markers used to refuse truncated images (OpenCV decodes a cut
# JPEG without error, filling the missing part with grey).
JPEG_SOI = b"\xff\xd8"  # start of image
JPEG_SOS = b"\xff\xda"  # start of scan (entropy-coded data follows)
JPEG_EOI = b"\xff\xd9"  # end of image; cannot occur inside scan data (byte stuffing)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"IEND"  # type of PNG's last chunk
# IEND chunk = length (4) + type (4) + CRC (4): its type starts 8 bytes before the end.
PNG_IEND_FROM_END = 8
HAND_KEYS = SIDES  # frame keys that carry ground truth


class DatasetError(ValueError):
    """Bad dataset input; the message names the file / frame / field."""


@dataclass
class GtHand:
    """One ground-truth hand (metres, camera optical frame)."""

    valid: bool
    joints: np.ndarray | None = None  # (21,3)
    joint_valid: np.ndarray | None = None  # (21,) bool; None: every joint valid
    vertices: np.ndarray | None = None  # (V,3)
    faces: np.ndarray | None = None  # (F,3)
    pose: np.ndarray | None = None  # (48,)
    shape: np.ndarray | None = None  # (10,)


@dataclass
class DatasetFrame:
    """One frame: image (loaded lazily), stamp, intrinsics, both hands."""

    index: int
    stamp_ns: int
    K: np.ndarray  # (3,3) px
    hands: dict[str, GtHand]
    image_path: Path | None = None
    rgb: np.ndarray | None = field(default=None, repr=False)  # (H,W,3) uint8 when in memory
    annotated: bool = True  # the frame has a "left" or "right" entry (ground truth)

    def load_rgb(self) -> np.ndarray:
        """The frame's image as (H,W,3) uint8 RGB; DatasetError for unreadable, truncated
        or undecodable files."""
        if self.rgb is not None:
            return self.rgb
        import cv2

        assert self.image_path is not None
        data = read_image_file(self.image_path)
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"cannot decode image {self.image_path}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_file_problem(data: bytes) -> str | None:
    """Why the bytes of an image file are incomplete (empty, JPEG without its end marker
    after the scan data, PNG without its IEND chunk), or None when they look complete.
    Other formats are left to the decoder."""
    if not data:
        return "empty file"
    if data.startswith(JPEG_SOI):
        if data.rfind(JPEG_EOI) < data.rfind(JPEG_SOS) or JPEG_SOS not in data:
            return "truncated JPEG (no end-of-image marker after the scan data)"
    elif data.startswith(PNG_SIGNATURE):
        if PNG_IEND not in data[-PNG_IEND_FROM_END - len(PNG_IEND):]:
            return "truncated PNG (no IEND chunk at the end)"
    return None


def read_image_file(path: Path) -> bytes:
    """The bytes of an image file, checked to be complete; DatasetError names the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise DatasetError(f"cannot read image {path}: {err.strerror or err}") from None
    problem = image_file_problem(data)
    if problem:
        raise DatasetError(f"image {path}: {problem}")
    return data


def _array(value: Any, shape: tuple[int, ...] | None, what: str, dtype: Any = float) -> np.ndarray:
    """Convert a JSON value to an array, checking the shape (None entries: any size)."""
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{what}: not a numeric array ({err})") from None
    if shape is not None:
        ok = arr.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, arr.shape))
        if not ok:
            raise DatasetError(f"{what}: shape {arr.shape}, expected {shape}")
    if dtype is float and not np.all(np.isfinite(arr)):
        raise DatasetError(f"{what}: contains NaN or infinity")
    return arr


def _stamp_ns(value: Any, what: str) -> int:
    """A stamp given as float seconds or {sec, nanosec} -> integer nanoseconds."""
    if isinstance(value, dict):
        try:
            return int(value["sec"]) * 10**9 + int(value.get("nanosec", 0))
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{what}: stamp needs integer 'sec' (and 'nanosec')") from None
    if isinstance(value, (int, float)) and math.isfinite(value) and value >= 0:
        return int(round(float(value) * 1e9))
    raise DatasetError(f"{what}: stamp must be non-negative seconds or {{sec, nanosec}}")


def _parse_hand(entry: Any, default_faces: Any, what: str) -> GtHand:
    """Parse one hand entry of the JSON format."""
    if entry is None:
        return GtHand(valid=False)
    if not isinstance(entry, dict):
        raise DatasetError(f"{what}: must be an object")
    valid = bool(entry.get("valid", "joints" in entry))
    if not valid:
        return GtHand(valid=False)
    if "joints" not in entry:
        raise DatasetError(f"{what}: valid hand needs 'joints' (21x3, metres)")
    hand = GtHand(valid=True, joints=_array(entry["joints"], (NUM_KEYPOINTS, 3), f"{what}.joints"))
    if entry.get("joint_valid") is not None:
        flags = _array(entry["joint_valid"], (NUM_KEYPOINTS,), f"{what}.joint_valid")
        if not np.all((flags == 0) | (flags == 1)):
            raise DatasetError(f"{what}.joint_valid: entries must be 0/1 or false/true")
        hand.joint_valid = flags.astype(bool)
        if not hand.joint_valid.any():  # nothing annotated: the hand is not ground truth
            return GtHand(valid=False)
    if entry.get("vertices") is not None:
        hand.vertices = _array(entry["vertices"], (None, 3), f"{what}.vertices")
    faces = entry.get("faces", default_faces)
    if faces is not None:
        hand.faces = _array(faces, (None, 3), f"{what}.faces", dtype=np.int64)
        if hand.vertices is not None and hand.faces.size and (
            hand.faces.min() < 0 or hand.faces.max() >= len(hand.vertices)
        ):
            raise DatasetError(f"{what}.faces: index out of range for {len(hand.vertices)} vertices")
    if entry.get("pose") is not None:
        hand.pose = _array(entry["pose"], (POSE_DIM,), f"{what}.pose")
    if entry.get("shape") is not None:
        hand.shape = _array(entry["shape"], (SHAPE_DIM,), f"{what}.shape")
    return hand


def load_folder_dataset(
    annotations: str | Path, images: str | Path | None = None, fps: float | None = None
) -> tuple[list[DatasetFrame], dict[str, Any]]:
    """Parse the JSON ground truth; (frames, top-level info such as frame_id).

    images: folder the frames' "image" paths are relative to (default: the JSON's folder).
    Images are checked for existence, not loaded.
    """
    path = Path(annotations)
    if not path.is_file():
        raise DatasetError(f"annotations file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from None
    top: dict[str, Any] = {"frames": data} if isinstance(data, list) else data
    if not isinstance(top, dict) or not isinstance(top.get("frames"), list):
        raise DatasetError(f"{path}: expected an object with a 'frames' list (or a list)")
    if top.get("format", DATASET_FORMAT) != DATASET_FORMAT:
        raise DatasetError(f"{path}: unsupported format {top['format']!r}, expected {DATASET_FORMAT!r}")
    if not top["frames"]:
        raise DatasetError(f"{path}: 'frames' is empty")
    image_dir = Path(images) if images is not None else path.parent
    if not image_dir.is_dir():
        raise DatasetError(f"images folder not found: {image_dir}")
    rate = float(fps if fps is not None else top.get("fps", DEFAULT_FPS))
    if not rate > 0:
        raise DatasetError(f"fps must be positive, got {rate}")
    default_k = top.get("K")
    default_faces = top.get("faces") or {}
    frames: list[DatasetFrame] = []
    last_stamp = -1
    for i, fr in enumerate(top["frames"]):
        what = f"{path.name}: frames[{i}]"
        if not isinstance(fr, dict) or "image" not in fr:
            raise DatasetError(f"{what}: needs an 'image' file name")
        img = image_dir / str(fr["image"])
        if not img.is_file():
            raise DatasetError(f"{what}: image not found: {img}")
        read_image_file(img)  # refuse empty / truncated files before any bag is written
        k_val = fr.get("K", default_k)
        if k_val is None:
            raise DatasetError(f"{what}: no 'K' (3x3 intrinsics) in the frame or at top level")
        K = _array(k_val, (3, 3), f"{what}.K")
        if "stamp" in fr:
            stamp = _stamp_ns(fr["stamp"], what)
        else:
            stamp = DEFAULT_START_NS + int(round(i * 1e9 / rate))
        if stamp <= last_stamp:
            raise DatasetError(f"{what}: stamps must increase strictly ({stamp} ns after {last_stamp} ns)")
        last_stamp = stamp
        hands = {s: _parse_hand(fr.get(s), default_faces.get(s), f"{what}.{s}") for s in SIDES}
        frames.append(DatasetFrame(index=i, stamp_ns=stamp, K=K, hands=hands, image_path=img,
                                   annotated=any(k in fr for k in HAND_KEYS)))
    info: dict[str, Any] = {k: top[k] for k in ("frame_id",) if k in top}
    info["has_ground_truth"] = any(f.annotated for f in frames)
    return frames, info


def write_folder_dataset(
    folder: str | Path,
    frames: Iterable[DatasetFrame],
    frame_id: str | None = None,
    image_ext: str = ".png",
) -> Path:
    """Write frames with in-memory images as a folder dataset; returns the JSON path."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out_frames = []
    for fr in frames:
        name = f"{fr.index:06d}{image_ext}"
        rgb = fr.load_rgb()
        cv2.imwrite(str(folder / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        entry: dict[str, Any] = {"image": name, "stamp": {"sec": fr.stamp_ns // 10**9, "nanosec": fr.stamp_ns % 10**9}, "K": fr.K.tolist()}
        for s in SIDES:
            h = fr.hands[s]
            e: dict[str, Any] = {"valid": h.valid}
            for key in ("joints", "joint_valid", "vertices", "faces", "pose", "shape"):
                val = getattr(h, key)
                if h.valid and val is not None:
                    e[key] = np.asarray(val).tolist()
            entry[s] = e
        out_frames.append(entry)
    top: dict[str, Any] = {"format": DATASET_FORMAT, "frames": out_frames}
    if frame_id:
        top["frame_id"] = frame_id
    path = folder / "ground_truth.json"
    path.write_text(json.dumps(top))
    return path
