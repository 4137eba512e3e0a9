"""The detector crop (crop mode 'detect'): the release's crop convention from landmarks."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dir_ros.common import geometry as geo
from dir_ros.frontend.crop import DetectCropper, detect_box, make_cropper, release_box_from_points
from dir_ros.hand_model import build_hand_layers
from dir_ros.common.results import FrameResult, HandsResult

K = np.array([[554.3, 0.0, 319.5], [0.0, 554.3, 239.5], [0.0, 0.0, 1.0]])  # 640x480, 60 deg


def _two_hand_frames(n: int, seed: int) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """n synthetic two-hand frames: (projected mesh vertices of both hands (2V,2) px,
    side -> projected 21 keypoints (21,2) px), random poses within the PCA's typical range."""
    rng = np.random.default_rng(seed)
    layers = build_hand_layers()
    frames = []
    for _ in range(n):
        centre = np.array([rng.uniform(-0.1, 0.1), rng.uniform(-0.08, 0.08), rng.uniform(0.4, 0.9)])
        verts, kps = [], {}
        for side, dx in (("left", -0.06), ("right", 0.06)):
            rot = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
            rot6d = torch.tensor(rot[:, :2].T.reshape(1, 6), dtype=torch.float32)
            with torch.no_grad():
                out = layers[side](rot6d, torch.tensor(rng.normal(0, 1, (1, 45)), dtype=torch.float32),
                                   torch.tensor(rng.normal(0, 1, (1, 10)), dtype=torch.float32))
            offset = centre + np.array([dx, 0.0, 0.0])
            verts.append(geo.project_points(out.vertices[0].numpy() + offset, K))
            kps[side] = geo.project_points(out.joints[0].numpy() + offset, K)
        frames.append((np.concatenate(verts), kps))
    return frames


def test_detect_crop_matches_release_convention_from_true_meshes() -> None:
    """The crop cut around two hands' keypoints (the detector's landmarks) matches the
    release's crop around their true projected meshes within 10% of the side."""
    for mesh_px, kps in _two_hand_frames(20, seed=1):
        ref = release_box_from_points(mesh_px)
        detections = {s: SimpleNamespace(landmarks_px=p) for s, p in kps.items()}
        box = DetectCropper(lambda rgb: detections)(np.zeros((480, 640, 3), np.uint8), None)
        assert abs(box.size - ref.size) <= 0.10 * ref.size
        assert np.hypot(box.cx - ref.cx, box.cy - ref.cy) <= 0.10 * ref.size
        # the raw landmark box (no extent factor) is smaller than the release's crop
        assert detect_box(list(kps.values()), extent_factor=1.0).size < box.size + 1e-9


def test_detect_crop_falls_back_to_tracking_then_full_frame() -> None:
    """No detections: the previous frame's hands (track), else the full frame."""
    cropper = make_cropper("detect", detector=lambda rgb: {})
    img = np.zeros((480, 640, 3), np.uint8)
    assert cropper(img, None) == geo.full_frame_box(640, 480)
    hand = HandsResult.invalid("left", np.zeros((1, 3)), 4)
    hand.valid = True
    hand.keypoints_2d = np.array([[100.0, 100.0], [180.0, 140.0]] * 10 + [[100.0, 100.0]])
    prev = FrameResult(hand, HandsResult.invalid("right", np.zeros((1, 3)), 4),
                       geo.full_frame_box(640, 480))
    assert cropper(img, prev) == geo.CropBox(140.0, 120.0, 100.0)
    with pytest.raises(ValueError, match="detector"):
        make_cropper("detect")
