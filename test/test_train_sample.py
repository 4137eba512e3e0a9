"""Sample pipeline and synthetic source: augmentation keeps image and targets consistent,
flips mirror the parameters exactly, frames are deterministic by seed, make-bag writes them,
training configs refuse typos, checkpoints are never half-written."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dir_ros.cli import main
from dir_ros.hand_model import SIDES, load_hand_model, open_hand_dir
from dir_ros.train.recipe import TrainConfigError, resolve_train_config
from dir_ros.data.render import MeshPart, corner_origin, render_labels
from dir_ros.data.hands import (HandTables, double_layers, matrix_from_rot6d, mirror_params,
                                posed_hand)
from dir_ros.train.sample import AugmentConfig, make_sample
from dir_ros.data.synthetic import SyntheticConfig, SyntheticHands
from dir_ros.train.files import atomic_save

INPUT = 96
# Fraction of the segmentation map on which the rendered crop labels and the warped
# full-frame labels may disagree (pixels on the silhouettes' edges, nearest resampling).
MAX_LABEL_DISAGREEMENT = 0.03


@pytest.fixture(scope="module")
def arrays() -> dict:
    return load_hand_model(open_hand_dir())


@pytest.fixture(scope="module")
def gen(arrays) -> SyntheticHands:
    return SyntheticHands(arrays, SyntheticConfig(seed=5, width=160, height=120))


def full_labels(frame, tables: HandTables) -> np.ndarray:
    """Segmentation of the whole frame at its own resolution (no crop, no augmentation)."""
    parts = [MeshPart(frame.hands[s].verts, tables.faces[s], i + 1, np.zeros(3))
             for i, s in enumerate(SIDES)]
    seg, _ = render_labels(parts, corner_origin(frame.K), frame.rgb.shape[:2])
    return seg


@pytest.mark.parametrize("seed", range(4))
def test_augmented_targets_agree_with_the_augmented_image(gen, seed):
    """The crop's labels, rendered from the augmented 3D geometry with the crop camera,
    equal the full frame's labels carried through the image warp (rotation, scale, shift,
    flip): image and targets went through the same transformation."""
    frame = gen.frame(seed)
    aug = AugmentConfig(motion_blur=0.0, color_gain=0.0, brightness=0.0, noise_std=0.0,
                        flip=0.5)
    rng = np.random.default_rng(seed)
    sample = make_sample(frame, gen.tables, INPUT, rng=rng, aug=aug, map_size=INPUT)
    # carry the full-frame labels through the image warp: paint them as the image
    seg_full = full_labels(frame, gen.tables)
    as_image = np.repeat((seg_full * 100).astype(np.uint8)[..., None], 3, axis=2)
    warped = make_sample(frame.__class__(as_image, frame.K, frame.hands, frame.name),
                         gen.tables, INPUT, rng=np.random.default_rng(seed), aug=aug,
                         map_size=INPUT)
    label_img = np.round(warped["rgb"][..., 0] / 100.0).astype(np.int64)
    if sample["flip"]:
        label_img = np.where(label_img > 0, 3 - label_img, 0)   # a mirrored left is a right
    disagree = (label_img != sample["seg"]).mean()
    assert (sample["seg"] > 0).mean() > 0.1
    assert disagree < MAX_LABEL_DISAGREEMENT, (disagree, sample["flip"])
    # projected keypoints fall on their own hand's pixels (up to edge pixels)
    for side, label in (("left", 1), ("right", 2)):
        px = np.clip(((sample[f"{side}/verts_uv"] + 1) * INPUT / 2).astype(int), 0, INPUT - 1)
        on_hand = (sample["seg"][px[:, 1], px[:, 0]] > 0).mean()
        assert on_hand > 0.6, (side, on_hand)


def test_augmentation_is_rigid_in_3d(gen):
    frame = gen.frame(1)
    plain = make_sample(frame, gen.tables, INPUT)
    aug = make_sample(frame, gen.tables, INPUT, rng=np.random.default_rng(3), aug=AugmentConfig())
    for side in SIDES:
        other = side if not aug["flip"] else {"left": "right", "right": "left"}[side]
        a, b = plain[f"{side}/joints_xyz"], aug[f"{other}/joints_xyz"]
        # bone lengths unchanged by rotation, scale, shift and mirroring
        da = np.linalg.norm(a[:, None] - a[None], axis=-1)
        db = np.linalg.norm(b[:, None] - b[None], axis=-1)
        assert np.allclose(da, db, atol=1e-5)
    d_plain = np.linalg.norm(plain["offset"])
    assert np.linalg.norm(aug["offset"]) == pytest.approx(d_plain, rel=1e-5)


def test_mirrored_parameters_give_the_mirrored_hand(arrays):
    tables = HandTables.from_arrays(arrays)
    layers = double_layers(arrays)
    rng = np.random.default_rng(0)
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    rot *= np.sign(np.linalg.det(rot))
    params = np.concatenate([rot[:, 0], rot[:, 1], rng.normal(0, 0.5, 45), rng.normal(0, 1, 10)])
    v_left, _ = posed_hand(layers["left"], matrix_from_rot6d(params[:6])[None],
                           params[None, 6:51], params[None, 51:])
    m = mirror_params(params, tables, "left", "right")
    v_right, _ = posed_hand(layers["right"], matrix_from_rot6d(m[:6])[None], m[None, 6:51],
                            m[None, 51:])
    mirrored = v_left[0] * [-1.0, 1.0, 1.0]
    assert np.allclose(v_right[0] - v_right[0].mean(0), mirrored - mirrored.mean(0), atol=1e-9)
    assert np.allclose(mirror_params(m, tables, "right", "left"), params, atol=1e-9)


def test_synthetic_frames_are_deterministic_by_seed(arrays, gen):
    again = SyntheticHands(arrays, SyntheticConfig(seed=5, width=160, height=120))
    a, b = gen.frame(3), again.frame(3)
    assert np.array_equal(a.rgb, b.rgb)
    assert np.allclose(a.hands["left"].verts, b.hands["left"].verts)
    other = SyntheticHands(arrays, SyntheticConfig(seed=6, width=160, height=120)).frame(3)
    assert not np.array_equal(a.rgb, other.rgb)
    assert not np.array_equal(a.rgb, gen.frame(4).rgb)
    assert a.rgb.shape == (120, 160, 3) and a.rgb.std() > 10


def test_make_bag_synthetic_source(tmp_path):
    from dir_ros.eval.bag import BagReader

    out = tmp_path / "syn_bag"
    assert main(["make-bag", str(out), "--source", "synthetic", "--synthetic-frames", "3",
                 "--synthetic-size", "96x72", "--synthetic-seed", "2", "--no-progress"]) == 0
    with BagReader(out) as bag:
        assert bag.count("/hands/gt") == 3 and bag.count("/camera/image_raw") == 3
        msgs = list(bag.messages(["/hands/gt", "/camera/image_raw"]))
    gt = [m.msg for m in msgs if m.topic == "/hands/gt"][0]
    img = [m.msg for m in msgs if m.topic == "/camera/image_raw"][0]
    assert (img.width, img.height) == (96, 72)
    frame = SyntheticHands(load_hand_model(open_hand_dir()),
                           SyntheticConfig(seed=2, width=96, height=72)).frame(0)
    assert np.array_equal(np.frombuffer(img.data, np.uint8).reshape(72, 96, 3), frame.rgb)
    wrist = gt.left.joints[0]
    assert np.allclose([wrist.x, wrist.y, wrist.z], frame.hands["left"].joints[0], atol=1e-5)
    assert main(["make-bag", str(tmp_path / "x"), "--source", "synthetic",
                 "--synthetic-frames", "0", "--no-progress"]) == 1


def test_training_config_refuses_typos_and_bad_values(tmp_path):
    with pytest.raises(TrainConfigError,
                       match="unknown training config key 'optimizer.learning_rate'"):
        resolve_train_config({"optimizer": {"learning_rate": 1.0}})
    with pytest.raises(TrainConfigError, match="data.root"):
        resolve_train_config({"data": {"source": "interhand"}})
    with pytest.raises(TrainConfigError, match="augment"):
        resolve_train_config({"data": {"source": "synthetic"}, "augment": {"rotate": 3}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(TrainConfigError, match="bad.yaml"):
        resolve_train_config(bad)
    cfg = resolve_train_config(Path(__file__).resolve().parents[1] / "config" / "train" /
                               "interhand_release.yaml", {"data": {"root": "/data/ih"}})
    assert cfg["optimizer"]["lr"] == pytest.approx(3e-4) and cfg["batch_size"] == 64
    assert cfg["epochs"] == 50 and cfg["schedule"]["name"] == "cosine"


def test_atomic_save_never_leaves_a_half_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    atomic_save({"net": {"w": torch.ones(2)}}, path)
    good = path.read_bytes()

    def broken_save(obj, fh, *a, **k):
        fh.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"net": {"w": torch.zeros(2)}}, path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]
