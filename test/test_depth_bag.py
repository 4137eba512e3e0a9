"""make-bag / eval-bag with an aligned depth topic: synthetic RGB-D frames written with
/camera/aligned_depth_to_color/image_raw, scored with a predictor whose hand-size placement
is 8-10 % off; the report splits the wrist (root) position error by placement."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rosbags")

from dir_ros.post import depth as D  # noqa: E402
from dir_ros.data import depth_synthetic as syn  # noqa: E402
from dir_ros.cli import main  # noqa: E402
from dir_ros.eval.bag import TOPIC_DEPTH, BagReader, write_dataset_bag  # noqa: E402
from dir_ros.data.dataset import GtHand  # noqa: E402

W, H = 320, 240
K = np.array([[300.0, 0.0, 159.5], [0.0, 300.0, 119.5], [0.0, 0.0, 1.0]])
FRAMES = 3
SIZE_ERROR = {"left": 0.1, "right": -0.08}


def _truth(i: int) -> list[Any]:
    z = 0.5 + 0.2 * i
    return [syn.posed_hand(side, (np.pi / 2, 0.0, 0.0), (sign * 0.2 * z / 0.6, -0.02, z))
            for side, sign in (("left", -1.0), ("right", 1.0))]


@dataclass
class _RgbdFrame:
    """A dataset frame with depth (the duck type write_dataset_bag reads)."""

    index: int
    stamp_ns: int
    K: np.ndarray
    hands: dict[str, GtHand]
    rgb: np.ndarray
    depth: np.ndarray

    def load_rgb(self) -> np.ndarray:
        return self.rgb

    def load_depth(self) -> np.ndarray:
        return self.depth


class _SizeBased:
    """Predictor: the frame's true hands, placed 8-10 % off along their rays."""

    def __init__(self) -> None:
        self.i = 0

    def predict(self, rgb: np.ndarray, K: Any) -> Any:
        hands = _truth(self.i)
        self.i += 1
        for h in hands:
            D.apply_shift(h, h.wrist_position * SIZE_ERROR[h.side])
        return syn.frame(hands[0], hands[1], (rgb.shape[1], rgb.shape[0]))


@pytest.fixture(scope="module")
def rgbd_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = []
    rng = np.random.default_rng(11)
    for i in range(FRAMES):
        hands = _truth(i)
        rgb, depth = syn.render_rgbd(hands, K, (W, H), noise_frac=0.01, hole_frac=0.2,
                                     flying_frac=0.5, rng=rng)
        gt = {h.side: GtHand(valid=True, joints=h.joints.astype(float),
                             vertices=h.vertices.astype(float), faces=h.faces) for h in hands}
        frames.append(_RgbdFrame(i, (i + 1) * 10**9 // 30, K, gt, rgb, depth))
    bag = tmp_path_factory.mktemp("rgbd") / "bag"
    counts = write_dataset_bag(bag, frames, ground_truth=True)
    assert counts[TOPIC_DEPTH] == FRAMES
    return bag


def test_depth_topic_in_bag_is_16uc1_millimetres(rgbd_bag: Path) -> None:
    with BagReader(rgbd_bag) as reader:
        msg = next(reader.messages([TOPIC_DEPTH])).msg
    assert (msg.encoding, msg.width, msg.height, msg.step) == ("16UC1", W, H, 2 * W)
    depth = D.decode_depth(msg.encoding, msg.width, msg.height, msg.step,
                           np.asarray(msg.data, np.uint8).tobytes())
    wall = depth[depth > 1.5]  # the wall behind the hands, 1 % noise
    assert np.median(wall) == pytest.approx(1.8, abs=0.005)
    assert 0.4 < np.nanmin(depth) < 1.0 and np.isnan(depth).mean() > 0.15  # hands, holes


def _report(bag: Path, out: Path, *extra: str) -> dict:
    assert main(["eval-bag", str(bag), "--out", str(out), "--no-progress", "--no-iv", *extra],
                predictor=_SizeBased()) == 0
    return json.loads((out / "report.json").read_text())


def test_eval_bag_splits_root_error_by_placement(rgbd_bag: Path, tmp_path: Path) -> None:
    with_depth = _report(rgbd_bag, tmp_path / "depth")
    by = with_depth["root_error_mm_by_placement"]
    assert set(by) == {"depth"} and by["depth"]["hands"] == 2 * FRAMES
    assert by["depth"]["median"] < 10.0
    assert "| depth | 6 |" in (tmp_path / "depth" / "report.md").read_text()
    without = _report(rgbd_bag, tmp_path / "size", "--depth-topic", "")
    by = without["root_error_mm_by_placement"]
    assert set(by) == {"hand_size"} and by["hand_size"]["median"] > 40.0
