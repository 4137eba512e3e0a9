#!/usr/bin/env python3
"""Per-stage eager time and GFLOPs of the DIR network, the release's materialised bone
planes against the factorised projection-fusion conv, in one process.

  python benchmarks/benchmark_stages.py [--config config/model/dir_release.yaml] [--batch 1]
         [--threads 2] [--iters 20] [--json docs/figures/benchmark_stages.json]

Both variants hold the same weights (random init conditioned by
dir_ros.backends.export.condition_random_init_; speed does not depend on the weights): the baseline
is `projection.materialize_planes: true` (the network computed as released: bone planes
built and convolved, plain attention convs), the other the default (factorised fusion conv,
attention-head convs as GEMMs in eager CPU runs). Parts: backbone, init regressor, each refinement stage (skip, fusion,
refinement block, enhance) and, inside it, the block's projection step alone (joint
features -> fused projected map), the aux heads, then the whole network. Each part is timed
on the inputs the previous parts gave, the two variants alternating call by call (shared-
machine noise hits both alike); medians in ms. Also prints the largest output difference
between the variants. Prints a table and writes JSON; no assertions. As benchmark_export.py,
it first makes glibc keep freed blocks (dir_ros.common.machine.reuse_freed_memory), so that the
released variant's per-call temporaries are not timed page-faulting or not by chance.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dir_ros.backends.export import condition_random_init_  # noqa: E402
from dir_ros.hand_model import NUM_KEYPOINTS, HandModelFileNotFoundError  # noqa: E402
from dir_ros.common.machine import machine_info, reuse_freed_memory, write_figures  # noqa: E402
from dir_ros.model import build_dir, load_model_config  # noqa: E402
from dir_ros.model.synthetic import synthetic_hand_model  # noqa: E402

WARMUP_ITERS = 3  # untimed calls of each part and variant before timing (allocator, caches)
GIGA = 1e9
VARIANTS = ("materialised", "factorised")  # baseline first: materialize_planes true / false
SEED = 0


def build_pair(config: str, hand_model: str | None) -> dict[str, torch.nn.Module]:
    """variant -> DIR (eval), same state dict; hand model as configured, else a MANO-sized
    synthetic one (the hand layer's cost only depends on the vertex count)."""
    cfg = load_model_config(config)
    models = {}
    for name in VARIANTS:
        c = copy.deepcopy(cfg)
        c["projection"]["materialize_planes"] = name == "materialised"
        try:
            models[name] = build_dir(c, hand_model)
        except HandModelFileNotFoundError as err:
            print(f"note: {err}; using a MANO-sized synthetic hand model")
            models[name] = build_dir(c, arrays=synthetic_hand_model())
    torch.manual_seed(SEED)
    base = condition_random_init_(models["factorised"])
    models["materialised"].load_state_dict(base.state_dict(), strict=True)
    return {k: m.eval() for k, m in models.items()}


def stage_parts(model: torch.nn.Module, x: torch.Tensor
                ) -> tuple[dict[str, Callable[[], object]], object]:
    """Named no-argument callables, one per part, on inputs computed by the earlier parts
    (inference mode), and the network's output on x."""
    dec = model.decoder
    parts: dict[str, Callable[[], object]] = {"backbone": lambda: model.backbone(x)}
    feats = model.backbone(x)
    parts["init_regressor"] = lambda: model.init_regressor(feats[3])
    level = model.init_regressor(feats[3])
    y = feats[3]
    for i in range(1, dec.num_stages + 1):
        block = getattr(dec, f"projecter_{dec.suffixes[i - 1]}")
        captured: dict[str, object] = {}
        hook = block.register_forward_pre_hook(
            lambda _m, args: captured.update(fused=args[0], prev=args[1].detach()))
        parts[f"stage{i}"] = (lambda i=i, y=y, lv=level:
                              dec.stage(i, y, feats[3 - i], lv))
        y, level = dec.stage(i, y, feats[3 - i], level)
        hook.remove()
        if block.projection != "none":
            tokens = block.joint_features(captured["fused"], captured["prev"])
            new = block.regressor(tokens[:, :NUM_KEYPOINTS], tokens[:, NUM_KEYPOINTS:],
                                  captured["prev"])
            parts[f"stage{i}.projection"] = (lambda b=block, t=tokens, n=new: b.project(t, n))
    if dec.aux_heads:
        parts["aux_heads"] = lambda y=y: dec.heads(y)
    parts["network"] = lambda: model(x)
    return parts, model(x)


def gflops(fn: Callable[[], object]) -> float:
    """FLOPs of one call (1 multiply-add = 2 FLOPs), in G."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / GIGA


def time_alternating(fns: dict[str, Callable[[], object]], iters: int) -> dict[str, float]:
    """Median ms per variant, the variants called alternately (order flipped each round)."""
    for fn in fns.values():
        for _ in range(WARMUP_ITERS):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(iters):
        for name in (names if r % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            fns[name]()
            times[name].append(1e3 * (time.perf_counter() - t))
    return {k: statistics.median(v) for k, v in times.items()}


def max_output_difference(a: object, b: object) -> float:
    """Largest |a - b| over every tensor of two DIROutputs."""
    la, lb = torch.utils._pytree.tree_leaves(a), torch.utils._pytree.tree_leaves(b)
    return max((p.float() - q.float()).abs().max().item() for p, q in zip(la, lb))


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "config/model/dir_release.yaml"))
    ap.add_argument("--hand-model", default=None, help="MANO-format folder")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--iters", type=int, default=20, help="timed calls per part and variant")
    ap.add_argument("--json", type=Path, default=ROOT / "docs/figures/benchmark_stages.json")
    args = ap.parse_args(argv)
    allocator = "glibc keeps freed blocks" if reuse_freed_memory() else "default"
    torch.set_num_threads(args.threads)
    models = build_pair(args.config, args.hand_model)
    size = models["factorised"].input_size
    x = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(SEED))
    with torch.inference_mode():
        built = {k: stage_parts(m, x) for k, m in models.items()}
        diff = max_output_difference(built["factorised"][1], built["materialised"][1])
        rows = {}
        for part in built["factorised"][0]:
            fns = {k: built[k][0][part] for k in VARIANTS}
            ms = time_alternating(fns, args.iters)
            rows[part] = {"ms": ms, "gflops": {k: gflops(f) for k, f in fns.items()},
                          "speedup": ms["materialised"] / ms["factorised"]}
    base, fast = VARIANTS
    print(f"{Path(args.config).name}, batch {args.batch}, {args.threads} threads, "
          f"{args.iters} calls per part (median ms); max output difference {diff:.2g}; "
          f"allocator: {allocator}")
    print(f"{'part':22s} {base + ' ms':>16s} {fast + ' ms':>14s} {'speedup':>8s} "
          f"{'GFLOPs ' + base[:3]:>11s} {'GFLOPs ' + fast[:4]:>11s}")
    for part, r in rows.items():
        print(f"{part:22s} {r['ms'][base]:16.1f} {r['ms'][fast]:14.1f} {r['speedup']:7.2f}x "
              f"{r['gflops'][base]:11.2f} {r['gflops'][fast]:11.2f}")
    result = {"machine": machine_info(), "torch": torch.__version__, "threads": args.threads,
              "allocator": allocator,
              "config": Path(args.config).name, "batch": args.batch, "iters": args.iters,
              "weights": "random init conditioned by dir_ros.backends.export.condition_random_init_ "
                         "(speed does not depend on the weights)",
              "baseline": "projection.materialize_planes: true (computed as released: bone "
                          "planes built and convolved, plain attention convs); factorised = "
                          "the default (factorised fusion conv, GEMM attention convs)",
              "max_output_difference": diff,
              "note": "stageN.projection is part of stageN; network is one whole forward",
              "parts": rows}
    write_figures(args.json, result)


if __name__ == "__main__":
    main()
