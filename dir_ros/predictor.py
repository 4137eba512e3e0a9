"""Predictors: everything between a decoded camera image and two reconstructed hands.

build_predictor(config) picks the backend (`backend: auto | dir | landmarks`):
  * dir (HandsPredictor): choose the crop (crop.py; 'detect' = the hand front end) -> warp to
    the network input -> ImageNet-normalise -> DIR forward (inference mode, optional autocast)
    -> final level -> camera-frame geometry through K -> FrameResult;
  * landmarks (landmark_backend.LandmarkPredictor): the hand front end's landmarks -> metric
    placement and a hand-model fit, no network.
auto runs DIR when `weights` names a checkpoint, the landmark backend otherwise.
Pure Python + torch: no ROS imports.
"""
from __future__ import annotations

import contextlib
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from dir_ros import geometry as geo
from dir_ros.crop import Cropper, FullFrameCropper, make_cropper
from dir_ros.hand_model import BETAS_SLICE
from dir_ros.resources import resolve_resource
from dir_ros.results import SIDES, FrameResult, HandsResult, require_rgb

LOG = logging.getLogger("dir_ros.predictor")

# Default validity threshold on HandsResult.confidence (seg-head hand probability, see
# _seg_confidence): above a 3-class chance level of 1/3 with some margin.
DEFAULT_MIN_CONFIDENCE = 0.5
# Plausible camera-to-wrist distances (m) for metric placement; outside, the hand is
# published root-relative (metric False) instead of at an absurd position.
DEFAULT_DEPTH_RANGE = (0.05, 10.0)
# Seg-head class indices (DIR_ARCHITECTURE.md: background, left, right).
SEG_CLASS = {"left": 1, "right": 2}
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16")
BACKENDS = ("auto", "dir", "landmarks")
# How the DIR network runs: eager torch, or its ONNX export on ONNX Runtime or OpenVINO (CPU
# only; dir_ros/export.py: cached on disk, falls back to torch with a warning when
# unavailable). OpenVINO also runs `precision` bf16 (fp16) on the CPU, where the CPU has it.
# auto: torch on CUDA; on the CPU the first installed of AUTO_CPU_RUNTIMES, else torch.
RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")
# auto's CPU preference, fastest first (docs/figures/benchmark_export.json, release network,
# 2 cores: OpenVINO 2.5x eager as released in fp32, ONNX Runtime 2.1x).
AUTO_CPU_RUNTIMES = ("openvino", "onnxruntime")


# --- resources ----------------------------------------------------------------------------

def is_unset(value: Any) -> bool:
    """'' / None / 'none' / 'random' mean 'not given'."""
    return value is None or str(value).strip().lower() in ("", "none", "null", "random")


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when available else 'cpu'; 'cuda' without a GPU raises."""
    import torch

    if device not in DEVICES:
        raise ValueError(f"device '{device}' is not one of {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device "
                           "(use device 'auto' or 'cpu')")
    return device


# --- the predictor ------------------------------------------------------------------------

DEFAULT_CONFIG: dict[str, Any] = {
    "backend": "auto",
    "model_config": "config/model/dir_release.yaml",
    "weights": "",
    "hand_model": "",
    "device": "auto",
    "precision": "fp32",
    "runtime": "auto",
    "export_cache": "",
    "crop": "detect",
    "roi": [],
    "mirrored_input": False,
    "min_confidence": DEFAULT_MIN_CONFIDENCE,
    "depth_range": list(DEFAULT_DEPTH_RANGE),
    "seed": 0,
    # landmark backend (issue 19): hold each hand's size; couple two hands that meet
    "scale_hold": True,
    "hand_contact": True,
    # the finger step of interlocked fingers: off | onset | always (landmark_backend)
    "finger_step": "onset",
}


def load_config(config: Union[str, Path, Mapping[str, Any]]) -> dict[str, Any]:
    """DEFAULT_CONFIG updated from a YAML file (a ROS params file or a plain mapping) or a
    dict; keys the predictors do not use are ignored (logged at debug level)."""
    import yaml

    if not isinstance(config, Mapping):
        with open(resolve_resource(config), encoding="utf-8") as f:
            config = ros_params_section(yaml.safe_load(f) or {})
    unknown = set(config) - set(DEFAULT_CONFIG)
    if unknown:
        LOG.debug("predictor ignores config keys %s", sorted(unknown))
    return {**DEFAULT_CONFIG, **{k: v for k, v in config.items() if k in DEFAULT_CONFIG}}


def choose_backend(backend: str, weights: Any) -> str:
    """'auto' -> 'dir' when weights names a checkpoint, else 'landmarks'; others as given."""
    if backend not in BACKENDS:
        raise ValueError(f"backend '{backend}' is not one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "landmarks" if is_unset(weights) else "dir"
    return backend


def hand_model_dir(value: Any) -> Optional[Path]:
    """The `hand_model` folder (None = the bundled open hand model); a missing one raises."""
    if is_unset(value):
        return None
    folder = resolve_resource(value)
    if not folder.is_dir():
        raise FileNotFoundError(f"hand_model folder '{value}' not found "
                                f"(it must hold MANO_LEFT.pkl and MANO_RIGHT.pkl)")
    return folder


def make_detector(cfg: Mapping[str, Any]) -> Any:
    """The hand front end (dir_ros.detection.HandDetector) for a predictor config."""
    from dir_ros.detection import HandDetector

    return HandDetector(mirrored_input=bool(cfg["mirrored_input"]))


def build_predictor(config: Union[str, Path, Mapping[str, Any]]) -> Any:
    """The predictor a config asks for (see module docstring): HandsPredictor (DIR) or
    LandmarkPredictor; both have predict(rgb, K) -> FrameResult and reset()."""
    cfg = load_config(config)
    if choose_backend(str(cfg["backend"]), cfg["weights"]) == "landmarks":
        from dir_ros.landmark_backend import LandmarkPredictor

        return LandmarkPredictor.from_config(cfg)
    return HandsPredictor.from_config(cfg)


def resolve_runtime(runtime: str, device: str) -> str:
    """The runtime `runtime` names on `device` ('cpu' / 'cuda'): itself, or for 'auto' torch
    on CUDA and on the CPU the first installed of AUTO_CPU_RUNTIMES (torch when none is)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime '{runtime}' is not one of {', '.join(RUNTIMES)}")
    if runtime != "auto":
        return runtime
    if device != "cpu":
        return "torch"
    import importlib.util

    found = next((r for r in AUTO_CPU_RUNTIMES if importlib.util.find_spec(r) is not None),
                 "torch")
    LOG.info("runtime auto on the CPU: %s", found)
    return found


def select_runtime(model: Any, runtime: str, device: str, export_cache: Any,
                   precision: str = "fp32") -> Any:
    """The network HandsPredictor calls: `model` itself ('torch'), or its exported stand-in
    (dir_ros.export.OnnxDIR / OpenVinoDIR, running `precision` where it can) on the CPU; on
    CUDA an exported runtime warns and runs torch ('auto': see resolve_runtime).
    export_cache '' = $XDG_CACHE_HOME/dir_ros/export (~/.cache/dir_ros/export)."""
    runtime = resolve_runtime(runtime, device)
    if runtime == "torch":
        return model
    if device != "cpu":
        LOG.warning("runtime %s runs on the CPU only; running torch on %s", runtime, device)
        return model
    from dir_ros.export import load_runtime

    return load_runtime(model, runtime, None if is_unset(export_cache) else str(export_cache),
                        precision)


def ros_params_section(loaded: Mapping[str, Any]) -> dict[str, Any]:
    """The `ros__parameters` of a ROS params file (any node key: `hands_node`, `/**`,
    `/**/hands_node`, ...); a plain mapping without that nesting is returned as it is."""
    for value in loaded.values():
        if isinstance(value, Mapping) and "ros__parameters" in value:
            return dict(value["ros__parameters"] or {})
    return dict(loaded)


class HandsPredictor:
    """Two hands from one RGB image with a DIR network (see module docstring)."""

    def __init__(self, model: Any, device: str = "cpu", precision: str = "fp32",
                 cropper: Optional[Cropper] = None,
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                 depth_range: Sequence[float] = DEFAULT_DEPTH_RANGE,
                 mirrored_input: bool = False) -> None:
        import torch

        if precision not in PRECISIONS:
            raise ValueError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
        self.device = torch.device(device)
        self.precision = precision
        self.runtime = str(getattr(model, "runtime", "torch"))  # ExportedDIR: its runtime
        if self.runtime != "torch":  # exported (CPU): the precision it computes in
            self.precision = str(getattr(model, "precision", "fp32"))
        elif precision != "fp32" and self.device.type != "cuda":
            LOG.warning("precision %s is only used on CUDA; running fp32 on %s",
                        precision, self.device.type)
            self.precision = "fp32"
        self.model = model.to(self.device).eval()
        self.input_size = int(model.input_size)
        self.cropper: Cropper = cropper or FullFrameCropper()
        self.min_confidence = float(min_confidence)
        self.depth_range = (float(depth_range[0]), float(depth_range[1]))
        self.mirrored_input = bool(mirrored_input)  # for a detector made by set_crop('detect')
        self.previous: Optional[FrameResult] = None
        self.faces = {s: model.faces(s).cpu().numpy().astype(np.int64) for s in SIDES}
        self.num_verts = {s: int(model.hand_layers[s].num_verts) for s in SIDES}

    # ---- construction
    @classmethod
    def from_config(cls, config: Union[str, Path, Mapping[str, Any]]) -> "HandsPredictor":
        """Build the DIR predictor from a YAML file or dict with the DEFAULT_CONFIG keys
        (documented in config/hands.yaml). Weights '' = random init (loud warning)."""
        import torch

        cfg = load_config(config)
        model_cfg_path = resolve_resource(cfg["model_config"])
        if not model_cfg_path.is_file():
            raise FileNotFoundError(f"model_config '{cfg['model_config']}' not found "
                                    f"(looked at {model_cfg_path})")
        hand_dir = hand_model_dir(cfg["hand_model"])
        device = resolve_device(str(cfg["device"]))
        from dir_ros.model import build_dir, load_model_config

        torch.manual_seed(int(cfg["seed"]))  # reproducible random init (no weights)
        model = build_dir(load_model_config(model_cfg_path), hand_model_dir=hand_dir)
        if is_unset(cfg["weights"]):
            msg = ("NO WEIGHTS GIVEN: the DIR network is RANDOMLY INITIALISED; its hands are "
                   "meaningless. Set `weights` to a trained checkpoint.")
            LOG.warning(msg)
            warnings.warn(msg, stacklevel=2)
        else:
            wpath = resolve_resource(cfg["weights"])
            if not wpath.is_file():
                raise FileNotFoundError(f"weights file '{cfg['weights']}' not found")
            from dir_ros.model import load_release_checkpoint

            report = load_release_checkpoint(model, wpath)
            LOG.info("loaded weights %s: %s", wpath, report)
        precision = str(cfg["precision"])
        runtime = resolve_runtime(str(cfg["runtime"]), device)
        network = select_runtime(model, runtime, device, cfg["export_cache"], precision)
        if network is model and runtime != "torch" and device == "cpu":
            precision = "fp32"  # the exported runtime fell back to torch (it warned once)
        return cls(network, device=device, precision=precision,
                   cropper=make_cropper(str(cfg["crop"]), cfg["roi"] or None,
                                        make_detector(cfg) if cfg["crop"] == "detect" else None),
                   min_confidence=float(cfg["min_confidence"]),
                   depth_range=cfg["depth_range"], mirrored_input=bool(cfg["mirrored_input"]))

    def reset(self) -> None:
        """Forget the previous frame (tracking crop, detector tracks)."""
        self.previous = None
        detector = getattr(self.cropper, "detector", None)
        if detector is not None:
            detector.reset()

    def set_crop(self, mode: str, roi: Optional[Sequence[float]] = None) -> None:
        """Switch the crop mode at run time (keeps the hand front end when it has one)."""
        detector = getattr(self.cropper, "detector", None)
        if mode == "detect" and detector is None:
            detector = make_detector({"mirrored_input": self.mirrored_input})
        self.cropper = make_cropper(mode, roi, detector)
        self.reset()

    def _autocast(self) -> contextlib.AbstractContextManager:
        import torch

        if self.precision == "fp32" or self.device.type != "cuda":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type="cuda", dtype=dtype)

    # ---- inference
    def predict(self, rgb: np.ndarray, K: Optional[np.ndarray] = None) -> FrameResult:
        """rgb (H,W,3) uint8, K (3,3) intrinsics or None -> FrameResult (both hands)."""
        import torch

        from dir_ros.model.normalize import normalize_image

        rgb = require_rgb(rgb)
        t0 = time.perf_counter()
        box = self.cropper(rgb, self.previous)
        crop = geo.warp_crop(rgb, box, self.input_size)
        t1 = time.perf_counter()
        with torch.inference_mode():
            x = normalize_image(torch.from_numpy(crop).to(self.device)[None])
            with self._autocast():
                out = self.model(x)
            level = out.final
            seg = torch.softmax(out.seg.float(), dim=1)[0].cpu().numpy() \
                if out.seg is not None else None
            preds = {s: level.hand(s) for s in SIDES}
            rotmats = {s: self.model.hand_layers[s].forward_params(
                preds[s].params.float()).rotmats[0].cpu().numpy() for s in SIDES}
            arrays = {s: {k: getattr(preds[s], k)[0].float().cpu().numpy() for k in
                          ("joints_uv", "verts_uv", "joints_xyz", "verts_xyz", "camera",
                           "params")} for s in SIDES}
        t2 = time.perf_counter()
        K = geo.usable_intrinsics(K)  # an uncalibrated CameraInfo carries K = 0
        hands = {s: self._hand(s, arrays[s], rotmats[s], seg, box, K) for s in SIDES}
        t3 = time.perf_counter()
        result = FrameResult(left=hands["left"], right=hands["right"], box=box,
                             image_size=(rgb.shape[1], rgb.shape[0]),
                             timings={"crop_ms": 1e3 * (t1 - t0), "network_ms": 1e3 * (t2 - t1),
                                      "post_ms": 1e3 * (t3 - t2)})
        self.previous = result
        return result

    def _hand(self, side: str, a: dict[str, np.ndarray], rotmats: np.ndarray,
              seg: Optional[np.ndarray], box: geo.CropBox, K: Optional[np.ndarray]) -> HandsResult:
        """Network outputs of one hand (no batch axis) -> HandsResult in the camera frame."""
        finite = all(np.all(np.isfinite(v)) for v in a.values()) and np.all(np.isfinite(rotmats))
        if not finite:
            LOG.warning("non-finite network output for the %s hand", side)
            return HandsResult.invalid(side, self.faces[side], self.num_verts[side])
        confidence = _seg_confidence(seg, a["verts_uv"], SEG_CLASS[side]) if seg is not None \
            else 1.0
        joints_rel = a["joints_xyz"].astype(np.float64)
        verts_rel = a["verts_xyz"].astype(np.float64)
        root = None
        rotmats = rotmats.astype(np.float64)
        view = np.eye(3)
        if K is not None:
            # The network saw the hand through the crop, as a camera looking along the ray
            # through the crop centre would: rotate its geometry from that view to the real one.
            view = geo.ray_rotation(K, np.array([box.cx, box.cy]))
            try:
                # The network's (s, tx, ty) fits its 2D mesh/joints best at their mean depth:
                # that is the weak-perspective reference (see geometry.weak_perspective_to_camera).
                root = geo.weak_perspective_to_camera(
                    a["camera"], box, K, ref_depth_offset=float(verts_rel[:, 2].mean()))
                if not self.depth_range[0] <= root[2] <= self.depth_range[1]:
                    root = None
            except ValueError:
                root = None
            if root is None:
                LOG.debug("%s hand: implausible weak-perspective camera %s", side, a["camera"])
        joints_rel, verts_rel = joints_rel @ view.T, verts_rel @ view.T
        rotmats = np.concatenate([(view @ rotmats[0])[None], rotmats[1:]])
        if root is not None:
            joints, verts = joints_rel + root, verts_rel + root
        else:  # wrist-relative (message contract: wrist at the origin when not metric)
            joints, verts = joints_rel - joints_rel[0], verts_rel - joints_rel[0]
        return HandsResult(
            side=side, valid=bool(confidence >= self.min_confidence), confidence=float(confidence),
            vertices=verts.astype(np.float32), joints=joints.astype(np.float32),
            wrist_position=joints[0].astype(np.float64) if root is not None else np.zeros(3),
            wrist_quat=geo.matrix_to_quat(rotmats[0]), metric=root is not None,
            pose=geo.matrix_to_axis_angle(rotmats).reshape(-1).astype(np.float32),
            shape=a["params"][BETAS_SLICE].astype(np.float32),
            keypoints_2d=geo.uv_to_image(a["joints_uv"], box).astype(np.float32),
            faces=self.faces[side])


def _seg_confidence(seg: np.ndarray, verts_uv: np.ndarray, cls: int) -> float:
    """Mean seg-head probability of class `cls` over the grid cells hit by the hand's
    projected vertices (its footprint). seg (3,h,w) softmaxed; verts_uv (V,2) in [-1,1].
    0 when the hand projects entirely outside the crop."""
    _, h, w = seg.shape
    cols = np.floor((verts_uv[:, 0] + 1.0) * w / 2.0).astype(np.int64)
    rows = np.floor((verts_uv[:, 1] + 1.0) * h / 2.0).astype(np.int64)
    inside = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    if not np.any(inside):
        return 0.0
    cells = np.unique(rows[inside] * w + cols[inside])
    return float(seg[cls].reshape(-1)[cells].mean())
