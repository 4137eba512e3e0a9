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
                              make_typestore, two_hand_msg, write_dataset_bag, write_hands_bag)
from dir_ros.data.dataset import GtHand, load_folder_dataset

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
    assert "| Alignment | Hand | Detected | MPJPE (mm) | MPVPE (mm) | MRRPE (mm) | MIAA (px) | AUC |" in md
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


def test_bad_inputs_exit_nonzero_with_one_line(dataset: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
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
    # usage errors (argparse) are one line too
    with pytest.raises(SystemExit) as exc:
        main(["make-bag", str(tmp_path / "d"), "--source", "nonexistent"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'nonexistent'" in err
    # the default mode with a predictor config that does not exist names it, on one line
    bag = tmp_path / "img_bag"
    frames, _ = load_folder_dataset(dataset)
    write_dataset_bag(bag, frames)
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
    cfg.write_text(f"backend: dir\ncrop: full\nmodel_config: {light}\nweights: ''\ndevice: cpu\nruntime: torch\nmin_confidence: 0.0\n")
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
    from dir_ros.cli.eval_bag import _match_stamps

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


# --------------------------------------------------------------------------------------------
# Topics, camera_info pairing, bad frames and outputs (issue 9, items 12-15)

FRAME_ID = "camera_color_optical_frame"
COLOUR_NS = "/cam/color"
DEPTH_INFO = "/cam/depth/camera_info"
K_DEPTH = np.array([[50.0, 0.0, 10.0], [0.0, 50.0, 8.0], [0.0, 0.0, 1.0]])  # another camera
INFO_AFTER_IMAGE_NS = 5_000_000  # camera_info logged 5 ms after its image
FX_STEP = 10.0  # px: each frame of the stamp-pairing bag has its own focal length
STAMP_SHIFT_NS = 3_000_000  # predictions re-stamped 3 ms after their images
BAD_FRAME = 2  # index of the frame whose JPEG is garbage
GARBAGE_JPEG = b"\xff\xd8 definitely not a JPEG"  # a JPEG start, then nothing decodable


def _write_bag(path: Path, entries: list[tuple[str, str, int, object]]) -> None:
    """A bag of (topic, message type, receive time ns, message), written in time order."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = make_typestore()
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns: dict[str, object] = {}
        for topic, mtype, t, msg in sorted(entries, key=lambda e: e[2]):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, mtype, typestore=store)
            writer.write(conns[topic], t, store.serialize_cdr(msg, mtype))


def _camera_entries(dataset: Path, image_topic: str, info_topic: str, *, compressed: bool = False,
                    k_of: object = None, info_delay_ns: int = 0,
                    extra_info: str | None = None) -> list[tuple[str, str, int, object]]:
    """Images, camera_info (K from k_of(i) if given) and /hands/gt of the test dataset."""
    from dir_ros.eval import bag as B

    store = make_typestore()
    frames, _ = load_folder_dataset(dataset)
    entries = []
    for f in frames:
        rgb, t = f.load_rgb(), f.stamp_ns
        k = f.K if k_of is None else k_of(f.index)
        img = (B.compressed_msg(store, t, FRAME_ID, rgb) if compressed
               else B.image_msg(store, t, FRAME_ID, rgb))
        entries.append((image_topic, B.COMPRESSED_IMAGE if compressed else B.IMAGE, t, img))
        entries.append((info_topic, B.CAMERA_INFO, t + info_delay_ns,
                        B.camera_info_msg(store, t, FRAME_ID, k, W, H)))
        if extra_info:
            entries.append((extra_info, B.CAMERA_INFO, t,
                            B.camera_info_msg(store, t, FRAME_ID, K_DEPTH, W, H)))
        entries.append((TOPIC_GT, B.TWO_HAND_MESH, t, two_hand_msg(store, t, FRAME_ID, f.hands, f.K)))
    return entries


class RecordingPredictor(FakePredictor):
    """FakePredictor that accepts any K and records it per frame."""

    def __init__(self) -> None:
        super().__init__(perturb=False)
        self.ks: dict[int, np.ndarray | None] = {}

    def predict(self, rgb: np.ndarray, K_: np.ndarray | None) -> SimpleNamespace:
        i = int(round((float(rgb.mean()) - 40) / 40))
        self.ks[i] = K_
        return super().predict(rgb, K)


def test_camera_info_topic_for_image_topics() -> None:
    from dir_ros.eval.bag import camera_info_topic_for

    assert camera_info_topic_for("/camera/image_raw") == TOPIC_INFO
    assert camera_info_topic_for("/cam/color/image_raw/compressed") == "/cam/color/camera_info"
    assert camera_info_topic_for("/cam/color/image_rect_color") == "/cam/color/camera_info"
    assert camera_info_topic_for("image") == "camera_info"


@pytest.mark.parametrize("compressed", [False, True])
def test_camera_info_is_paired_with_the_image_topic(dataset: Path, tmp_path: Path,
                                                    compressed: bool) -> None:
    """A colour and a depth camera_info in one bag: --image-topic's own one is used (not
    silently none) and report.md names the topics."""
    image_topic = f"{COLOUR_NS}/image_raw" + ("/compressed" if compressed else "")
    bag = tmp_path / "two_infos"
    _write_bag(bag, _camera_entries(dataset, image_topic, f"{COLOUR_NS}/camera_info",
                                    compressed=compressed, extra_info=DEPTH_INFO))
    out = tmp_path / "out"
    fake = FakePredictor(perturb=False)  # asserts K is the colour camera's
    assert main(["eval-bag", str(bag), "--image-topic", image_topic, "--out", str(out),
                 "--no-progress"], predictor=fake) == 0
    assert fake.calls == list(range(NUM_FRAMES))
    s = json.loads((out / "report.json").read_text())
    assert s["topics"]["camera_info"] == f"{COLOUR_NS}/camera_info"
    assert s["miaa_px"]["mean"] == pytest.approx(0.0, abs=1e-3)  # K reached the GT too
    md = (out / "report.md").read_text()
    assert f"image `{image_topic}`" in md and f"camera_info `{COLOUR_NS}/camera_info`" in md


def test_ambiguous_camera_info_is_an_error(dataset: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bag = tmp_path / "ambiguous"
    _write_bag(bag, _camera_entries(dataset, "/cam/ir/image_raw", f"{COLOUR_NS}/camera_info",
                                    extra_info=DEPTH_INFO))
    fake = FakePredictor(perturb=False)
    assert main(["eval-bag", str(bag), "--out", str(tmp_path / "o"), "--no-progress"],
                predictor=fake) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--info-topic" in err and DEPTH_INFO in err
    assert fake.calls == []
    # naming it works
    assert main(["eval-bag", str(bag), "--info-topic", f"{COLOUR_NS}/camera_info",
                 "--out", str(tmp_path / "o"), "--no-progress"], predictor=fake) == 0


def test_camera_info_logged_after_its_image_is_paired_by_stamp(dataset: Path,
                                                               tmp_path: Path) -> None:
    """Predictor mode gives each image the CameraInfo of its own stamp, even when that
    message is recorded after the image (not the previous frame's, nor none)."""
    def k_of(i: int) -> np.ndarray:
        k = K.copy()
        k[0, 0] = k[1, 1] = FX + FX_STEP * i
        return k

    bag = tmp_path / "late_info"
    _write_bag(bag, _camera_entries(dataset, TOPIC_IMAGE, TOPIC_INFO, k_of=k_of,
                                    info_delay_ns=INFO_AFTER_IMAGE_NS))
    rec = RecordingPredictor()
    assert main(["eval-bag", str(bag), "--out", str(tmp_path / "o"), "--no-progress"],
                predictor=rec) == 0
    assert sorted(rec.ks) == list(range(NUM_FRAMES))
    for i, k in rec.ks.items():
        assert k is not None and k[0, 0] == pytest.approx(FX + FX_STEP * i), i


def test_undecodable_frame_is_skipped_and_counted(dataset: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    entries = _camera_entries(dataset, TOPIC_COMPRESSED, TOPIC_INFO, compressed=True)
    frames, _ = load_folder_dataset(dataset)
    for topic, _, t, msg in entries:
        if topic == TOPIC_COMPRESSED and t == frames[BAD_FRAME].stamp_ns:
            msg.data = np.frombuffer(GARBAGE_JPEG, np.uint8)
    bag = tmp_path / "bad_frame"
    _write_bag(bag, entries)
    fake = FakePredictor(perturb=False)
    out = tmp_path / "out"
    assert main(["eval-bag", str(bag), "--out", str(out), "--no-progress"], predictor=fake) == 0
    assert fake.calls == [i for i in range(NUM_FRAMES) if i != BAD_FRAME]
    s = json.loads((out / "report.json").read_text())
    assert s["undecodable_frames"] == 1 and s["frames"]["without_prediction"] == 1
    assert s["frames"]["total"] == NUM_FRAMES
    assert "could not be decoded" in (out / "report.md").read_text()
    assert "skipped 1 frame" in capsys.readouterr().err


def test_eval_bag_out_is_checked_before_the_run(dataset: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bag = tmp_path / "bag"
    _make_bag(dataset, bag)
    not_a_folder = tmp_path / "report_file"
    not_a_folder.write_text("x")
    fake = FakePredictor(perturb=False)
    assert main(["eval-bag", str(bag), "--out", str(not_a_folder), "--no-progress"],
                predictor=fake) == 1
    assert fake.calls == []  # refused before any frame was processed
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a folder" in err and str(not_a_folder) in err


def test_predictor_is_built_only_after_the_bag_is_usable(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A bag without images fails before the model is built (no model warnings first)."""
    import dir_ros.cli.eval_bag as eval_bag_cli

    built: list[str] = []
    monkeypatch.setattr(eval_bag_cli, "load_predictor", lambda config: built.append(config))
    bag = tmp_path / "no_images"
    write_hands_bag(bag, [])
    assert main(["eval-bag", str(bag), "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    assert built == [] and "no image topic" in capsys.readouterr().err


def _folder_with_images(folder: Path, n: int = 2) -> list[str]:
    """n PNG images in folder; their names."""
    folder.mkdir()
    names = []
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((H, W, 3), 40 + 40 * i, np.uint8))
        names.append(f"{i}.png")
    return names


def test_truncated_jpeg_is_refused_before_writing(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    names = _folder_with_images(folder)
    ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (H, W, 3), np.uint8))
    (folder / "cut.jpg").write_bytes(buf.tobytes()[: len(buf) // 2])
    gt = folder / "gt.json"
    gt.write_text(json.dumps({"K": K.tolist(), "frames": [{"image": n} for n in names + ["cut.jpg"]]}))
    out = tmp_path / "bag"
    assert main(["make-bag", str(out), "--annotations", str(gt), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "truncated JPEG" in err and "cut.jpg" in err
    assert not out.exists() and list(tmp_path.glob(".bag*")) == []


def test_failed_make_bag_leaves_nothing_and_can_be_rerun(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """An image that only fails while the bag is written (not an image format at all)
    leaves no partial bag; after fixing it the same command succeeds."""
    folder = tmp_path / "imgs"
    names = _folder_with_images(folder, 3)
    (folder / names[-1]).write_bytes(b"no image here")
    gt = folder / "gt.json"
    gt.write_text(json.dumps({"K": K.tolist(), "frames": [{"image": n} for n in names]}))
    out = tmp_path / "bag"
    argv = ["make-bag", str(out), "--annotations", str(gt), "--no-progress"]
    assert main(argv) == 1
    assert names[-1] in capsys.readouterr().err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["imgs"]
    cv2.imwrite(str(folder / names[-1]), np.full((H, W, 3), 200, np.uint8))
    assert main(argv) == 0
    with BagReader(out) as r:
        assert r.count(TOPIC_IMAGE) == 3


def test_folder_without_hand_annotations_writes_no_ground_truth(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    names = _folder_with_images(folder)
    gt = folder / "frames.json"
    gt.write_text(json.dumps({"K": K.tolist(), "frames": [{"image": n} for n in names]}))
    out = tmp_path / "bag"
    assert main(["make-bag", str(out), "--annotations", str(gt), "--no-progress"]) == 0
    with BagReader(out) as r:
        assert TOPIC_GT not in r.topics and r.count(TOPIC_IMAGE) == len(names)
    report = tmp_path / "report"
    assert main(["eval-bag", str(out), "--out", str(report), "--no-progress"],
                predictor=FakePredictor(perturb=False)) == 0
    assert not json.loads((report / "report.json").read_text())["has_ground_truth"]


def test_no_matching_prediction_suggests_a_stamp_tolerance(dataset: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    bag = tmp_path / "gt_bag"
    _make_bag(dataset, bag)
    frames, _ = load_folder_dataset(dataset)
    store = make_typestore()
    msgs = [(f.stamp_ns + LATENCY_NS, two_hand_msg(store, f.stamp_ns + STAMP_SHIFT_NS, FRAME_ID,
                                                   _gt_hands(f.index), f.K)) for f in frames]
    pred_bag = tmp_path / "pred"
    write_hands_bag(pred_bag, msgs)
    out = tmp_path / "out"
    assert main(["eval-bag", str(bag), "--predictions", str(pred_bag), "--out", str(out),
                 "--no-progress"]) == 0
    s = json.loads((out / "report.json").read_text())
    suggestion = f"--stamp-tolerance-ms {STAMP_SHIFT_NS // 1_000_000}"
    assert len(s["hints"]) == 1 and suggestion in s["hints"][0]
    assert suggestion in capsys.readouterr().err and suggestion in (out / "report.md").read_text()
    out2 = tmp_path / "out2"
    assert main(["eval-bag", str(bag), "--predictions", str(pred_bag), "--out", str(out2),
                 "--no-progress", "--stamp-tolerance-ms", str(STAMP_SHIFT_NS // 1_000_000)]) == 0
    s2 = json.loads((out2 / "report.json").read_text())
    assert "hints" not in s2 and s2["unmatched_predictions"] == 0


def test_pck_placeholder_when_ground_truth_exists_but_nothing_scored(dataset: Path,
                                                                     tmp_path: Path) -> None:
    """Every predicted hand invalid: pck.png says nothing was scored (not "no ground
    truth"), and the confidence of the invalid hands is reported for min_confidence."""
    from dir_ros.eval.report import PCK_NOTHING_SCORED_TEXT, pck_placeholder_text

    class NothingFound(FakePredictor):
        def predict(self, rgb: np.ndarray, K_: np.ndarray | None) -> SimpleNamespace:
            res = super().predict(rgb, K_)
            for hand in (res.left, res.right):
                hand.valid, hand.confidence = False, 0.2
            return res

    bag = tmp_path / "bag"
    _make_bag(dataset, bag)
    out = tmp_path / "out"
    assert main(["eval-bag", str(bag), "--out", str(out), "--no-progress"],
                predictor=NothingFound(perturb=False)) == 0
    s = json.loads((out / "report.json").read_text())
    assert s["has_ground_truth"] and s["hands"]["left"]["scored"] == 0
    assert pck_placeholder_text(s) == PCK_NOTHING_SCORED_TEXT
    assert s["hands"]["left"]["confidence_invalid"]["mean"] == pytest.approx(0.2)
    assert s["hands"]["left"]["confidence_gt_hand"]["mean"] == pytest.approx(0.2)
    assert "Confidence (to tune min_confidence)" in (out / "report.md").read_text()


def test_joint_valid_excludes_unannotated_joints(tmp_path: Path) -> None:
    """InterHand2.6M-style joint_valid: unannotated joints (with garbage positions) do not
    count; they travel through the bag as NaN."""
    frames_json = []
    folder = tmp_path / "imgs"
    names = _folder_with_images(folder, 2)
    for i, name in enumerate(names):
        hands = _gt_hands(i)
        entry = {"image": name}
        for side, h in hands.items():
            joints = h.joints.copy()
            valid = np.ones(21, int)
            valid[[4, 20]] = 0
            joints[[4, 20]] += 1.0  # garbage where not annotated
            entry[side] = {"valid": True, "joints": joints.tolist(), "joint_valid": valid.tolist()}
        frames_json.append(entry)
    gt = folder / "gt.json"
    gt.write_text(json.dumps({"K": K.tolist(), "frames": frames_json}))
    bag = tmp_path / "bag"
    assert main(["make-bag", str(bag), "--annotations", str(gt), "--no-progress"]) == 0
    with BagReader(bag) as r:
        msg = next(iter(r.messages([TOPIC_GT]))).msg
    assert np.isnan(msg.left.joints[4].x) and np.isfinite(msg.left.joints[3].x)
    out = tmp_path / "out"
    assert main(["eval-bag", str(bag), "--out", str(out), "--no-progress", "--no-iv"],
                predictor=FakePredictor(perturb=False)) == 0  # predicts the true joints
    s = json.loads((out / "report.json").read_text())
    assert s["metrics"]["wrist"]["left"]["mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)
    assert s["hands"]["left"]["gt_joints_not_annotated"] == 2 * 2
