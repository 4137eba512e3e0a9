"""A short training run (the smoke run of benchmarks/train_smoke.py, cut to seconds): the loss
falls, the files appear, the checkpoint runs in the node's predictor, `dir-ros train
--resume` continues, and a bad frame under bad_frames 'stop' ends the run without a
checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dir_ros.cli import main
from dir_ros.hand_model import load_hand_model, open_hand_dir
from dir_ros.data.synthetic import SyntheticConfig, SyntheticHands
from dir_ros.train.trainer import TrainingError, train

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "train" / "synthetic_light.yaml"
# A few steps of the light config on a small synthetic set (about 20 s on 2 cores).
SHORT = {"epochs": 2, "threads": 1, "batch_size": 8, "val_at_start": True,
         "data": {"synthetic": {"train_frames": 32, "val_frames": 4, "width": 128,
                                "height": 128}}}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("smoke")
    summary = train(CONFIG, {**SHORT, "out_dir": str(out)}, progress=False)
    return out, summary


def test_short_run_learns_and_writes_its_files(run):
    out, summary = run
    assert summary["steps"] == 8 and summary["skipped_frames"] == 0
    history = json.loads((out / "history.json").read_text())
    loss = np.asarray(history["loss"])
    assert np.isfinite(loss).all()
    assert loss[-2:].mean() < 0.8 * loss[0]                     # the loss falls
    val = history["val"]
    assert [v["epoch"] for v in val] == [-1, 0, 1]              # before training, each epoch
    assert val[-1]["loss"] < val[0]["loss"]
    assert val[-1]["mpjpe_mm"] is not None and val[-1]["mrrpe_mm"] is not None
    names = sorted(p.name for p in out.iterdir())
    assert names == ["best.pth", "history.json", "last.pth", "loss_curve.png", "model.yaml"]
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_runs_in_the_node_predictor(run):
    from dir_ros.backends.dir import HandsPredictor

    out, summary = run
    gen = SyntheticHands(load_hand_model(open_hand_dir()), SyntheticConfig(width=128, height=128))
    frame = gen.frame(40)
    for weights in ("last.pth", "best.pth"):
        pred = HandsPredictor.from_config({"backend": "dir",
                                           "model_config": str(out / "model.yaml"),
                                           "weights": str(out / weights), "crop": "full",
                                           "device": "cpu", "runtime": "torch"})
        result = pred.predict(frame.rgb, frame.K)
        for side in ("left", "right"):
            hand = getattr(result, side)
            assert np.isfinite(hand.joints).all() and hand.vertices.shape == (778, 3)


def test_resume_continues_where_the_run_stopped(run, tmp_path, capsys):
    out, summary = run
    copy = tmp_path / "resumed"
    copy.mkdir()
    for name in ("last.pth", "history.json"):
        (copy / name).write_bytes((out / name).read_bytes())
    args = ["train", "--config", str(CONFIG), "--out", str(copy), "--epochs", "3", "--resume",
            "--no-progress", "--set", "threads=1", "--set", "batch_size=8",
            "--set", "data.synthetic.train_frames=32", "--set", "data.synthetic.val_frames=4",
            "--set", "data.synthetic.width=128", "--set", "data.synthetic.height=128"]
    assert main(args) == 0
    assert "4 steps" in capsys.readouterr().out                # epoch 3 only
    history = json.loads((copy / "history.json").read_text())
    assert len(history["loss"]) == 12 and [v["epoch"] for v in history["val"]] == [-1, 0, 1, 2]
    assert history["loss"][:8] == json.loads((out / "history.json").read_text())["loss"]
    # resuming from something that is not a training checkpoint is refused in one line
    assert main(["train", "--config", str(CONFIG), "--out", str(tmp_path / "none"), "--resume",
                 str(out / "best.pth"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "not a training checkpoint" in err and err.count("\n") == 1


def test_bad_frame_under_stop_ends_without_a_checkpoint(tmp_path):
    from test_train_interhand import SPLIT, annotation_path, file_name, mano_params, write_dataset

    root = tmp_path / "ih"
    write_dataset(root)
    mano_file = annotation_path(root, SPLIT, "MANO_NeuralAnnot")   # give frame 14 its left hand
    mano = json.loads(mano_file.read_text())
    mano["0"]["14"]["left"] = mano_params(14, "left")
    mano_file.write_text(json.dumps(mano))
    bad = root / "images" / SPLIT / file_name(11)
    bad.write_bytes(bad.read_bytes()[:300])
    out = tmp_path / "run"
    cfg = {"epochs": 1, "threads": 1, "batch_size": 4, "out_dir": str(out),
           "data": {"source": "interhand", "root": str(root), "val_split": None,
                    "bad_frames": "stop", "workers": 0}}
    with pytest.raises(TrainingError) as err:
        train(CONFIG, cfg, progress=False)
    assert str(bad) in str(err.value) and "no checkpoint was written" in str(err.value)
    assert not out.exists() or not any(out.iterdir())
    # skip: the same data trains, the bad frame is counted
    cfg["data"]["bad_frames"] = "skip"
    summary = train(CONFIG, cfg, progress=False)
    assert summary["skipped_frames"] >= 1 and (out / "last.pth").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
