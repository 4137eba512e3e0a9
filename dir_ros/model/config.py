"""Model configuration: defaults (= the release network) and YAML loading."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

# The release network (DIR_ARCHITECTURE.md); YAML files override any subset of it.
DEFAULT_CONFIG: dict[str, Any] = {
    "input_size": 256,            # square crop side, px (multiple of 32)
    "hand_model": None,           # MANO-format folder; None -> weights/open_hand
    "root_joint": 0,              # 0 wrist, 9 middle MCP
    "backbone": {"depth": 50},    # 18 / 34 / 50
    "num_stages": 2,              # refinement stages T in 0..3
    "decoder_channels": 256,      # width of the decoder feature maps
    "joint_channels": 128,        # joint token width (GCN / transformer)
    "token_channels": 64,         # per-joint feature width after the transformer head
    "gcn": {"enabled": True, "layers": 4},
    "transformer": {"enabled": True, "depth": 4, "skip_first": 1, "num_heads": 4,
                    "mlp_ratio": 2.0},
    "projection": {"mode": "multi_plane_feature", "distance_per_cell": 0.0625,
                   "fusion_kernels": [3, 3, 1]},
    "aux_heads": True,            # seg + dense heads on the last stage
    "loss": {},                   # weight overrides, names as in losses.RELEASE_LOSS_WEIGHTS
}


def _merge(base: dict, over: dict) -> dict:
    """Recursive dict merge (over wins); unknown keys are kept so typos can be reported."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) \
            else copy.deepcopy(v)
    return out


def resolve_config(config: dict | str | Path | None) -> dict[str, Any]:
    """Defaults merged with a dict or a YAML file; rejects unknown top-level keys."""
    if config is None:
        over: dict = {}
    elif isinstance(config, (str, Path)):
        with open(config, encoding="utf-8") as fh:
            over = yaml.safe_load(fh) or {}
    else:
        over = dict(config)
    if isinstance(over.get("model"), dict):  # a file with a top-level `model:` section
        over = over["model"]
    unknown = sorted(set(over) - set(DEFAULT_CONFIG))
    if unknown:
        raise KeyError(f"unknown model config keys {unknown}; known: {sorted(DEFAULT_CONFIG)}")
    cfg = _merge(DEFAULT_CONFIG, over)
    if cfg["input_size"] % 32:
        raise ValueError(f"input_size must be a multiple of 32, got {cfg['input_size']}")
    return cfg


def load_model_config(path: str | Path) -> dict[str, Any]:
    """Read a model YAML (config/model/*.yaml) -> full config dict (defaults filled in)."""
    return resolve_config(Path(path))
