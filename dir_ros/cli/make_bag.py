"""`dir-ros make-bag`: a dataset source (folder + ground-truth JSON, synthetic, InterHand2.6M)
-> a rosbag2 with images, camera_info and /hands/gt, for eval-bag (docs/evaluation.md).

No ROS installation is needed (bags are written with rosbags).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dir_ros.cli.common import check_writable_folder, existing_parent


def add_parser(sub: Any) -> None:
    """Register `make-bag` on the dir-ros subparsers."""
    from dir_ros.eval.bag import DEFAULT_JPEG_QUALITY, STORAGES
    from dir_ros.data.sources import SOURCES

    mk = sub.add_parser(
        "make-bag", help="write a rosbag2 (images, camera_info, /hands/gt) from a dataset",
        description="Write a rosbag2 with /camera/image_raw (or /camera/image_raw/compressed), "
        "/camera/camera_info and /hands/gt (dir_ros/msg/TwoHandMesh) from a dataset source. "
        "Sources: " + ", ".join(f"{s.name} ({s.help})" for s in SOURCES.values())
        + ". The ground-truth JSON format is described in docs/evaluation.md.",
    )
    mk.add_argument("output", type=Path, help="bag folder to create (must not exist)")
    mk.add_argument("--source", choices=sorted(SOURCES), default="folder", help="frame source (default: folder)")
    for src in SOURCES.values():
        src.add_arguments(mk)
    mk.add_argument("--storage", choices=STORAGES, default="mcap", help="rosbag2 storage (default: mcap)")
    mk.add_argument("--compressed", action="store_true", help="write JPEG CompressedImage on /camera/image_raw/compressed")
    mk.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY, help="JPEG quality 1-100 (default %(default)s)")
    mk.add_argument("--frame-id", default=None, help="header frame_id (default: JSON's frame_id, else camera_color_optical_frame)")
    mk.add_argument("--fps", type=float, default=None, help="stamp spacing of frames without 'stamp' (default: JSON fps or 30)")
    mk.add_argument("--no-progress", action="store_true", help="no progress bar")


def validate(args: argparse.Namespace) -> None:
    """Checks argparse cannot express; raises ValueError with a one-line reason."""
    if not 1 <= args.jpeg_quality <= 100:
        raise ValueError(f"--jpeg-quality must be 1..100, got {args.jpeg_quality}")
    if args.fps is not None and not args.fps > 0:
        raise ValueError(f"--fps must be positive, got {args.fps}")
    if args.output.exists():
        raise ValueError(f"output bag already exists: {args.output}")
    check_writable_folder(existing_parent(args.output), "output bag's parent folder")


def make_bag(args: argparse.Namespace) -> dict[str, int]:
    """Build a bag from the selected source; returns message counts per topic."""
    from dir_ros.eval.bag import DEFAULT_FRAME_ID, write_dataset_bag
    from dir_ros.data.sources import SOURCES

    source = SOURCES[args.source]
    frames, info = source.open(args)
    frame_id = args.frame_id or info.get("frame_id") or DEFAULT_FRAME_ID
    # no hand annotations in the source: no /hands/gt (a topic of invalid hands would be
    # scored as "no hand in any frame")
    return write_dataset_bag(
        args.output, frames, storage=args.storage, frame_id=frame_id, compressed=args.compressed,
        jpeg_quality=args.jpeg_quality, progress=not args.no_progress,
        ground_truth=info.get("has_ground_truth"),
    )


def run(args: argparse.Namespace) -> None:
    """Validate the parsed `make-bag` arguments, write the bag, print one line of counts."""
    validate(args)
    counts = make_bag(args)
    print(f"wrote {args.output} ({', '.join(f'{t}: {n}' for t, n in counts.items())})")
