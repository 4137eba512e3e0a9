#!/usr/bin/env python3
"""Benchmark the exported CPU path against eager PyTorch: the same network, the same inputs,
in the same process, timed in alternating rounds (a shared machine's load hits both alike).
Prints eager fp32, ONNX Runtime fp32 (and OpenVINO f32 when `openvino` is importable), the
speed ratio and the largest output difference in metres; writes JSON (no assertions).

  python scripts/benchmark_export.py [--config config/model/dir_release.yaml] [--batch 1]
         [--threads 2] [--rounds 5] [--iters 4] [--json docs/figures/benchmark_export.json]

Weights: random init, conditioned (dir_ros.export.condition_random_init_) so that rotations
are well-defined; speed does not depend on the weights' values.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dir_ros import export as E  # noqa: E402
from dir_ros.machine import cpu_name  # noqa: E402
from dir_ros.model import build_dir  # noqa: E402

WARMUP_ITERS = 2       # untimed calls per runtime before timing (allocators, kernel choice)
XYZ_FIELDS = ("joints_xyz", "verts_xyz")  # outputs in metres (root-relative)


def xyz_difference(got: list[torch.Tensor], want: tuple[torch.Tensor, ...]) -> float:
    """Largest |difference| (m) over the xyz outputs of both hands (OUTPUT_NAMES order)."""
    idx = [i for i, n in enumerate(E.OUTPUT_NAMES) if n.split("_", 1)[-1] in XYZ_FIELDS]
    return E.max_difference([got[i] for i in idx], [want[i] for i in idx])


def openvino_runner(path: Path, threads: int) -> tuple[Callable[[torch.Tensor], list], str]:
    """An OpenVINO CPU f32 compiled model on the ONNX file -> (run(x) -> outputs, version)."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                     "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()

    def run(x: torch.Tensor) -> list[torch.Tensor]:
        res = request.infer({0: x.numpy()})
        return [torch.from_numpy(res[compiled.output(i)].copy())
                for i in range(len(E.OUTPUT_NAMES))]

    return run, ov.__version__


def main() -> int:
    """Export, time eager vs exported runtimes, print and save the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "config/model/dir_release.yaml"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    ap.add_argument("--iters", type=int, default=4, help="timed calls per runtime per round")
    ap.add_argument("--json", type=Path, default=ROOT / "docs/figures/benchmark_export.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    torch.manual_seed(0)
    model = E.condition_random_init_(build_dir(args.config)).eval()
    size = model.input_size
    x = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dir.onnx"
        t = time.perf_counter()
        E.export_onnx(model, path)
        export_s = time.perf_counter() - t
        onnx_model = E.OnnxDIR(model, E.make_session(path, args.threads))
        wrapper = E.ExportWrapper(model).eval()

        def eager() -> tuple[torch.Tensor, ...]:
            with torch.inference_mode():
                return wrapper(x)

        runners: dict[str, Callable[[], object]] = {
            "eager_fp32": eager, "onnxruntime_fp32": lambda: onnx_model.run_flat(x)}
        versions = {"torch": torch.__version__}
        import onnxruntime
        versions["onnxruntime"] = onnxruntime.__version__
        try:
            ov_run, versions["openvino"] = openvino_runner(path, args.threads)
            runners["openvino_f32"] = lambda: ov_run(x)
        except ImportError:
            pass
        ref = eager()
        diffs = {name: {"max_abs_xyz_m": xyz_difference(list(fn()), ref),
                        "max_abs_all": E.max_difference(list(fn()), ref)}
                 for name, fn in runners.items() if name != "eager_fp32"}
        for fn in runners.values():
            for _ in range(WARMUP_ITERS):
                fn()
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, fn in runners.items():
                for _ in range(args.iters):
                    t = time.perf_counter()
                    fn()
                    times[name].append(1e3 * (time.perf_counter() - t))
    load_after = os.getloadavg()
    base = statistics.median(times["eager_fp32"])
    rows = []
    machine = f"{cpu_name()}, {os.cpu_count()} CPU cores"
    print(f"machine: {machine}; {args.threads} threads; config {Path(args.config).name}; "
          f"batch {args.batch}; export {export_s:.1f} s")
    print(f"load average (1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/"
          f"{load_before[2]:.2f}, after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}")
    print(f"{'runtime':18s} {'median ms':>10s} {'min ms':>8s} {'x eager':>8s} {'max |dxyz| m':>13s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        d = diffs.get(name, {"max_abs_xyz_m": 0.0, "max_abs_all": 0.0})
        rows.append({"runtime": name, "median_ms": med, "min_ms": min(ts),
                     "img_per_s": 1e3 * args.batch / med, "speedup_vs_eager": base / med, **d})
        print(f"{name:18s} {med:10.1f} {min(ts):8.1f} {base / med:8.2f} "
              f"{d['max_abs_xyz_m']:13.1e}")
    result = {"machine": machine, "threads": args.threads, "config": Path(args.config).name,
              "batch": args.batch, "versions": versions, "export_s": export_s,
              "samples_per_runtime": args.rounds * args.iters,
              "load_average_before": load_before, "load_average_after": load_after,
              "results": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
