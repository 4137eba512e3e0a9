#!/usr/bin/env python3
"""Benchmark the DIR network: forward latency per precision, and the bone projection's fast
path against the release's all-point-pairs formulation, each as a ratio against a baseline
run in the same process. Prints figures and writes them as JSON (no assertions).

  python scripts/benchmark_model.py [--config config/model/dir_release.yaml] [--device cpu|cuda]
         [--batch 1 --batch 8] [--iters 10] [--json out/benchmark_model.json]

Baselines: fp32 for the precisions (bf16/fp16 autocast; fp16 on CUDA only), and the
materialised (B, S^2, 20, 2, C) gather for the projection. On a GPU this is the one script to
run; its JSON goes to docs/benchmarks/.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dir_ros.hand_model import BONE_PARENTS  # noqa: E402
from dir_ros.model import build_dir  # noqa: E402
from dir_ros.model.projection import bone_end_weights, make_grid, project_bone_features  # noqa: E402

WARMUP_ITERS = 2  # untimed calls before each measurement (allocator, cudnn autotune)
# Release projection sizes (DIR_ARCHITECTURE.md): stage 2 at 32x32 with a 2-px band, 64 channels.
PROJ_SIZE, PROJ_DISTANCE, PROJ_CHANNELS = 32, 2.0, 64


def timed_ms(fn, iters: int, device: torch.device) -> float:
    """Median wall time of fn() in ms over `iters` calls (after warm-up; CUDA synchronised)."""
    for _ in range(WARMUP_ITERS):
        fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(1e3 * (time.perf_counter() - t))
    return statistics.median(times)


def peak_mib(fn, device: torch.device) -> float | None:
    """Peak CUDA memory (MiB) allocated by one fn() call; None on the CPU."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def pairs_projection(points: torch.Tensor, feats: torch.Tensor, size: int, distance: float
                     ) -> torch.Tensor:
    """Baseline: the release's formulation, every (cell, bone) pair and both end features
    materialised, (B, S^2, 20, 2, C); returns the same (B,20,C,S^2) planes."""
    grid = make_grid(size).to(points)                                   # (P,2)
    child = torch.arange(1, len(BONE_PARENTS) + 1, device=points.device)
    par = torch.as_tensor(BONE_PARENTS, device=points.device)
    a, b = points[:, par], points[:, child]                             # (B,K,2)
    p = grid[None, :, None, :]                                          # (1,P,1,2)
    seg = b - a
    u = seg / seg.norm(dim=-1, keepdim=True)                            # (B,K,2); 0/0 -> NaN
    along = torch.maximum(((a[:, None] - p) * u[:, None]).sum(-1), ((p - b[:, None]) * u[:, None]).sum(-1))
    across = (p - a[:, None])[..., 0] * u[:, None, :, 1] - (p - a[:, None])[..., 1] * u[:, None, :, 0]
    dist = torch.hypot(along.clamp_min(0.0), across)                    # (B,P,K)
    d_a, d_b = (p - a[:, None]).norm(dim=-1), (p - b[:, None]).norm(dim=-1)
    w = torch.stack([1 - d_a / (d_a + d_b), 1 - d_b / (d_a + d_b)], dim=-1)  # (B,P,K,2)
    ends = torch.stack([feats[:, par], feats[:, child]], dim=2)         # (B,K,2,C)
    pairs = w[..., None] * ends[:, None]                                 # (B,P,K,2,C)
    planes = torch.where((dist < distance)[..., None], pairs.sum(3), torch.zeros(()))  # (B,P,K,C)
    return planes.permute(0, 2, 3, 1)


def bench_forward(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Forward latency of the network per batch size and precision (ratio vs. fp32)."""
    model = build_dir(args.config).to(device).eval()
    size = model.input_size
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    rows = []
    for batch in args.batch:
        x = torch.randn(batch, 3, size, size, device=device)
        base = None
        for prec in precisions:
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec)

            def run() -> None:
                with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                            enabled=dtype is not None):
                    model(x)

            ms = timed_ms(run, args.iters, device)
            base = base or ms
            rows.append({"batch": batch, "precision": prec, "ms": ms, "img_per_s": 1e3 * batch / ms,
                         "speedup_vs_fp32": base / ms, "peak_mib": peak_mib(run, device)})
            print(f"forward  batch {batch:3d} {prec:5s} {ms:9.2f} ms  {1e3 * batch / ms:8.1f} img/s  "
                  f"x{base / ms:.2f} vs fp32")
    return rows


def bench_projection(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Bone projection: fast path vs. the materialised pairs, same inputs, same result."""
    rows = []
    for batch in args.batch:
        gen = torch.Generator().manual_seed(0)
        pts = (torch.rand(batch, 21, 2, generator=gen) * PROJ_SIZE).to(device)
        feats = torch.randn(batch, 21, PROJ_CHANNELS, generator=gen).to(device)
        grid = make_grid(PROJ_SIZE).to(device)

        def fast() -> torch.Tensor:
            return project_bone_features(feats, bone_end_weights(pts, grid, BONE_PARENTS, PROJ_DISTANCE),
                                         BONE_PARENTS)

        def pairs() -> torch.Tensor:
            return pairs_projection(pts, feats, PROJ_SIZE, PROJ_DISTANCE)

        with torch.inference_mode():
            err = (fast() - pairs()).abs().max().item()
            ms_fast, ms_pairs = timed_ms(fast, args.iters, device), timed_ms(pairs, args.iters, device)
            mem_fast, mem_pairs = peak_mib(fast, device), peak_mib(pairs, device)
        rows.append({"batch": batch, "fast_ms": ms_fast, "pairs_ms": ms_pairs,
                     "speedup": ms_pairs / ms_fast, "max_abs_diff": err,
                     "fast_peak_mib": mem_fast, "pairs_peak_mib": mem_pairs})
        print(f"project  batch {batch:3d} fast {ms_fast:8.2f} ms  pairs {ms_pairs:8.2f} ms  "
              f"x{ms_pairs / ms_fast:.2f}  max |diff| {err:.1e}"
              + (f"  peak {mem_fast:.0f} vs {mem_pairs:.0f} MiB" if mem_fast is not None else ""))
    return rows


def main() -> int:
    """Run both benchmarks, print and save the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "config/model/dir_release.yaml"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, action="append", help="batch sizes (repeatable; default 1)")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--json", type=Path, default=ROOT / "out/benchmark_model.json")
    args = ap.parse_args()
    args.batch = args.batch or [1]
    device = torch.device(args.device)
    torch.manual_seed(0)
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores")
    print(f"machine: {machine}; torch {torch.__version__}; config {Path(args.config).name}")
    result = {"machine": machine, "torch": torch.__version__, "config": Path(args.config).name,
              "forward": bench_forward(args, device), "projection": bench_projection(args, device)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
