"""Frames from a webcam, a video file or a still photo, with their intrinsics (no ROS).

What the package's camera publisher (dir_ros/ros/camera.py) and `dir-ros infer --camera`
read from: a source string is a webcam index ("0"), a video file or an image file (the photo
repeated: a still camera). Intrinsics come from a calibration YAML in the ROS camera_info
format (what camera_calibration writes and camera_info_manager reads) or, without one, from
an assumed horizontal field of view (geometry.pinhole_K).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from dir_ros.common.geometry import DEFAULT_HFOV_DEG, pinhole_K

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# Rate used when a video file does not say its own (CAP_PROP_FPS 0 or absurd) and for a
# still photo when none is asked for: a common webcam rate.
DEFAULT_RATE_HZ = 30.0
MAX_RATE_HZ = 1000.0  # a container claiming more than this has no usable rate
# How many reads of a freshly opened webcam may fail before it counts as missing (drivers
# often return nothing for the first frame or two).
WEBCAM_WARMUP_READS = 10
OPENCV_LOG_SILENT = 0  # cv::utils::logging::LOG_LEVEL_SILENT (cv2.setLogLevel)


class CameraSourceError(ValueError):
    """A source that cannot be opened or read (one-line message naming it); a ValueError, so
    the CLI reports it as one line."""


@dataclass
class CameraCalibration:
    """Intrinsics in the ROS camera_info layout (K row-major 3x3, D, R, P 3x4)."""

    width: int
    height: int
    K: np.ndarray  # (3, 3) pixels, pixel centres at integers (OpenCV / CameraInfo)
    D: list[float] = field(default_factory=lambda: [0.0] * 5)
    distortion_model: str = "plumb_bob"
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    P: Optional[np.ndarray] = None  # (3, 4); None = [K | 0]

    def projection(self) -> np.ndarray:
        """(3, 4) projection matrix: P when given, else [K | 0]."""
        if self.P is not None:
            return self.P
        P = np.zeros((3, 4))
        P[:, :3] = self.K
        return P

    def scaled_to(self, width: int, height: int) -> "CameraCalibration":
        """The same camera at another frame size (K and P scaled per axis)."""
        if (width, height) == (self.width, self.height):
            return self
        sx, sy = width / self.width, height / self.height
        S = np.diag([sx, sy, 1.0])
        return CameraCalibration(width, height, S @ self.K, list(self.D), self.distortion_model,
                                 self.R.copy(), None if self.P is None else S @ self.P)


def assumed_calibration(width: int, height: int,
                        fov_deg: float = DEFAULT_HFOV_DEG) -> CameraCalibration:
    """Pinhole intrinsics from a horizontal field of view, no distortion (uncalibrated)."""
    return CameraCalibration(width, height, pinhole_K(width, height, fov_deg))


def _matrix(doc: dict, key: str, rows: int, cols: int, path: Path) -> np.ndarray:
    """A {rows, cols, data} matrix of a camera_info YAML, checked."""
    item = doc.get(key)
    if not isinstance(item, dict) or "data" not in item:
        raise CameraSourceError(f"calibration '{path}': '{key}' missing or not a "
                                f"{{rows, cols, data}} matrix")
    data = np.asarray(item["data"], dtype=np.float64)
    if data.size != rows * cols or not np.all(np.isfinite(data)):
        raise CameraSourceError(f"calibration '{path}': '{key}' must hold {rows * cols} "
                                f"finite numbers, got {data.size}")
    return data.reshape(rows, cols)


def load_calibration(path: Union[str, Path]) -> CameraCalibration:
    """A camera_info YAML (image_width, image_height, camera_matrix, distortion_model,
    distortion_coefficients, rectification_matrix, projection_matrix)."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise CameraSourceError(f"calibration '{path}': cannot read ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(doc, dict):
        raise CameraSourceError(f"calibration '{path}': not a camera_info YAML mapping")
    try:
        width, height = int(doc["image_width"]), int(doc["image_height"])
    except (KeyError, TypeError, ValueError):
        raise CameraSourceError(f"calibration '{path}': image_width / image_height missing "
                                f"or not integers") from None
    if width <= 0 or height <= 0:
        raise CameraSourceError(f"calibration '{path}': image size {width}x{height} is empty")
    K = _matrix(doc, "camera_matrix", 3, 3, path)
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CameraSourceError(f"calibration '{path}': focal lengths must be > 0")
    D: list[float] = []
    if "distortion_coefficients" in doc:
        dist = doc["distortion_coefficients"]
        D = [float(v) for v in (dist.get("data", []) if isinstance(dist, dict) else [])]
    R = _matrix(doc, "rectification_matrix", 3, 3, path) if "rectification_matrix" in doc \
        else np.eye(3)
    P = _matrix(doc, "projection_matrix", 3, 4, path) if "projection_matrix" in doc else None
    return CameraCalibration(width, height, K, D, str(doc.get("distortion_model", "plumb_bob")),
                             R, P)


class CameraSource:
    """Opens a webcam index, a video file or an image file; read() gives BGR frames.

    rate_hz: the source's own frame rate (video container, webcam driver; a photo repeats at
    DEFAULT_RATE_HZ); loop: a video starts over at its end (a photo always repeats)."""

    def __init__(self, source: str, loop: bool = False) -> None:
        import cv2

        self.source, self.loop = str(source).strip(), loop
        self.kind: str
        self._photo: Optional[np.ndarray] = None
        self._cap = None
        if not self.source:
            raise CameraSourceError("camera source is empty: give a webcam index (0), a video "
                                    "file or an image file")
        if self.source.isdigit():
            self.kind = "webcam"
            # OpenCV's own C++ warnings for a missing device ("can't open camera by index")
            # would precede our one-line error: silenced for the open call only.
            level = cv2.getLogLevel()
            cv2.setLogLevel(OPENCV_LOG_SILENT)
            try:
                self._cap = cv2.VideoCapture(int(self.source))
            finally:
                cv2.setLogLevel(level)
            if not self._cap.isOpened():
                raise CameraSourceError(f"webcam {self.source}: no such camera (cannot open "
                                        f"/dev/video{self.source})")
        else:
            path = Path(self.source).expanduser()
            if not path.is_file():
                raise CameraSourceError(f"camera source '{self.source}': no such file")
            if path.suffix.lower() in IMAGE_SUFFIXES:
                self.kind = "image"
                self._photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if self._photo is None:
                    raise CameraSourceError(f"image '{path}': not a readable image")
            else:
                self.kind = "video"
                self._cap = cv2.VideoCapture(str(path))
                if not self._cap.isOpened():
                    raise CameraSourceError(f"video '{path}': cannot open (not a video OpenCV "
                                            f"can decode)")
        self._first: Optional[np.ndarray] = None
        first = self._read_raw(WEBCAM_WARMUP_READS if self.kind == "webcam" else 1)
        if first is None:
            what = {"webcam": f"webcam {self.source}", "video": f"video '{self.source}'"}
            raise CameraSourceError(f"{what.get(self.kind, self.source)}: no readable frame")
        self._first = first
        self.height, self.width = first.shape[:2]
        self.frames_read = 0

    @property
    def rate_hz(self) -> float:
        """Frames per second the source delivers (its own, or DEFAULT_RATE_HZ)."""
        import cv2

        fps = self._cap.get(cv2.CAP_PROP_FPS) if self._cap is not None else 0.0
        return float(fps) if 0.0 < fps < MAX_RATE_HZ else DEFAULT_RATE_HZ

    def _read_raw(self, tries: int = 1) -> Optional[np.ndarray]:
        """Next frame of the underlying source (None at the end / after `tries` failures)."""
        if self._photo is not None:
            return self._photo
        for _ in range(tries):
            ok, frame = self._cap.read()
            if ok and frame is not None and frame.size:
                return frame
        return None

    def read(self) -> Optional[np.ndarray]:
        """Next (H, W, 3) uint8 BGR frame; None when a video ends (without loop) or the
        webcam stops delivering."""
        import cv2

        if self._first is not None:
            frame, self._first = self._first, None
        else:
            frame = self._read_raw()
            if frame is None and self.kind == "video" and self.loop:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                frame = self._read_raw()
        if frame is not None:
            self.frames_read += 1
        return frame

    def close(self) -> None:
        """Release the capture device / file."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "CameraSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Pacer:
    """Keeps a loop at rate_hz (sleeps the rest of each period; never bunches up frames
    after a slow one: a late frame starts a new schedule)."""

    def __init__(self, rate_hz: float) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate must be > 0 Hz, got {rate_hz}")
        self.period = 1.0 / rate_hz
        self._next = time.monotonic()

    def wait(self) -> None:
        """Sleep until the next frame is due."""
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
            self._next += self.period
        else:
            self._next = now + self.period
