"""Hand-computed checks of the DIR building blocks (rotation, camera, GCN, bone projection)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dir_ros.hand_model import BONE_PARENTS, rot6d_to_matrix
from dir_ros.model import IMAGENET_MEAN, IMAGENET_STD, normalize_image
from dir_ros.model.backbone import ResNet
from dir_ros.model.gcn import SkeletonGCN, SkeletonGraphConv, skeleton_masks
from dir_ros.model.outputs import weak_perspective
from dir_ros.model.projection import (bone_end_weights, make_grid, project_bone_features,
                                      uv_to_feature_px)


# ----------------------------------------------------------------------------- rotation
def test_robust_6d_hand_example():
    # a = 2 e_x, b = e_x + e_y (45 deg apart). The robust variant places x and y
    # symmetrically about their bisector (22.5 deg), 45 deg to either side.
    r = rot6d_to_matrix(torch.tensor([[2.0, 0, 0, 1, 1, 0]], dtype=torch.float64))[0]
    c, s = math.cos(math.radians(22.5)), math.sin(math.radians(22.5))
    expected = torch.tensor([[c, s, 0], [-s, c, 0], [0, 0, 1]], dtype=torch.float64)
    # columns: x = (cos -22.5, sin -22.5, 0), y = (cos 67.5, sin 67.5, 0) = (s, c, 0), z = e_z
    assert torch.allclose(r, expected, atol=1e-12)
    ident = rot6d_to_matrix(torch.tensor([[1.0, 0, 0, 0, 1, 0]]))[0]
    assert torch.allclose(ident, torch.eye(3), atol=1e-6)


def test_robust_6d_random_is_rotation():
    x = torch.randn(256, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = rot6d_to_matrix(x)
    eye = torch.eye(3, dtype=torch.float64).expand(256, 3, 3)
    assert torch.allclose(r.transpose(1, 2) @ r, eye, atol=1e-10)
    assert torch.allclose(torch.linalg.det(r), torch.ones(256, dtype=torch.float64), atol=1e-10)


# ----------------------------------------------------------------------------- camera
def test_weak_perspective_hand_example():
    xyz = torch.tensor([[[0.1, -0.2, 5.0], [0.0, 0.0, -1.0]]])
    cam = torch.tensor([[2.0, 0.5, -0.25]])
    uv = weak_perspective(xyz, cam)
    # u = 2 * 0.1 + 0.5 = 0.7, v = 2 * -0.2 - 0.25 = -0.65; z ignored
    assert torch.allclose(uv, torch.tensor([[[0.7, -0.65], [0.5, -0.25]]]))


def test_uv_to_feature_px():
    uv = torch.tensor([[[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]]])
    assert uv_to_feature_px(uv, 16).tolist() == [[[0.0, 0.0], [8.0, 8.0], [16.0, 16.0]]]


# ----------------------------------------------------------------------------- GCN
def test_gcn_adjacency_counts_and_rows():
    self_mask, edge_mask = skeleton_masks()
    assert int(self_mask.sum()) == 21
    assert int(edge_mask.sum()) == 40
    assert torch.equal(edge_mask, edge_mask.t()) and not edge_mask.diagonal().any()
    assert edge_mask[1, 0] and edge_mask[0, 1] and edge_mask[8, 7] and not edge_mask[4, 5]
    conv = SkeletonGraphConv(4, 4)
    torch.nn.init.normal_(conv.e_1)
    with torch.no_grad():
        a0, a1 = conv.adjacencies()
    assert torch.allclose(a0, torch.eye(21))  # softmax over a single self loop
    assert torch.allclose(a1.sum(1), torch.ones(21))
    assert (a1[~edge_mask] == 0).all()
    # wrist has 5 neighbours; a fingertip only its parent
    assert int((a1[0] > 0).sum()) == 5 and a1[4, 3] == pytest.approx(1.0)


def test_gcn_self_loop_parameter_is_a_no_op():
    torch.manual_seed(0)
    conv = SkeletonGraphConv(8, 8)
    x = torch.randn(3, 21, 8)
    before = conv(x)
    with torch.no_grad():
        conv.e_0.normal_(0, 5)
    assert torch.allclose(conv(x), before, atol=1e-6)
    # and the output matches the definition with A0 = I
    a1 = conv.adjacencies()[1]
    ref = torch.einsum("bnc,ncd->bnd", x, conv.W[0]) + \
        a1 @ torch.einsum("bnc,ncd->bnd", x, conv.W[1]) + conv.bias
    assert torch.allclose(conv(x), ref, atol=1e-5)
    gcn = SkeletonGCN(8, 4)
    assert len(gcn.gconv_layers) == 4 and gcn(x).shape == (3, 21, 8)


# ----------------------------------------------------------------------------- projection
TOY_PARENTS = (0, 1, 2)  # 4 joints, 3 bones: 0-1, 1-2, 2-3


def _toy_points() -> torch.Tensor:
    # bone 0 horizontal (1,1)->(3,1), bone 1 vertical (3,1)->(3,3), bone 2 zero-length at (3,3)
    return torch.tensor([[[1.0, 1.0], [3.0, 1.0], [3.0, 3.0], [3.0, 3.0]]])


def test_make_grid_cell_centres():
    g = make_grid(4)
    assert g.shape == (16, 2)
    assert g[0].tolist() == [0.5, 0.5] and g[1].tolist() == [1.5, 0.5]
    assert g[4].tolist() == [0.5, 1.5] and g[15].tolist() == [3.5, 3.5]


def test_bone_weights_toy_by_hand():
    w = bone_end_weights(_toy_points(), make_grid(4), TOY_PARENTS, distance=1.0)[0]  # (3,2,16)
    # cell (1.5,1.5) = index 5: bone 0 foot point (1.5,1), distance 0.5 < 1 -> inside;
    # d_a = sqrt(0.5), d_b = sqrt(2.5); w_a = 1 - d_a/(d_a+d_b), w_b = 1 - d_b/(d_a+d_b)
    da, db = math.sqrt(0.5), math.sqrt(2.5)
    assert w[0, 0, 5].item() == pytest.approx(1 - da / (da + db), abs=1e-6)
    assert w[0, 1, 5].item() == pytest.approx(1 - db / (da + db), abs=1e-6)
    # same cell vs bone 1 (x = 3): distance 1.5 -> outside
    assert w[1, :, 5].tolist() == [0.0, 0.0]
    # cell (0.5,0.5) = index 0: beyond bone 0's start, distance sqrt(0.5) -> inside;
    # d_a = sqrt(0.5), d_b = sqrt(6.5)
    da, db = math.sqrt(0.5), math.sqrt(6.5)
    assert w[0, 0, 0].item() == pytest.approx(1 - da / (da + db), abs=1e-6)
    # the zero-length bone 2 at (3,3) paints nothing, even on the cells sqrt(0.5) from it
    # (15 = (3.5,3.5), 14 = (2.5,3.5)): in the release its 0/0 direction makes the
    # distance NaN and the band test false
    assert w[2, :, 15].tolist() == [0.0, 0.0] and w[2, :, 14].tolist() == [0.0, 0.0]
    assert (w[2] == 0).all()
    # inside the band, the two weights always sum to 1
    inside = w.sum(1) > 0
    assert torch.allclose(w.sum(1)[inside], torch.ones(int(inside.sum())))
    # planes: w_a f_parent + w_b f_child
    feats = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [4.0, -4.0]]])
    planes = project_bone_features(feats, w[None], TOY_PARENTS)  # (1,3,2,16)
    assert planes.shape == (1, 3, 2, 16)
    assert planes[0, 0, :, 5].tolist() == pytest.approx(
        [w[0, 0, 5].item() * 1.0, w[0, 1, 5].item() * 1.0])
    assert (planes[0, 2] == 0).all()


def _reference_planes(points: np.ndarray, feats: np.ndarray, size: int, parents, distance):
    """Per-(sample, bone, cell) loops with the release's formulation of the band test:
    unit bone direction u = (b - a)/|b - a|, along-bone excess h = max((a - p).u,
    (p - b).u, 0), across-bone c = (p - a) x u, distance hypot(h, c); NaN (zero-length
    bone, 0/0) fails the test."""
    b, _, c = feats.shape
    out = np.zeros((b, len(parents), c, size * size))
    with np.errstate(invalid="ignore", divide="ignore"):
        for n in range(b):
            for k, par in enumerate(parents):
                pa, pb = points[n, par], points[n, k + 1]
                u = (pb - pa) / np.hypot(*(pb - pa))
                for row in range(size):
                    for col in range(size):
                        p = np.array([col + 0.5, row + 0.5])
                        h = np.maximum(np.maximum((pa - p) @ u, (p - pb) @ u), 0.0)
                        cross = (p - pa)[0] * u[1] - (p - pa)[1] * u[0]
                        if not np.hypot(h, cross) < distance:
                            continue
                        da, db = np.linalg.norm(p - pa), np.linalg.norm(p - pb)
                        wa, wb = 1 - da / (da + db), 1 - db / (da + db)
                        out[n, k, :, row * size + col] = (wa * feats[n, par]
                                                          + wb * feats[n, k + 1])
    return out


def test_fast_projection_equals_reference():
    gen = torch.Generator().manual_seed(1)
    size, b, c = 8, 2, 5
    pts = torch.rand(b, 21, 2, generator=gen) * size
    pts[0, 4] = pts[0, 3]  # a zero-length bone
    pts[1, 5] = torch.tensor([2.5, 3.5])  # a joint exactly on a cell centre
    pts[1, 6] = torch.tensor([2.5, 3.5])  # and a zero-length bone on it
    feats = torch.randn(b, 21, c, generator=gen)
    # 2.1, not 2: a joint on a cell centre has cells at exactly 2 px, where the two
    # formulations of the band test may round to different sides
    w = bone_end_weights(pts, make_grid(size), BONE_PARENTS, distance=2.1)
    fast = project_bone_features(feats, w, BONE_PARENTS)
    ref = _reference_planes(pts.double().numpy(), feats.double().numpy(), size, BONE_PARENTS,
                            2.1)
    assert np.allclose(fast.numpy(), ref, atol=1e-5)
    assert (fast != 0).any() and (fast == 0).any()
    assert (fast[0, 3] == 0).all() and (fast[1, 5] == 0).all()  # the zero-length bones


def test_projection_gradients_finite_on_degenerate_bones():
    pts = torch.tensor([[[2.5, 2.5]] * 21]).requires_grad_(True)  # all joints on one cell
    feats = torch.randn(1, 21, 3, requires_grad=True)
    w = bone_end_weights(pts, make_grid(4), BONE_PARENTS, distance=1.0)
    out = project_bone_features(feats, w, BONE_PARENTS)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(pts.grad).all()
    assert torch.isfinite(feats.grad).all()


# ----------------------------------------------------------------------------- input / backbone
def test_normalize_image_layouts():
    img = torch.full((1, 4, 5, 3), 255, dtype=torch.uint8)
    img[..., 1] = 0
    x = normalize_image(img)
    assert x.shape == (1, 3, 4, 5)
    assert x[0, 0, 0, 0].item() == pytest.approx((1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0])
    assert x[0, 1, 0, 0].item() == pytest.approx(-IMAGENET_MEAN[1] / IMAGENET_STD[1])
    assert torch.equal(normalize_image(img.permute(0, 3, 1, 2)), x)


@pytest.mark.parametrize("depth,channels", [(18, (64, 128, 256, 512)),
                                            (34, (64, 128, 256, 512)),
                                            (50, (256, 512, 1024, 2048))])
def test_resnet_stage_shapes(depth, channels):
    net = ResNet(depth).eval()
    assert net.out_channels == channels
    with torch.no_grad():
        feats = net(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [
        (channels[0], 16, 16), (channels[1], 8, 8), (channels[2], 4, 4), (channels[3], 2, 2)]
    keys = net.state_dict().keys()
    assert "layer1.0.conv1.weight" in keys and "fc.weight" in keys
    assert ("layer1.0.downsample.0.weight" in keys) == (depth == 50)


# ----------------------------------------------------------------------------- refine block
def test_projection_embedding_runs_once_per_hand():
    from dir_ros.hand_model import HandLayer
    from dir_ros.model.refine import RefineBlock
    from dir_ros.model.synthetic import synthetic_hand_model

    arrays = synthetic_hand_model(num_verts=100, num_faces=50)
    layers = {side: HandLayer(a) for side, a in arrays.items()}
    torch.manual_seed(0)
    block = RefineBlock(4, 8, layers, distance=1.0, joint_channels=8, token_channels=4).train()
    emb = block.proj_feat_emb
    bn = emb[1]
    feats = torch.randn(3, 42, 4)
    with torch.no_grad():
        out = block.embed_projected(feats)
        # training-mode BatchNorm sees one hand at a time: the left half does not depend
        # on the right hand's tokens ...
        other = feats.clone()
        other[:, 21:] = other[:, 21:] * 5 + 3
        assert torch.allclose(block.embed_projected(other)[:, :21], out[:, :21], atol=1e-6)
        # ... and the running mean took two updates, left then right (momentum 0.1)
        bn.reset_running_stats()
        block.embed_projected(feats)
        conv = emb[0]
        m_left = conv(feats[:, :21].transpose(1, 2)).mean((0, 2))
        m_right = conv(feats[:, 21:].transpose(1, 2)).mean((0, 2))
        assert torch.allclose(bn.running_mean, 0.9 * 0.1 * m_left + 0.1 * m_right, atol=1e-6)
