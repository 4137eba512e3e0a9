"""Exported CPU inference path: the DIR network as ONNX, run with ONNX Runtime.

export_onnx() traces the whole network (backbone, regressors, hand model layers, bone
projection) with the TorchScript-based exporter (`dynamo=False`; torch.export stops on
data-dependent values) into one ONNX graph whose outputs are the final level and the seg
logits (OUTPUT_NAMES). OnnxDIR runs that graph and answers like the torch model does for
HandsPredictor (`model(x).final.hand(side)`, `.seg`, `input_size`, `faces`, `hand_layers`).
load_runtime() is the one entry point: it caches the export on disk under a key made of
the model config and a hash of every parameter and buffer, re-exports when either changes,
checks the session against eager once, and falls back to torch with one warning on failure.
The eager network is untouched (the legacy exporter traces it as it is).
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
from dir_ros.predictor import RUNTIMES
from dir_ros.results import SIDES

LOG = logging.getLogger("dir_ros.export")

# ONNX opset of the export (GridSample needs >= 16; 17 is what ONNX Runtime 1.32 and
# OpenVINO 2026.4 both run with every op of this graph).
ONNX_OPSET = 17
# Bumped whenever the exported graph's interface or the export procedure changes, so that
# caches written by an older version are not reused.
EXPORT_FORMAT_VERSION = 1
# Per-hand output fields, in graph order (HandPrediction field names).
HAND_FIELDS = ("joints_uv", "verts_uv", "joints_xyz", "verts_xyz", "camera", "params")
# Graph outputs: every HAND_FIELDS entry for left then right, the offset, then seg.
OUTPUT_NAMES = tuple(f"{s}_{f}" for s in SIDES for f in HAND_FIELDS) + ("offset", "seg")
# Largest allowed difference (network units: metres for xyz, normalised uv, raw params)
# between the session and eager on the check input before the session is trusted.
CHECK_TOLERANCE = 1e-4
# Seed of the random check input (reproducible checks).
CHECK_SEED = 0
# Weak-perspective scale (normalised uv per metre) given to a conditioned random model:
# a hand ~0.2 m long then spans ~1/5 of the crop.
CONDITION_CAMERA_SCALE = 2.0


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
    bytes), the export format, opset and torch version: any change re-exports."""
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


class OnnxDIR:
    """A DIR stand-in backed by an ONNX Runtime session: model(images) -> DIROutput with the
    final level only (levels = [final]) and seg; everything else (input_size, faces,
    hand_layers, config) is the torch model's. CPU only."""

    runtime = "onnxruntime"  # HandsPredictor.runtime

    def __init__(self, model: nn.Module, session: Any) -> None:
        self.torch_model = model
        self.session = session
        self.has_seg = bool(getattr(getattr(model, "decoder", None), "aux_heads", True))

    def __getattr__(self, name: str) -> Any:
        """Attributes not defined here come from the torch model (input_size, faces, ...)."""
        if name in ("torch_model", "session", "has_seg"):
            raise AttributeError(name)
        return getattr(self.torch_model, name)

    def to(self, device: Any) -> "OnnxDIR":
        """Only the CPU is supported (ONNX Runtime's CPU provider)."""
        if torch.device(device).type != "cpu":
            raise ValueError("the onnxruntime runtime runs on the CPU only")
        return self

    def eval(self) -> "OnnxDIR":
        """Always in inference mode."""
        return self

    def run_flat(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (B,3,S,S) float32 -> the OUTPUT_NAMES tensors (float32, CPU)."""
        x = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return [torch.from_numpy(a) for a in self.session.run(None, {"images": x})]

    def __call__(self, images: torch.Tensor) -> DIROutput:
        """images (B,3,S,S) ImageNet-normalised -> DIROutput (final level and seg)."""
        flat = self.run_flat(images)
        n = len(HAND_FIELDS)
        hands = {s: HandPrediction(**dict(zip(HAND_FIELDS, flat[i * n:(i + 1) * n])))
                 for i, s in enumerate(SIDES)}
        level = LevelOutput(left=hands["left"], right=hands["right"], offset=flat[-2])
        return DIROutput(levels=[level], seg=flat[-1] if self.has_seg else None)


def max_difference(a: list[torch.Tensor] | tuple[torch.Tensor, ...],
                   b: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> float:
    """Largest absolute element difference over paired tensors (NaN-safe: NaN -> inf)."""
    worst = 0.0
    for x, y in zip(a, b):
        d = (x.float() - y.float()).abs().max().item() if x.numel() else 0.0
        worst = max(worst, d if d == d else float("inf"))
    return worst


def check_session(model: nn.Module, onnx_model: OnnxDIR, batch: int = 1) -> float:
    """Largest output difference (OUTPUT_NAMES, seg excluded) between the session and eager
    on a seeded random input; raises RuntimeError above CHECK_TOLERANCE."""
    gen = torch.Generator().manual_seed(CHECK_SEED)
    size = int(model.input_size)
    x = torch.randn(batch, 3, size, size, generator=gen)
    with torch.inference_mode():
        ref = ExportWrapper(model).eval()(x)
    got = onnx_model.run_flat(x)
    diff = max_difference(got[:-1], ref[:-1])
    if not diff <= CHECK_TOLERANCE:
        raise RuntimeError(f"exported graph differs from eager by {diff:.3g} "
                           f"(> {CHECK_TOLERANCE:g})")
    return diff


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


def load_runtime(model: nn.Module, runtime: str = "torch",
                 cache_dir: Union[str, Path, None] = None) -> Any:
    """The network to call for `runtime`: the torch model itself ('torch') or an OnnxDIR
    ('onnxruntime') built from the cached export (exported when missing or stale). Any
    failure (export, session, check) warns once and returns the torch model."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime '{runtime}' is not one of {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return model
    try:
        model = model.cpu().eval()
        folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        path = folder / f"dir_{model_cache_key(model)[:32]}.onnx"
        if not path.is_file():
            LOG.info("exporting the DIR network to %s", path)
            export_onnx(model, path)
        onnx_model = OnnxDIR(model, make_session(path))
        diff = check_session(model, onnx_model)
        LOG.info("onnxruntime session on %s (max difference to eager %.2g)", path, diff)
        return onnx_model
    except Exception as err:  # noqa: BLE001 - any failure means: run eager instead
        msg = f"runtime 'onnxruntime' unavailable ({type(err).__name__}: {err}); using torch"
        LOG.warning(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return model
