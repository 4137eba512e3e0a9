"""InterHand2.6M (v1.0, 5 or 30 fps) in the dataset's own layout, as frames with posed hands
(the training samples of them: dir_ros/train/datasets.py).

Layout read (ROOT is the folder holding `images` and `annotations`)::

    ROOT/images/<split>/Capture<c>/<sequence>/cam<k>/image<f>.jpg
    ROOT/annotations/<split>/InterHand2.6M_<split>_data.json          # COCO-style images +
                                                                      #   annotations
    ROOT/annotations/<split>/InterHand2.6M_<split>_camera.json        # per capture, camera
    ROOT/annotations/<split>/InterHand2.6M_<split>_joint_3d.json      # per capture, frame
    ROOT/annotations/<split>/InterHand2.6M_<split>_MANO_NeuralAnnot.json  # per capture,
                                                                      #   frame, hand

Selection (the release's dataset/prepare_data.py): annotations with hand_type
'interacting' and hand_type_valid, both hands with MANO parameters, image mean >= 10
(black frames are skipped when read). Geometry: the NeuralAnnot MANO fit of each hand
(pose 48 = root axis-angle + finger axis-angle relative to the mean pose, i.e. smplx's
flat_hand_mean=False; shape 10; trans 3, metres, world frame) posed with the configured hand
model, moved to the camera with camrot R and campos c (mm): x_cam = R (x_world - c / 1000).
The camera-frame root rotation is R . R_root; the PCA coefficients are finger pose @
comps^-1 (the release's axis2pca).

Bad input: a missing annotation file, a file that is not JSON, or a missing top-level field
stops with InterHandError naming the file. A selected frame without MANO parameters for a
hand, or without camera parameters, is skipped with a warning naming it (bad_frames
'skip') or stops the run (bad_frames 'stop'); so is an image that is missing, truncated or
cannot be decoded, when it is read.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from dir_ros.data.dataset import DatasetError, read_image_file
from dir_ros.hand_model import SIDES, HandModelArrays

from dir_ros.data.hands import (BadFrameError, HandGeometry, HandTables, RawFrame, double_layers,
                                pca_from_axis_angle, posed_hand, rot6d_from_matrix)

LOG = logging.getLogger("dir_ros.data.interhand")

SPLITS = ("train", "val", "test")
ANNOTATION_KINDS = ("data", "camera", "joint_3d", "MANO_NeuralAnnot")
INTERACTING = "interacting"        # annotation hand_type of two-hand frames
MM_TO_M = 1e-3                     # InterHand2.6M stores campos and joints in millimetres
MANO_POSE_DIM = 48                 # root (3) + 15 finger joints (45), axis-angle
MANO_SHAPE_DIM = 10
MANO_TRANS_DIM = 3
MANO_DIM = MANO_POSE_DIM + MANO_SHAPE_DIM + MANO_TRANS_DIM
# InterHand2.6M's 42 joints: right hand 0-20 then left 21-41, each hand thumb tip..base
# (thumb4, thumb3, thumb2, thumb1), the same for index, middle, ring, pinky, then the wrist
# (20). Project keypoint k (0 wrist; thumb 1-4 base to tip; index 5-8; middle 9-12; ring
# 13-16; pinky 17-20) is InterHand joint INTERHAND_TO_PROJECT[k] + INTERHAND_HAND_OFFSET.
INTERHAND_TO_PROJECT = (20, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12,
                        19, 18, 17, 16)
INTERHAND_HAND_OFFSET = {"right": 0, "left": 21}
INTERHAND_NUM_JOINTS = 42
BAD_FRAME_POLICIES = ("skip", "stop")
# The release skips frames whose image mean is below this (dataset/prepare_data.py:
# `if img.mean() < 10: continue`): InterHand2.6M has black frames.
DARK_IMAGE_MEAN = 10.0
# Frames named per reason in the skip summary (the rest are counted).
SHOWN_SKIPPED = 3


class InterHandError(DatasetError):
    """Unusable InterHand2.6M input; the message names the file (and frame, field)."""


def annotation_path(root: str | Path, split: str, kind: str) -> Path:
    """ROOT/annotations/<split>/InterHand2.6M_<split>_<kind>.json."""
    return Path(root) / "annotations" / split / f"InterHand2.6M_{split}_{kind}.json"


def image_path(root: str | Path, split: str, file_name: str) -> Path:
    """ROOT/images/<split>/<file_name> (file_name from the data file's images list)."""
    return Path(root) / "images" / split / file_name


def interhand_to_project(joints42: np.ndarray) -> dict[str, np.ndarray]:
    """InterHand2.6M joints (42,C) (right 0-20, left 21-41, tip to base, wrist last) ->
    side -> (21,C) in the project keypoint order."""
    j = np.asarray(joints42)
    if j.shape[0] != INTERHAND_NUM_JOINTS:
        raise ValueError(f"expected {INTERHAND_NUM_JOINTS} InterHand2.6M joints, got {j.shape}")
    idx = np.asarray(INTERHAND_TO_PROJECT)
    return {s: j[idx + INTERHAND_HAND_OFFSET[s]] for s in SIDES}


def _load_json(path: Path) -> Any:
    """A JSON annotation file; InterHandError naming it when missing or unreadable."""
    if not path.is_file():
        raise InterHandError(f"InterHand2.6M annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InterHandError(f"{path}: not a readable JSON file ({err})") from None


def _field(obj: Any, key: str, path: Path, what: str = "") -> Any:
    """obj[key] for a mapping; InterHandError naming file and field when absent."""
    if not isinstance(obj, Mapping) or key not in obj:
        raise InterHandError(f"{path}: missing field '{key}'{' in ' + what if what else ''}")
    return obj[key]


@dataclass
class InterHandIndex:
    """The selected frames of one split as compact arrays (N frames; hands left, right).

    names: image file names relative to images/<split>; K (N,3,3) OpenCV intrinsics px;
    cam_R (N,3,3) world -> camera rotation; cam_t (N,3) m translation (x_cam = R x + t);
    mano (N,2,61) per hand pose 48 | shape 10 | trans 3 (m); joints_world (N,42,3) m
    InterHand2.6M's own joints (NaN when absent); joint_valid (N,42) bool.
    """

    root: Path
    split: str
    names: list[str]
    captures: np.ndarray
    frames: np.ndarray
    K: np.ndarray
    cam_R: np.ndarray
    cam_t: np.ndarray
    mano: np.ndarray
    joints_world: np.ndarray
    joint_valid: np.ndarray
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)


def _mano_entry(mano: Any, capture: str, frame: str, side: str, path: Path) -> np.ndarray:
    """One hand's MANO parameters (61,) or BadFrameError naming what is missing."""
    entry = mano.get(capture, {}).get(frame) if isinstance(mano.get(capture), dict) else None
    hand = entry.get(side) if isinstance(entry, dict) else None
    if hand is None:
        raise BadFrameError(f"capture {capture} frame {frame} has no '{side}' MANO "
                            f"parameters in {path.name}")
    try:
        pose = np.asarray(hand["pose"], np.float64).reshape(-1)
        shape = np.asarray(hand["shape"], np.float64).reshape(-1)
        trans = np.asarray(hand["trans"], np.float64).reshape(-1)
    except (KeyError, TypeError, ValueError) as err:
        raise BadFrameError(f"capture {capture} frame {frame}: '{side}' MANO parameters in "
                            f"{path.name} lack or mangle a field ({err!r})") from None
    if (pose.size, shape.size, trans.size) != (MANO_POSE_DIM, MANO_SHAPE_DIM, MANO_TRANS_DIM):
        raise BadFrameError(f"capture {capture} frame {frame}: '{side}' MANO parameters in "
                            f"{path.name} have pose/shape/trans sizes {pose.size}/{shape.size}/"
                            f"{trans.size}, expected 48/10/3")
    out = np.concatenate([pose, shape, trans])
    if not np.all(np.isfinite(out)):
        raise BadFrameError(f"capture {capture} frame {frame}: '{side}' MANO parameters in "
                            f"{path.name} are not finite")
    return out


def _camera_entry(cams: Any, capture: str, camera: str, path: Path
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K (3,3), R (3,3), t (3,) m) of one camera, or BadFrameError naming what is missing."""
    try:
        c = cams[capture]
        focal = np.asarray(c["focal"][camera], np.float64).reshape(2)
        princpt = np.asarray(c["princpt"][camera], np.float64).reshape(2)
        rot = np.asarray(c["camrot"][camera], np.float64).reshape(3, 3)
        pos = np.asarray(c["campos"][camera], np.float64).reshape(3)
    except (KeyError, TypeError, ValueError) as err:
        raise BadFrameError(f"capture {capture} camera {camera}: no usable camera parameters "
                            f"in {path.name} (missing {err})") from None
    K = np.array([[focal[0], 0.0, princpt[0]], [0.0, focal[1], princpt[1]], [0.0, 0.0, 1.0]])
    return K, rot, -rot @ pos * MM_TO_M


def load_interhand_index(root: str | Path, split: str, bad_frames: str = "skip",
                         max_frames: Optional[int] = None) -> InterHandIndex:
    """Read a split's four annotation files and select the interacting frames.

    bad_frames: 'skip' (warn, naming the frames) or 'stop' (InterHandError on the first).
    max_frames: keep at most this many selected frames, evenly spaced (validation subsets).
    """
    if split not in SPLITS:
        raise InterHandError(f"InterHand2.6M split must be one of {SPLITS}, got {split!r}")
    if bad_frames not in BAD_FRAME_POLICIES:
        raise ValueError(f"bad_frames must be one of {BAD_FRAME_POLICIES}, got {bad_frames!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InterHandError(f"InterHand2.6M root folder not found: {root}")
    paths = {k: annotation_path(root, split, k) for k in ANNOTATION_KINDS}
    for p in paths.values():  # name every missing file before parsing the large ones
        if not p.is_file():
            raise InterHandError(f"InterHand2.6M annotation file not found: {p}")
    data = _load_json(paths["data"])
    images = _field(data, "images", paths["data"])
    annotations = _field(data, "annotations", paths["data"])
    ann_by_image = {}
    for a in annotations:
        ann_by_image[_field(a, "image_id", paths["data"], "an annotation")] = a
    cams = _load_json(paths["camera"])
    joints3d = _load_json(paths["joint_3d"])
    mano = _load_json(paths["MANO_NeuralAnnot"])
    keep: dict[str, list] = {k: [] for k in ("names", "captures", "frames", "K", "R", "t",
                                             "mano", "joints", "valid")}
    skipped: dict[str, list[str]] = {}
    for img in images:
        what = "an image entry"
        image_id = _field(img, "id", paths["data"], what)
        ann = ann_by_image.get(image_id)
        if ann is None:
            continue  # an image without annotation is not a training frame
        if ann.get("hand_type") != INTERACTING or not ann.get("hand_type_valid"):
            continue
        name = str(_field(img, "file_name", paths["data"], what))
        capture = str(_field(img, "capture", paths["data"], what))
        frame = str(_field(img, "frame_idx", paths["data"], what))
        camera = str(_field(img, "camera", paths["data"], what))
        try:
            params = np.stack([_mano_entry(mano, capture, frame, s, paths["MANO_NeuralAnnot"])
                               for s in SIDES])
            K, R, t = _camera_entry(cams, capture, camera, paths["camera"])
        except BadFrameError as err:
            reason = "no MANO parameters" if "MANO" in str(err) else "no camera parameters"
            if bad_frames == "stop":
                raise InterHandError(f"{image_path(root, split, name)}: {err}") from None
            skipped.setdefault(reason, []).append(f"{name}: {err}")
            continue
        j = np.full((INTERHAND_NUM_JOINTS, 3), np.nan)
        valid = np.zeros(INTERHAND_NUM_JOINTS, bool)
        entry = joints3d.get(capture, {}).get(frame) if isinstance(joints3d.get(capture),
                                                                   dict) else None
        if isinstance(entry, dict) and "world_coord" in entry:
            try:
                j = np.asarray(entry["world_coord"], np.float64).reshape(INTERHAND_NUM_JOINTS,
                                                                         3) * MM_TO_M
                valid = np.asarray(entry.get("joint_valid", np.ones(INTERHAND_NUM_JOINTS)),
                                   np.float64).reshape(-1) > 0
            except (TypeError, ValueError):
                j, valid = np.full((INTERHAND_NUM_JOINTS, 3), np.nan), valid
        for key, value in (("names", name), ("captures", int(capture)), ("frames", int(frame)),
                           ("K", K), ("R", R), ("t", t), ("mano", params), ("joints", j),
                           ("valid", valid)):
            keep[key].append(value)
    n = len(keep["names"])
    LOG.info("InterHand2.6M %s: %d interacting frames selected", split, n)
    for reason, items in skipped.items():
        LOG.warning("InterHand2.6M %s: skipped %d frame(s) with %s (first: %s)", split,
                    len(items), reason, "; ".join(items[:SHOWN_SKIPPED]))
    if n == 0:
        raise InterHandError(f"{paths['data']}: no interacting frame with valid annotations "
                             f"and MANO parameters in split '{split}'")
    order = np.arange(n)
    if max_frames is not None and n > max_frames:
        order = np.unique(np.linspace(0, n - 1, int(max_frames)).round().astype(np.int64))

    def arr(key: str, dtype: Any = np.float64) -> np.ndarray:
        return np.asarray(keep[key], dtype=dtype)[order]

    return InterHandIndex(root=root, split=split, names=[keep["names"][i] for i in order],
                          captures=arr("captures", np.int64), frames=arr("frames", np.int64),
                          K=arr("K"), cam_R=arr("R"), cam_t=arr("t"), mano=arr("mano"),
                          joints_world=arr("joints"), joint_valid=arr("valid", bool),
                          skipped=skipped)


def decode_image(path: Path) -> np.ndarray:
    """An image file as (H,W,3) uint8 RGB; BadFrameError naming it when it is missing,
    truncated or cannot be decoded."""
    try:
        data = read_image_file(path)
    except DatasetError as err:
        raise BadFrameError(str(err)) from None
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise BadFrameError(f"cannot decode image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class InterHandFrames:
    """The frames of one InterHand2.6M split: index, hand geometry in the camera frame and
    decoded images (the training samples of them: dir_ros.train.datasets.InterHandDataset).
    A bad frame (see the module docstring) raises BadFrameError naming it."""

    def __init__(self, root: str | Path, split: str, arrays: Mapping[str, HandModelArrays],
                 bad_frames: str = "skip", max_frames: Optional[int] = None,
                 index: Optional[InterHandIndex] = None) -> None:
        self.index = index or load_interhand_index(root, split, bad_frames, max_frames)
        self.tables = HandTables.from_arrays(arrays)
        self.layers = double_layers(arrays)
        self.bad_frames = bad_frames

    def __len__(self) -> int:
        return len(self.index)

    def hand_geometry(self, i: int) -> dict[str, HandGeometry]:
        """Both hands of frame i in its camera frame (metres)."""
        ix = self.index
        R, t = ix.cam_R[i], ix.cam_t[i]
        out = {}
        for h, side in enumerate(SIDES):
            p = ix.mano[i, h]
            pose, shape, trans = p[:MANO_POSE_DIM], p[MANO_POSE_DIM:58], p[58:MANO_DIM]
            r_root = Rotation.from_rotvec(pose[:3]).as_matrix()
            pca = pca_from_axis_angle(pose[3:] + self.tables.hands_mean[side], self.tables, side)
            verts, joints = posed_hand(self.layers[side], r_root[None], pca[None], shape[None])
            to_cam = lambda x: (x[0] + trans) @ R.T + t  # noqa: E731 - world -> camera
            out[side] = HandGeometry(
                verts=to_cam(verts), joints=to_cam(joints),
                params=np.concatenate([rot6d_from_matrix(R @ r_root), pca, shape]))
        return out

    def native_joints(self, i: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """InterHand2.6M's own 3D joints of frame i in its camera frame (m), project order:
        (side -> (21,3) with NaN where absent, side -> (21,) bool joint_valid)."""
        ix = self.index
        cam = ix.joints_world[i] @ ix.cam_R[i].T + ix.cam_t[i]
        return interhand_to_project(cam), interhand_to_project(ix.joint_valid[i])

    def raw_frame(self, i: int) -> RawFrame:
        """Frame i: decoded image, intrinsics and hand geometry; BadFrameError for an
        unreadable or black image."""
        path = image_path(self.index.root, self.index.split, self.index.names[i])
        rgb = decode_image(path)
        if float(rgb.mean()) < DARK_IMAGE_MEAN:
            raise BadFrameError(f"image {path}: mean intensity {rgb.mean():.1f} < "
                                f"{DARK_IMAGE_MEAN:g} (black frame, skipped as in the release)")
        return RawFrame(rgb=rgb, K=self.index.K[i], hands=self.hand_geometry(i), name=str(path))
