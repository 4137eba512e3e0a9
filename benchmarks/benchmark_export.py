#!/usr/bin/env python3
"""Benchmark the exported CPU runtimes against eager PyTorch: the same network and inputs in
the same process, timed in alternating rounds (a shared machine's load hits all alike).

Rows: eager fp32 as released (`projection: {materialize_planes: true}`, the release's bone
planes built and convolved: the baseline), eager fp32 with the default config, ONNX Runtime
fp32, OpenVINO f32 and OpenVINO bf16 (`runtime: openvino, precision: bf16`), then two int8
rows (static QDQ quantisation by ONNX Runtime, calibrated on the mirrored crops, run on ONNX
Runtime and OpenVINO; measured for the record, not a runtime option; --no-int8 skips them). Each: median ms, images/s, speed
against both eager baselines, the largest xyz output difference (m) against eager fp32 on
random inputs, and the mean / max 3D joint drift (mm, root-relative joints_xyz of both hands)
against eager fp32 on real photos' crops (../shared/images, cut by the detector crop as
HandsPredictor does). Writes JSON; asserts nothing.

Roofline: the machine's attainable peak is measured in the same process as one large dense
OpenVINO MatMul in f32 and bf16. With the exported graph's FLOPs (FlopCounterMode on the
eager forward, less the dense head the graph does not compute) it gives each precision's
floor (every FLOP at peak, nothing else costing anything), the best ratio to eager as
released that floor allows, and the share of peak the issue's target needs.

Allocator: the process first makes glibc keep freed large blocks (dir_ros.common.machine.
reuse_freed_memory). Without it the released eager baseline's per-call 75 MB temporaries
page-fault or not depending on what ran before them (140 vs 195 ms per call here), and the
ratios would move with the order of the rows; with it every row is timed at its fastest.

  python benchmarks/benchmark_export.py [--config config/model/dir_release.yaml] [--batch 1]
         [--threads 2] [--rounds 5] [--iters 4] [--images ../shared/images] [--no-int8]
         [--json docs/figures/benchmark_export.json]

Weights: no trained weights exist here: random init, conditioned
(dir_ros.backends.export.condition_random_init_) so that rotations are well-defined. Speed does not
depend on the weights' values; drift does (trained weights may drift differently).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dir_ros.backends import export as E  # noqa: E402
from dir_ros.common.machine import cpu_name, reuse_freed_memory, write_figures  # noqa: E402
from dir_ros.model import build_dir, load_model_config  # noqa: E402
from dir_ros.model.summary import count_flops  # noqa: E402

WARMUP_ITERS = 2       # untimed calls per runtime before timing (allocators, kernel choice)
XYZ_FIELDS = ("joints_xyz", "verts_xyz")  # outputs in metres (root-relative)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
RELEASED, DEFAULT = "eager_fp32_released", "eager_fp32"  # the two baselines
WEIGHTS_NOTE = ("random init conditioned by dir_ros.backends.export.condition_random_init_ (no trained "
                "weights exist here): speed is the weights'-independent figure; drift is "
                "measured on these weights")
# The targets (release config, batch 1, 2 threads), checked in the printout.
TARGET_FP32_SPEEDUP = 3.0        # fp32 export vs eager as released
TARGET_LOW_SPEEDUP = 5.0         # low-precision path vs eager as released
TARGET_LOW_DRIFT_MM = 1.0        # its mean joint drift on real crops
TARGET_FP32_DIFF_M = 1e-4        # fp32 export's largest output difference
# Roofline: the machine's attainable peak, measured as one dense OpenVINO MatMul (M, K, N)
# large enough to run at full speed (here M from 256 to 4096 gave the same GFLOP/s within
# 10%), best of PEAK_ITERS calls. Precisions as OpenVINO's INFERENCE_PRECISION_HINT.
PEAK_GEMM_MKN = (1024, 2048, 2048)
PEAK_ITERS = 30
PEAK_PRECISIONS = {"f32": ("openvino_f32", TARGET_FP32_SPEEDUP),
                   "bf16": ("openvino_bf16", TARGET_LOW_SPEEDUP)}


Runner = Callable[[torch.Tensor], list[torch.Tensor]]


def released_model(config: str, reference: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    """The network computed as released (materialised bone planes, plain attention convs)
    with `reference`'s weights, and the config note that says so."""
    cfg = load_model_config(config)
    cfg["projection"] = {**cfg["projection"], "materialize_planes": True}
    model = build_dir(cfg)
    model.load_state_dict(reference.state_dict())
    return model.eval(), "projection.materialize_planes: true"


class CountingDetector:
    """Wraps the hand front end to remember how many hands its last call found."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.found = 0

    def __call__(self, rgb: np.ndarray) -> Any:
        dets = self.detector(rgb)
        self.found = len(dets or {})
        return dets

    def reset(self) -> None:
        self.detector.reset()


def photo_crops(folder: Path, size: int) -> tuple[Optional[torch.Tensor], list[dict]]:
    """Network inputs (N,3,size,size) from the photos in `folder`, pre-processed as
    HandsPredictor.predict does with `crop: detect` (each photo a new stream); per-photo
    notes (name, hands found, box). (None, []) when there are no photos."""
    import cv2

    from dir_ros.common import geometry as geo
    from dir_ros.frontend.crop import make_cropper
    from dir_ros.model.normalize import normalize_image
    from dir_ros.config import make_detector

    paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        return None, []
    detector = CountingDetector(make_detector({"mirrored_input": False}))
    cropper = make_cropper("detect", None, detector)
    crops, notes = [], []
    for p in paths:
        bgr = cv2.imread(str(p))
        if bgr is None:
            raise ValueError(f"cannot read image {p}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        detector.reset()
        box = cropper(rgb, None)
        crop = geo.warp_crop(rgb, box, size)
        crops.append(normalize_image(torch.from_numpy(crop)[None]))
        notes.append({"image": p.name, "hands_found": detector.found,
                      "box_cx_cy_size_px": [round(box.cx, 1), round(box.cy, 1),
                                            round(box.size, 1)]})
    detector.detector.close()
    return torch.cat(crops), notes


def xyz_difference(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    """Largest |difference| (m) over the xyz outputs of both hands (OUTPUT_NAMES order)."""
    idx = [i for i, n in enumerate(E.OUTPUT_NAMES) if n.split("_", 1)[-1] in XYZ_FIELDS]
    return E.max_difference([got[i] for i in idx], [want[i] for i in idx])


def eager_runner(model: torch.nn.Module) -> Runner:
    """model's OUTPUT_NAMES tensors, eager fp32 under inference mode."""
    wrapper = E.ExportWrapper(model).eval()

    def run(x: torch.Tensor) -> list[torch.Tensor]:
        with torch.inference_mode():
            return list(wrapper(x))

    return run


def gemm_peak_gflops(precision: str, threads: int) -> float:
    """GFLOP/s of one OpenVINO MatMul PEAK_GEMM_MKN at `precision` (best of PEAK_ITERS calls):
    what this machine's convolution and GEMM kernels can reach at most."""
    import openvino as ov
    import openvino.opset13 as ops

    m, k, n = PEAK_GEMM_MKN
    rng = np.random.default_rng(0)
    a = ops.parameter([m, k], np.float32)
    w = ops.constant(rng.standard_normal((k, n), dtype=np.float32))
    compiled = ov.Core().compile_model(
        ov.Model([ops.matmul(a, w, False, False)], [a]), "CPU",
        {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
         "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"})
    request, x = compiled.create_infer_request(), rng.standard_normal((m, k), dtype=np.float32)
    for _ in range(WARMUP_ITERS):
        request.infer({0: x})
    best = float("inf")
    for _ in range(PEAK_ITERS):
        t = time.perf_counter()
        request.infer({0: x})
        best = min(best, time.perf_counter() - t)
    return 2.0 * m * k * n / best / 1e9


def roofline(graph_gflops: float, peaks: dict[str, float], base_ms: float,
             rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per precision: the graph's time if every FLOP ran at the measured peak and nothing else
    cost anything (floor_ms), the best ratio against eager as released that allows, the
    share of peak the target ratio needs over the whole graph, and the share the exported
    runtime reaches."""
    by = {r["runtime"]: r for r in rows}
    out = {}
    for prec, peak in peaks.items():
        runtime, target = PEAK_PRECISIONS[prec]
        floor_ms = 1e3 * graph_gflops / peak
        entry = {"peak_gflops_per_s": peak, "floor_ms": floor_ms,
                 "best_possible_speedup_vs_released_eager": base_ms / floor_ms,
                 "target_speedup": target,
                 "target_share_of_peak": floor_ms / (base_ms / target)}
        if runtime in by:
            entry[f"{runtime}_share_of_peak"] = floor_ms / by[runtime]["median_ms"]
        out[prec] = entry
    return out


def roofline_lines(graph_gflops: float, roof: dict[str, dict[str, float]]) -> list[str]:
    """roofline() as printed lines."""
    m, k, n = PEAK_GEMM_MKN
    lines = [f"roofline: exported graph {graph_gflops:.1f} GFLOPs; peak = OpenVINO MatMul "
             f"{m}x{k}x{n}, best of {PEAK_ITERS}"]
    for prec, r in roof.items():
        runtime = PEAK_PRECISIONS[prec][0]
        reach = r.get(f"{runtime}_share_of_peak")
        lines.append(
            f"  {prec}: peak {r['peak_gflops_per_s']:.0f} GFLOP/s -> floor {r['floor_ms']:.1f} ms"
            f" = at most {r['best_possible_speedup_vs_released_eager']:.2f}x released eager; "
            f"{r['target_speedup']:g}x needs {100 * r['target_share_of_peak']:.0f}% of peak over "
            f"the whole graph" + (f"; {runtime} reaches {100 * reach:.0f}%" if reach else ""))
    return lines


def quantize_int8(path: Path, out: Path, calibration: torch.Tensor) -> Path:
    """ONNX Runtime static QDQ int8 (per-channel int8 weights, uint8 activations, Conv only:
    the backbone and decoder) of `path`, MinMax-calibrated on `calibration` (N,3,S,S)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod,
                                          QuantFormat, QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"images": calibration[i:i + 1].numpy()}
                               for i in range(len(calibration))])

        def get_next(self) -> Optional[dict]:
            return next(self.items, None)

    pre = out.with_name("pre_" + out.name)
    quant_pre_process(str(path), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, op_types_to_quantize=["Conv"],
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return out


def main() -> int:
    """Export, time eager vs exported runtimes, print and save the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "config/model/dir_release.yaml"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    ap.add_argument("--iters", type=int, default=4, help="timed calls per runtime per round")
    ap.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "images",
                    help="photos whose detector crops measure the drift")
    ap.add_argument("--no-int8", dest="int8", action="store_false",
                    help="leave out the static int8 (QDQ) rows")
    ap.add_argument("--json", type=Path, default=ROOT / "docs/figures/benchmark_export.json")
    args = ap.parse_args()
    allocator = "glibc keeps freed blocks" if reuse_freed_memory() else "default"
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    torch.manual_seed(0)
    model = E.condition_random_init_(build_dir(args.config)).eval()
    released, released_note = released_model(args.config, model)
    size = model.input_size
    x = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    crops, photos = photo_crops(args.images, size)
    total, per_module = count_flops(model, size)
    # The exported graph has no dense head: no graph output reads it (E.OUTPUT_NAMES).
    graph_gflops = args.batch * (total - per_module.get("decoder.dense", 0)) / 1e9
    versions = {"torch": torch.__version__}
    precisions = {RELEASED: "fp32", DEFAULT: "fp32"}
    runners: dict[str, Runner] = {RELEASED: eager_runner(released), DEFAULT: eager_runner(model)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dir.onnx"
        t = time.perf_counter()
        E.export_onnx(model, path)
        export_s = time.perf_counter() - t
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
        exported: dict[str, E.ExportedDIR] = {
            "onnxruntime_fp32": E.build_exported(model, "onnxruntime", path, threads=args.threads)}
        try:
            import openvino

            versions["openvino"] = openvino.__version__
            for name, prec in (("openvino_f32", "fp32"), ("openvino_bf16", "bf16")):
                exported[name] = E.build_exported(model, "openvino", path, prec, args.threads)
            peaks = {p: gemm_peak_gflops(p, args.threads) for p in PEAK_PRECISIONS}
        except ImportError:
            peaks = {}
            print("openvino not installed: its rows and the roofline are left out")
        if args.int8:
            calib = torch.flip(crops, dims=[3]) if crops is not None else x
            qpath = quantize_int8(path, Path(tmp) / "dir_int8.onnx", calib)
            exported["onnxruntime_int8"] = E.OnnxDIR(model, E.make_session(qpath, args.threads))
            if "openvino" in versions:
                exported["openvino_int8"] = E.OpenVinoDIR(model, qpath, "fp32", args.threads)
        for name, net in exported.items():
            runners[name] = net.run_flat
            precisions[name] = "int8" if name.endswith("int8") else net.precision

        ref = runners[DEFAULT](x)
        ref_crops = [runners[DEFAULT](crops[i:i + 1]) for i in range(len(crops))] \
            if crops is not None else []
        quality: dict[str, dict[str, Optional[float]]] = {}
        for name, run in runners.items():
            got = run(x)
            q: dict[str, Optional[float]] = {"max_abs_xyz_m": xyz_difference(got, ref),
                                             "max_abs_all": E.max_difference(got, ref)}
            if crops is not None:
                d = torch.cat([E.joint_drift(run(crops[i:i + 1]), ref_crops[i])
                               for i in range(len(crops))])
                q.update(crop_joint_drift_mean_mm=1e3 * d.mean().item(),
                         crop_joint_drift_max_mm=1e3 * d.max().item())
            else:
                q.update(crop_joint_drift_mean_mm=None, crop_joint_drift_max_mm=None)
            quality[name] = q
        for run in runners.values():
            for _ in range(WARMUP_ITERS):
                run(x)
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, run in runners.items():
                for _ in range(args.iters):
                    t = time.perf_counter()
                    run(x)
                    times[name].append(1e3 * (time.perf_counter() - t))
    load_after = os.getloadavg()
    base_rel, base_def = (statistics.median(times[n]) for n in (RELEASED, DEFAULT))
    machine = f"{cpu_name()}, {os.cpu_count()} CPU cores"
    print(f"machine: {machine}; {args.threads} threads; config {Path(args.config).name}; "
          f"batch {args.batch}; export {export_s:.1f} s")
    print(f"weights: {WEIGHTS_NOTE}")
    print(f"allocator: {allocator}")
    print(f"released baseline: {released_note}")
    found = ", ".join(f"{p['image']}: {p['hands_found']} hands" for p in photos) or "none"
    print(f"drift crops: {len(photos)} photos from {args.images} ({found})")
    print(f"load average (1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/"
          f"{load_before[2]:.2f}, after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}")
    print(f"{'runtime':20s} {'prec':>5s} {'median ms':>9s} {'img/s':>6s} {'x released':>10s} "
          f"{'x eager':>7s} {'max|dxyz| m':>11s} {'crop drift mm mean/max':>22s}")
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        q = quality[name]
        rows.append({"runtime": name, "precision": precisions[name], "median_ms": med,
                     "min_ms": min(ts), "img_per_s": 1e3 * args.batch / med,
                     "speedup_vs_released_eager": base_rel / med,
                     "speedup_vs_default_eager": base_def / med, **q})
        drift = (f"{q['crop_joint_drift_mean_mm']:.4f} / {q['crop_joint_drift_max_mm']:.4f}"
                 if q["crop_joint_drift_mean_mm"] is not None else "n/a")
        print(f"{name:20s} {precisions[name]:>5s} {med:9.1f} {1e3 * args.batch / med:6.2f} "
              f"{base_rel / med:10.2f} {base_def / med:7.2f} {q['max_abs_xyz_m']:11.1e} "
              f"{drift:>22s}")
    targets = check_targets(rows)
    for line in targets:
        print(line)
    roof = roofline(graph_gflops, peaks, base_rel, rows)  # {} without OpenVINO
    for line in roofline_lines(graph_gflops, roof) if roof else []:
        print(line)
    result = {"machine": machine, "threads": args.threads, "config": Path(args.config).name,
              "batch": args.batch, "weights": WEIGHTS_NOTE, "allocator": allocator,
              "released_baseline": released_note,
              "versions": versions, "export_s": export_s,
              "samples_per_runtime": args.rounds * args.iters, "drift_photos": photos,
              "load_average_before": load_before, "load_average_after": load_after,
              "results": rows, "targets": targets, "graph_gflops": graph_gflops,
              "roofline": roof}
    write_figures(args.json, result)
    return 0


def check_targets(rows: list[dict]) -> list[str]:
    """The issue's targets against the measured rows, one line each (met / NOT met)."""
    by = {r["runtime"]: r for r in rows}
    lines = []
    fp32 = [r for n, r in by.items() if r["precision"] == "fp32" and not n.startswith("eager")]
    if fp32:
        best = max(fp32, key=lambda r: r["speedup_vs_released_eager"])
        ok = (best["speedup_vs_released_eager"] >= TARGET_FP32_SPEEDUP
              and best["max_abs_all"] < TARGET_FP32_DIFF_M)
        lines.append(f"target fp32 export >= {TARGET_FP32_SPEEDUP}x released eager, diff < "
                     f"{TARGET_FP32_DIFF_M:g}: {best['runtime']} "
                     f"{best['speedup_vs_released_eager']:.2f}x, {best['max_abs_all']:.1e} -> "
                     f"{'met' if ok else 'NOT met'}")
    low = by.get("openvino_bf16")
    if low is not None and low["crop_joint_drift_mean_mm"] is not None:
        ok = (low["precision"] != "fp32"
              and low["speedup_vs_released_eager"] >= TARGET_LOW_SPEEDUP
              and low["crop_joint_drift_mean_mm"] <= TARGET_LOW_DRIFT_MM)
        lines.append(f"target low precision >= {TARGET_LOW_SPEEDUP}x released eager, mean "
                     f"crop drift <= {TARGET_LOW_DRIFT_MM} mm: openvino_bf16 ({low['precision']}) "
                     f"{low['speedup_vs_released_eager']:.2f}x, "
                     f"{low['crop_joint_drift_mean_mm']:.3f} mm -> {'met' if ok else 'NOT met'}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
