"""`dir-ros infer` (hands on your own pictures and videos) and `dir-ros check-weights` (does a
DIR checkpoint load, and what does it answer on a sample image).

infer: images, folders (sorted, not recursive), video files and a webcam (--camera INDEX)
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
DEFAULT_CHECK_MODEL_CONFIG = "config/model/dir_release.yaml"
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
    from dir_ros.predictor import load_config

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
    from dir_ros.predictor import build_predictor, choose_backend, is_unset

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


def sample_image() -> Optional[Path]:
    """The first of the package's sample photos (samples/, source tree or share/dir_ros),
    None when there are none."""
    from dir_ros.common.resources import find_resource

    folder = find_resource("samples", Path.is_dir)
    found = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) \
        if folder is not None else []
    return found[0] if found else None


def check_weights(args: argparse.Namespace) -> list[str]:
    """Load CHECKPOINT into the network of --model-config (and --hand-model), print the load
    report, then run one forward pass on --image (default: a sample photo, else a synthetic
    image) through the DIR predictor; returns the printed lines."""
    import cv2
    import torch

    from dir_ros.model import build_dir, load_model_config, load_release_checkpoint
    from dir_ros.predictor import HandsPredictor, hand_model_dir, make_detector, resolve_device
    from dir_ros.frontend.crop import make_cropper
    from dir_ros.common.resources import resolve_resource

    if not args.checkpoint.is_file():
        raise ValueError(f"checkpoint {args.checkpoint} not found")
    model_cfg = resolve_resource(args.model_config)
    if not model_cfg.is_file():
        raise ValueError(f"model config {args.model_config} not found")
    model = build_dir(load_model_config(model_cfg), hand_model_dir=hand_model_dir(args.hand_model))
    report = load_release_checkpoint(model, args.checkpoint)
    lines = [f"checkpoint {args.checkpoint}: {report}"]
    image = args.image or sample_image()
    if image is not None:
        bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{image}: cannot decode the image")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    else:  # a smooth synthetic picture: shows that the forward pass runs, nothing more
        yy, xx = np.mgrid[0:480, 0:640]
        rgb = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
    crop = "detect" if image is not None and not args.full_frame else "full"
    predictor = HandsPredictor(
        model, device=resolve_device(args.device),
        cropper=make_cropper(crop, None, make_detector({"mirrored_input": False})
                             if crop == "detect" else None))
    K = pinhole_K(rgb.shape[1], rgb.shape[0], DEFAULT_FOV_DEG)
    with torch.inference_mode():
        t0 = time.perf_counter()
        result = predictor.predict(rgb, K)
        dt = time.perf_counter() - t0
    from dir_ros.output.overlay import hand_text

    lines.append(f"forward pass on {image or 'a synthetic image'} ({rgb.shape[1]}x{rgb.shape[0]}, "
                 f"crop {crop}): {1e3 * dt:.0f} ms")
    lines += [f"  {hand_text(h.side, h)}" for h in result.hands()]
    for line in lines:
        print(line)
    return lines
