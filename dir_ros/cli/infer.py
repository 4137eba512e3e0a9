"""`dir-ros infer`: hands on your own pictures and videos.

Images, folders (sorted, not recursive), video files and a webcam (--camera INDEX)
-> per frame an overlay PNG (projected meshes, skeletons, the crop box in yellow, handedness
and wrist position) and a JSON file with both hands' TwoHandMesh field values; a progress bar
per input. Independent images reset the predictor's tracking; the frames of one video or of
the webcam keep it. No ROS needed.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from dir_ros.common.geometry import DEFAULT_HFOV_DEG as DEFAULT_FOV_DEG, pinhole_K

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
DEFAULT_INFER_CONFIG = "config/hands.yaml"  # the node's params file: infer runs what it runs
DEFAULT_INFER_OUT = "dir_ros_infer"
LETTERBOX_GREY = 128  # border of letterbox() frames (mid grey: no edges for the detector)
# Background grey level of --blank overlays (hands drawn without the picture: for sharing
# results on pictures that may not be redistributed).
BLANK_GREY = 60


def letterbox(bgr: np.ndarray, width: int, height: int, fill: int = LETTERBOX_GREY) -> np.ndarray:
    """The image (H,W,3 uint8) scaled into a width x height frame, aspect kept, the rest
    filled with grey: a picture shown to the pipeline as a camera of that size would."""
    import cv2

    scale = min(width / bgr.shape[1], height / bgr.shape[0])
    small = cv2.resize(bgr, (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale)),
                       interpolation=cv2.INTER_AREA)
    frame = np.full((height, width, 3), fill, np.uint8)
    y0, x0 = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    frame[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    return frame


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Image and video files named by paths (folders expanded, sorted); ValueError naming the
    first path that is missing or of an unknown type, or when nothing is left."""
    files: list[Path] = []
    known = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in known)
        elif not path.exists():
            raise ValueError(f"no such file or folder: {path}")
        elif path.suffix.lower() not in known:
            raise ValueError(f"{path}: not an image ({', '.join(IMAGE_SUFFIXES)}) or video "
                             f"({', '.join(VIDEO_SUFFIXES)})")
        else:
            files.append(path)
    if not files:
        raise ValueError(f"no images or videos in {', '.join(map(str, paths))}")
    return files


def read_frames(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, RGB uint8 frame) of an image file, or of every frame of a video file;
    ValueError when the file cannot be decoded."""
    import cv2

    if path.suffix.lower() in IMAGE_SUFFIXES:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: cannot decode the image")
        yield path.stem, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: cannot open the video")
    try:
        index = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            yield f"{path.stem}_{index:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
        if index == 0:
            raise ValueError(f"{path}: the video has no readable frame")
    finally:
        cap.release()


def webcam_frames(index: int, max_frames: int) -> Iterator[tuple[str, np.ndarray]]:
    """(name, RGB uint8 frame) from webcam `index` until max_frames (0 = until Ctrl-C) or
    the camera stops; CameraSourceError (a ValueError) when there is no such camera."""
    import cv2

    from dir_ros.image.camera_source import CameraSource

    with CameraSource(str(index)) as cam:
        while max_frames <= 0 or cam.frames_read < max_frames:
            bgr = cam.read()
            if bgr is None:
                return
            yield f"webcam{index}_{cam.frames_read - 1:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def result_json(result: Any, K: Optional[np.ndarray], source: str) -> dict[str, Any]:
    """A FrameResult as JSON-ready data: both hands' TwoHandMesh field values (lists), the
    crop box, the intrinsics used and the per-step timings."""
    from dir_ros.output.hands_msg import result_to_fields

    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, np.ndarray):
            return x.tolist()
        return x

    out = plain(result_to_fields(result))
    for side in ("left", "right"):
        hand = result.hand(side)
        out[side]["source"] = hand.source
        if not math.isnan(hand.fit_residual_mm):
            out[side]["fit_residual_mm"] = hand.fit_residual_mm
    return {"source": source, "image_size": list(result.image_size),
            "crop_box_xywh": list(result.box.as_xywh()),
            "K": None if K is None else K.tolist(),
            "timings_ms": result.timings, "hands": out}


def infer_config(args: argparse.Namespace) -> dict[str, Any]:
    """The predictor config of an infer run: --config with --backend / --weights applied."""
    from dir_ros.config import load_config

    cfg = load_config(args.config)
    for key in ("backend", "weights", "hand_model", "model_config", "device"):
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value
    cfg["mirrored_input"] = bool(args.mirrored) or bool(cfg["mirrored_input"])
    return cfg


def infer(args: argparse.Namespace, predictor: Any = None) -> dict[str, int]:
    """Run the predictor over args.paths, write overlays and JSON into args.out; returns
    counts {'frames', 'hands_found', 'skipped'}. predictor: injected (tests) or built."""
    import cv2
    from tqdm import tqdm

    from dir_ros.output.overlay import draw_overlay
    from dir_ros.predictor import build_predictor
    from dir_ros.config import choose_backend, is_unset

    camera = getattr(args, "camera", None)
    files: list[Any] = expand_inputs(list(args.paths)) if args.paths or camera is None else []
    if camera is not None:
        from dir_ros.image.camera_source import CameraSource

        CameraSource(str(camera)).close()  # no such camera: one-line error before any work
        files.append(camera)
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = infer_config(args)
    random_weights = is_unset(cfg["weights"]) and \
        choose_backend(str(cfg["backend"]), cfg["weights"]) == "dir"
    if predictor is None:
        predictor = build_predictor(cfg)
    counts = {"frames": 0, "hands_found": 0, "skipped": 0}
    for path in files:
        predictor.reset()  # a new picture or video: nothing to track from before
        is_camera = isinstance(path, int)
        source = webcam_frames(path, getattr(args, "max_frames", 0)) if is_camera \
            else read_frames(path)
        frames = tqdm(source, desc=f"webcam {path}" if is_camera else path.name, unit="frame",
                      leave=False, disable=args.no_progress)
        try:
            for name, rgb in frames:
                h, w = rgb.shape[:2]
                K = None if args.no_intrinsics else pinhole_K(w, h, args.fov_deg)
                t0 = time.perf_counter()
                result = predictor.predict(rgb, K)
                result.timings["total_ms"] = 1e3 * (time.perf_counter() - t0)
                hands = {h_.side: h_ for h_ in result.hands()}
                canvas = np.full_like(rgb, BLANK_GREY) if args.blank else rgb
                overlay = draw_overlay(canvas, hands, K, bgr=False, box=result.box,
                                       random_weights=random_weights)
                cv2.imwrite(str(args.out / f"{name}_overlay.png"),
                            cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
                (args.out / f"{name}.json").write_text(
                    json.dumps(result_json(result, K, str(path)), indent=1))
                counts["frames"] += 1
                counts["hands_found"] += sum(h_.valid for h_ in result.hands())
        except ValueError as e:  # an unreadable file is skipped and counted, not fatal
            counts["skipped"] += 1
            print(f"dir-ros infer: skipped {path}: {e}")
        except KeyboardInterrupt:  # Ctrl-C ends a webcam run; what was written stays
            if not is_camera:
                raise
            print(f"dir-ros infer: webcam {path} stopped after {counts['frames']} frame(s)")
    if counts["frames"] == 0:
        raise ValueError(f"no frame could be read from {', '.join(map(str, files))}")
    return counts


def add_parser(sub: Any) -> None:
    """Register `infer` on the dir-ros subparsers."""
    inf = sub.add_parser(
        "infer", help="reconstruct hands on images, folders and videos: overlays and JSON",
        description="Run the node's predictor (--config, default the node's params file: the "
        "landmark backend until a DIR checkpoint is set) on image files, folders of images and "
        "video files. Writes <name>_overlay.png and <name>.json per frame into --out. Pictures "
        "have no calibration: K is a pinhole with --fov-deg and the principal point at the centre.")
    inf.add_argument("paths", type=Path, nargs="*", metavar="PATH", help="image, folder or video")
    inf.add_argument("--camera", type=int, default=None, metavar="INDEX",
                     help="also read webcam INDEX (0 = /dev/video0) until --max-frames or Ctrl-C")
    inf.add_argument("--max-frames", dest="max_frames", type=int, default=0,
                     help="stop the webcam after this many frames (default 0: until Ctrl-C)")
    inf.add_argument("--out", type=Path, default=Path(DEFAULT_INFER_OUT), help="output folder (default: %(default)s)")
    inf.add_argument("--config", default=DEFAULT_INFER_CONFIG, help="predictor / node params YAML (default: %(default)s)")
    inf.add_argument("--backend", choices=("auto", "dir", "landmarks"), default=None, help="override the config's backend")
    inf.add_argument("--weights", default=None, help="override the config's DIR checkpoint")
    inf.add_argument("--hand-model", dest="hand_model", default=None, help="folder with MANO_LEFT.pkl / MANO_RIGHT.pkl")
    inf.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="override the config's device")
    inf.add_argument("--fov-deg", type=float, default=DEFAULT_FOV_DEG, help="assumed horizontal field of view (default %(default)s)")
    inf.add_argument("--no-intrinsics", action="store_true", help="no K: wrist-relative hands (metric false)")
    inf.add_argument("--mirrored", action="store_true", help="the pictures are mirrored (selfie view)")
    inf.add_argument("--blank", action="store_true",
                     help="draw the hands on a plain background instead of the picture (to share "
                          "results on pictures you may not redistribute)")
    inf.add_argument("--no-progress", action="store_true", help="no progress bar")


def validate(args: argparse.Namespace) -> None:
    """Checks argparse cannot express; raises ValueError with a one-line reason."""
    if not args.paths and args.camera is None:
        raise ValueError("nothing to read: give image / folder / video PATHs or --camera INDEX")
    if args.camera is not None and args.camera < 0:
        raise ValueError(f"--camera must be a webcam index >= 0, got {args.camera}")
    if args.max_frames < 0:
        raise ValueError(f"--max-frames must be >= 0, got {args.max_frames}")


def run(args: argparse.Namespace) -> None:
    """Validate the parsed `infer` arguments, run it, print one line of counts."""
    validate(args)
    counts = infer(args)
    print(f"wrote {counts['frames']} frame(s) to {args.out}: {counts['hands_found']} "
          f"hand(s) found, {counts['skipped']} file(s) skipped")
