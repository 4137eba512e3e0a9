"""The `synthetic` source of `dir-ros make-bag` (registered in dir_ros/data/sources.py).

Kept free of heavy imports: building the CLI parser only needs the options; the frames
(dir_ros/data/synthetic.py, which needs torch) are made when the source is opened.
"""
from __future__ import annotations

import argparse
from typing import Any

DEFAULT_BAG_SIZE = (640, 480)      # make-bag frame size (width, height) px, a VGA camera
DEFAULT_BAG_FRAMES = 100
MIN_SIDE_PX = 16                   # smaller frames cannot hold two hands
# Sequence options (their meaning and the values' sources: dir_ros/data/synthetic.py,
# SequenceConfig; repeated here so that building the parser does not import torch).
MOTIONS = ("random", "circle", "sway")
DEFAULT_RADIUS_M = 0.03            # = synthetic.SEQUENCE_RADIUS_M
DEFAULT_PERIOD_FRAMES = 90.0       # = synthetic.SEQUENCE_PERIOD_FRAMES
FULL_TURN_DEG = 180.0              # = synthetic.FULL_TURN_DEG: uniform orientations
CONTACT_GAP_MM = 1.0               # = synthetic.CONTACT_GAP_M in mm (help text only)


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
    parser.add_argument("--synthetic-motion", choices=MOTIONS, default="random",
                        help="[synthetic] random: independent frames (default); circle: one "
                             "scene whose two hands move together on a circle parallel to the "
                             "image (known, constant second difference); sway: circle + the "
                             "pair turning about the vertical axis and the fingers moving "
                             "(smooth video with ground truth for jitter / acceleration error)")
    parser.add_argument("--synthetic-contact", action="store_true",
                        help="[synthetic] the two hands palm to palm, touching (mirror images, "
                             f"{CONTACT_GAP_MM:g} mm apart at their closest vertices, never "
                             "inside each other); without --synthetic-motion: a still pair")
    parser.add_argument("--synthetic-radius", type=float, default=DEFAULT_RADIUS_M, metavar="M",
                        help=f"[synthetic] circle radius in metres (default {DEFAULT_RADIUS_M:g})")
    parser.add_argument("--synthetic-period", type=float, default=DEFAULT_PERIOD_FRAMES,
                        metavar="FRAMES",
                        help=f"[synthetic] frames per turn of the circle and the sway "
                             f"(default {DEFAULT_PERIOD_FRAMES:g})")
    parser.add_argument("--synthetic-rotation-deg", type=float, default=FULL_TURN_DEG,
                        metavar="DEG",
                        help="[synthetic] hand orientations: the upright view (fingers up, palm "
                             "to the camera) turned by up to DEG about a random axis "
                             f"(default {FULL_TURN_DEG:g}: any orientation); a contact pair has "
                             "its own orientation")


def open_source(args: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
    """The frames of the synthetic source (rendered lazily by dir_ros.data.synthetic)."""
    from dir_ros.data.synthetic import open_source as _open

    return _open(args)

