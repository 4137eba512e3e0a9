"""The release configuration's state dict matches the authors' checkpoint key by key."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dir_ros.model import build_dir
from dir_ros.model.synthetic import synthetic_hand_model

REPO = Path(__file__).resolve().parents[1]
TSV = REPO / "test" / "data" / "dir_official_state_dict.tsv"
SHARED_TSV = Path(__file__).resolve().parents[2] / "shared" / "spec" / "dir_official_state_dict.tsv"
RELEASE_CONFIG = REPO / "config" / "model" / "dir_release.yaml"
# Entries in the authors' checkpoint (spec) and its parameter count (~92.7 M).
RELEASE_NUM_KEYS = 963
RELEASE_PARAMS_M = 92.7


def _read_tsv(path: Path) -> list[tuple[str, str, str]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            key, shape, dtype = line.split("\t")
            rows.append((key, shape, dtype))
    return rows


@pytest.fixture(scope="module")
def release_model():
    return build_dir(RELEASE_CONFIG, arrays=synthetic_hand_model())


def test_tsv_copy_matches_shared_spec():
    if not SHARED_TSV.is_file():
        pytest.skip(f"shared spec not beside the clone ({SHARED_TSV}); the in-repo copy is used")
    assert _read_tsv(TSV) == _read_tsv(SHARED_TSV)


def test_release_state_dict_equals_checkpoint_layout(release_model):
    rows = _read_tsv(TSV)
    assert len(rows) == RELEASE_NUM_KEYS
    sd = release_model.state_dict()
    ours = [(k, str(tuple(v.shape)), str(v.dtype)) for k, v in sd.items()]
    assert len(ours) == len(rows)
    for i, (mine, theirs) in enumerate(zip(ours, rows)):
        assert mine == theirs, f"entry {i}: ours {mine} vs checkpoint {theirs}"


def test_release_parameter_count(release_model):
    n = sum(p.numel() for p in release_model.parameters()) / 1e6
    assert n == pytest.approx(RELEASE_PARAMS_M, abs=0.05)
    # the unused pieces the checkpoint still carries
    sd = release_model.state_dict()
    assert sd["backbone.fc.weight"].shape == (1000, 2048)
    assert "decoder.projecter_3.interaction.STEblocks.0.attn.qkv.weight" in sd
    grid = sd["decoder.projecter_4.img_gird"]
    assert grid.shape == (256, 2)
    assert grid[0].tolist() == [0.5, 0.5] and grid[1].tolist() == [1.5, 0.5]
    assert grid[16].tolist() == [0.5, 1.5]
    assert sd["seg_loss.weight"].tolist() == pytest.approx([0.1, 0.45, 0.45])


def test_hand_model_vertex_count_not_hard_coded():
    model = build_dir(RELEASE_CONFIG, arrays=synthetic_hand_model(num_verts=500, num_faces=900))
    sd = model.state_dict()
    assert sd["init_regressor.mano_layer_left.th_v_template"].shape == (1, 500, 3)
    assert sd["decoder.projecter_3.regressor.mano_layer_right.th_faces"].shape == (900, 3)
    assert model.faces("left").shape == (900, 3)


def test_release_forward_shapes_and_stage_geometry(release_model):
    dec = release_model.decoder
    assert (dec.projecter_4.size, dec.projecter_4.distance) == (16, 1.0)
    assert (dec.projecter_3.size, dec.projecter_3.distance) == (32, 2.0)
    assert release_model.input_size == 256
    release_model.eval()
    with torch.no_grad():
        out = release_model(torch.zeros(1, 3, 256, 256))
    assert len(out.levels) == 3
    assert out.seg.shape == (1, 3, 32, 32) and out.dense.shape == (1, 3, 32, 32)
    assert out.final.left.verts_xyz.shape == (1, 778, 3)
    assert out.final.right.verts_uv.shape == (1, 778, 2)
