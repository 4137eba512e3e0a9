"""load_release_checkpoint: round trip, strict mismatch reporting, hand model kept, and a
one-line refusal naming the file for every kind of unusable weights file."""
from __future__ import annotations

import json
import logging
import math
import pickle
from pathlib import Path

import pytest
import torch

from dir_ros.model import CheckpointMismatchError, build_dir, load_release_checkpoint
from dir_ros.model.checkpoint import WeightsFileError
from dir_ros.model.synthetic import synthetic_hand_model

CONFIGS = Path(__file__).resolve().parents[1] / "config" / "model"
LIGHT = CONFIGS / "dir_light.yaml"
RELEASE = CONFIGS / "dir_release.yaml"
# Same maths in float32 through possibly different kernels: a few ulp of ~0.1 m values.
SAME_MATH_RTOL = 1e-5
SAME_MATH_ATOL = 1e-6  # metres
# Exceptions the ROS node turns into a one-line refusal (dir_ros/ros/node.py).
NODE_CAUGHT = (OSError, ValueError, RuntimeError, KeyError, pickle.UnpicklingError)
# Bytes kept of a valid checkpoint to make a truncated one.
TRUNCATED_BYTES = 5000


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
    with torch.no_grad():  # same weights, two modules: equal up to float32 rounding
        torch.testing.assert_close(src(x).final.left.verts_xyz, dst(x).final.left.verts_xyz,
                                   rtol=SAME_MATH_RTOL, atol=SAME_MATH_ATOL)


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


def _assert_one_line_refusal(err: BaseException, path: Path, *words: str) -> None:
    """The node prints str(err): one line naming the file, caught by the node."""
    msg = str(err)
    assert isinstance(err, WeightsFileError) and isinstance(err, NODE_CAUGHT)
    assert "\n" not in msg and str(path) in msg, msg
    assert "weights_only" not in msg and "Traceback" not in msg, msg
    for word in words:
        assert word in msg, (word, msg)


def test_untrusted_pickle_is_refused_clearly(tmp_path):
    """Extra pickled objects are refused by the safe loader (never weights_only=False) with
    the offending class named and advice to save the state dict alone."""
    src, dst = _light(1), _light(2)
    path = tmp_path / "extra.pth"
    torch.save({"net": src.state_dict(), "args": _Opaque()}, path)
    with pytest.raises(WeightsFileError) as err:
        load_release_checkpoint(dst, path)
    _assert_one_line_refusal(err.value, path, "_Opaque", "state_dict()")


def _write_bad(kind: str, path: Path) -> None:
    """Write one kind of unusable weights file at path."""
    if kind == "text":
        path.write_text("these are not weights\nsecond line\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "json":
        path.write_text(json.dumps({"net": {"decoder.seg.0.weight": [[1.0, 2.0]]}}))
    elif kind == "binary":
        path.write_bytes(bytes(range(256)))
    elif kind == "list":
        torch.save([torch.zeros(2), torch.ones(2)], path)
    elif kind == "tensor":
        torch.save(torch.zeros(3, 4), path)
    elif kind == "dict_of_ints":
        torch.save({"a": 1, "b": 2}, path)
    elif kind == "net_of_ints":
        torch.save({"net": {"decoder.seg.0.weight": 3}}, path)
    elif kind == "empty_net":
        torch.save({"net": {}}, path)
    elif kind == "truncated":
        full = path.with_suffix(".full")
        torch.save({"net": _light(1).state_dict()}, full)
        path.write_bytes(full.read_bytes()[:TRUNCATED_BYTES])
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind,words", [
    ("text", ("text file", "not a PyTorch checkpoint")),
    ("empty", ("empty",)),
    ("json", ("JSON", "not a PyTorch checkpoint")),
    ("binary", ("binary",)),
    ("list", ("a list", "not a state dict")),
    ("tensor", ("single tensor (3, 4)", "not a state dict")),
    ("dict_of_ints", ("2 of 2", "'a': int")),
    ("net_of_ints", ("decoder.seg.0.weight", "int")),
    ("empty_net", ("empty dict",)),
    ("truncated", ("truncated",)),
])
def test_unusable_weights_file_gives_one_line(tmp_path, kind, words):
    """Each kind of bad file raises one WeightsFileError (a ValueError, which the node
    catches) whose message is one line naming the file; the model is left untouched."""
    dst = _light(2)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    path = tmp_path / f"{kind}.pth"
    _write_bad(kind, path)
    with pytest.raises(WeightsFileError) as err:
        load_release_checkpoint(dst, path)
    _assert_one_line_refusal(err.value, path, *words)
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())


def test_missing_file_and_folder_give_one_line(tmp_path):
    for path in (tmp_path / "nowhere.pth", tmp_path):
        with pytest.raises(WeightsFileError) as err:
            load_release_checkpoint(_light(2), path)
        _assert_one_line_refusal(err.value, path, "cannot be read")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_checkpoint_refused(tmp_path, value):
    """An all-NaN checkpoint, and one with a single NaN/Inf entry, are refused."""
    src, dst = _light(1), _light(2)
    state = src.state_dict()
    all_bad = {k: torch.full_like(v, value) if v.is_floating_point() else v
               for k, v in state.items()}
    one_bad = dict(state)
    one_bad["decoder.seg.0.weight"] = state["decoder.seg.0.weight"].clone()
    one_bad["decoder.seg.0.weight"].view(-1)[7] = value
    for name, bad in (("all", all_bad), ("one", one_bad)):
        path = tmp_path / f"{name}.pth"
        torch.save({"net": bad}, path)
        with pytest.raises(WeightsFileError) as err:
            load_release_checkpoint(dst, path)
        _assert_one_line_refusal(err.value, path, "NaN or infinite")
        if name == "one":
            assert "1 of" in str(err.value) and "decoder.seg.0.weight (1 of" in str(err.value)
        with pytest.raises(WeightsFileError, match="NaN or infinite"):
            load_release_checkpoint(dst, bad)  # an already loaded state dict too


def test_shape_mismatch_message_is_short_and_details_go_to_debug(tmp_path, caplog):
    """A checkpoint of another configuration (hundreds of mismatched keys) gives one line
    with counts and the first keys; the full list is logged at DEBUG."""
    torch.manual_seed(0)
    other = build_dir(RELEASE, arrays=synthetic_hand_model(num_verts=300, num_faces=500))
    path = tmp_path / "release.pth"
    torch.save({"net": other.state_dict()}, path)
    del other
    with caplog.at_level(logging.DEBUG, logger="dir_ros.model.checkpoint"):
        with pytest.raises(CheckpointMismatchError) as err:
            load_release_checkpoint(_light(2), path)
    _assert_one_line_refusal(err.value, path, "does not fit the model", "more")
    rep = err.value.report
    total = len(rep.missing) + len(rep.unexpected) + len(rep.mismatched)
    assert total > 100 and len(str(err.value)) < 1500
    assert str(len(rep.unexpected)) + " unexpected" in str(err.value)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert all(entry in logged for entry in rep.unexpected)  # every key at DEBUG


def test_report_str_is_one_line():
    src, dst = _light(1, hand_seed=5), _light(2, hand_seed=0)
    with pytest.warns(UserWarning) as warned:
        rep = load_release_checkpoint(dst, src.state_dict())
    assert "\n" not in str(rep) and str(rep).startswith(f"loaded {rep.loaded} tensors")
    assert all("\n" not in str(w.message) for w in warned)
