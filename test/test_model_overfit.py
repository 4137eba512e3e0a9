"""The light network can fit a handful of synthetic two-hand images (loss drops > 70%)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from dir_ros.hand_model import BONE_PARENTS, HandLayer
from dir_ros.model import DIRTarget, HandTarget, build_dir, normalize_image
from dir_ros.model.outputs import XYZ_SCALE, hand_prediction
from dir_ros.model.synthetic import synthetic_hand_model

LIGHT = Path(__file__).resolve().parents[1] / "config" / "model" / "dir_light.yaml"
NUM_SAMPLES = 4
STEPS = 60                # fixed step count (no time budget: a loaded machine is slower, not worse)
TARGET_RATIO = 0.3        # final loss must fall below 30 % of the initial one
LEARNING_RATE = 1e-3
SEG_SIZE = 16             # seg / dense targets at the light model's head resolution
HAND_SCALE = 4.0          # weak-perspective s: ~0.15 m hand -> ~0.6 of the crop half-width
HAND_X = {"left": -0.4, "right": 0.4}  # where each hand sits in the crop (uv)
COLOURS = {"left": (255, 80, 40), "right": (40, 200, 255)}
SEG_LABEL = {"left": 1, "right": 2}


def _random_rotation(gen: torch.Generator, n: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=gen))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None]
    q[torch.linalg.det(q) < 0, :, 2] *= -1
    return q


def _synthetic_batch(arrays, size: int):
    """Random hands -> (images (N,3,S,S) normalised, DIRTarget) with OpenCV drawings."""
    gen = torch.Generator().manual_seed(0)
    targets, images = {}, np.zeros((NUM_SAMPLES, size, size, 3), np.uint8)
    seg = np.zeros((NUM_SAMPLES, size, size), np.uint8)
    roots = {}
    for side in ("left", "right"):
        layer = HandLayer(arrays[side])
        rot = _random_rotation(gen, NUM_SAMPLES)
        params = torch.cat([rot[..., 0], rot[..., 1],                       # rot6d
                            0.5 * torch.randn(NUM_SAMPLES, 45, generator=gen),
                            0.5 * torch.randn(NUM_SAMPLES, 10, generator=gen),
                            torch.full((NUM_SAMPLES, 1), HAND_SCALE),
                            torch.full((NUM_SAMPLES, 1), HAND_X[side]),
                            0.2 * torch.randn(NUM_SAMPLES, 1, generator=gen)], dim=1)
        with torch.no_grad():
            pred = hand_prediction(layer, params)
        targets[side] = HandTarget(pred.joints_uv, pred.verts_uv, pred.joints_xyz,
                                   pred.verts_xyz)
        roots[side] = torch.randn(NUM_SAMPLES, 3, generator=gen) * 0.05
        px = ((pred.joints_uv.numpy() + 1) * size / 2).round().astype(int).tolist()
        for n in range(NUM_SAMPLES):
            for child, parent in enumerate(BONE_PARENTS, start=1):
                shade = tuple(int(c * (0.5 + 0.5 * child / 20)) for c in COLOURS[side])
                cv2.line(images[n], px[n][parent], px[n][child], shade, 3)
                cv2.line(seg[n], px[n][parent], px[n][child], SEG_LABEL[side], 3)
    seg_small = seg[:, ::size // SEG_SIZE, ::size // SEG_SIZE]
    dense = torch.from_numpy(images[:, ::size // SEG_SIZE, ::size // SEG_SIZE]).permute(
        0, 3, 1, 2).float() / 255
    offset = (roots["right"] - roots["left"]) / XYZ_SCALE
    target = DIRTarget(left=targets["left"], right=targets["right"], offset=offset,
                       seg=torch.from_numpy(seg_small.astype(np.int64)), dense=dense)
    return normalize_image(torch.from_numpy(images)), target


def test_light_model_overfits_synthetic_samples():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    arrays = synthetic_hand_model()
    model = build_dir(LIGHT, arrays=arrays)
    images, target = _synthetic_batch(arrays, model.input_size)
    assert images.shape == (NUM_SAMPLES, 3, 128, 128)
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    history = []
    for _ in range(STEPS):
        loss = model.compute_loss(model(images), target)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert np.isfinite(history).all()
    assert min(history[-5:]) < TARGET_RATIO * history[0], history
