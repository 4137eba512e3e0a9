"""Bag round trips: dir-ros make-bag, then eval-bag with a predictions bag or an injected predictor."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import trimesh

from dir_ros.cli import main
from dir_ros.eval.bag import (TOPIC_COMPRESSED, TOPIC_GT, TOPIC_IMAGE, TOPIC_INFO, BagReader,
                              make_typestore, two_hand_msg, write_hands_bag)
from dir_ros.eval.dataset import GtHand, load_folder_dataset

REPO = Path(__file__).resolve().parents[1]
NUM_FRAMES = 4
W, H = 64, 48
FX = 100.0
K = np.array([[FX, 0.0, W / 2], [0.0, FX, H / 2], [0.0, 0.0, 1.0]])
DEPTH = 0.5  # m, hand box centres
BOX = 0.04  # m, box "hand mesh" edge
# perturbation of the "known error" predictions
JOINT_DELTA = np.array([0.0, 0.006, 0.008])  # |d| = 10 mm on joints other than 0 and 9
VERT_DELTA = np.array([0.003, 0.0, 0.0])  # 3 mm on all vertices
RIGHT_SHIFT = np.array([0.02, 0.0, 0.0])  # whole right hand: 20 mm relative-root error
LATENCY_NS = 25_000_000  # recorded receive time - stamp in the fake node recording


def _gt_hands(i: int) -> dict[str, GtHand]:
    """Frame i's ground truth: two 4 cm boxes overlapping by 1 cm in x; frame 3 without left."""
    rng = np.random.default_rng(i)
    hands = {}
    for side, cx in (("left", -0.015), ("right", 0.015)):
        box = trimesh.creation.box(extents=(BOX, BOX, BOX))
        box.apply_translation((cx, 0.0, DEPTH))
        joints = np.array([cx, 0.0, DEPTH]) + rng.uniform(-0.02, 0.02, size=(21, 3))
        hands[side] = GtHand(valid=not (side == "left" and i == 3), joints=joints,
                             vertices=np.asarray(box.vertices), faces=np.asarray(box.faces),
                             pose=rng.normal(size=48) * 0.1, shape=np.zeros(10))
    return hands


def _perturb(hands: dict[str, GtHand]) -> dict[str, GtHand]:
    """The known perturbation: see the module constants."""
    out = {}
    for side, h in hands.items():
        j = h.joints.copy()
        moved = [k for k in range(21) if k not in (0, 9)]
        j[moved] += JOINT_DELTA
        v = h.vertices + VERT_DELTA
        if side == "right":
            j, v = j + RIGHT_SHIFT, v + RIGHT_SHIFT
        out[side] = GtHand(valid=h.valid, joints=j, vertices=v, faces=h.faces, pose=h.pose, shape=h.shape)
    return out


def _write_dataset(folder: Path) -> Path:
    """Images (uniform grey level 40 + 40 i, identifies the frame) and the GT JSON."""
    folder.mkdir()
    frames = []
    for i in range(NUM_FRAMES):
        img = np.full((H, W, 3), 40 + 40 * i, np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
        entry = {"image": f"{i:03d}.png", "K": K.tolist()}
        for side, h in _gt_hands(i).items():
            entry[side] = {"valid": h.valid, "joints": h.joints.tolist(), "vertices": h.vertices.tolist(),
                           "faces": h.faces.tolist(), "pose": h.pose.tolist(), "shape": h.shape.tolist()}
        frames.append(entry)
    path = folder / "gt.json"
    path.write_text(json.dumps({"format": "dir_ros.dataset/1", "fps": 10.0, "frames": frames}))
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("ds") / "data")


def _make_bag(dataset: Path, out: Path, *extra: str) -> None:
    rc = main(["make-bag", str(out), "--annotations", str(dataset), "--no-progress", *extra])
    assert rc == 0


def _expected_miaa() -> float:
    """Vertices move 3 mm in x at depth 0.48 or 0.52 m (half each): u moves fx*0.003/z px."""
    return float(np.mean([FX * VERT_DELTA[0] / (DEPTH - BOX / 2), FX * VERT_DELTA[0] / (DEPTH + BOX / 2)]))


def _check_known_errors(s: dict, scored_left: int, scored_right: int) -> None:
    w = s["metrics"]["wrist"]
    assert w["left"]["mpjpe_mm"] == pytest.approx(10.0 * 19 / 21, abs=1e-3)
    assert w["right"]["mpjpe_mm"] == pytest.approx(10.0 * 19 / 21, abs=1e-3)
    assert w["mean"]["mpvpe_mm"] == pytest.approx(3.0, abs=1e-3)
    assert s["metrics"]["m"]["mean"]["mpjpe_mm"] == pytest.approx(10.0 * 19 / 21, abs=1e-3)
    assert s["mrrpe_mm"] == pytest.approx(20.0, abs=1e-3)
    assert s["miaa_px"]["mean"] == pytest.approx(_expected_miaa(), abs=1e-3)
    assert s["hands"]["left"]["scored"] == scored_left
    assert s["hands"]["right"]["scored"] == scored_right


def _check_zero(s: dict) -> None:
    for variant in ("wrist", "ms", "m"):
        for hand in ("left", "right", "mean"):
            assert s["metrics"][variant][hand]["mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)
            assert s["metrics"][variant][hand]["mpvpe_mm"] == pytest.approx(0.0, abs=1e-3)
            # float32 round-off makes PCK(0 mm) < 1: AUC within half a threshold step of 1
            assert s["metrics"][variant][hand]["auc"] == pytest.approx(1.0, abs=0.01)
    assert s["mrrpe_mm"] == pytest.approx(0.0, abs=1e-3)
    assert s["miaa_px"]["mean"] == pytest.approx(0.0, abs=1e-3)


def _check_report_files(out: Path) -> None:
    assert (out / "report.json").is_file() and (out / "report.md").is_file()
    img = cv2.imread(str(out / "pck.png"))
    assert img is not None and img.shape == (450, 600, 3)
    md = (out / "report.md").read_text()
    assert "| Alignment | Hand | MPJPE (mm) | MPVPE (mm) | MRRPE (mm) | MIAA (px) | AUC |" in md
    json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_make_bag_then_eval_predictions_bag(dataset: Path, tmp_path: Path, storage: str) -> None:
    bag = tmp_path / "gt_bag"
    _make_bag(dataset, bag, "--storage", storage)
    frames, _ = load_folder_dataset(dataset)
    with BagReader(bag) as r:
        assert r.topics[TOPIC_GT] == "dir_ros/msg/TwoHandMesh"
        assert all(r.count(t) == NUM_FRAMES for t in (TOPIC_IMAGE, TOPIC_INFO, TOPIC_GT))
        stamps = {t: [] for t in (TOPIC_IMAGE, TOPIC_INFO, TOPIC_GT)}
        for m in r.messages(list(stamps)):
            assert m.msg.header.frame_id == "camera_color_optical_frame"
            stamps[m.topic].append(m.msg.header.stamp.sec * 10**9 + m.msg.header.stamp.nanosec)
            assert m.log_time_ns == stamps[m.topic][-1]
        assert stamps[TOPIC_IMAGE] == stamps[TOPIC_INFO] == stamps[TOPIC_GT] == [f.stamp_ns for f in frames]
        assert np.diff(stamps[TOPIC_IMAGE]).tolist() == [100_000_000] * (NUM_FRAMES - 1)  # fps 10
    store = make_typestore()
    for name, perturb in (("perfect", False), ("perturbed", True)):
        msgs = []
        for f in frames:
            if f.index == 1:
                continue  # the node dropped this frame
            hands = _gt_hands(f.index)
            msgs.append((f.stamp_ns + LATENCY_NS, two_hand_msg(store, f.stamp_ns, "camera_color_optical_frame",
                                                               _perturb(hands) if perturb else hands, f.K, 0.8)))
        msgs.append((frames[-1].stamp_ns + 10**9, two_hand_msg(store, frames[-1].stamp_ns + 10**9 - LATENCY_NS,
                                                               "x", _gt_hands(0), K)))  # matches no frame
        pred_bag = tmp_path / f"pred_{name}"
        write_hands_bag(pred_bag, msgs, storage=storage)
        out = tmp_path / f"report_{name}"
        rc = main(["eval-bag", str(bag), "--predictions", str(pred_bag), "--out", str(out), "--no-progress"])
        assert rc == 0
        s = json.loads((out / "report.json").read_text())
        assert s["frames"]["total"] == NUM_FRAMES and s["frames"]["without_prediction"] == 1
        assert s["unmatched_predictions"] == 1
        assert s["hands"]["right"]["missing"] == 1  # the dropped frame
        assert s["hands"]["left"]["missing"] == 1 and s["hands"]["left"]["false_positive"] == 0
        assert s["latency_ms"]["mean"] == pytest.approx(LATENCY_NS / 1e6)
        if perturb:
            _check_known_errors(s, scored_left=2, scored_right=3)
        else:
            _check_zero(s)
            # overlapping 1 x 4 x 4 cm boxes: 16 cm^3 up to the voxel edge weights
            assert s["interpenetration"]["mean_cm3"] == pytest.approx(16.0, abs=3.0)
        _check_report_files(out)


class FakePredictor:
    """Injected prediction source: reads the frame index from the grey level, returns GT."""

    def __init__(self, perturb: bool) -> None:
        self.perturb = perturb
        self.calls: list[int] = []

    def predict(self, rgb: np.ndarray, K_: np.ndarray | None) -> SimpleNamespace:
        assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
        assert K_ is not None and np.allclose(K_, K)
        i = int(round((float(rgb.mean()) - 40) / 40))
        self.calls.append(i)
        hands = _gt_hands(i)
        hands = _perturb(hands) if self.perturb else hands

        def res(h: GtHand, side: str) -> SimpleNamespace:
            valid = h.valid and not (side == "right" and i == 2)  # right hand not found in frame 2
            return SimpleNamespace(side=side, valid=valid, confidence=0.7, joints=h.joints.astype(np.float32),
                                   vertices=h.vertices.astype(np.float32), faces=h.faces, metric=True)

        return SimpleNamespace(left=res(hands["left"], "left"), right=res(hands["right"], "right"))


@pytest.mark.parametrize("storage,compressed", [("sqlite3", False), ("mcap", True)])
def test_eval_bag_with_injected_predictor(dataset: Path, tmp_path: Path, storage: str, compressed: bool) -> None:
    bag = tmp_path / "bag"
    _make_bag(dataset, bag, "--storage", storage, *(["--compressed"] if compressed else []))
    with BagReader(bag) as r:
        assert (TOPIC_COMPRESSED if compressed else TOPIC_IMAGE) in r.topics
    for perturb in (False, True):
        fake = FakePredictor(perturb)
        out = tmp_path / f"out_{perturb}"
        assert main(["eval-bag", str(bag), "--out", str(out), "--no-progress"], predictor=fake) == 0
        assert fake.calls == list(range(NUM_FRAMES))  # every image, in order
        s = json.loads((out / "report.json").read_text())
        assert s["hands"]["right"]["missing"] == 1 and s["hands"]["left"]["missing"] == 0
        assert s["frames"]["without_prediction"] == 0 and s["unmatched_predictions"] == 0
        assert s["latency_ms"] is not None
        if perturb:
            _check_known_errors(s, scored_left=3, scored_right=3)
        else:
            _check_zero(s)
        _check_report_files(out)


def test_eval_without_ground_truth(tmp_path: Path) -> None:
    store = make_typestore()
    stamps = [10**18 + k * 50_000_000 for k in range(5)]  # 20 Hz
    msgs = [(s + LATENCY_NS, two_hand_msg(store, s, "cam", _gt_hands(0), K, 0.6)) for s in stamps]
    pred_bag = tmp_path / "rec"
    write_hands_bag(pred_bag, msgs)
    out = tmp_path / "out"
    assert main(["eval-bag", str(pred_bag), "--predictions", str(pred_bag), "--out", str(out), "--no-progress"]) == 0
    s = json.loads((out / "report.json").read_text())
    assert not s["has_ground_truth"] and s["frames"]["total"] == 5
    assert s["rate_hz"]["output"] == pytest.approx(20.0)
    assert s["hands"]["left"]["confidence"]["mean"] == pytest.approx(0.6)
    assert cv2.imread(str(out / "pck.png")) is not None
    assert "No ground truth" in (out / "report.md").read_text()


def test_bad_inputs_exit_nonzero_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval-bag", str(tmp_path / "missing_bag"), "--config", "x.yaml", "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "missing_bag" in err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["make-bag", str(tmp_path / "b"), "--annotations", str(bad), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid JSON" in err
    bad.write_text(json.dumps({"frames": [{"image": "nope.png", "K": K.tolist()}]}))
    assert main(["make-bag", str(tmp_path / "c"), "--annotations", str(bad), "--no-progress"]) != 0
    assert "image not found" in capsys.readouterr().err
    # usage errors (argparse) are one line too; no synthetic source is registered yet
    with pytest.raises(SystemExit) as exc:
        main(["make-bag", str(tmp_path / "d"), "--source", "synthetic"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'synthetic'" in err
    # the default mode with a predictor config that does not exist names it, on one line
    bag = tmp_path / "rec"
    write_hands_bag(bag, [])
    assert main(["eval-bag", str(bag), "--config", str(tmp_path / "nope.yaml"), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.yaml" in err


def test_eval_bag_with_the_real_predictor(dataset: Path, tmp_path: Path) -> None:
    """The default route end to end: lazy import of HandsPredictor, light model, random init."""
    light = REPO / "config" / "model" / "dir_light.yaml"
    try:
        import dir_ros.predictor  # noqa: F401
    except ImportError as err:
        pytest.skip(f"dir_ros.predictor not importable: {err}")
    if not light.is_file():
        pytest.skip(f"{light} missing")
    bag = tmp_path / "bag"
    _make_bag(dataset, bag)
    cfg = tmp_path / "predictor.yaml"
    cfg.write_text(f"model_config: {light}\nweights: ''\ndevice: cpu\nmin_confidence: 0.0\n")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        rc = main(["eval-bag", str(bag), "--config", str(cfg), "--out", str(out), "--no-progress"])
    assert rc == 0
    s = json.loads((out / "report.json").read_text())
    assert s["frames"]["total"] == NUM_FRAMES and s["frames"]["without_prediction"] == 0
    assert s["hands"]["left"]["pred_valid"] == NUM_FRAMES  # min_confidence 0: every hand valid
    assert s["metrics"]["wrist"]["mean"]["mpjpe_mm"] is not None
    assert s["latency_ms"]["mean"] > 0


def test_help_of_each_subcommand() -> None:
    for sub in ("make-bag", "eval-bag"):
        r = subprocess.run([sys.executable, "-m", "dir_ros.cli", sub, "--help"], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "usage: dir-ros " + sub in r.stdout


def test_stamp_matching_with_tolerance() -> None:
    from dir_ros.cli import _match_stamps

    frames = [0, 100_000_000, 200_000_000]
    preds = {1_000_000: "a", 99_000_000: "b", 150_000_000: "c"}  # 1 ms late, 1 ms early, no frame
    assert _match_stamps(preds, frames, 0.0) == {("unmatched", s): p for s, p in preds.items()}
    assert _match_stamps(preds, frames, 2.0) == {0: "a", 100_000_000: "b", ("unmatched", 150_000_000): "c"}


def test_msg_dir_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dir_ros.eval import bag as B

    assert B.find_msg_dir() == REPO / "msg"  # source tree
    for name in B.MSG_NAMES:
        (tmp_path / f"{name}.msg").write_text((REPO / "msg" / f"{name}.msg").read_text())
    monkeypatch.setenv("DIR_ROS_MSG_DIR", str(tmp_path))
    assert B.find_msg_dir() == tmp_path
