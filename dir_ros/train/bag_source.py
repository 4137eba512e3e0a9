"""The `synthetic` source of `dir-ros make-bag` (registered in dir_ros/eval/dataset.py).

Kept free of heavy imports: building the CLI parser only needs the options; the frames
(dir_ros/train/synthetic.py, which needs torch) are made when the source is opened.
"""
from __future__ import annotations

import argparse
from typing import Any

DEFAULT_BAG_SIZE = (640, 480)      # make-bag frame size (width, height) px, a VGA camera
DEFAULT_BAG_FRAMES = 100
MIN_SIDE_PX = 16                   # smaller frames cannot hold two hands


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480); argparse error otherwise."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    if w < MIN_SIDE_PX or h < MIN_SIDE_PX:
        raise argparse.ArgumentTypeError(f"size must be at least {MIN_SIDE_PX}x{MIN_SIDE_PX}, "
                                         f"got {text!r}")
    return w, h


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The make-bag options of the synthetic source."""
    parser.add_argument("--synthetic-frames", type=int, default=DEFAULT_BAG_FRAMES,
                        help=f"[synthetic] number of frames (default {DEFAULT_BAG_FRAMES})")
    parser.add_argument("--synthetic-seed", type=int, default=0,
                        help="[synthetic] seed: the same seed gives the same frames (default 0)")
    parser.add_argument("--synthetic-size", type=parse_size, default=DEFAULT_BAG_SIZE,
                        metavar="WxH", help="[synthetic] image size (default 640x480)")
    parser.add_argument("--synthetic-hand-model", default=None, metavar="DIR",
                        help="[synthetic] MANO-format folder with MANO_LEFT.pkl / MANO_RIGHT.pkl "
                             "(default: the open hand model)")


def open_source(args: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
    """The frames of the synthetic source (rendered lazily by dir_ros.train.synthetic)."""
    from .synthetic import open_source as _open

    return _open(args)


def synthetic_source() -> Any:
    """The dir_ros.eval.dataset.Source of `make-bag --source synthetic`."""
    from dir_ros.eval.dataset import Source

    return Source("synthetic", "seeded synthetic two-hand frames rendered from the hand model, "
                  "with full ground truth", add_source_arguments, open_source)
