"""The frame sources of ``dir-ros make-bag``, by name: :data:`SOURCES` maps a name to a
Source (its command-line options and a factory ``(args) -> (frames, info)``);
:func:`register_source` adds one. ``folder`` (dir_ros/data/dataset.py) and ``synthetic``
(dir_ros/data/bag_source.py, frames from dir_ros/data/synthetic.py) are shipped.

Kept free of heavy imports: building the CLI parser only needs the options; the synthetic
frames (which need torch) are made when the source is opened.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dir_ros.data.bag_source import add_source_arguments, open_source as open_synthetic
from dir_ros.data.dataset import DatasetError, DatasetFrame, load_folder_dataset


@dataclass
class Source:
    """A named frame source: CLI arguments it adds and a factory from parsed arguments."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    open: Callable[[argparse.Namespace], tuple[list[DatasetFrame], dict[str, Any]]]


SOURCES: dict[str, Source] = {}


def register_source(source: Source) -> None:
    """Make a source available to ``dir-ros make-bag --source NAME``."""
    SOURCES[source.name] = source


def _folder_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", "--gt", dest="annotations", type=Path,
                        help="[folder] ground-truth JSON (format in docs/evaluation.md)")
    parser.add_argument("--images", type=Path, default=None,
                        help="[folder] images folder (default: the JSON's folder)")


def _folder_open(args: argparse.Namespace) -> tuple[list[DatasetFrame], dict[str, Any]]:
    if args.annotations is None:
        raise DatasetError("--source folder needs --annotations FILE.json")
    return load_folder_dataset(args.annotations, args.images, args.fps)


register_source(Source("folder", "folder of images + JSON ground truth", _folder_args, _folder_open))
# Seeded synthetic two-hand frames (dir_ros/data/synthetic.py); bag_source only defines the
# options, the frames are made when the source is opened.
register_source(Source("synthetic", "seeded synthetic two-hand frames rendered from the hand "
                       "model, with full ground truth", add_source_arguments, open_synthetic))
