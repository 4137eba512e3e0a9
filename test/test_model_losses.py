"""Losses: zero at ground truth, hand-computed values, Lovasz-softmax against its definition."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from dir_ros.model import DIROutput, DIRTarget, HandTarget, build_dir, load_model_config
from dir_ros.model.losses import (RELEASE_LOSS_WEIGHTS, edge_length_loss, lovasz_softmax,
                                  normal_consistency_loss, smooth_l1)
from dir_ros.model.synthetic import synthetic_hand_model

LIGHT = Path(__file__).resolve().parents[1] / "config" / "model" / "dir_light.yaml"
# Logit margin that makes softmax exactly one-hot in float32.
HARD_LOGIT = 100.0


def test_smooth_l1_hand_values():
    # |d| = 0.005 < 0.01 -> 0.5 * 0.005^2 / 0.01 = 0.00125 ; |d| = 0.1 -> 0.1 - 0.005 = 0.095
    assert smooth_l1(torch.tensor([0.005]), torch.zeros(1)).item() == pytest.approx(0.00125)
    assert smooth_l1(torch.tensor([-0.1]), torch.zeros(1)).item() == pytest.approx(0.095)
    valid = torch.tensor([1.0, 0.0])
    assert smooth_l1(torch.tensor([[-0.1], [5.0]]), torch.zeros(2, 1), valid).item() == \
        pytest.approx(0.095)


def test_edge_and_normal_losses_by_hand():
    faces = torch.tensor([[0, 1, 2]])
    gt = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]])
    assert edge_length_loss(gt, gt, faces).item() == 0.0
    assert normal_consistency_loss(gt, gt, faces).item() == pytest.approx(0.0, abs=1e-7)
    # doubling the triangle: edge lengths 1, sqrt2, 1 -> errors 1, sqrt2, 1
    assert edge_length_loss(2 * gt, gt, faces).item() == pytest.approx((2 + math.sqrt(2)) / 3)
    # lift vertex 2 to z = 1: edge 0-1 stays in-plane (0); 1-2 = (-1,1,1)/sqrt3 and
    # 2-0 = (0,-1,-1)/sqrt2 have |<e, z>| = 1/sqrt3 and 1/sqrt2
    pred = gt.clone()
    pred[0, 2, 2] = 1.0
    expected = (0 + 1 / math.sqrt(3) + 1 / math.sqrt(2)) / 3
    assert normal_consistency_loss(pred, gt, faces).item() == pytest.approx(expected, abs=1e-6)


def test_lovasz_softmax_hand_example():
    # 2 pixels, 2 classes, labels (0, 1), p(class 0) = (0.8, 0.3).
    # class 0: errors (0.2, 0.3) -> sorted (0.3 [gt 0], 0.2 [gt 1]); grad (0.5, 0.5) -> 0.25
    # class 1: errors (0.2, 0.3) -> sorted (0.3 [gt 1], 0.2 [gt 0]); grad (1, 0) -> 0.3
    probs = torch.tensor([[0.8, 0.3], [0.2, 0.7]])  # (C, N)
    logits = probs.log().reshape(1, 2, 1, 2)
    labels = torch.tensor([[[0, 1]]])
    assert lovasz_softmax(logits, labels).item() == pytest.approx((0.25 + 0.3) / 2, abs=1e-6)


def test_lovasz_equals_jaccard_loss_for_hard_predictions():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (2, 6, 6), generator=gen)
    pred = torch.randint(0, 3, (2, 6, 6), generator=gen)
    logits = HARD_LOGIT * F.one_hot(pred, 3).permute(0, 3, 1, 2).float()
    ious = []
    for c in range(3):
        g, p = labels == c, pred == c
        ious.append((g & p).sum().item() / (g | p).sum().item())
    assert lovasz_softmax(logits, labels).item() == pytest.approx(1 - sum(ious) / 3, abs=1e-6)
    assert lovasz_softmax(HARD_LOGIT * F.one_hot(labels, 3).permute(0, 3, 1, 2).float(),
                          labels).item() == pytest.approx(0.0, abs=1e-7)


def _gt_output_and_target():
    torch.manual_seed(0)
    cfg = load_model_config(LIGHT)
    cfg["input_size"] = 64
    model = build_dir(cfg, arrays=synthetic_hand_model(num_verts=300, num_faces=500)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    fin = out.final
    seg = torch.randint(0, 3, (2, 8, 8))
    dense = torch.rand(2, 3, 8, 8)
    target = DIRTarget(left=HandTarget.from_prediction(fin.left),
                       right=HandTarget.from_prediction(fin.right), offset=fin.offset.clone(),
                       seg=seg, dense=dense)
    gt_out = DIROutput(levels=[fin, fin, fin],
                       seg=HARD_LOGIT * F.one_hot(seg, 3).permute(0, 3, 1, 2).float(),
                       dense=dense.clone())
    return model, out, gt_out, target


def test_losses_zero_at_ground_truth_and_named():
    model, out, gt_out, target = _gt_output_and_target()
    losses = model.compute_loss(gt_out, target)
    expected = {f"level{i}/{n}" for i in range(3) for n in
                ("joints_2d", "verts_2d", "joints_3d", "verts_3d", "offset", "edge", "normal")}
    assert set(losses) == expected | {"seg_ce", "seg_lovasz", "dense", "total"}
    for name, value in losses.items():
        assert value.item() == pytest.approx(0.0, abs=1e-6), name
    # away from the ground truth every term is positive, and weights are the release's
    away = model.compute_loss(out, DIRTarget(
        left=HandTarget.from_prediction(out.levels[0].right),
        right=HandTarget.from_prediction(out.levels[0].left),
        offset=target.offset + 1.0, seg=1 - target.seg.clamp(max=1), dense=1 - target.dense))
    assert all(v.item() > 0 for v in away.values())
    assert away["total"].item() == pytest.approx(sum(v.item() for k, v in away.items()
                                                     if k != "total"), rel=1e-5)
    assert RELEASE_LOSS_WEIGHTS["normal"] == 0.1 and RELEASE_LOSS_WEIGHTS["verts_3d"] == 10.0


def test_seg_and_dense_targets_are_resized():
    model, _, gt_out, target = _gt_output_and_target()
    big = DIRTarget(left=target.left, right=target.right, offset=target.offset,
                    seg=target.seg.repeat_interleave(4, 1).repeat_interleave(4, 2),
                    dense=target.dense.repeat_interleave(4, 2).repeat_interleave(4, 3))
    losses = model.compute_loss(gt_out, big)
    assert losses["seg_ce"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["dense"].item() == pytest.approx(0.0, abs=1e-6)
