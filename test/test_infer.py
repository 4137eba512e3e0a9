"""`dir-ros infer` (images, folders, videos -> overlays + JSON) and `dir-ros check-weights`."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dir_ros.common import geometry as geo
from dir_ros.cli import build_parser, main
from dir_ros.cli.infer import infer
from dir_ros.common.results import FrameResult, HandsResult

ROOT = Path(__file__).resolve().parent.parent
LIGHT_CONFIG = ROOT / "config" / "model" / "dir_light.yaml"


class FakePredictor:
    """A right hand at a fixed place in every frame; counts calls and resets."""

    def __init__(self) -> None:
        self.calls, self.resets = 0, 0

    def reset(self) -> None:
        self.resets += 1

    def predict(self, rgb: np.ndarray, K: np.ndarray | None) -> FrameResult:
        self.calls += 1
        h, w = rgb.shape[:2]
        right = HandsResult.invalid("right", np.zeros((1, 3), np.int64), 3)
        right.valid, right.confidence, right.metric = True, 0.9, K is not None
        right.keypoints_2d = np.tile([w / 2, h / 2], (21, 1)).astype(np.float32)
        right.source = "palm"
        left = HandsResult.invalid("left", np.zeros((1, 3), np.int64), 3)
        return FrameResult(left, right, geo.full_frame_box(w, h), (w, h), {"detect_ms": 1.0})


def _write_inputs(folder: Path) -> tuple[Path, Path]:
    """Two images in a folder and a 4-frame MJPG video beside it."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(folder / f"img{i}.png"), rng.integers(0, 255, (60, 80, 3), np.uint8))
    video = folder.parent / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (80, 60))
    for _ in range(4):
        writer.write(rng.integers(0, 255, (60, 80, 3), np.uint8))
    writer.release()
    return folder, video


def test_infer_images_folders_and_video(tmp_path: Path) -> None:
    """Every frame gets an overlay at input size and a JSON with both hands; tracking is
    reset per file (2 images + 1 video = 3 resets, 6 frames)."""
    folder, video = _write_inputs(tmp_path / "pics")
    out = tmp_path / "out"
    args = build_parser().parse_args(["infer", str(folder), str(video), "--out", str(out),
                                      "--no-progress"])
    pred = FakePredictor()
    counts = infer(args, predictor=pred)
    assert counts == {"frames": 6, "hands_found": 6, "skipped": 0}
    assert pred.calls == 6 and pred.resets == 3
    names = sorted(p.stem for p in out.glob("*.json"))
    assert names == ["clip_000000", "clip_000001", "clip_000002", "clip_000003", "img0", "img1"]
    data = json.loads((out / "clip_000002.json").read_text())
    assert data["hands"]["right"]["valid"] and not data["hands"]["left"]["valid"]
    assert data["hands"]["right"]["source"] == "palm"
    assert len(data["hands"]["right"]["keypoints_2d"]) == 42 and len(data["K"]) == 3
    assert data["image_size"] == [80, 60] and len(data["crop_box_xywh"]) == 4
    overlay = cv2.imread(str(out / "img1_overlay.png"))
    assert overlay.shape == (60, 80, 3)


def test_infer_bad_input_is_one_line_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A missing path or an unknown file type: exit 1 with one line naming it."""
    assert main(["infer", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.jpg" in err[0]
    (tmp_path / "notes.txt").write_text("x")
    assert main(["infer", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "o")]) == 1
    assert "notes.txt" in capsys.readouterr().err


def test_infer_skips_undecodable_files(tmp_path: Path) -> None:
    """A corrupt image among good ones is skipped and counted; the others are processed."""
    folder, _ = _write_inputs(tmp_path / "pics")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    args = build_parser().parse_args(["infer", str(folder), "--out", str(tmp_path / "out"),
                                      "--no-progress"])
    assert infer(args, predictor=FakePredictor()) == {"frames": 2, "hands_found": 2, "skipped": 1}


def test_check_weights_loads_and_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """check-weights on a light-config state dict: load report and one forward pass."""
    from dir_ros.model import build_dir, load_model_config

    torch.manual_seed(0)
    model = build_dir(load_model_config(LIGHT_CONFIG))
    ckpt = tmp_path / "light.pth"
    torch.save({"net": model.state_dict()}, ckpt)
    img = tmp_path / "img.png"
    cv2.imwrite(str(img), np.full((90, 120, 3), 100, np.uint8))
    rc = main(["check-weights", str(ckpt), "--model-config", str(LIGHT_CONFIG), "--image",
               str(img), "--full-frame", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"checkpoint {ckpt}" in out and "forward pass on" in out and "crop full" in out
    assert "left" in out and "right" in out
    # a checkpoint of another network is refused with one line
    assert main(["check-weights", str(ckpt), "--device", "cpu", "--full-frame"]) == 1
