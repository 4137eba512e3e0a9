"""InterHand2.6M loader on a tiny dataset written in the dataset's own layout (JSON
annotation files + JPEG images): frame selection, crops and targets against values computed
independently here (smplx's MANO, the camera maths written out), and bad input."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import smplx
import torch
from scipy.spatial.transform import Rotation

from dir_ros.hand_model import load_hand_model, open_hand_dir
from dir_ros.data.interhand import (InterHandError, annotation_path, interhand_to_project,
                                    load_interhand_index)
from dir_ros.train.datasets import InterHandDataset
from dir_ros.train.sample import BadSample

SPLIT = "train"
W, H = 320, 240                                   # image size px
FOCAL = (600.0, 610.0)                            # px
PRINCPT = (150.0, 110.0)                          # px (OpenCV convention)
CAMPOS_MM = np.array([20.0, -30.0, -650.0])       # camera centre in the world, mm
CAMROT = Rotation.from_euler("xyz", [4.0, -6.0, 3.0], degrees=True).as_matrix()
CAPTURE, CAMERA = 0, "400262"
INPUT = 128                                       # network input px
# keypoint k of the project order = MANO joint / fingertip (16 + tip index) (spec: wrist,
# thumb 13 14 15 tip, index 1 2 3 tip, middle 4 5 6 tip, ring 10 11 12 tip, pinky 7 8 9 tip)
KEYPOINT_FROM_MANO = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
# frame_idx -> (hand_type, hand_type_valid, which hands have MANO parameters)
FRAMES = {
    10: ("interacting", 1, ("left", "right")),    # selected
    11: ("interacting", 1, ("left", "right")),    # selected
    12: ("right", 1, ("right",)),                 # one hand: not a training frame
    13: ("interacting", 0, ("left", "right")),    # hand type not valid: not selected
    14: ("interacting", 1, ("right",)),           # no left MANO parameters: bad frame
    15: ("interacting", 1, ("left", "right")),    # selected
}


def file_name(frame: int) -> str:
    return f"Capture{CAPTURE}/0051_dinosaur/cam{CAMERA}/image{frame:05d}.jpg"


def mano_params(frame: int, side: str) -> dict:
    """Deterministic MANO parameters of a hand (world frame, metres)."""
    rng = np.random.default_rng([frame, side == "right"])
    root = Rotation.from_euler("xyz", [90.0 + rng.uniform(-20, 20), rng.uniform(-20, 20),
                                       rng.uniform(-20, 20)], degrees=True).as_rotvec()
    pose = np.concatenate([root, rng.normal(0, 0.2, 45)])
    trans = np.array([-0.06 if side == "left" else 0.06, 0.0, 0.0]) + rng.normal(0, 0.005, 3)
    return {"pose": pose.tolist(), "shape": rng.normal(0, 0.5, 10).tolist(),
            "trans": trans.tolist()}


def gradient_image() -> np.ndarray:
    """BGR image whose red encodes x and green encodes y (to check crop geometry)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    rgb = np.stack([255 * xx / (W - 1), 255 * yy / (H - 1), np.full_like(xx, 128)], -1)
    return np.round(rgb[..., ::-1]).astype(np.uint8)


def write_dataset(root: Path) -> None:
    """The tiny dataset in InterHand2.6M v1.0's layout."""
    images, annotations, joints, mano = [], [], {}, {}
    for k, (frame, (hand_type, valid, hands)) in enumerate(FRAMES.items()):
        images.append({"id": 100 + k, "file_name": file_name(frame), "width": W, "height": H,
                       "capture": CAPTURE, "subject": 1, "seq_name": "0051_dinosaur",
                       "camera": CAMERA, "frame_idx": frame})
        annotations.append({"id": 100 + k, "image_id": 100 + k, "bbox": [0, 0, W, H],
                            "joint_valid": [[1]] * 42, "hand_type": hand_type,
                            "hand_type_valid": valid})
        joints[str(frame)] = {"world_coord": (np.arange(42 * 3).reshape(42, 3) + frame).tolist(),
                              "joint_valid": [[1]] * 42, "hand_type": hand_type,
                              "hand_type_valid": valid}
        mano[str(frame)] = {s: (mano_params(frame, s) if s in hands else None)
                            for s in ("left", "right")}
        path = root / "images" / SPLIT / file_name(frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), gradient_image(), [cv2.IMWRITE_JPEG_QUALITY, 98])
    camera = {str(CAPTURE): {"campos": {CAMERA: CAMPOS_MM.tolist()},
                             "camrot": {CAMERA: CAMROT.tolist()},
                             "focal": {CAMERA: list(FOCAL)}, "princpt": {CAMERA: list(PRINCPT)}}}
    files = {"data": {"images": images, "annotations": annotations}, "camera": camera,
             "joint_3d": {str(CAPTURE): joints}, "MANO_NeuralAnnot": {str(CAPTURE): mano}}
    for kind, content in files.items():
        p = annotation_path(root, SPLIT, kind)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(content))


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("InterHand2.6M")
    write_dataset(root)
    return root


@pytest.fixture(scope="module")
def arrays() -> dict:
    return load_hand_model(open_hand_dir())


def expected_hand(frame: int, side: str, arrays: dict) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame (verts, joints) in metres, computed with smplx's MANO (the InterHand2.6M
    convention: flat_hand_mean False) and the camera extrinsics written out."""
    p = mano_params(frame, side)
    layer = smplx.MANO(str(open_hand_dir()), is_rhand=side == "right", use_pca=False,
                       flat_hand_mean=False)
    t = lambda x: torch.tensor([x], dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        out = layer(global_orient=t(p["pose"][:3]), hand_pose=t(p["pose"][3:]),
                    betas=t(p["shape"]), transl=t(p["trans"]))
    verts = out.vertices[0].double().numpy()
    j16 = out.joints[0].double().numpy()[:16]
    joints = np.concatenate([j16, verts[arrays[side].tip_ids]])[KEYPOINT_FROM_MANO]
    to_cam = lambda x: (CAMROT @ (x * 1000.0 - CAMPOS_MM).T).T / 1000.0  # noqa: E731
    return to_cam(verts), to_cam(joints)


def pixels(points: np.ndarray) -> np.ndarray:
    """Corner-origin pixel coordinates of camera-frame points."""
    return np.stack([FOCAL[0] * points[:, 0] / points[:, 2] + PRINCPT[0] + 0.5,
                     FOCAL[1] * points[:, 1] / points[:, 2] + PRINCPT[1] + 0.5], axis=1)


def test_selection_and_native_joint_order(dataset_root, arrays, caplog):
    with caplog.at_level(logging.WARNING, logger="dir_ros.data.interhand"):
        index = load_interhand_index(dataset_root, SPLIT)
    assert list(index.frames) == [10, 11, 15]
    assert "image00014.jpg" in caplog.text and "no 'left' MANO parameters" in caplog.text
    assert index.skipped and len(index.skipped["no MANO parameters"]) == 1
    ds = InterHandDataset(dataset_root, SPLIT, arrays, INPUT, index=index)
    native, valid = ds.native_joints(0)
    # world_coord row j = (3j, 3j+1, 3j+2) + frame, mm; InterHand order: right 0-20 (thumb
    # tip first, wrist last), left 21-41
    world = (np.arange(42 * 3).reshape(42, 3) + 10) / 1000.0
    cam = world @ CAMROT.T - CAMROT @ CAMPOS_MM / 1000.0
    assert np.allclose(native["right"][0], cam[20]) and np.allclose(native["left"][0], cam[41])
    assert np.allclose(native["right"][4], cam[0])            # thumb tip
    assert np.allclose(native["right"][1], cam[3])            # thumb base (thumb1)
    assert np.allclose(native["left"][20], cam[21 + 16])      # pinky tip
    assert valid["left"].all()
    conv = interhand_to_project(np.arange(42))
    assert conv["right"].tolist() == [20, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13,
                                      12, 19, 18, 17, 16]


@pytest.mark.parametrize("i,frame", [(0, 10), (2, 15)])
def test_crop_and_targets_match_independent_computation(dataset_root, arrays, i, frame):
    ds = InterHandDataset(dataset_root, SPLIT, arrays, INPUT)
    sample = ds[i]
    assert not isinstance(sample, BadSample)
    exp = {s: expected_hand(frame, s, arrays) for s in ("left", "right")}
    # the release crop: square around both projected meshes, hands spanning 0.8 of it
    px = np.concatenate([pixels(exp[s][0]) for s in exp])
    lo, hi = px.min(0), px.max(0)
    side = (hi - lo).max() / 0.8
    x0, y0 = (lo + hi) / 2 - side / 2
    for s in ("left", "right"):
        verts, joints = exp[s]
        uv = (pixels(joints) - [x0, y0]) / side * 2 - 1
        assert np.allclose(sample[f"{s}/joints_uv"], uv, atol=2e-4)
        assert np.allclose(sample[f"{s}/verts_uv"], (pixels(verts) - [x0, y0]) / side * 2 - 1,
                           atol=2e-4)
        assert np.allclose(sample[f"{s}/joints_xyz"], joints - joints[0], atol=2e-5)
        assert np.allclose(sample[f"{s}/verts_xyz"], verts - joints[0], atol=2e-5)
        # parameters: camera-frame root rotation, PCA coefficients, betas
        p = mano_params(frame, s)
        r6 = sample[f"{s}/params"][:6]
        rot = CAMROT @ Rotation.from_rotvec(p["pose"][:3]).as_matrix()
        assert np.allclose(r6, np.concatenate([rot[:, 0], rot[:, 1]]), atol=1e-5)
        comps = arrays[s].hands_components
        assert np.allclose(sample[f"{s}/params"][6:51] @ comps, p["pose"][3:], atol=1e-4)
        assert np.allclose(sample[f"{s}/params"][51:], p["shape"], atol=1e-6)
    offset = (exp["right"][1][0] - exp["left"][1][0]) / 0.15
    assert np.allclose(sample["offset"], offset, atol=2e-4)
    # crop intrinsics: K scaled by INPUT / side and shifted by the crop corner
    k = sample["K"]
    assert k[0, 0] == pytest.approx(FOCAL[0] * INPUT / side, rel=1e-5)
    assert k[0, 2] + 0.5 == pytest.approx((PRINCPT[0] + 0.5 - x0) * INPUT / side, abs=1e-3)
    # image: crop pixel (r, c) shows image point corner + ((c, r) + 0.5) * side / INPUT, whose
    # red / green encode x / y
    img = sample["rgb"].astype(np.float64)
    rr, cc = np.mgrid[0:INPUT, 0:INPUT]
    xs = x0 + (cc + 0.5) * side / INPUT - 0.5       # OpenCV pixel coordinates
    ys = y0 + (rr + 0.5) * side / INPUT - 0.5
    inside = (xs > 1) & (xs < W - 2) & (ys > 1) & (ys < H - 2)
    assert inside.mean() > 0.3
    assert np.abs(img[..., 0][inside] - 255 * xs[inside] / (W - 1)).max() < 4.0
    assert np.abs(img[..., 1][inside] - 255 * ys[inside] / (H - 1)).max() < 4.0
    assert np.all(img[~((xs > -1) & (xs < W) & (ys > -1) & (ys < H))] == 0)  # black border
    # segmentation / dense maps (1/4 of the input): each hand's pixels lie inside its own
    # projected bounding box; dense colours in [0,1], zero on the background
    seg, dense = sample["seg"], sample["dense"]
    m = seg.shape[0]
    assert m == INPUT // 4
    for s, label in (("left", 1), ("right", 2)):
        mp = (pixels(exp[s][0]) - [x0, y0]) / side * m
        rows, cols = np.nonzero(seg == label)
        assert len(rows) > 10
        assert cols.min() >= np.floor(mp[:, 0].min()) - 1 and cols.max() <= mp[:, 0].max() + 1
        assert rows.min() >= np.floor(mp[:, 1].min()) - 1 and rows.max() <= mp[:, 1].max() + 1
    assert np.all(dense[:, seg == 0] == 0) and dense.min() >= 0 and dense.max() <= 1
    assert dense[:, seg > 0].max() > 0


def test_missing_annotation_file_is_named(dataset_root, tmp_path):
    root = tmp_path / "copy"
    write_dataset(root)
    missing = annotation_path(root, SPLIT, "joint_3d")
    missing.unlink()
    with pytest.raises(InterHandError, match="annotation file not found") as err:
        load_interhand_index(root, SPLIT)
    assert str(missing) in str(err.value)


def test_frame_without_mano_stops_under_stop(dataset_root):
    with pytest.raises(InterHandError) as err:
        load_interhand_index(dataset_root, SPLIT, bad_frames="stop")
    assert "image00014.jpg" in str(err.value) and "'left' MANO" in str(err.value)


def test_corrupt_image_gives_a_named_bad_sample(tmp_path, arrays):
    root = tmp_path / "ih"
    write_dataset(root)
    path = root / "images" / SPLIT / file_name(11)
    path.write_bytes(path.read_bytes()[:200])                       # truncated JPEG
    ds = InterHandDataset(root, SPLIT, arrays, INPUT)
    bad = ds[1]
    assert isinstance(bad, BadSample)
    assert str(path) in bad.reason and "truncated" in bad.reason
    path.write_bytes(b"\xff\xd8not a jpeg at all\xff\xda\x00\xff\xd9")  # undecodable
    assert isinstance(ds[1], BadSample) and str(path) in ds[1].reason
    assert not isinstance(ds[0], BadSample)
