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
                   "fusion_kernels": [3, 3, 1],
                   # True: the release's computation, the reference and speed baseline:
                   # the 2*20*64 bone planes built and convolved, the attention heads'
                   # first convs as plain convs. False: the factorised fusion conv
                   # (bone_conv.py) and, in eager CPU runs, those convs as GEMMs
                   # (gemm_conv.py): same results and weights, faster.
                   "materialize_planes": False},
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
    where = ""  # names the file in the errors below
    if config is None:
        over: dict = {}
    elif isinstance(config, (str, Path)):
        over = _read_yaml_mapping(Path(config))
        where = f"model_config '{config}': "
    else:
        over = dict(config)
    if isinstance(over.get("model"), dict):  # a file with a top-level `model:` section
        over = over["model"]
    unknown = sorted(map(str, set(over) - set(DEFAULT_CONFIG)))
    if unknown:
        raise KeyError(f"{where}unknown model config keys {unknown}; known: "
                       f"{sorted(DEFAULT_CONFIG)}")
    for key, value in over.items():  # a section given as a scalar would fail deep inside
        if isinstance(DEFAULT_CONFIG[key], dict) and not isinstance(value, dict):
            raise ValueError(f"{where}model config key '{key}' must be a mapping, got "
                             f"{type(value).__name__} {value!r}")
    cfg = _merge(DEFAULT_CONFIG, over)
    if cfg["input_size"] % 32:
        raise ValueError(f"input_size must be a multiple of 32, got {cfg['input_size']}")
    return cfg


def _read_yaml_mapping(path: Path) -> dict:
    """The mapping in a model config YAML file; ValueError in one line naming the file when
    it is empty, not YAML, or not a mapping (an empty file used to mean the release network)."""
    try:
        with open(path, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ValueError(f"model_config '{path}' is not valid YAML: {problem}{where}") from None
    except UnicodeDecodeError:
        raise ValueError(f"model_config '{path}' is not a UTF-8 text file") from None
    if loaded is None:
        raise ValueError(f"model_config '{path}' is empty (it must map config keys such as "
                         f"input_size, backbone to values)")
    if not isinstance(loaded, dict):
        raise ValueError(f"model_config '{path}' must be a mapping of config keys, got a "
                         f"{type(loaded).__name__}")
    return loaded


def load_model_config(path: str | Path) -> dict[str, Any]:
    """Read a model YAML (config/model/*.yaml) -> full config dict (defaults filled in)."""
    return resolve_config(Path(path))
