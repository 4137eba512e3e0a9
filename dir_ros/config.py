"""Configuration: the predictor config's fields and defaults, and the choices made from them
(backend, device, runtime, hand-model folder, hand front end) before any backend is built.

Both backends read their config through load_config; build_predictor (dir_ros/predictor.py)
uses choose_backend to pick one. The fields are documented in config/hands.yaml (the node's
params file, which is also a predictor config). No ROS, no torch at import.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from dir_ros.common.resources import resolve_resource

LOG = logging.getLogger("dir_ros.config")

# Default validity threshold on HandsResult.confidence (seg-head hand probability, see
# dir_ros.backends.dir._seg_confidence; the landmark backend: the front end's score): above a 3-class chance level of 1/3 with some margin.
DEFAULT_MIN_CONFIDENCE = 0.5
# Plausible camera-to-wrist distances (m) for metric placement; outside, the hand is
# published root-relative (metric False) instead of at an absurd position.
DEFAULT_DEPTH_RANGE = (0.05, 10.0)
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16")
BACKENDS = ("auto", "dir", "landmarks")
# How the DIR network runs: eager torch, or its ONNX export on ONNX Runtime or OpenVINO (CPU
# only; dir_ros/backends/export.py: cached on disk, falls back to torch with a warning when
# unavailable). OpenVINO also runs `precision` bf16 (fp16) on the CPU, where the CPU has it.
# auto: torch on CUDA; on the CPU the first installed of AUTO_CPU_RUNTIMES, else torch.
RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")
# auto's CPU preference, fastest first (docs/figures/benchmark_export.json, release network,
# 2 cores: OpenVINO 2.5x eager as released in fp32, ONNX Runtime 2.1x).
AUTO_CPU_RUNTIMES = ("openvino", "onnxruntime")


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


# Every field of a predictor config and its default (config/hands.yaml documents them).
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
    # the finger step of interlocked fingers: off | onset | always (backends/landmarks)
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
    """The hand front end (dir_ros.frontend.hand_detector.HandDetector) for a predictor config."""
    from dir_ros.frontend.hand_detector import HandDetector

    return HandDetector(mirrored_input=bool(cfg["mirrored_input"]))


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


def ros_params_section(loaded: Mapping[str, Any]) -> dict[str, Any]:
    """The `ros__parameters` of a ROS params file (any node key: `hands_node`, `/**`,
    `/**/hands_node`, ...); a plain mapping without that nesting is returned as it is."""
    for value in loaded.values():
        if isinstance(value, Mapping) and "ros__parameters" in value:
            return dict(value["ros__parameters"] or {})
    return dict(loaded)
