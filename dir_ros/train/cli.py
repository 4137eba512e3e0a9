"""The `dir-ros train` subcommand: argument parsing and the run (dir_ros/train/trainer.py)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TRAIN_CONFIG_FILE = "config/train/synthetic_light.yaml"


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """'data.root=/x' -> (['data', 'root'], '/x'); the value is read as YAML (numbers,
    null, lists)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set needs KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    if not key.strip():
        raise argparse.ArgumentTypeError(f"--set needs KEY=VALUE, got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def overrides_from(assignments: list[tuple[list[str], Any]]) -> dict[str, Any]:
    """Nested override mapping from --set assignments."""
    out: dict[str, Any] = {}
    for keys, value in assignments:
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return out


def add_train_parser(sub: Any) -> None:
    """Register `train` on the dir-ros subparsers."""
    tr = sub.add_parser(
        "train", help="train DIR (InterHand2.6M or the synthetic source); torchrun for several "
        "processes",
        description="Train the DIR network with the paper's recipe from a training config "
        "(config/train/*.yaml, documented field by field). Writes last.pth (the release "
        "checkpoint layout: the node loads it), best.pth, model.yaml, history.json and "
        "loss_curve.png into out_dir. Several processes: torchrun --nproc_per_node=N -m "
        "dir_ros.cli train ... (NCCL on GPUs, gloo on CPUs). See docs/training.md.")
    tr.add_argument("--config", default=DEFAULT_TRAIN_CONFIG_FILE,
                    help="training config YAML (default: %(default)s)")
    tr.add_argument("--out", type=Path, default=None, help="output folder (overrides out_dir)")
    tr.add_argument("--epochs", type=int, default=None, help="override epochs")
    tr.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                    help="continue from CHECKPOINT (a last.pth; without a value: out_dir/last.pth)")
    tr.add_argument("--set", dest="assignments", action="append", type=parse_assignment,
                    default=[], metavar="KEY=VALUE",
                    help="override any config key, e.g. --set data.root=/data/InterHand2.6M "
                         "--set batch_size=32 (repeatable)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    """Run the training of parsed `train` arguments; prints a summary line."""
    from dir_ros.common.resources import resolve_resource

    from dir_ros.train.recipe import resolve_train_config
    from dir_ros.train.trainer import CHECKPOINT_LAST, train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    overrides = overrides_from(args.assignments)
    if args.out is not None:
        overrides["out_dir"] = str(args.out)
    if args.epochs is not None:
        overrides["epochs"] = int(args.epochs)
    config = resolve_resource(args.config)
    cfg = resolve_train_config(config, overrides)
    resume = args.resume
    if resume == "auto":
        resume = Path(cfg["out_dir"]).expanduser() / CHECKPOINT_LAST
        if not resume.is_file():
            raise FileNotFoundError(f"--resume: no {CHECKPOINT_LAST} in {cfg['out_dir']}")
    elif resume is not None and not Path(resume).is_file():
        raise FileNotFoundError(f"--resume: checkpoint '{resume}' not found")
    summary = train(cfg, resume=resume, progress=not args.no_progress)
    if summary["world_size"] == 1 or int(os.environ.get("RANK", "0")) == 0:
        val = summary.get("val") or {}
        figures = [f"{summary['steps_this_run']} steps in {summary['time_s']:.0f} s"]
        if summary["loss_first"] is not None:
            figures.append(f"loss {summary['loss_first']:.4g} -> {summary['loss_last']:.4g}")
        if val.get("mpjpe_mm") is not None:
            figures.append(f"val MPJPE {val['mpjpe_mm']:.2f} mm")
        if summary["skipped_frames"]:
            figures.append(f"{summary['skipped_frames']} bad frames skipped")
        print(f"wrote {summary['checkpoint']} ({', '.join(figures)})")
    return summary
