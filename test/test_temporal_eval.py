"""Temporal metrics of eval-bag (issue 19, item 6): jitter and acceleration error equal a hand
computation on known sequences (in memory and through bags written by make-bag), misses end
runs instead of being bridged, and the synthetic sequences are smooth and in contact.

The hand computations below are plain loops over frame triples, written from the
definitions in docs/evaluation.md, not from the implementation:
  jitter     = mean over counted triples and points of |x[t+1] - 2 x[t] + x[t-1]| (mm/frame^2)
  accel. err = mean of |a_pred[t] - a_gt[t]|, a[t] = (x[t+1] - 2 x[t] + x[t-1]) / dt_t^2,
               dt_t = (stamp[t+1] - stamp[t-1]) / 2 (m/s^2)
A triple is counted only when the hand is valid in all three frames.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dir_ros.cli import main
from dir_ros.eval.bag import BagReader, make_typestore, two_hand_msg, write_hands_bag
from dir_ros.data.dataset import GtHand, load_folder_dataset
from dir_ros.eval.evaluator import Evaluator, FrameSample, HandSample

T = 14  # frames of the known sequences
FPS = 25.0  # stamp spacing of the bag sequence (not the default 30: dt must come from stamps)
W, H = 32, 24  # tiny images: the predictions do not look at them
FX = 40.0
K = np.array([[FX, 0.0, W / 2], [0.0, FX, H / 2], [0.0, 0.0, 1.0]])
NOISE_M = 0.002  # std of the prediction noise added to the ground truth (m)
# Positions travel as float64 (geometry_msgs/Point); the tolerance is still float32-sized
# (any CPU), far below any difference that matters (a wrong rule changes values by > 1%).
REL_TOL = 1e-6
ABS_TOL = 1e-9


def _known_gt(side: str, t: np.ndarray) -> np.ndarray:
    """Ground-truth joints (T,21,3) m: the wrist accelerates along x and oscillates in y,
    the hand turns about the camera axis (root-relative joints move too)."""
    sign = -1.0 if side == "left" else 1.0
    rng = np.random.default_rng(7 if side == "left" else 8)
    rel = rng.uniform(-0.04, 0.04, size=(21, 3))
    rel[0] = 0.0
    wrist = np.stack([sign * 0.08 + 0.004 * t + 0.0005 * t**2, 0.01 * np.sin(0.6 * t),
                      0.5 + 0.002 * t], axis=1)
    ang = 0.05 * t
    c, s = np.cos(ang), np.sin(ang)
    rot = np.zeros((len(t), 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1.0
    return wrist[:, None] + np.einsum("tij,pj->tpi", rot, rel)


def _known_pred(side: str, gt: np.ndarray) -> np.ndarray:
    """Predictions (T,21,3) m: the ground truth plus seeded noise."""
    rng = np.random.default_rng(11 if side == "left" else 12)
    return gt + rng.normal(0.0, NOISE_M, size=gt.shape)


def hand_jitter_mm(x: np.ndarray, valid: np.ndarray) -> tuple[float, int]:
    """Jitter (mm/frame^2) of points x (T,P,3) m over the triples valid in all three
    frames, and the number of those triples (loops, from the definition)."""
    norms, triples = [], 0
    for t in range(1, len(x) - 1):
        if not (valid[t - 1] and valid[t] and valid[t + 1]):
            continue
        triples += 1
        for p in range(x.shape[1]):
            d = x[t + 1, p] - 2.0 * x[t, p] + x[t - 1, p]
            norms.append(np.sqrt(np.sum(d * d)))
    return float(np.mean(norms)) * 1000.0, triples


def hand_accel_error(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray,
                     stamps_ns: list[int]) -> tuple[float, int]:
    """Acceleration error (m/s^2): a = second difference / dt^2 of prediction and ground
    truth separately, dt the mean of the two intervals around the frame."""
    norms, triples = [], 0
    for t in range(1, len(pred) - 1):
        if not (valid[t - 1] and valid[t] and valid[t + 1]):
            continue
        triples += 1
        dt = (stamps_ns[t + 1] - stamps_ns[t - 1]) / 2.0 / 1e9
        for p in range(pred.shape[1]):
            a_pred = (pred[t + 1, p] - 2.0 * pred[t, p] + pred[t - 1, p]) / dt**2
            a_gt = (gt[t + 1, p] - 2.0 * gt[t, p] + gt[t - 1, p]) / dt**2
            norms.append(np.sqrt(np.sum((a_pred - a_gt) ** 2)))
    return float(np.mean(norms)), triples


def _rel(j: np.ndarray) -> np.ndarray:
    """Root-relative joints 1..20 (T,20,3) of (T,21,3)."""
    return j[:, 1:] - j[:, :1]


def _expected(pred: np.ndarray, gt: np.ndarray, pred_ok: np.ndarray, gt_ok: np.ndarray,
              stamps: list[int]) -> dict[str, tuple[float, int]]:
    """The hand computation of every temporal quantity of one hand."""
    both = pred_ok & gt_ok
    return {
        "jitter_wrist_mm_f2": hand_jitter_mm(pred[:, :1], pred_ok),
        "jitter_joints_mm_f2": hand_jitter_mm(_rel(pred), pred_ok),
        "gt_jitter_wrist_mm_f2": hand_jitter_mm(gt[:, :1], gt_ok),
        "gt_jitter_joints_mm_f2": hand_jitter_mm(_rel(gt), gt_ok),
        "accel_error_wrist_m_s2": hand_accel_error(pred[:, :1], gt[:, :1], both, stamps),
        "accel_error_joints_m_s2": hand_accel_error(_rel(pred), _rel(gt), both, stamps),
    }


COUNT_KEYS = {"jitter_wrist_mm_f2": "jitter_wrist", "jitter_joints_mm_f2": "jitter_joints",
              "gt_jitter_wrist_mm_f2": "gt_jitter_wrist",
              "gt_jitter_joints_mm_f2": "gt_jitter_joints",
              "accel_error_wrist_m_s2": "accel_error_wrist",
              "accel_error_joints_m_s2": "accel_error_joints"}


def _check(entry: dict, expected: dict[str, tuple[float, int]]) -> None:
    for key, (value, triples) in expected.items():
        assert entry[key] == pytest.approx(value, rel=REL_TOL, abs=ABS_TOL), key
        assert entry["triples_counted"][COUNT_KEYS[key]] == triples, key


def _sample(j: np.ndarray | None, metric: bool = True) -> HandSample:
    return HandSample(valid=j is not None, joints=j, metric=metric, confidence=0.9)


def test_jitter_and_acceleration_error_equal_a_hand_computation() -> None:
    """A known sequence, every hand valid, stamps at uneven intervals (dt per triple)."""
    t = np.arange(T, dtype=float)
    gt = {s: _known_gt(s, t) for s in ("left", "right")}
    pred = {s: _known_pred(s, gt[s]) for s in gt}
    stamps = [10**18 + int(i * 40e6 + (3e6 if i % 3 == 1 else 0)) for i in range(T)]
    ev = Evaluator(compute_iv=False)
    for i in range(T):
        ev.add(FrameSample(_sample(pred["left"][i]), _sample(pred["right"][i])),
               FrameSample(_sample(gt["left"][i]), _sample(gt["right"][i])), stamps[i])
    tm = ev.summary()["temporal"]
    ok = np.ones(T, bool)
    for side in ("left", "right"):
        exp = _expected(pred[side], gt[side], ok, ok, stamps)
        _check(tm[side], exp)
        assert all(n == T - 2 for _, n in exp.values())
        assert tm[side]["detection_rate"] == 1.0
    # the values are what the sequence makes them: noise of 2 mm gives a jitter of a few mm,
    # the ground truth's own motion far less
    assert tm["left"]["jitter_wrist_mm_f2"] > 3.0 > tm["left"]["gt_jitter_wrist_mm_f2"] > 0.5
    assert tm["mean"]["jitter_joints_mm_f2"] == pytest.approx(
        (tm["left"]["jitter_joints_mm_f2"] + tm["right"]["jitter_joints_mm_f2"]) / 2)


def test_misses_end_runs_and_count_against_the_detection_rate() -> None:
    """Right hand: prediction invalid at frame 4, non-metric (no wrist position) at frame
    12; no prediction message at frame 9 (both hands); left hand: ground truth absent at
    frame 6.
    The hand jumps by 20 cm during the right miss: bridging it would show a huge jitter."""
    t = np.arange(T, dtype=float)
    gt = {s: _known_gt(s, t) for s in ("left", "right")}
    pred = {s: _known_pred(s, gt[s]) for s in gt}
    jump = np.array([0.2, 0.0, 0.0])
    gt["right"][5:] += jump
    pred["right"][5:] += jump
    stamps = [int(i * 1e9 / FPS) + 1 for i in range(T)]
    pred_ok = {"left": np.ones(T, bool), "right": np.ones(T, bool)}
    pred_ok["right"][[4, 9]] = False
    pred_ok["left"][9] = False  # the dropped frame has no prediction for either hand
    gt_ok = {"left": np.ones(T, bool), "right": np.ones(T, bool)}
    gt_ok["left"][6] = False
    ev = Evaluator(compute_iv=False)
    for i in range(T):
        p = None if i == 9 else FrameSample(
            _sample(pred["left"][i]),
            _sample(pred["right"][i] if pred_ok["right"][i] else None, metric=i != 12))
        g = FrameSample(_sample(gt["left"][i] if gt_ok["left"][i] else None), _sample(gt["right"][i]))
        ev.add(p, g, stamps[i])
    s = ev.summary()
    tm = s["temporal"]
    wrist_ok = pred_ok["right"].copy()
    wrist_ok[12] = False
    exp = _expected(pred["right"], gt["right"], pred_ok["right"], gt_ok["right"], stamps)
    exp["jitter_wrist_mm_f2"] = hand_jitter_mm(pred["right"][:, :1], wrist_ok)
    exp["accel_error_wrist_m_s2"] = hand_accel_error(pred["right"][:, :1], gt["right"][:, :1],
                                                     wrist_ok, stamps)
    _check(tm["right"], exp)
    # triples: 12 in all; frames 4 and 9 remove centres 3-5 and 8-10, frame 12 also 11-13
    assert tm["right"]["triples_counted"]["jitter_joints"] == 12 - 6
    assert tm["right"]["triples_counted"]["jitter_wrist"] == 12 - 6 - 2
    assert tm["right"]["jitter_wrist_mm_f2"] < 20.0  # the 200 mm jump is never differenced
    _check(tm["left"], _expected(pred["left"], gt["left"], pred_ok["left"], gt_ok["left"], stamps))
    assert tm["left"]["triples_counted"]["gt_jitter_wrist"] == 12 - 3
    assert tm["left"]["triples_counted"]["jitter_wrist"] == 12 - 3
    assert tm["left"]["triples_counted"]["accel_error_joints"] == 12 - 6
    # detection rate: right 12 of 14 ground-truth frames, left 12 of 13 (frame 6 has no
    # GT hand, frame 9 no prediction)
    assert s["hands"]["right"]["detection_rate"] == pytest.approx(12 / 14)
    assert s["hands"]["left"]["detection_rate"] == pytest.approx(12 / 13)
    assert s["detection_rate"]["mean"] == pytest.approx(24 / 27)
    for variant in ("wrist", "ms", "m"):
        assert s["metrics"][variant]["right"]["detection_rate"] == pytest.approx(12 / 14)
    assert tm["right"]["detection_rate"] == pytest.approx(12 / 14)


def test_no_triple_without_three_valid_frames() -> None:
    """Every second frame missed: no triple, the metrics are None (n/a), not 0."""
    t = np.arange(6, dtype=float)
    gt = _known_gt("left", t)
    ev = Evaluator(compute_iv=False)
    for i in range(6):
        ev.add(FrameSample(_sample(gt[i] if i % 2 else None), _sample(None)),
               FrameSample(_sample(gt[i]), _sample(None)), i * 33_000_000 + 1)
    tm = ev.summary()["temporal"]
    assert tm["left"]["jitter_wrist_mm_f2"] is None and tm["left"]["accel_error_joints_m_s2"] is None
    assert tm["left"]["triples_counted"]["jitter_joints"] == 0
    # the ground truth is complete: its own jitter is still computed
    assert tm["left"]["gt_jitter_joints_mm_f2"] == pytest.approx(
        hand_jitter_mm(_rel(gt), np.ones(6, bool))[0], rel=REL_TOL)


# ------------------------------------------------------------------------------------------
# Through bags: make-bag (folder source), then eval-bag on a predictions bag and with an
# injected predictor


def _write_sequence_dataset(folder: Path, gt: dict[str, np.ndarray]) -> Path:
    """Tiny images (grey level = frame index, so a fake predictor can tell the frame) and
    the known ground truth, stamps from fps."""
    folder.mkdir()
    frames = []
    for i in range(T):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((H, W, 3), 10 + 10 * i, np.uint8))
        frames.append({"image": f"{i:03d}.png",
                       **{s: {"valid": True, "joints": gt[s][i].tolist()} for s in gt}})
    path = folder / "gt.json"
    path.write_text(json.dumps({"format": "dir_ros.dataset/1", "fps": FPS, "K": K.tolist(),
                                "frames": frames}))
    return path


class SequencePredictor:
    """Injected predictor: the known predictions of the frame its grey level names; the
    right hand is missed on frame 6."""

    def __init__(self, pred: dict[str, np.ndarray]) -> None:
        self.pred = pred

    def predict(self, rgb: np.ndarray, K_: np.ndarray | None) -> FrameSample:
        i = int(round((float(rgb.mean()) - 10) / 10))
        return FrameSample(_sample(self.pred["left"][i]),
                           _sample(None if i == 6 else self.pred["right"][i]), K=K_)


def test_eval_bag_temporal_metrics_through_make_bag(tmp_path: Path) -> None:
    t = np.arange(T, dtype=float)
    gt = {s: _known_gt(s, t) for s in ("left", "right")}
    pred = {s: _known_pred(s, gt[s]) for s in gt}
    bag = tmp_path / "bag"
    dataset = _write_sequence_dataset(tmp_path / "data", gt)
    assert main(["make-bag", str(bag), "--annotations", str(dataset), "--no-progress"]) == 0
    frames, _ = load_folder_dataset(dataset)
    stamps = [f.stamp_ns for f in frames]
    assert np.diff(stamps).tolist() == [int(1e9 / FPS)] * (T - 1)
    ok = np.ones(T, bool)
    right_ok = ok.copy()
    right_ok[6] = False

    # route B: a recording of the node (predictions bag, frame 10 dropped entirely)
    store = make_typestore()
    msgs = []
    for f in frames:
        if f.index == 10:
            continue
        hands = {s: GtHand(valid=True, joints=pred[s][f.index]) for s in pred}
        msgs.append((f.stamp_ns, two_hand_msg(store, f.stamp_ns, "cam", hands, K, 0.9)))
    write_hands_bag(tmp_path / "pred", msgs)
    out_b = tmp_path / "out_b"
    assert main(["eval-bag", str(bag), "--predictions", str(tmp_path / "pred"),
                 "--out", str(out_b), "--no-progress", "--no-iv"]) == 0
    s = json.loads((out_b / "report.json").read_text())
    dropped = ok.copy()
    dropped[10] = False
    for side in ("left", "right"):
        _check(s["temporal"][side], _expected(pred[side], gt[side], dropped, ok, stamps))
        assert s["temporal"][side]["detection_rate"] == pytest.approx((T - 1) / T)
    assert s["temporal"]["frame_interval_ms"] == pytest.approx(1000.0 / FPS)

    # route A: the predictor runs on the bag's images
    out_a = tmp_path / "out_a"
    assert main(["eval-bag", str(bag), "--out", str(out_a), "--no-progress", "--no-iv"],
                predictor=SequencePredictor(pred)) == 0
    s = json.loads((out_a / "report.json").read_text())
    _check(s["temporal"]["left"], _expected(pred["left"], gt["left"], ok, ok, stamps))
    _check(s["temporal"]["right"], _expected(pred["right"], gt["right"], right_ok, ok, stamps))
    assert s["hands"]["right"]["detection_rate"] == pytest.approx((T - 1) / T)
    md = (out_a / "report.md").read_text()
    assert "## Temporal" in md and "Miss rule:" in md
    right_row = [line for line in md.splitlines() if line.startswith("| right | 0.929 |")]
    assert right_row and f"{s['temporal']['right']['jitter_wrist_mm_f2']:.2f}" in right_row[0]
    assert "| Alignment | Hand | Detected |" in md


# ------------------------------------------------------------------------------------------
# Synthetic sequences: make-bag --source synthetic --synthetic-motion / --synthetic-contact

SYN_FRAMES = 12
SYN_SIZE = "96x72"


def _synthetic_bag(tmp_path: Path, name: str, *extra: str) -> Path:
    out = tmp_path / name
    assert main(["make-bag", str(out), "--source", "synthetic", "--synthetic-frames",
                 str(SYN_FRAMES), "--synthetic-size", SYN_SIZE, "--synthetic-seed", "4",
                 "--no-progress", *extra]) == 0
    return out


def _gt_tracks(bag: Path) -> dict[str, dict[str, np.ndarray]]:
    """side -> joints (T,21,3), vertices (T,V,3) of the bag's /hands/gt, in stamp order."""
    out: dict[str, dict[str, list]] = {s: {"joints": [], "vertices": []} for s in ("left", "right")}
    with BagReader(bag) as r:
        for m in r.messages(["/hands/gt"]):
            for side in out:
                h = getattr(m.msg, side)
                assert h.valid
                out[side]["joints"].append([[p.x, p.y, p.z] for p in h.joints])
                out[side]["vertices"].append(np.asarray(h.vertices, float).reshape(-1, 3))
    return {s: {k: np.asarray(v, float) for k, v in d.items()} for s, d in out.items()}


def test_synthetic_circle_sequence_has_its_known_jitter(tmp_path: Path) -> None:
    """circle: the pair moves on a circle of radius R, period P frames, nothing else moves,
    so every point's second difference has length 4 R sin^2(pi / P) and the root-relative
    joints do not move; eval-bag scoring the ground truth against itself says so."""
    radius, period = 0.05, 24.0
    bag = _synthetic_bag(tmp_path, "circle", "--synthetic-motion", "circle",
                         "--synthetic-radius", str(radius), "--synthetic-period", str(period))
    known_mm = 4.0 * radius * np.sin(np.pi / period) ** 2 * 1000.0
    tracks = _gt_tracks(bag)
    ok = np.ones(SYN_FRAMES, bool)
    for side in tracks:
        assert hand_jitter_mm(tracks[side]["joints"][:, :1], ok)[0] == pytest.approx(known_mm, rel=1e-6)
    out = tmp_path / "out"
    assert main(["eval-bag", str(bag), "--predictions", str(bag), "--hands-topic", "/hands/gt",
                 "--out", str(out), "--no-progress", "--no-iv"]) == 0
    tm = json.loads((out / "report.json").read_text())["temporal"]
    for side in ("left", "right", "mean"):
        assert tm[side]["jitter_wrist_mm_f2"] == pytest.approx(known_mm, rel=1e-6)
        assert tm[side]["gt_jitter_wrist_mm_f2"] == pytest.approx(known_mm, rel=1e-6)
        assert tm[side]["jitter_joints_mm_f2"] == pytest.approx(0.0, abs=1e-6)
        assert tm[side]["accel_error_wrist_m_s2"] == pytest.approx(0.0, abs=1e-9)
        assert tm[side]["detection_rate"] == 1.0
    # the motion is visible: the pair's midpoint moves by 2 R sin(pi / P) per frame
    step = np.linalg.norm(np.diff(tracks["left"]["joints"][:, 0], axis=0), axis=1)
    assert step == pytest.approx(2 * radius * np.sin(np.pi / period), rel=1e-6)


def test_synthetic_contact_sequence_touches_without_penetration(tmp_path: Path) -> None:
    """contact + sway: every frame the two meshes are mirror images across a plane, 1 mm
    apart at their closest vertices, each entirely on its own side; the motion is smooth."""
    from dir_ros.data.synthetic import CONTACT_GAP_M

    bag = _synthetic_bag(tmp_path, "contact", "--synthetic-motion", "sway", "--synthetic-contact")
    tracks = _gt_tracks(bag)
    vl, vr = tracks["left"]["vertices"], tracks["right"]["vertices"]
    tol = 1e-5  # vertices travel as float32: ~3e-8 m at 0.5 m, far below this
    for i in range(SYN_FRAMES):
        d = vr[i] - vl[i]  # mirror images: matching vertices differ along the plane normal
        n = d / np.linalg.norm(d, axis=1, keepdims=True)
        normal = np.median(n, axis=0)
        normal /= np.linalg.norm(normal)
        mid = (vr[i] + vl[i]) / 2.0
        offset = float(np.median(mid @ normal))
        far = np.linalg.norm(d, axis=1) > 1e-3  # direction of tiny differences is noisy
        assert np.allclose(n[far], normal, atol=1e-3)
        assert np.allclose(mid @ normal, offset, atol=tol)  # midpoints on one plane
        assert (vr[i] @ normal - offset).min() == pytest.approx(CONTACT_GAP_M / 2, abs=tol)
        assert (vl[i] @ normal - offset).max() == pytest.approx(-CONTACT_GAP_M / 2, abs=tol)
        closest = np.min(np.linalg.norm(vr[i][:, None] - vl[i][None], axis=-1))
        assert closest == pytest.approx(CONTACT_GAP_M, abs=tol)
    ok = np.ones(SYN_FRAMES, bool)
    for side in tracks:
        wrist, _ = hand_jitter_mm(tracks[side]["joints"][:, :1], ok)
        joints, _ = hand_jitter_mm(_rel(tracks[side]["joints"]), ok)
        # smooth: the default circle alone is 0.15 mm/frame^2; the sway adds less than that
        assert 0.05 < wrist < 1.0 and 0.0 < joints < 1.0
        # and it moves: consecutive frames differ
        assert np.linalg.norm(np.diff(tracks[side]["joints"][:, 0], axis=0), axis=1).min() > 1e-4


def test_synthetic_sequence_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dir_ros.data import bag_source, synthetic

    assert bag_source.MOTIONS == synthetic.MOTIONS
    assert bag_source.DEFAULT_RADIUS_M == synthetic.SEQUENCE_RADIUS_M
    assert bag_source.DEFAULT_PERIOD_FRAMES == synthetic.SEQUENCE_PERIOD_FRAMES
    assert bag_source.FULL_TURN_DEG == synthetic.FULL_TURN_DEG
    assert bag_source.CONTACT_GAP_MM == pytest.approx(synthetic.CONTACT_GAP_M * 1000.0)
    assert main(["make-bag", str(tmp_path / "x"), "--source", "synthetic", "--synthetic-motion",
                 "circle", "--synthetic-period", "0", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--synthetic-period" in err
    assert not (tmp_path / "x").exists()
