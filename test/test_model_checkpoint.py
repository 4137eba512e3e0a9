"""load_release_checkpoint: round trip, strict mismatch reporting, hand model kept."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dir_ros.model import CheckpointMismatchError, build_dir, load_release_checkpoint
from dir_ros.model.synthetic import synthetic_hand_model

CONFIGS = Path(__file__).resolve().parents[1] / "config" / "model"
LIGHT = CONFIGS / "dir_light.yaml"
RELEASE = CONFIGS / "dir_release.yaml"


def _light(seed: int, hand_seed: int = 0):
    torch.manual_seed(seed)
    return build_dir(LIGHT, arrays=synthetic_hand_model(num_verts=300, num_faces=500,
                                                        seed=hand_seed))


def _network_keys(model):
    return [k for k in model.state_dict() if not k.rsplit(".", 1)[-1].startswith("th_")]


def test_round_trip_through_file(tmp_path):
    src, dst = _light(1), _light(2)
    with torch.no_grad():  # make running stats differ too
        for m in src.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
    path = tmp_path / "ckpt.pth"
    torch.save({"net": src.state_dict(), "epoch": 3}, path)
    report = load_release_checkpoint(dst, path)
    assert report.ok and not report.hand_model_differences
    assert report.loaded == len(_network_keys(src))
    s, d = src.state_dict(), dst.state_dict()
    assert all(torch.equal(s[k], d[k]) for k in s)
    x = torch.randn(1, 3, 128, 128)
    src.eval(), dst.eval()
    with torch.no_grad():
        assert torch.equal(src(x).final.left.verts_xyz, dst(x).final.left.verts_xyz)


def test_data_parallel_prefix_is_stripped(tmp_path):
    src, dst = _light(1), _light(2)
    path = tmp_path / "dp.pth"
    torch.save({"net": {"module." + k: v for k, v in src.state_dict().items()}}, path)
    assert load_release_checkpoint(dst, path).ok
    assert torch.equal(dst.decoder.seg[0].weight, src.decoder.seg[0].weight)


def test_mismatches_are_listed_by_name_and_shape():
    src, dst = _light(1), _light(2)
    state = dict(src.state_dict())
    del state["decoder.seg.3.bias"]
    state["decoder.extra.weight"] = torch.zeros(7, 2)
    state["init_regressor.offset.weight"] = torch.zeros(3, 5)
    before = dst.init_regressor.offset.weight.clone()
    with pytest.raises(CheckpointMismatchError) as err:
        load_release_checkpoint(dst, state)
    msg = str(err.value)
    assert "decoder.seg.3.bias (3,)" in msg
    assert "decoder.extra.weight (7, 2)" in msg
    assert "init_regressor.offset.weight: checkpoint (3, 5) vs model (3, 512)" in msg
    assert torch.equal(dst.init_regressor.offset.weight, before)  # nothing loaded
    rep = load_release_checkpoint(dst, state, strict=False)
    assert not rep.ok and len(rep.missing) == 1 and len(rep.unexpected) == 1
    assert torch.equal(dst.init_regressor.offset.weight, before)
    assert torch.equal(dst.decoder.dense[0].weight, src.decoder.dense[0].weight)


def test_checkpoint_hand_model_does_not_replace_configured_one():
    src, dst = _light(1, hand_seed=5), _light(2, hand_seed=0)
    mine = dst.init_regressor.mano_layer_left.th_v_template.clone()
    with pytest.warns(UserWarning, match="keeping the configured one"):
        rep = load_release_checkpoint(dst, src.state_dict())
    assert rep.ok
    assert any("init_regressor.mano_layer_left.th_v_template" in d
               for d in rep.hand_model_differences)
    assert torch.equal(dst.init_regressor.mano_layer_left.th_v_template, mine)
    assert torch.equal(dst.init_regressor.mano_left.weight, src.init_regressor.mano_left.weight)


def test_release_layout_round_trip_with_other_vertex_count():
    """A release-shaped state dict (778-vertex MANO arrays) loads strictly into a release
    model built on a different hand model; the th_* shape differences are only reported."""
    torch.manual_seed(0)
    src = build_dir(RELEASE, arrays=synthetic_hand_model())
    state = src.state_dict()
    del src
    dst = build_dir(RELEASE, arrays=synthetic_hand_model(num_verts=400, num_faces=700))
    with pytest.warns(UserWarning):
        rep = load_release_checkpoint(dst, state)
    assert rep.ok and rep.loaded == 963 - 60
    assert len(rep.hand_model_differences) >= 6 * 5  # 5 vertex-count-dependent arrays x 6
    assert dst.init_regressor.mano_layer_right.th_v_template.shape == (1, 400, 3)
    assert torch.equal(dst.decoder.projecter_3.fusion[0].weight,
                       state["decoder.projecter_3.fusion.0.weight"])


class _Opaque:
    """An arbitrary pickled object, as training scripts put beside the weights."""


def test_untrusted_pickle_is_refused_clearly(tmp_path):
    import pickle
    src, dst = _light(1), _light(2)
    path = tmp_path / "extra.pth"
    torch.save({"net": src.state_dict(), "args": _Opaque()}, path)
    with pytest.raises(pickle.UnpicklingError, match="weights_only=False"):
        load_release_checkpoint(dst, path)
    assert load_release_checkpoint(dst, path, weights_only=False).ok
