"""`dir-ros check-weights`: does a DIR checkpoint load into the network, what matched, and
what does it answer on a sample image (one forward pass). Nothing is downloaded."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from dir_ros.cli.infer import IMAGE_SUFFIXES
from dir_ros.common.geometry import DEFAULT_HFOV_DEG as DEFAULT_FOV_DEG, pinhole_K

DEFAULT_CHECK_MODEL_CONFIG = "config/model/dir_release.yaml"


def add_parser(sub: Any) -> None:
    """Register `check-weights` on the dir-ros subparsers."""
    chk = sub.add_parser(
        "check-weights", help="load a DIR checkpoint, print the load report, run one forward pass",
        description="Load CHECKPOINT (the authors' release .pth or your own) into the network of "
        "--model-config with the hand model of --hand-model, print what matched, then run one "
        "forward pass on --image (default: the first sample photo, else a synthetic image). "
        "Nothing is downloaded.")
    chk.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    chk.add_argument("--hand-model", dest="hand_model", default="", help="folder with MANO_LEFT.pkl / MANO_RIGHT.pkl (default: the open hand model)")
    chk.add_argument("--model-config", default=DEFAULT_CHECK_MODEL_CONFIG, help="network config (default: %(default)s)")
    chk.add_argument("--image", type=Path, default=None, help="image for the forward pass")
    chk.add_argument("--full-frame", action="store_true", help="feed the whole frame instead of the detector crop")
    chk.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


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
    from dir_ros.backends.dir import HandsPredictor
    from dir_ros.config import hand_model_dir, make_detector, resolve_device
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


def run(args: argparse.Namespace) -> None:
    """Run `check-weights` on parsed arguments (it prints its own report)."""
    check_weights(args)
