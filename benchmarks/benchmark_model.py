#!/usr/bin/env python3
"""Benchmark the DIR network: forward latency per precision, and the bone projection's fast
path against the release's all-point-pairs formulation, each as a ratio against a baseline
run in the same process. Prints figures and writes them as JSON (no assertions).

  python benchmarks/benchmark_model.py [--config config/model/dir_release.yaml] [--device cpu|cuda]
         [--batch 1 --batch 8] [--iters 10] [--json out/benchmark_model.json]

Baselines: fp32 for the forward variants (bf16/fp16 autocast, channels_last; on CUDA also
fp16 and CUDA graphs; batches 1 and 8 by default there), each with its drift of the final
joints and vertices against fp32 in mm; and the
materialised (B, S^2, 20, 2, C) gather for the projection. On a GPU this is the one script to
run; its JSON goes to docs/benchmarks/.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dir_ros.backends.export import condition_random_init_  # noqa: E402
from dir_ros.hand_model import BONE_PARENTS  # noqa: E402
from dir_ros.common.machine import cpu_name, reuse_freed_memory, write_figures  # noqa: E402
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


# Forward variants: (name, autocast dtype | None, channels_last, CUDA graph). CUDA graphs
# replay one captured forward (static input), removing the per-kernel launch overhead.
CPU_VARIANTS = [("fp32", None, False, False), ("bf16", torch.bfloat16, False, False),
                ("fp32_channels_last", None, True, False)]
CUDA_VARIANTS = CPU_VARIANTS + [
    ("fp16", torch.float16, False, False), ("fp16_channels_last", torch.float16, True, False),
    ("bf16_channels_last", torch.bfloat16, True, False),
    ("fp32_cuda_graph", None, False, True), ("fp16_cuda_graph", torch.float16, False, True),
    ("bf16_cuda_graph", torch.bfloat16, False, True),
    ("fp16_channels_last_cuda_graph", torch.float16, True, True)]
GRAPH_WARMUP_ITERS = 3  # side-stream calls before capture (cudnn / allocator settle)


def final_xyz(out) -> torch.Tensor:
    """Final-level joints and vertices of both hands, (B, 2*(21+V), 3) float32 metres."""
    level = out.final
    return torch.cat([getattr(level.hand(s), f).float() for s in ("left", "right")
                      for f in ("joints_xyz", "verts_xyz")], dim=1)


def make_forward(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None,
                 channels_last: bool, graph: bool, device: torch.device):
    """A no-argument callable running one forward of the variant -> final_xyz tensor."""
    import copy

    if channels_last:
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def fwd() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            return final_xyz(model(x))

    if not graph:
        return fwd
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(GRAPH_WARMUP_ITERS):
            fwd()
    torch.cuda.current_stream(device).wait_stream(stream)
    cuda_graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(cuda_graph):
        static_out = fwd()

    def replay() -> torch.Tensor:
        cuda_graph.replay()
        return static_out

    return replay


def bench_forward(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Forward latency per batch size and variant (precision, channels_last, CUDA graph):
    ratio vs. fp32 and drift of the final joints/vertices against fp32 in millimetres. A
    variant that fails (e.g. a capture error) is recorded with its error, the rest go on."""
    # Conditioned random init: well-defined rotations, so drift measures precision, not the
    # release init's ~1e-10 rot6d (see dir_ros.backends.export.condition_random_init_).
    model = condition_random_init_(build_dir(args.config)).to(device).eval()
    size = model.input_size
    variants = CUDA_VARIANTS if device.type == "cuda" else CPU_VARIANTS
    rows = []
    for batch in args.batch:
        x = torch.randn(batch, 3, size, size, device=device)
        ref = make_forward(model, x, None, False, False, device)().clone()
        base = None
        for name, dtype, channels_last, graph in variants:
            try:
                run = make_forward(model, x, dtype, channels_last, graph, device)
                drift = (run().float() - ref).abs()
                ms = timed_ms(run, args.iters, device)
            except Exception as err:  # noqa: BLE001 - report and continue with the others
                rows.append({"batch": batch, "variant": name, "error": f"{type(err).__name__}: {err}"})
                print(f"forward  batch {batch:3d} {name:30s} failed: {type(err).__name__}: {err}")
                continue
            base = base or ms
            rows.append({"batch": batch, "variant": name, "precision": name.split("_")[0],
                         "channels_last": channels_last, "cuda_graph": graph, "ms": ms,
                         "img_per_s": 1e3 * batch / ms, "speedup_vs_fp32": base / ms,
                         "max_drift_mm": 1e3 * drift.max().item(),
                         "mean_drift_mm": 1e3 * drift.mean().item(),
                         "peak_mib": None if graph else peak_mib(run, device)})
            print(f"forward  batch {batch:3d} {name:30s} {ms:9.2f} ms  {1e3 * batch / ms:8.1f} img/s  "
                  f"x{base / ms:.2f} vs fp32  drift max {1e3 * drift.max().item():.3f} mm "
                  f"mean {1e3 * drift.mean().item():.3f} mm")
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
    args.batch = args.batch or ([1, 8] if args.device.startswith("cuda") else [1])
    # every variant timed from the same allocator state (see benchmark_export.py)
    allocator = "glibc keeps freed blocks" if reuse_freed_memory() else "default"
    device = torch.device(args.device)
    torch.manual_seed(0)
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"{cpu_name()}, {os.cpu_count()} CPU cores")
    print(f"machine: {machine}; torch {torch.__version__}; config {Path(args.config).name}")
    result = {"machine": machine, "torch": torch.__version__, "config": Path(args.config).name,
              "allocator": allocator,
              "forward": bench_forward(args, device), "projection": bench_projection(args, device)}
    write_figures(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
