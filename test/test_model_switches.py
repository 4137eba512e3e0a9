"""Every ablation switch builds, runs forward + backward, and gives consistent outputs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dir_ros.model import DIRTarget, HandTarget, build_dir, load_model_config
from dir_ros.model.synthetic import synthetic_hand_model

REPO = Path(__file__).resolve().parents[1]
LIGHT = REPO / "config" / "model" / "dir_light.yaml"
SMALL_INPUT = 64  # px; smallest multiple of 32 that keeps every stage >= 2x2
ARRAYS = synthetic_hand_model(num_verts=300, num_faces=500)

SWITCHES = [
    {"num_stages": 0}, {"num_stages": 1}, {"num_stages": 2}, {"num_stages": 3},
    {"projection": {"mode": "none"}},
    {"projection": {"mode": "single_plane_feature"}},
    {"projection": {"mode": "multi_plane_heatmap"}, "num_stages": 3},
    {"gcn": {"enabled": False}},
    {"transformer": {"enabled": False}},
    {"gcn": {"enabled": False}, "transformer": {"enabled": False}, "aux_heads": False},
    {"root_joint": 9},
    {"backbone": {"depth": 34}, "num_stages": 1},
    {"backbone": {"depth": 50}, "num_stages": 1},
]


def _config(**over) -> dict:
    cfg = load_model_config(LIGHT)
    cfg.update({"input_size": SMALL_INPUT, **over})
    return cfg


def _target(out, b: int) -> DIRTarget:
    gen = torch.Generator().manual_seed(0)

    def hand(p):
        return HandTarget(*(torch.randn(x.shape, generator=gen) * 0.05
                            for x in (p.joints_uv, p.verts_uv, p.joints_xyz, p.verts_xyz)))
    return DIRTarget(left=hand(out.final.left), right=hand(out.final.right),
                     offset=torch.randn(b, 3, generator=gen),
                     seg=torch.randint(0, 3, (b, 32, 32), generator=gen),
                     dense=torch.rand(b, 3, 32, 32, generator=gen))


@pytest.mark.parametrize("over", SWITCHES, ids=lambda o: str(o).replace(" ", ""))
def test_switch_forward_backward(over):
    torch.manual_seed(0)
    cfg = _config(**over)
    model = build_dir(cfg, arrays=ARRAYS)
    b = 2
    out = model(torch.randn(b, 3, SMALL_INPUT, SMALL_INPUT))
    t = cfg["num_stages"]
    assert len(out.levels) == t + 1
    for level in out.levels:
        for hand in (level.left, level.right):
            assert hand.joints_uv.shape == (b, 21, 2) and hand.verts_uv.shape == (b, 300, 2)
            assert hand.joints_xyz.shape == (b, 21, 3) and hand.params.shape == (b, 64)
            assert torch.allclose(hand.joints_xyz[:, cfg["root_joint"]], torch.zeros(b, 3),
                                  atol=1e-6)
        assert level.offset.shape == (b, 3)
    if cfg["aux_heads"] and t > 0:
        side = SMALL_INPUT // 2 ** (5 - t)
        assert out.seg.shape == (b, 3, side, side) and out.dense.shape == (b, 3, side, side)
    else:
        assert out.seg is None and out.dense is None
    losses = model.compute_loss(out, _target(out, b))
    assert torch.isfinite(losses["total"])
    assert sum(k.startswith(f"level{t}/") for k in losses) == 7
    losses["total"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    if t:
        last = getattr(model.decoder, f"projecter_{model.decoder.suffixes[-1]}")
        assert last.regressor.mano_left.weight.grad.abs().sum() > 0


def test_stages_consume_detached_inputs():
    model = build_dir(_config(num_stages=2), arrays=ARRAYS)
    out = model(torch.randn(2, 3, SMALL_INPUT, SMALL_INPUT))
    # loss on the last level only: no gradient may reach the initial regressor's heads
    out.final.left.joints_uv.sum().backward()
    assert model.init_regressor.mano_left.weight.grad is None
    assert model.init_regressor.offset.weight.grad is None
    # (stage 1's regressor may still get gradient through its projected map, as in the release)


def test_eval_deterministic_batch_one_and_batch_consistent():
    model = build_dir(_config(), arrays=ARRAYS).eval()
    x = torch.randn(3, 3, SMALL_INPUT, SMALL_INPUT)
    with torch.no_grad():
        a, b = model(x), model(x)
        one = model(x[1:2])
    assert torch.equal(a.final.right.verts_xyz, b.final.right.verts_xyz)
    assert torch.equal(a.seg, b.seg)
    assert torch.allclose(one.final.left.joints_uv[0], a.final.left.joints_uv[1], atol=1e-4)


def test_autocast_bfloat16_forward():
    model = build_dir(_config(), arrays=ARRAYS).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, SMALL_INPUT, SMALL_INPUT))
    assert all(torch.isfinite(t).all() for t in (out.final.left.verts_xyz,
                                                  out.final.right.joints_uv, out.seg))


# The light config is the small one for CPU tests: under a fifth of the release network's
# 92.7 M parameters (README: 15.66 M). Its speed is measured by benchmarks/benchmark_model.py,
# not asserted here (a timed test fails on a loaded machine).
LIGHT_MAX_PARAMS = 20_000_000


def test_light_config_is_small():
    model = build_dir(LIGHT, arrays=synthetic_hand_model())
    size = model.input_size
    assert size == 128 and model.config["backbone"]["depth"] == 18
    assert sum(p.numel() for p in model.parameters()) < LIGHT_MAX_PARAMS
    x = torch.randn(2, 3, size, size)
    out = model(x)
    (out.final.left.verts_xyz.sum() + out.seg.sum()).backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_config_validation_and_open_hand_model():
    from dir_ros.hand_model import open_hand_dir
    from dir_ros.model import resolve_config
    with pytest.raises(KeyError, match="bogus"):
        resolve_config({"bogus": 1})
    with pytest.raises(ValueError, match="multiple of 32"):
        resolve_config({"input_size": 100})
    with pytest.raises(ValueError, match="projection mode"):
        build_dir(_config(projection={"mode": "sideways"}), arrays=ARRAYS)
    three = load_model_config(REPO / "config" / "model" / "dir_three_stage.yaml")
    assert three["num_stages"] == 3 and three["backbone"]["depth"] == 50
    if not (open_hand_dir() / "MANO_RIGHT.pkl").is_file():
        pytest.skip("open hand model not generated yet (weights/open_hand)")
    model = build_dir(_config()).eval()  # default hand model: the open one
    with torch.no_grad():
        out = model(torch.randn(1, 3, SMALL_INPUT, SMALL_INPUT))
    assert out.final.left.verts_xyz.shape[1] == model.hand_layers["left"].num_verts
