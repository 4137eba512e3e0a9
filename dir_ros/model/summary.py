"""Print a DIR configuration's size: parameters (M) and GFLOPs per image.

Usage: python -m dir_ros.model.summary --config config/model/dir_release.yaml
FLOPs are counted with torch.utils.flop_counter.FlopCounterMode (1 multiply-add = 2 FLOPs)
for one image in eval mode; the hand model is the configured one, or a synthetic
MANO-sized stand-in with --synthetic-hand (sizes only depend on the vertex count).
"""
from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dir_ros.hand_model import HandModelFileNotFoundError

from .dir import build_dir
from .synthetic import synthetic_hand_model

GIGA = 1e9
MEGA = 1e6


def count_params(module: nn.Module) -> int:
    """Number of trainable-parameter elements (buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


def count_flops(model: nn.Module, input_size: int) -> tuple[int, dict[str, int]]:
    """FLOPs of one forward pass on a (1,3,S,S) input: total and per top-level submodule."""
    model.eval()
    x = torch.zeros(1, 3, input_size, input_size)
    with torch.no_grad(), FlopCounterMode(display=False, depth=None) as counter:
        model(x)
    per = defaultdict(int)
    wanted = ("backbone", "init_regressor.attention_left", "init_regressor.attention_right",
              "init_regressor")
    for name, ops in counter.get_flop_counts().items():
        sub = name.split(".", 1)[1] if "." in name else ""
        parts = sub.split(".")
        # Top-level modules, the attention heads and each decoder child (one level down).
        if sub in wanted or (parts[0] == "decoder" and len(parts) == 2):
            per[sub] += sum(ops.values())
    return counter.get_total_flops(), dict(per)


def summarize(config: str | None, hand_model_dir: str | None = None,
              synthetic_hand: bool = False) -> dict[str, float]:
    """Build the model and return {'params_M', 'gflops', 'gflops:<module>'...}."""
    arrays = synthetic_hand_model() if synthetic_hand else None
    try:
        model = build_dir(config, hand_model_dir, arrays=arrays)
    except HandModelFileNotFoundError as err:  # sizes barely depend on the hand model
        print(f"note: {err}; using a MANO-sized synthetic hand model")
        model = build_dir(config, arrays=synthetic_hand_model())
    total, per = count_flops(model, model.input_size)
    out = {"params_M": count_params(model) / MEGA, "gflops": total / GIGA}
    for name in ("backbone", "init_regressor", "decoder"):
        out[f"params_M:{name}"] = count_params(getattr(model, name)) / MEGA
    out.update({f"gflops:{k}": v / GIGA for k, v in sorted(per.items())})
    return out


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="model YAML (default: release)")
    ap.add_argument("--hand-model", default=None, help="MANO-format folder")
    ap.add_argument("--synthetic-hand", action="store_true",
                    help="use a MANO-sized synthetic hand model (no files needed)")
    args = ap.parse_args(argv)
    stats = summarize(args.config, args.hand_model, args.synthetic_hand)
    print(f"config: {args.config or '(release defaults)'}")
    print(f"params: {stats['params_M']:.2f} M")
    print(f"GFLOPs per image: {stats['gflops']:.2f}")
    for k, v in stats.items():
        if ":" in k:
            print(f"  {k:40s} {v:8.3f}")


if __name__ == "__main__":
    main()
