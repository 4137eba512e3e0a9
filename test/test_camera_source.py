"""dir_ros.image.camera_source: webcam / video / photo sources and camera_info calibrations."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from dir_ros.image.camera_source import (DEFAULT_RATE_HZ, CameraSource, CameraSourceError, Pacer,
                                   assumed_calibration, load_calibration)
from dir_ros.common.geometry import pinhole_K

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "person_table.jpg"
CALIBRATION = """\
image_width: 640
image_height: 480
camera_name: test_cam
camera_matrix: {rows: 3, cols: 3, data: [500.0, 0.0, 319.5, 0.0, 505.0, 239.5, 0.0, 0.0, 1.0]}
distortion_model: plumb_bob
distortion_coefficients: {rows: 1, cols: 5, data: [0.1, -0.2, 0.0, 0.0, 0.0]}
rectification_matrix: {rows: 3, cols: 3, data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}
projection_matrix: {rows: 3, cols: 4, data: [500.0, 0, 319.5, 0, 0, 505.0, 239.5, 0, 0, 0, 1, 0]}
"""


def write_video(path: Path, n: int, fps: float = 12.0, size: tuple[int, int] = (64, 48)) -> None:
    """A small MJPG video whose frame i is filled with grey level 10 * i."""
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert w.isOpened()
    for i in range(n):
        w.write(np.full((size[1], size[0], 3), 10 * i, np.uint8))
    w.release()


def test_calibration_file(tmp_path: Path) -> None:
    """A camera_info YAML gives its K, D, R, P; scaling to another frame size scales K."""
    path = tmp_path / "cam.yaml"
    path.write_text(CALIBRATION)
    cal = load_calibration(path)
    assert (cal.width, cal.height) == (640, 480)
    np.testing.assert_allclose(cal.K, [[500, 0, 319.5], [0, 505, 239.5], [0, 0, 1]])
    assert cal.D == [0.1, -0.2, 0.0, 0.0, 0.0] and cal.distortion_model == "plumb_bob"
    assert cal.projection().shape == (3, 4)
    half = cal.scaled_to(320, 240)
    np.testing.assert_allclose(half.K[0], [250, 0, 159.75])
    np.testing.assert_allclose(half.K[1], [0, 252.5, 119.75])


@pytest.mark.parametrize("text, words", [
    ("image_width: 640\n", "image_width / image_height"),
    ("[1, 2]", "not a camera_info YAML mapping"),
    (CALIBRATION.replace("data: [500.0, 0.0, 319.5, 0.0, 505.0, 239.5, 0.0, 0.0, 1.0]",
                         "data: [500.0, 0.0]"), "'camera_matrix' must hold 9"),
    (CALIBRATION.replace("500.0, 0.0, 319.5", "-5.0, 0.0, 319.5"), "focal lengths"),
    ("image_width: 640\nimage_height: 480\n", "'camera_matrix' missing"),
    (": : :", "cannot read"),
])
def test_bad_calibration(tmp_path: Path, text: str, words: str) -> None:
    """A bad calibration is one error naming the file and what is wrong."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CameraSourceError, match="bad.yaml") as err:
        load_calibration(path)
    assert words in str(err.value)
    with pytest.raises(CameraSourceError, match="cannot read"):
        load_calibration(tmp_path / "missing.yaml")


def test_assumed_calibration() -> None:
    """Without a calibration: the pinhole of the field of view (geometry.pinhole_K)."""
    np.testing.assert_allclose(assumed_calibration(640, 480, 70.0).K, pinhole_K(640, 480, 70.0))


def test_photo_source_repeats() -> None:
    """A photo is a still camera: the same frame again and again at the default rate."""
    with CameraSource(str(SAMPLE)) as cam:
        assert cam.kind == "image" and (cam.width, cam.height) == (384, 512)
        frames = [cam.read() for _ in range(3)]
        assert all(f is not None and f.shape == (512, 384, 3) for f in frames)
        assert np.array_equal(frames[0], frames[2]) and cam.frames_read == 3
        assert cam.rate_hz == DEFAULT_RATE_HZ


def test_video_source_ends_or_loops(tmp_path: Path) -> None:
    """A video gives its frames in order at its own rate, then None; with loop it restarts."""
    path = tmp_path / "clip.avi"
    write_video(path, 4)
    with CameraSource(str(path)) as cam:
        assert cam.kind == "video" and cam.rate_hz == pytest.approx(12.0)
        levels = []
        while (f := cam.read()) is not None:
            levels.append(int(round(f.mean())))
        assert levels == pytest.approx([0, 10, 20, 30], abs=3)
    with CameraSource(str(path), loop=True) as cam:
        levels = [int(round(cam.read().mean())) for _ in range(6)]
        assert levels == pytest.approx([0, 10, 20, 30, 0, 10], abs=3)


def test_missing_or_unreadable_sources(tmp_path: Path) -> None:
    """Every unusable source is one CameraSourceError naming it."""
    bad_image = tmp_path / "broken.jpg"
    bad_image.write_bytes(b"not a jpeg")
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"\x00" * 100)
    cases = {str(tmp_path / "none.mp4"): "no such file", str(bad_image): "not a readable image",
             str(bad_video): "broken.mp4", "": "empty", "97": "webcam 97"}
    for source, words in cases.items():
        with pytest.raises(CameraSourceError) as err:
            CameraSource(source)
        assert words in str(err.value)
        assert "\n" not in str(err.value)


def test_pacer_keeps_the_rate() -> None:
    """Five waits at 50 Hz take about four periods (the first frame is due at once)."""
    pacer = Pacer(50.0)
    t0 = time.monotonic()
    for _ in range(5):
        pacer.wait()
    assert 0.07 <= time.monotonic() - t0 < 0.5
    with pytest.raises(ValueError):
        Pacer(0.0)
