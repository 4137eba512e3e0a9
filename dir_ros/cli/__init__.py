"""Console script ``dir-ros``: the top-level parser and the dispatch to one module per
subcommand, each owning its parser and its body: ``make-bag`` (dataset -> rosbag2,
make_bag.py), ``eval-bag`` (score a bag, eval_bag.py), ``infer`` (hands on your own images and
videos, infer.py), ``check-weights`` (a DIR checkpoint, check_weights.py) and ``train``
(dir_ros/train/cli.py). Building the parser stays cheap: torch and the models are imported
inside the bodies. No ROS installation is needed (bags are read and written with rosbags).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from dir_ros.cli import check_weights, eval_bag, infer, make_bag
from dir_ros.cli.common import PROG
from dir_ros.cli.eval_bag import Predictor


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        """Print `prog: error: message` and exit 2 (no usage block)."""
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    """The dir-ros argument parser with its subcommands."""
    from dir_ros.train.cli import add_train_parser

    parser = _Parser(prog=PROG, description="dir_ros tools: reconstruct hands on images and videos, "
                     "check a DIR checkpoint, build evaluation bags and score bags.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    make_bag.add_parser(sub)
    eval_bag.add_parser(sub)
    infer.add_parser(sub)
    check_weights.add_parser(sub)
    add_train_parser(sub)
    return parser


def main(argv: list[str] | None = None, predictor: Predictor | None = None) -> int:
    """Entry point of the ``dir-ros`` console script; returns the exit status.

    predictor: injected prediction source for eval-bag (tests); None builds it from --config.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.command == "make-bag":
            make_bag.run(args)
        elif args.command == "infer":
            infer.run(args)
        elif args.command == "check-weights":
            check_weights.run(args)
        elif args.command == "train":
            from dir_ros.train.cli import run_train

            run_train(args)
        else:
            eval_bag.run(args, predictor=predictor)
        return 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI contract: one line, no traceback
        if args.debug:
            raise
        reason = " ".join(str(err).split()) or type(err).__name__
        print(f"{PROG} {args.command}: error: {reason}", file=sys.stderr)
        return 1
