"""A refinement block against a straight, loop-free restatement of the release's data flow.

The reference below re-derives, from the facts of the authors' release, every order that
the weights depend on: left hand before right; image feature + position embedding, GCN,
then the shared global embedding of xyz/0.15 -/+ offset/2; joint-major flattening
(j * 64 + c) for the regressor; (features, previous params) and (left, right, previous
offset) concatenations; the 20 bone planes of 64 channels each (bone-major), with the
grid cell (row i, column j) at (u, v) = (j + 0.5, i + 0.5); the point-to-segment test in
its unit-direction form. It reuses the block's own sub-modules (Linear / Conv / GCN /
transformer weights), so only the wiring between them is under test.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from dir_ros.hand_model import BONE_PARENTS, HandLayer
from dir_ros.model.outputs import LevelOutput, hand_prediction
from dir_ros.model.refine import RefineBlock
from dir_ros.model.synthetic import synthetic_hand_model

J = 21
K = 20


def _release_bone_planes(uv: torch.Tensor, feats: torch.Tensor, size: int,
                         distance: float) -> torch.Tensor:
    """uv (B,21,2) in [-1,1], feats (B,21,C) -> (B, 20*C, S, S), release formulation."""
    b, _, c = feats.shape
    px = (uv.double() + 1) / 2 * size
    par = torch.tensor(BONE_PARENTS)
    child = torch.arange(1, J)
    out = torch.zeros(b, size, size, K, c, dtype=torch.float64)
    for i in range(size):          # row
        for j in range(size):      # column
            p = torch.tensor([j + 0.5, i + 0.5], dtype=torch.float64)
            a, e = px[:, par], px[:, child]                     # (B,K,2)
            u = (e - a) / torch.hypot((e - a)[..., 0], (e - a)[..., 1])[..., None]
            s = ((a - p) * u).sum(-1)
            t = ((p - e) * u).sum(-1)
            h = torch.maximum(torch.maximum(s, t), torch.zeros_like(s))
            cr = (p - a)[..., 0] * u[..., 1] - (p - a)[..., 1] * u[..., 0]
            inside = torch.hypot(h, cr) < distance             # NaN -> False
            da = (p - a).norm(dim=-1)
            db = (p - e).norm(dim=-1)
            wa = 1 - da / (da + db)
            wb = 1 - db / (da + db)
            val = wa[..., None] * feats[:, par].double() + wb[..., None] * feats[:, child].double()
            out[:, i, j] = torch.where(inside[..., None], val, torch.zeros_like(val))
    return out.reshape(b, size, size, K * c).permute(0, 3, 1, 2).float()


def _release_block(block: RefineBlock, feat: torch.Tensor, prev: LevelOutput):
    """Eval-mode reference: -> (params_left, params_right, offset, projected map)."""
    b = feat.shape[0]
    tokens = []
    for side, sign in (("left", -1.0), ("right", 1.0)):
        hand = prev.hand(side)
        sampled = F.grid_sample(feat, hand.joints_uv.unsqueeze(1),  # release: torch defaults
                                align_corners=False).squeeze(-2)        # (B,C,21)
        x = getattr(block, f"img2joint_{side}").filters(sampled)               # (B,D,21)
        x = x.reshape(b, -1).reshape(b, -1, J).permute(0, 2, 1)
        xyz = hand.joints_xyz / 0.15
        x = x + getattr(block, f"pos_emb_{side}")(xyz.permute(0, 2, 1)).permute(0, 2, 1)
        x = getattr(block, f"gcn_{side}")(x)
        g = xyz + sign * prev.offset.unsqueeze(1) / 2
        x = x + block.global_pos_emb(g.permute(0, 2, 1)).permute(0, 2, 1)
        tokens.append(x)
    t = block.interaction(torch.cat(tokens, dim=1))
    fl, fr = t[:, :J], t[:, J:]
    reg = block.regressor
    flat_l, flat_r = fl.reshape(b, -1), fr.reshape(b, -1)
    p_left = reg.mano_left(torch.cat((flat_l, prev.left.params), -1))
    p_right = reg.mano_right(torch.cat((flat_r, prev.right.params), -1))
    offset = reg.offset(torch.cat((flat_l, flat_r, prev.offset), -1))
    maps = []
    for f, layer, p in ((fl, reg.mano_layer_left, p_left), (fr, reg.mano_layer_right, p_right)):
        joints = layer.forward_params(p).joints
        uv = p[:, 61:62].unsqueeze(1) * joints[..., :2] + p[:, 62:64].unsqueeze(1)
        emb = block.proj_feat_emb(f.permute(0, 2, 1)).permute(0, 2, 1)
        maps.append(_release_bone_planes(uv, emb, block.size, block.distance))
    return p_left, p_right, offset, block.fusion(torch.cat(maps, dim=1))


def _randomise_bn(module: torch.nn.Module, gen: torch.Generator) -> None:
    for m in module.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def test_refine_block_matches_release_wiring():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    arrays = synthetic_hand_model(num_verts=200, num_faces=100)
    layers = {s: HandLayer(a) for s, a in arrays.items()}
    size = 8
    block = RefineBlock(size, 12, layers, distance=1.0, joint_channels=16,
                        token_channels=8).eval()
    with torch.no_grad():
        _randomise_bn(block, gen)
        # regressor weights large enough that the new joints move across the grid
        for lin in (block.regressor.mano_left, block.regressor.mano_right):
            lin.weight.data.normal_(0, 0.02, generator=gen)
            lin.bias.data.zero_()
            lin.bias.data[61] = 4.0  # camera scale: a 0.1 m hand spans ~0.4 of the crop
        b = 3

        def prev_hand(layer: HandLayer):
            p = torch.randn(b, 64, generator=gen) * 0.3
            p[:, 61] = 4.0 + torch.rand(b, generator=gen)
            p[:, 62:64] = torch.rand(b, 2, generator=gen) - 0.5
            return hand_prediction(layer, p)

        prev = LevelOutput(prev_hand(layers["left"]), prev_hand(layers["right"]),
                           offset=torch.randn(b, 3, generator=gen))
        feat = torch.randn(b, 12, size, size, generator=gen)
        level, projected = block(feat, prev)
        p_left, p_right, offset, ref_map = _release_block(block, feat, prev)
    assert torch.allclose(level.left.params, p_left, atol=1e-5)
    assert torch.allclose(level.right.params, p_right, atol=1e-5)
    assert torch.allclose(level.offset, offset, atol=1e-5)
    assert (ref_map.abs() > 0).any()
    assert torch.allclose(projected, ref_map, atol=1e-4)
