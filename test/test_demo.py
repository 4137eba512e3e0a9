"""End-to-end test of the demo (`python -m dir_ros.ros.demo`, what `make demo` runs).

The demo starts hands_node as a subprocess and talks to it over real DDS; here with the
light network config on two small synthetic images. Run through tools/ros_env.sh (the
conftest keeps discovery on localhost with a per-run ROS_DOMAIN_ID, inherited by the demo
and its node). Skipped when the ROS messages are not built / importable.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    import rclpy  # noqa: F401
    from tf2_msgs.msg import TFMessage  # noqa: F401

    from dir_ros.msg import TwoHandMesh  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"ROS messages not importable (run `make setup`, then the tests through "
                f"tools/ros_env.sh): {e}", allow_module_level=True)

import cv2

ROOT = Path(__file__).resolve().parent.parent
LIGHT_CONFIG = ROOT / "config" / "model" / "dir_light.yaml"
DEMO_TIMEOUT_S = 150.0  # whole demo run: node start (light model) + 2 frames, 2 busy cores
ERROR_TIMEOUT_S = 30.0  # a bad-input run exits before starting anything
# Two synthetic inputs of different sizes and formats: (file name, width, height).
IMAGES = (("scene_a.png", 192, 144), ("scene_b.jpg", 160, 200))
HAND_FIELDS = ("valid", "confidence", "metric", "wrist_position", "wrist_quat_xyzw")


def _synthetic(width: int, height: int, seed: int) -> np.ndarray:
    """BGR image: a gradient background with two skin-toned blobs and some noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([60 + 120 * xx / width, 80 + 100 * yy / height,
                    np.full(xx.shape, 120.0)], axis=-1)
    img += rng.normal(0.0, 8.0, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    skin = (140, 170, 225)  # BGR
    for cx in (0.33, 0.67):
        cv2.ellipse(img, (int(cx * width), height // 2), (width // 8, height // 4), 20.0,
                    0.0, 360.0, skin, -1)
    return img


def _run_demo(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dir_ros.ros.demo", *args], cwd=str(ROOT),
                          env=dict(os.environ), capture_output=True, text=True,
                          timeout=timeout)


def test_demo_end_to_end(tmp_path: Path) -> None:
    """Two images through the node: overlays at input size, a full summary, clean exit."""
    images = tmp_path / "images"
    images.mkdir()
    for i, (name, w, h) in enumerate(IMAGES):
        assert cv2.imwrite(str(images / name), _synthetic(w, h, i))
    out = tmp_path / "out"
    res = _run_demo("--images", str(images), "--out", str(out), "--backend", "dir",
                    "--model-config", str(LIGHT_CONFIG), "--device", "cpu", "--startup-timeout", "90",
                    "--timeout", "60", timeout=DEMO_TIMEOUT_S)
    log = f"stdout:\n{res.stdout[-3000:]}\nstderr:\n{res.stderr[-3000:]}"
    assert res.returncode == 0, log

    summary = json.loads((out / "summary.json").read_text())
    rows = {r["image"]: r for r in summary["images"]}
    assert set(rows) == {name for name, _, _ in IMAGES}, log
    stamps = set()
    for name, w, h in IMAGES:
        overlay = cv2.imread(str(out / f"{Path(name).stem}_overlay.png"))
        assert overlay is not None, f"overlay of {name} missing / unreadable"
        assert overlay.shape == (h, w, 3)
        r = rows[name]
        assert (r["width"], r["height"]) == (w, h)
        stamps.add((r["stamp"]["sec"], r["stamp"]["nanosec"]))
        for key in ("latency_ms", "markers_latency_ms", "tf_latency_ms"):
            assert isinstance(r[key], float) and math.isfinite(r[key]) and r[key] > 0, (key, r)
        assert r["markers_latency_ms"] >= r["latency_ms"] > 0
        assert r["frame_id"] and r["sends"] >= 1
        for side in ("left", "right"):
            hand = r["hands"][side]
            assert set(HAND_FIELDS) <= set(hand)
            assert hand["valid"] is True  # the demo runs the node with min_confidence 0
            assert 0.0 <= hand["confidence"] <= 1.0
            assert len(hand["wrist_position"]) == 3 and len(hand["wrist_quat_xyzw"]) == 4
            assert all(math.isfinite(v) for v in hand["wrist_position"])
            assert abs(np.linalg.norm(hand["wrist_quat_xyzw"]) - 1.0) < 1e-3
            assert f"{summary['namespace'].strip('/')}/{side}_wrist" in r["tf_frames"]
    assert len(stamps) == len(IMAGES)  # every frame had its own stamp
    # stdout: the latency table, one line per image; the random-weights warning when due
    for name, _, _ in IMAGES:
        assert any(line.startswith(name) for line in res.stdout.splitlines()), log
    if summary["random_weights"]:
        assert "RANDOMLY INITIALISED" in res.stdout and "NOT meaningful" in res.stdout
    # the node was stopped cleanly (SIGINT -> status 0) and is gone
    assert summary["node_exit_status"] == 0, log
    pid = int(re.search(r"\(pid (\d+),", res.stdout).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_demo_bad_images_folder(tmp_path: Path, case: str) -> None:
    """A missing or empty images folder: non-zero exit with a one-line error message."""
    folder = tmp_path / "no_such_folder"
    if case == "empty":
        folder.mkdir()
        (folder / "notes.txt").write_text("not an image")
    res = _run_demo("--images", str(folder), "--out", str(tmp_path / "out"),
                    timeout=ERROR_TIMEOUT_S)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert str(folder) in lines[0] and lines[0].startswith("demo: error:")
    assert not (tmp_path / "out" / "summary.json").exists()


SAMPLES = ROOT / "samples"
WRIST_AGREEMENT_M = 1e-3  # issue 18: same photo, demo (any position) vs dir-ros infer


def test_demo_defaults_to_the_committed_samples() -> None:
    """Without --images the demo reads the committed sample photos (no ../shared needed)."""
    from dir_ros.ros.demo import list_images, parse_args

    args = parse_args([])
    assert [Path(p).resolve() for p in args.images] == [SAMPLES.resolve()]
    assert len(list_images(args.images[0])) == 4


def test_demo_photos_are_independent(tmp_path: Path) -> None:
    """Each sample photo twice, at different positions after different photos: the node's
    reset between photos makes every answer equal dir-ros infer's for that photo."""
    import shutil

    photos = sorted(SAMPLES.glob("*.jpg"))
    folder = tmp_path / "photos"
    folder.mkdir()
    order = photos + photos[::-1]  # forward, then backward: every photo after another one
    for i, p in enumerate(order):
        shutil.copy(p, folder / f"{i:02d}_{p.name}")
    out = tmp_path / "out"
    res = _run_demo("--images", str(folder), "--out", str(out), timeout=DEMO_TIMEOUT_S)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    rows = {r["image"]: r for r in json.loads((out / "summary.json").read_text())["images"]}
    infer_out = tmp_path / "infer"
    res = subprocess.run([sys.executable, "-m", "dir_ros.cli", "infer", *map(str, photos),
                          "--out", str(infer_out), "--no-progress"], cwd=str(ROOT),
                         capture_output=True, text=True, timeout=DEMO_TIMEOUT_S)
    assert res.returncode == 0, res.stderr[-3000:]
    found = 0
    for i, p in enumerate(order):
        demo = rows[f"{i:02d}_{p.name}"]["hands"]
        ref = json.loads((infer_out / f"{p.stem}.json").read_text())["hands"]
        for side in ("left", "right"):
            assert demo[side]["valid"] == ref[side]["valid"], (p.name, side)
            if ref[side]["valid"]:
                found += 1
                wrist = np.array(ref[side]["wrist_pose"]["position"])
                assert np.linalg.norm(np.array(demo[side]["wrist_position"]) - wrist) \
                    < WRIST_AGREEMENT_M, (i, p.name, side)
    assert found >= len(order)  # at least one hand per photo (both on every sample today)
