"""Fast paths of the DIR network (issue 10): the factorised projection-fusion conv equals
the release's conv over materialised bone planes (outputs, gradients, BatchNorm statistics),
and the forward is torch.export-clean (no data-dependent Python values) with the exported
program equal to eager."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from dir_ros.hand_model import NUM_PARAMS, make_hand_layers
from dir_ros.model import bone_conv, build_dir, load_model_config
from dir_ros.model.bone_conv import bone_plane_conv, shifted_columns
from dir_ros.model.gcn import mask_positions, masked_softmax_adjacency, skeleton_masks
from dir_ros.model.gemm_conv import conv2d_gemm, eager_cpu
from dir_ros.model.init_regressor import InitRegressor
from dir_ros.model.outputs import LevelOutput, hand_prediction
from dir_ros.model.refine import NUM_BONES, RefineBlock
from dir_ros.model.synthetic import synthetic_hand_model

ROOT = Path(__file__).resolve().parents[1]
LIGHT = ROOT / "config" / "model" / "dir_light.yaml"
RELEASE = ROOT / "config" / "model" / "dir_release.yaml"
# Small synthetic hand model: the layer's cost does not matter here.
ARRAYS = synthetic_hand_model(num_verts=300, num_faces=500)
# float32 comparisons of two summation orders of the same sums: differences are a few ulp
# of the largest term, so tolerances are relative to each tensor's largest magnitude.
REL_TOL = 1e-5
# Gradients, and the outputs of a whole network (two stages feeding each other, train-mode
# BatchNorm dividing by batch deviations, attention, the hand layer), amplify those
# rounding differences by an order of magnitude or two.
GRAD_REL_TOL = 1e-4
NET_REL_TOL = 1e-4
# Biases feeding a train-mode BatchNorm have a gradient that is exactly 0 in exact
# arithmetic: both paths give rounding noise there (seen up to ~1e-5 of the largest
# gradient: the fusion conv's bias sums B*S*S cancelling terms), so gradients also get this
# floor, relative to the largest gradient of the whole module.
GRAD_FLOOR_REL = 1e-4
# bf16 keeps 8 significant bits: the two paths round different intermediate sums.
BF16_REL_TOL = 5e-2
# torch.export must reproduce eager (the task's bound; the graph holds the same kernels).
EXPORT_TOL = 1e-5
# Rotation (identity rot6d) and weak-perspective scale of the random hand parameters:
# keeps the hands inside the crop, as a conditioned network does.
IDENTITY_ROT6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CAMERA_SCALE = 2.0


def _close(got: torch.Tensor, want: torch.Tensor, rel: float, what: str,
           floor: float = 1e-12) -> None:
    """|got - want| <= rel * max|want| + floor elementwise."""
    assert got.shape == want.shape and got.dtype == want.dtype, what
    scale = want.detach().abs().max().float().item()
    diff = (got.detach().float() - want.detach().float()).abs().max().item()
    assert diff <= rel * scale + floor, f"{what}: max diff {diff:.3g} vs scale {scale:.3g}"


def _grads_close(got: dict[str, torch.Tensor | None], want: dict[str, torch.Tensor | None],
                 what: str) -> None:
    """Gradients by parameter name: GRAD_REL_TOL per tensor plus the GRAD_FLOOR_REL floor;
    None (not on the loss path) in both or in neither."""
    assert got.keys() == want.keys()
    floor = GRAD_FLOOR_REL * max(g.abs().max().item() for g in want.values() if g is not None)
    for name, g in got.items():
        assert (g is None) == (want[name] is None), f"{what}: grad {name} on one path only"
        if g is not None:
            _close(g, want[name], GRAD_REL_TOL, f"{what}: grad {name}", floor)


# ----------------------------------------------------------------------------- the conv
@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("batch", [1, 3])
def test_bone_plane_conv_equals_conv_over_planes(kernel: int, batch: int) -> None:
    """bone_plane_conv == conv2d over plane[(h,k,c)] = sum_e w[h,k,e] f[h,k,e,c], values and
    gradients w.r.t. the weight maps, the end features, the conv weight and the bias."""
    gen = torch.Generator().manual_seed(kernel * 10 + batch)
    hands, bones, chans, out_ch, s = 2, 5, 4, 6, 7
    w = torch.rand(batch, hands, bones, 2, s, s, generator=gen)
    w = w * (torch.rand(w.shape, generator=gen) > 0.5)      # bands: most cells are 0
    ends = torch.randn(batch, hands, bones, 2, chans, generator=gen)
    weight = torch.randn(out_ch, hands * bones * chans, kernel, kernel, generator=gen)
    bias = torch.randn(out_ch, generator=gen)
    leaves = [t.requires_grad_() for t in (w, ends, weight, bias)]

    planes = torch.einsum("bhkeyx,bhkec->bhkcyx", w, ends).reshape(batch, -1, s, s)
    want = F.conv2d(planes, weight, bias, padding=kernel // 2)
    got = bone_plane_conv(w, ends, weight, bias, (kernel // 2, kernel // 2))
    _close(got, want, REL_TOL, "output")
    probe = torch.randn(want.shape, generator=gen)
    grads_want = torch.autograd.grad((want * probe).sum(), leaves)
    grads_got = torch.autograd.grad((got * probe).sum(), leaves)
    for name, g, r in zip(("w", "ends", "weight", "bias"), grads_got, grads_want):
        _close(g, r, REL_TOL, f"grad {name}")


@pytest.mark.parametrize("kernel", [1, 3])
def test_bone_plane_conv_capture_layout_equals_eager(kernel: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Under graph capture (exporters, torch.compile) with bone_blocks given, the weight is
    read in its (H*K, C, O*kh*kw) block layout: the same sums as the eager path."""
    gen = torch.Generator().manual_seed(kernel)
    hands, bones, chans, out_ch, s, batch = 2, 5, 4, 6, 7, 2
    w = torch.rand(batch, hands, bones, 2, s, s, generator=gen)
    ends = torch.randn(batch, hands, bones, 2, chans, generator=gen)
    weight = torch.randn(out_ch, hands * bones * chans, kernel, kernel, generator=gen)
    bias = torch.randn(out_ch, generator=gen)
    pad = (kernel // 2, kernel // 2)
    eager = bone_plane_conv(w, ends, weight, bias, pad, bone_blocks=hands * bones)
    monkeypatch.setattr(bone_conv, "capturing_graph", lambda: True)
    captured = bone_plane_conv(w, ends, weight, bias, pad, bone_blocks=hands * bones)
    _close(captured, eager, REL_TOL, "capture layout")
    with pytest.raises(ValueError, match="bone_blocks"):
        bone_plane_conv(w, ends, weight, bias, pad, bone_blocks=hands * bones + 1)


def test_shifted_columns_is_unfold() -> None:
    """The slice-based im2col equals torch's unfold (same (map, dy, dx) order)."""
    x = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(0))
    for k in (1, 3, 5):
        assert torch.equal(shifted_columns(x, (k, k), (k // 2, k // 2)),
                           F.unfold(x, k, padding=k // 2))


def test_bone_plane_conv_rejects_mismatched_channels() -> None:
    with pytest.raises(ValueError, match="input channels"):
        bone_plane_conv(torch.zeros(1, 2, 3, 2, 4, 4), torch.zeros(1, 2, 3, 2, 5),
                        torch.zeros(8, 2 * 3 * 4, 3, 3), None, (1, 1))


# ----------------------------------------------------------------------------- GEMM conv
@pytest.mark.parametrize("kernel, bias", [(1, True), (3, True), (3, False)])
def test_conv2d_gemm_equals_conv(kernel: int, bias: bool) -> None:
    torch.manual_seed(kernel)
    conv = torch.nn.Conv2d(12, 5, kernel, padding=kernel // 2, bias=bias)
    x = torch.randn(3, 12, 6, 7)
    _close(conv2d_gemm(x, conv), conv(x), REL_TOL, "gemm conv")


def test_conv2d_gemm_refuses_strided_conv() -> None:
    with pytest.raises(ValueError, match="stride-1"):
        conv2d_gemm(torch.zeros(1, 2, 4, 4), torch.nn.Conv2d(2, 2, 3, stride=2))


def test_init_regressor_gemm_attention_equals_plain() -> None:
    """The eager-CPU GEMM attention heads give the plain heads' maps and outputs."""
    torch.manual_seed(0)
    fast = InitRegressor(32, make_hand_layers(ARRAYS)).eval()
    plain = copy.deepcopy(fast)
    plain.gemm_attention = False
    c4 = torch.randn(2, 32, 4, 4)
    with torch.no_grad():
        assert eager_cpu(c4)
        for got, want in zip(fast.attention_maps(c4), plain.attention_maps(c4)):
            _close(got, want, REL_TOL, "attention map")
        _close(fast(c4).left.params, plain(c4).left.params, REL_TOL, "params")


# ----------------------------------------------------------------------------- RefineBlock
def _block_pair(kernel: int) -> tuple[RefineBlock, RefineBlock]:
    """A small random RefineBlock (factorised) and its materialising twin, same weights."""
    torch.manual_seed(kernel)
    block = RefineBlock(8, 16, make_hand_layers(ARRAYS), distance=1.0, joint_channels=16,
                        token_channels=8, gcn_layers=2, fusion_kernel=kernel,
                        transformer={"depth": 2, "num_heads": 2})
    with torch.no_grad():  # non-trivial BatchNorm statistics and affine terms
        for m in block.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    twin = copy.deepcopy(block)
    twin.materialize_planes = True
    assert block.fusion[0].in_channels == 2 * NUM_BONES * 8
    return block, twin


def _previous_level(block: RefineBlock, batch: int, seed: int) -> LevelOutput:
    """Random previous-level hands spread over the crop (identity rotation + scale)."""
    gen = torch.Generator().manual_seed(seed)

    def params() -> torch.Tensor:
        p = 0.3 * torch.randn(batch, NUM_PARAMS, generator=gen)
        p[:, :6] += torch.tensor(IDENTITY_ROT6D)
        p[:, -3] += CAMERA_SCALE
        return p
    reg = block.regressor
    return LevelOutput(left=hand_prediction(reg.mano_layer_left, params()),
                       right=hand_prediction(reg.mano_layer_right, params()),
                       offset=torch.randn(batch, 3, generator=gen))


@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_refine_block_factorised_equals_materialised(kernel: int, batch: int,
                                                     train: bool) -> None:
    block, twin = _block_pair(kernel)
    block.train(train)
    twin.train(train)
    feat = torch.randn(batch, 16, 8, 8, generator=torch.Generator().manual_seed(batch))
    prev = _previous_level(block, batch, seed=kernel + batch)
    outs = []
    for net in (block, twin):
        f = feat.clone().requires_grad_()
        level, projected = net(f, prev)
        loss = (projected * torch.linspace(-1, 1, projected.numel()).view_as(projected)).sum()
        loss = loss + level.left.joints_xyz.sum() + level.right.params.square().sum()
        loss.backward()
        grads = {n: p.grad for n, p in net.named_parameters()}
        outs.append((level, projected, {"feat": f.grad, **grads}, dict(net.named_buffers())))
    (lv, proj, grads, bufs), (lv_r, proj_r, grads_r, bufs_r) = outs
    _close(proj, proj_r, REL_TOL, "projected map")
    for side in ("left", "right"):
        _close(lv.hand(side).params, lv_r.hand(side).params, REL_TOL, f"{side} params")
    _grads_close(grads, grads_r, "block")
    assert grads["fusion.0.weight"].abs().max() > 0  # the conv is on the loss path
    for name, b in bufs.items():  # BatchNorm running statistics (train mode updates them)
        if b.dtype.is_floating_point:
            _close(b, bufs_r[name], REL_TOL, f"buffer {name}")


def test_refine_block_bf16_autocast_consistent() -> None:
    """Under CPU bf16 autocast both paths give the same dtype and bf16-close values."""
    block, twin = _block_pair(3)
    block.eval()
    twin.eval()
    feat = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    prev = _previous_level(block, 2, seed=0)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = block(feat, prev)[1]
        want = twin(feat, prev)[1]
    assert got.dtype == want.dtype
    _close(got.float(), want.float(), BF16_REL_TOL, "bf16 projected map")


def test_even_fusion_kernel_refused() -> None:
    with pytest.raises(ValueError, match="fusion_kernel"):
        RefineBlock(8, 16, make_hand_layers(ARRAYS), distance=1.0, fusion_kernel=2)


# ----------------------------------------------------------------------------- light DIR
def _light_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    """The light DIR (factorised, config default) and its materialise_planes twin loaded
    with the same state dict (which must fit it exactly: the same keys and shapes)."""
    cfg = load_model_config(LIGHT)
    assert cfg["projection"]["materialize_planes"] is False
    torch.manual_seed(0)
    fast = build_dir(cfg, arrays=ARRAYS)
    ref_cfg = copy.deepcopy(cfg)
    ref_cfg["projection"]["materialize_planes"] = True
    ref = build_dir(ref_cfg, arrays=ARRAYS)
    ref.load_state_dict(fast.state_dict(), strict=True)
    assert all(b.materialize_planes for b in ref.modules() if isinstance(b, RefineBlock))
    assert fast.init_regressor.gemm_attention and not ref.init_regressor.gemm_attention
    return fast, ref


@pytest.mark.parametrize("batch, train", [(1, False), (3, True)])
def test_light_dir_factorised_equals_materialised(batch: int, train: bool) -> None:
    fast, ref = _light_pair()
    fast.train(train)
    ref.train(train)
    x = torch.randn(batch, 3, fast.input_size, fast.input_size,
                    generator=torch.Generator().manual_seed(batch))
    outs = []
    for net in (fast, ref):
        out = net(x)
        loss = sum(lv.left.joints_uv.sum() + lv.right.verts_xyz.sum() + lv.offset.sum()
                   for lv in out.levels) + out.seg.square().mean() + out.dense.sum()
        loss.backward()
        outs.append((out, {n: p.grad for n, p in net.named_parameters()}))
    (out, grads), (out_r, grads_r) = outs
    for k, (lv, lv_r) in enumerate(zip(out.levels, out_r.levels)):
        for side in ("left", "right"):
            _close(lv.hand(side).params, lv_r.hand(side).params, NET_REL_TOL,
                   f"level {k} {side}")
    _close(out.seg, out_r.seg, NET_REL_TOL, "seg")
    _close(out.dense, out_r.dense, NET_REL_TOL, "dense")
    _grads_close(grads, grads_r, "light DIR")


# ----------------------------------------------------------------------------- export
# Ops that mean a data-dependent Python value or size somewhere in the forward.
DATA_DEPENDENT_OPS = ("_local_scalar_dense", "nonzero", "masked_scatter", "masked_select",
                      "item", "sym_constrain_range")


def _export_matches_eager(model: torch.nn.Module, dynamic_batch: bool) -> None:
    """torch.export (non-strict) of model, no data-dependent ops in the graph, outputs equal
    eager within EXPORT_TOL on a random input (batch 3 when the batch axis is dynamic)."""
    model.eval()
    size = model.input_size
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(2, 3, size, size, generator=gen)
    dims = {"images": {0: torch.export.Dim("batch", min=1, max=16)}} if dynamic_batch else None
    program = torch.export.export(model, (example,), strict=False, dynamic_shapes=dims)
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    bad = [t for t in targets if t.split(".")[1:2] and t.split(".")[1] in DATA_DEPENDENT_OPS]
    assert not bad, bad
    x = torch.randn(3 if dynamic_batch else 2, 3, size, size, generator=gen)
    with torch.no_grad():
        got = torch.utils._pytree.tree_leaves(program.module()(x))
        want = torch.utils._pytree.tree_leaves(model(x))
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert (g - w).abs().max().item() <= EXPORT_TOL


def test_light_torch_export_matches_eager() -> None:
    torch.manual_seed(0)
    _export_matches_eager(build_dir(LIGHT, arrays=ARRAYS), dynamic_batch=True)


def test_release_torch_export_matches_eager() -> None:
    """The release network (~5 s export on the 2-core machine)."""
    torch.manual_seed(0)
    _export_matches_eager(build_dir(RELEASE, arrays=ARRAYS), dynamic_batch=False)


def test_adjacency_scatter_equals_masked_scatter() -> None:
    """The fixed-position scatter (export-clean) places values as masked_scatter does."""
    _, edge = skeleton_masks()
    values = torch.randn(1, int(edge.sum()), generator=torch.Generator().manual_seed(0))
    want = torch.full(edge.shape, -9e15).masked_scatter(edge, values.reshape(-1))
    assert torch.equal(masked_softmax_adjacency(values, edge, mask_positions(edge)),
                       torch.softmax(want, dim=1))
