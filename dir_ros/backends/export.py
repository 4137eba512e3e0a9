"""Exported CPU inference path: the DIR network as ONNX, run with ONNX Runtime or OpenVINO.

export_onnx() traces the whole network (backbone, regressors, hand model layers, bone
projection) with the TorchScript-based exporter (`dynamo=False`; torch.export stops on
data-dependent values) into one ONNX graph whose outputs are the final level and the seg
logits (OUTPUT_NAMES). OnnxDIR (ONNX Runtime) and OpenVinoDIR (OpenVINO's CPU plugin, which
also runs it in bf16 where the CPU has it) run that graph and answer like the torch model
does for HandsPredictor (`model(x).final.hand(side)`, `.seg`, `input_size`, `faces`,
`hand_layers`); their shared part is ExportedDIR. load_runtime() is the one entry point: it
caches the export on disk under a key made of the model config and a hash of every
parameter and buffer, re-exports when either changes, checks the runtime against eager once
(fp32: CHECK_TOLERANCE; low precision: LOW_PRECISION_CHECK_TOLERANCE_M) and falls back to
torch with one warning on failure. The eager network is untouched (the legacy exporter
traces it as it is).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from dir_ros.model.outputs import DIROutput, HandPrediction, LevelOutput
from dir_ros.config import PRECISIONS, RUNTIMES
from dir_ros.common.results import SIDES

LOG = logging.getLogger("dir_ros.backends.export")

# ONNX opset of the export (GridSample needs >= 16; 17 is what ONNX Runtime 1.32 and
# OpenVINO 2026.4 both run with every op of this graph).
ONNX_OPSET = 17
# Bumped whenever the exported graph's interface, its computation or the export procedure
# changes, so that caches written by an older version are not reused (2: the multi-plane
# fusion weight folded in its block layout, bone_conv.py).
EXPORT_FORMAT_VERSION = 2
# Per-hand output fields, in graph order (HandPrediction field names).
HAND_FIELDS = ("joints_uv", "verts_uv", "joints_xyz", "verts_xyz", "camera", "params")
# Graph outputs: every HAND_FIELDS entry for left then right, the offset, then seg.
OUTPUT_NAMES = tuple(f"{s}_{f}" for s in SIDES for f in HAND_FIELDS) + ("offset", "seg")
# Largest allowed difference (network units: metres for xyz, normalised uv, raw params)
# between an fp32 runtime and eager on the check input before the runtime is trusted.
CHECK_TOLERANCE = 1e-4
# A low-precision runtime (bf16) cannot meet CHECK_TOLERANCE: bf16 keeps 8 significant bits,
# so outputs move by ~1e-2 in raw units. Its check bounds the mean 3D joint drift (m, both
# hands' root-relative joints_xyz) against eager fp32 on the check input instead: measured
# 0.7 mm for conditioned random light and release models (OpenVINO 2026.4 bf16, this
# project's AMD EPYC), 0.65 mm on real photos' crops (benchmarks/benchmark_export.py). 5 mm
# leaves room for trained weights while still catching a broken graph (a hand is ~0.2 m).
LOW_PRECISION_CHECK_TOLERANCE_M = 5e-3
# Seed of the random check input (reproducible checks).
CHECK_SEED = 0
# Weak-perspective scale (normalised uv per metre) given to a conditioned random model:
# a hand ~0.2 m long then spans ~1/5 of the crop.
CONDITION_CAMERA_SCALE = 2.0
# Precisions each exported runtime can run on the CPU (the others run fp32, with a warning).
# ONNX Runtime's CPU provider has no bf16/fp16 kernels for this graph's ops.
RUNTIME_PRECISIONS = {"onnxruntime": ("fp32",), "openvino": ("fp32", "fp16", "bf16")}
# OpenVINO INFERENCE_PRECISION_HINT per precision; the CPU plugin picks what the CPU has
# (bf16 needs avx512_bf16 or AMX; 'f16' on a CPU without avx512_fp16/AMX-FP16 runs bf16, on
# one without either f32), so the precision used is read back from the compiled model.
OPENVINO_HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
OPENVINO_NAMES = {v: k for k, v in OPENVINO_HINTS.items()}  # OpenVINO type name -> ours
# CPU flags (Linux /proc/cpuinfo) of native bf16 arithmetic. OpenVINO 2026.4 also offers bf16
# on plain AVX-512 CPUs (emulated): on such a Xeon (avx512f, no avx512_bf16 / AMX) its bf16
# graph of the light network drifted 33.5 mm (mean joint) from eager fp32, against 0.7 mm
# with native bf16, so low precision is asked for only where these flags are present.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = "/proc/cpuinfo"


def cpu_has_native_bf16() -> Optional[bool]:
    """True / False from the CPU's flags (NATIVE_BF16_FLAGS); None where /proc/cpuinfo cannot
    be read (not Linux: OpenVINO's own choice then stands)."""
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), None)
    except OSError:
        return None
    if flags is None:
        return None
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/dir_ros/export (XDG default ~/.cache) for the exported graphs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dir_ros" / "export"


class ExportWrapper(nn.Module):
    """DIR -> flat tuple of the tensors the predictor reads (OUTPUT_NAMES order).

    For each side: joints_uv (B,21,2) and verts_uv (B,V,2) normalised uv, joints_xyz (B,21,3)
    and verts_xyz (B,V,3) root-relative metres, camera (B,3) (s,tx,ty), params (B,64); then
    offset (B,3) and seg (B,3,h,w) logits (zeros (B,3,1,1) when the config has no seg head).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """images (B,3,S,S) ImageNet-normalised -> OUTPUT_NAMES tensors."""
        out = self.model(images)
        final = out.final
        flat = [getattr(final.hand(s), f) for s in SIDES for f in HAND_FIELDS]
        seg = out.seg if out.seg is not None else images.new_zeros(images.shape[0], 3, 1, 1)
        return (*flat, final.offset, seg)


def export_onnx(model: nn.Module, path: Union[str, Path], opset: int = ONNX_OPSET) -> Path:
    """Export `model` (a DIR, CPU, eval) to an ONNX file at `path` with a dynamic batch axis;
    written to a temporary name first, so a failed export leaves no file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    wrapper = ExportWrapper(model).eval()
    size = int(model.input_size)
    example = torch.zeros(1, 3, size, size)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer / deprecation chatter, all expected
            torch.onnx.export(wrapper, (example,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["images"], output_names=list(OUTPUT_NAMES),
                              dynamic_axes={"images": {0: "batch"},
                                            **{n: {0: "batch"} for n in OUTPUT_NAMES}})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def model_cache_key(model: nn.Module) -> str:
    """sha256 (hex) of the model config, every parameter and buffer (names, dtypes, shapes,
    bytes), the export format, opset and torch version: any change re-exports. Runtime and
    precision are not in it: every runtime and precision reads the same fp32 ONNX file
    (OpenVINO keys its compiled blobs, see OpenVinoDIR, by the graph and its properties)."""
    h = hashlib.sha256()
    meta = {"config": getattr(model, "config", None), "format": EXPORT_FORMAT_VERSION,
            "opset": ONNX_OPSET, "torch": torch.__version__}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    for name, t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def onnx_path(model: nn.Module, folder: Union[str, Path]) -> Path:
    """Where the export of `model` is cached in `folder` (named by model_cache_key)."""
    return Path(folder) / f"dir_{model_cache_key(model)[:32]}.onnx"


def make_session(path: Union[str, Path], threads: Optional[int] = None) -> Any:
    """An ONNX Runtime CPU session on `path`, intra-op threads = torch's (or `threads`)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No busy-waiting of idle pool threads between runs: they would take the cores from
    # torch, the decoder and the ROS executor (on 2 cores eager torch ran 15x slower).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class ExportedDIR:
    """A DIR stand-in backed by an exported graph: model(images) -> DIROutput with the final
    level only (levels = [final]) and seg; everything else (input_size, faces, hand_layers,
    config) is the torch model's. CPU only. Subclasses implement run_flat()."""

    runtime = ""         # HandsPredictor.runtime
    precision = "fp32"   # the precision the runtime actually computes in

    def __init__(self, model: nn.Module) -> None:
        self.torch_model = model
        self.has_seg = bool(getattr(getattr(model, "decoder", None), "aux_heads", True))

    def __getattr__(self, name: str) -> Any:
        """Attributes not defined here come from the torch model (input_size, faces, ...)."""
        model = self.__dict__.get("torch_model")
        if model is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(model, name)

    def to(self, device: Any) -> "ExportedDIR":
        """Only the CPU is supported."""
        if torch.device(device).type != "cpu":
            raise ValueError(f"the {self.runtime} runtime runs on the CPU only")
        return self

    def eval(self) -> "ExportedDIR":
        """Always in inference mode."""
        return self

    def run_flat(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (B,3,S,S) float32 -> the OUTPUT_NAMES tensors (float32, CPU)."""
        raise NotImplementedError

    def __call__(self, images: torch.Tensor) -> DIROutput:
        """images (B,3,S,S) ImageNet-normalised -> DIROutput (final level and seg)."""
        flat = self.run_flat(images)
        n = len(HAND_FIELDS)
        hands = {s: HandPrediction(**dict(zip(HAND_FIELDS, flat[i * n:(i + 1) * n])))
                 for i, s in enumerate(SIDES)}
        level = LevelOutput(left=hands["left"], right=hands["right"], offset=flat[-2])
        return DIROutput(levels=[level], seg=flat[-1] if self.has_seg else None)


def _cpu_float32(images: torch.Tensor) -> Any:
    """images -> a contiguous float32 numpy array (what both runtimes take)."""
    return images.detach().to("cpu", torch.float32).contiguous().numpy()


class OnnxDIR(ExportedDIR):
    """ExportedDIR on an ONNX Runtime session (fp32)."""

    runtime = "onnxruntime"

    def __init__(self, model: nn.Module, session: Any) -> None:
        super().__init__(model)
        self.session = session

    def run_flat(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (B,3,S,S) float32 -> the OUTPUT_NAMES tensors (float32, CPU)."""
        return [torch.from_numpy(a)
                for a in self.session.run(None, {"images": _cpu_float32(images)})]


class OpenVinoDIR(ExportedDIR):
    """ExportedDIR on OpenVINO's CPU plugin, compiled from the ONNX file at `path`.

    Compiled once per batch size with that batch fixed (static shapes: 50 vs 60 ms for the
    release network in bf16 on 2 cores, dynamic batch being slower in OpenVINO's CPU plugin);
    batch 1 is compiled here. `precision` (fp32 | fp16 | bf16) sets INFERENCE_PRECISION_HINT;
    self.precision is what the compiled model reports it uses. cache_dir: OpenVINO's
    CACHE_DIR for compiled blobs (keyed by OpenVINO on the graph and these properties, so
    each precision has its own), None = no blob cache.
    """

    runtime = "openvino"

    def __init__(self, model: nn.Module, path: Union[str, Path], precision: str = "fp32",
                 threads: Optional[int] = None,
                 cache_dir: Union[str, Path, None] = None) -> None:
        import openvino as ov

        super().__init__(model)
        if precision not in OPENVINO_HINTS:
            raise ValueError(f"precision '{precision}' is not one of {', '.join(OPENVINO_HINTS)}")
        self._ov = ov
        self.core = ov.Core()
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            self.core.set_property({"CACHE_DIR": str(cache_dir)})
        self.graph = self.core.read_model(str(path))
        self.requested_precision = precision
        if precision != "fp32" and cpu_has_native_bf16() is False:
            LOG.info("precision %s: this CPU has no native bf16 (%s); OpenVINO runs f32",
                     precision, " / ".join(NATIVE_BF16_FLAGS))
            precision = "fp32"
        # INFERENCE_NUM_THREADS = torch's (the node's thread budget); one stream, tuned for
        # latency. ENABLE_CPU_PINNING off: pinned threads would hold their cores against
        # the ROS executor and the decoder (OpenVINO pins by default on Linux; two pinned
        # processes on the same cores each run at half speed). OpenVINO's CPU plugin has no
        # spin-wait property (its TBB workers park on their own), unlike ONNX Runtime.
        self.properties = {"INFERENCE_PRECISION_HINT": OPENVINO_HINTS[precision],
                           "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
                           "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                           "ENABLE_CPU_PINNING": False}
        self._compiled: dict[int, tuple[Any, Any]] = {}
        compiled, _ = self._for_batch(1)
        used = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.precision = OPENVINO_NAMES.get(used, used)

    def _for_batch(self, batch: int) -> tuple[Any, Any]:
        """(compiled model, infer request) with the batch axis fixed to `batch`."""
        if batch not in self._compiled:
            graph = self.graph.clone()
            size = list(self.graph.input(0).get_partial_shape())[1:]
            graph.reshape({graph.input(0): self._ov.PartialShape([batch, *size])})
            compiled = self.core.compile_model(graph, "CPU", self.properties)
            self._compiled[batch] = (compiled, compiled.create_infer_request())
        return self._compiled[batch]

    def run_flat(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (B,3,S,S) float32 -> the OUTPUT_NAMES tensors (float32, CPU)."""
        x = _cpu_float32(images)
        compiled, request = self._for_batch(int(x.shape[0]))
        res = request.infer({0: x})  # copies the outputs (share_outputs=False)
        return [torch.from_numpy(res[compiled.output(n)]) for n in OUTPUT_NAMES]


def max_difference(a: list[torch.Tensor] | tuple[torch.Tensor, ...],
                   b: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> float:
    """Largest absolute element difference over paired tensors (NaN-safe: NaN -> inf)."""
    worst = 0.0
    for x, y in zip(a, b):
        d = (x.float() - y.float()).abs().max().item() if x.numel() else 0.0
        worst = max(worst, d if d == d else float("inf"))
    return worst


def joint_drift(got: list[torch.Tensor] | tuple[torch.Tensor, ...],
                want: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Per-joint 3D distances (m), flat (B*2*21,), between two OUTPUT_NAMES lists' root-
    relative joints_xyz of both hands; non-finite outputs give inf."""
    idx = [OUTPUT_NAMES.index(f"{s}_joints_xyz") for s in SIDES]
    d = torch.cat([(got[i].float() - want[i].float()).norm(dim=-1).reshape(-1) for i in idx])
    return torch.where(torch.isfinite(d), d, torch.full_like(d, float("inf")))


def check_runtime(model: nn.Module, net: ExportedDIR, batch: int = 1) -> str:
    """Compare `net` with eager on a seeded random input; raise RuntimeError when it is off.

    fp32: the largest output difference (OUTPUT_NAMES, seg excluded) must be at most
    CHECK_TOLERANCE. Low precision: the mean joint drift (joint_drift) must be at most
    LOW_PRECISION_CHECK_TOLERANCE_M. Returns the figure and its bound, for the log.
    """
    gen = torch.Generator().manual_seed(CHECK_SEED)
    size = int(model.input_size)
    x = torch.randn(batch, 3, size, size, generator=gen)
    with torch.inference_mode():
        ref = ExportWrapper(model).eval()(x)
    got = net.run_flat(x)
    if net.precision == "fp32":
        diff = max_difference(got[:-1], ref[:-1])
        if not diff <= CHECK_TOLERANCE:
            raise RuntimeError(f"exported graph differs from eager by {diff:.3g} "
                               f"(> {CHECK_TOLERANCE:g})")
        return f"max difference to eager {diff:.2g} (bound {CHECK_TOLERANCE:g})"
    drift = joint_drift(got, ref).mean().item()
    if not drift <= LOW_PRECISION_CHECK_TOLERANCE_M:
        raise RuntimeError(f"{net.precision} mean joint drift to eager fp32 {1e3 * drift:.3g} mm "
                           f"(> {1e3 * LOW_PRECISION_CHECK_TOLERANCE_M:g} mm)")
    return (f"mean joint drift to eager fp32 {1e3 * drift:.2g} mm on the check input (low-"
            f"precision bound {1e3 * LOW_PRECISION_CHECK_TOLERANCE_M:g} mm, not {CHECK_TOLERANCE:g})")


def condition_random_init_(model: nn.Module) -> nn.Module:
    """Give a randomly initialised DIR well-conditioned outputs, for tests and benchmarks.

    The release init gives the parameter regressors N(0, 1e-3) weights and zero biases, so
    the initial rot6d is ~1e-10: its normalisation turns float rounding (any two code paths,
    eager vs exported) into centimetres. Adding an identity rotation (1,0,0, 0,1,0) and a
    camera scale of CONDITION_CAMERA_SCALE to every params regressor's bias makes the
    rotations well-defined; the network is otherwise unchanged. In place; returns model.
    """
    from dir_ros.hand_model import CAMERA_SLICE, NUM_PARAMS, ROT6D_SLICE

    identity = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    with torch.no_grad():
        for name, mod in model.named_modules():
            if (isinstance(mod, nn.Linear) and mod.out_features == NUM_PARAMS
                    and name.rsplit(".", 1)[-1] in ("mano_left", "mano_right")):
                mod.bias[ROT6D_SLICE] += identity.to(mod.bias)
                mod.bias[CAMERA_SLICE.start] += CONDITION_CAMERA_SCALE
    return model


def build_exported(model: nn.Module, runtime: str, path: Union[str, Path],
                   precision: str = "fp32", threads: Optional[int] = None,
                   blob_cache: Union[str, Path, None] = None) -> ExportedDIR:
    """The ExportedDIR of `runtime` on the ONNX file `path` (no check, no fallback)."""
    if runtime == "onnxruntime":
        return OnnxDIR(model, make_session(path, threads))
    if runtime == "openvino":
        return OpenVinoDIR(model, path, precision, threads, blob_cache)
    raise ValueError(f"runtime '{runtime}' is not an exported runtime "
                     f"({', '.join(RUNTIME_PRECISIONS)})")


def load_runtime(model: nn.Module, runtime: str = "torch",
                 cache_dir: Union[str, Path, None] = None, precision: str = "fp32") -> Any:
    """The network to call for `runtime` at `precision`: the torch model itself ('torch';
    its precision is HandsPredictor's business) or an ExportedDIR ('onnxruntime', 'openvino')
    built from the cached export (exported when missing or stale). A precision the runtime
    cannot run falls back to fp32 with a warning; any failure (export, compile, check) warns
    once and returns the torch model."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime '{runtime}' is not one of {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if runtime == "torch":
        return model
    if precision not in RUNTIME_PRECISIONS[runtime]:
        LOG.warning("precision %s is not available with runtime %s on the CPU (%s); "
                    "running fp32", precision, runtime, ", ".join(RUNTIME_PRECISIONS[runtime]))
        precision = "fp32"
    try:
        model = model.cpu().eval()
        folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        path = onnx_path(model, folder)
        if not path.is_file():
            LOG.info("exporting the DIR network to %s", path)
            export_onnx(model, path)
        net = build_exported(model, runtime, path, precision, blob_cache=folder / "openvino")
        verdict = check_runtime(model, net)
        LOG.info("%s on %s, precision %s (asked %s): %s", runtime, path, net.precision,
                 precision, verdict)
        return net
    except Exception as err:  # noqa: BLE001 - any failure means: run eager instead
        what = f"runtime '{runtime}'" + ("" if precision == "fp32" else f" at {precision}")
        msg = f"{what} unavailable ({type(err).__name__}: {err}); using torch"
        LOG.warning(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return model
