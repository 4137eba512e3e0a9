"""The training recipe: configuration (config/train/*.yaml), optimiser and schedule.

Values, paper first, the authors' release where the paper is silent
(shared/spec/DIR_ARCHITECTURE.md "Losses"; the release's config.py, train.py and
utils/utils.py):
  * optimiser AdamW, learning rate 3e-4 (paper; the release's config.py has the same value),
    torch's default AdamW betas (0.9, 0.999) and weight decay 0.01 (the release passes none);
  * cosine decay to 0 over the epochs, stepped once per epoch (release
    CosineAnnealingLR(T_max=total_epoch, eta_min=0));
  * 50 epochs, batch 64 (release);
  * loss weights as in dir_ros/model/losses.py RELEASE_LOSS_WEIGHTS;
  * augmentation as in dir_ros/train/sample.py AugmentConfig.
Every value can be overridden in the YAML; unknown keys are refused (typos).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
import yaml

from dir_ros.train.sample import AugmentConfig

# Paper / release values (see the module docstring).
PAPER_LR = 3e-4
ADAMW_WEIGHT_DECAY = 0.01          # torch.optim.AdamW default, used by the release
ADAMW_BETAS = (0.9, 0.999)         # torch.optim.AdamW default
RELEASE_EPOCHS = 50
RELEASE_BATCH = 64
RELEASE_STEP_MILESTONES = [30]     # the release's alternative 'step' schedule
RELEASE_STEP_GAMMA = 0.1
SOURCES = ("interhand", "synthetic")
SCHEDULES = ("cosine", "step", "constant")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DEVICES = ("auto", "cpu", "cuda")

# Defaults of every key of a training config; config/train/*.yaml document them one by one.
DEFAULT_TRAIN_CONFIG: dict[str, Any] = {
    "model_config": "config/model/dir_release.yaml",
    "hand_model": None,
    "init_weights": None,
    "out_dir": "runs/dir_train",
    "seed": 0,
    "device": "auto",
    "precision": "auto",
    "threads": None,
    "epochs": RELEASE_EPOCHS,
    "batch_size": RELEASE_BATCH,
    "max_steps_per_epoch": None,
    "val_every": 1,
    "val_at_start": False,
    "log_every": 10,
    "sync_bn": True,
    "grad_clip": None,
    "loss_weights": {},
    "optimizer": {"lr": PAPER_LR, "weight_decay": ADAMW_WEIGHT_DECAY,
                  "betas": list(ADAMW_BETAS)},
    "schedule": {"name": "cosine", "eta_min": 0.0, "milestones": RELEASE_STEP_MILESTONES,
                 "gamma": RELEASE_STEP_GAMMA},
    "augment": {k: v for k, v in AugmentConfig().__dict__.items()},
    "data": {
        "source": "interhand",
        "root": None,
        "train_split": "train",
        "val_split": "val",
        "train_max_frames": None,
        "val_max_frames": 2000,
        "bad_frames": "skip",
        "workers": 4,
        "synthetic": {"seed": 0, "train_frames": 10000, "val_frames": 200, "width": 256,
                      "height": 256, "cache": False, "rotation_deg": 180.0, "pca_std": 0.8,
                      "betas_std": 1.0},
    },
}
# Sections whose keys are checked (the rest are plain values).
_NESTED = ("optimizer", "schedule", "augment", "data", "data.synthetic")


class TrainConfigError(ValueError):
    """A training configuration that cannot be used (message names the key or file)."""


def _merge(base: dict, over: Mapping, where: str) -> dict:
    """Recursive merge of over into base, refusing keys base does not have."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        path = f"{where}{key}"
        if key not in base:
            raise TrainConfigError(f"unknown training config key '{path}'; known at this level: "
                                   f"{sorted(base)}")
        sub = path if path in _NESTED else None
        if sub is not None:
            if not isinstance(value, Mapping):
                raise TrainConfigError(f"training config key '{path}' must be a mapping, got "
                                       f"{type(value).__name__}")
            out[key] = _merge(base[key], value, path + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping; TrainConfigError naming the file otherwise."""
    p = Path(path)
    if not p.is_file():
        raise TrainConfigError(f"training config '{p}' not found")
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise TrainConfigError(f"training config '{p}' is not valid YAML "
                               f"({' '.join(str(err).split())})") from None
    if not isinstance(loaded, dict):
        raise TrainConfigError(f"training config '{p}' must be a mapping of keys, got "
                               f"{type(loaded).__name__}")
    return loaded


def resolve_train_config(config: str | Path | Mapping[str, Any] | None,
                         overrides: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Defaults <- config (YAML path or mapping) <- overrides; validated."""
    cfg = copy.deepcopy(DEFAULT_TRAIN_CONFIG)
    where = ""
    if config is not None:
        if isinstance(config, (str, Path)):
            where = f"training config '{config}': "
            config = read_yaml(config)
        try:
            cfg = _merge(cfg, config, "")
        except TrainConfigError as err:
            raise TrainConfigError(f"{where}{err}") from None
    if overrides:
        cfg = _merge(cfg, overrides, "")
        where = f"{where[:-2]} with overrides: " if where else "training config overrides: "
    validate(cfg, where)
    return cfg


# Keys holding numbers: (dotted key, type, may be null).
_NUMERIC: tuple[tuple[str, type, bool], ...] = (
    ("seed", int, False), ("threads", int, True), ("epochs", int, False),
    ("batch_size", int, False), ("max_steps_per_epoch", int, True), ("val_every", int, False),
    ("log_every", int, False), ("grad_clip", float, True), ("optimizer.lr", float, False),
    ("optimizer.weight_decay", float, False), ("schedule.eta_min", float, False),
    ("schedule.gamma", float, False), ("data.workers", int, False),
    ("data.train_max_frames", int, True), ("data.val_max_frames", int, True),
    ("data.synthetic.seed", int, False), ("data.synthetic.train_frames", int, False),
    ("data.synthetic.val_frames", int, False), ("data.synthetic.width", int, False),
    ("data.synthetic.height", int, False), ("data.synthetic.rotation_deg", float, False),
    ("data.synthetic.pca_std", float, False), ("data.synthetic.betas_std", float, False))


def _lookup(cfg: Mapping[str, Any], dotted: str) -> Any:
    """cfg['a']['b'] for 'a.b'."""
    node: Any = cfg
    for k in dotted.split("."):
        node = node[k]
    return node


def validate(cfg: Mapping[str, Any], where: str = "") -> None:
    """Checks of types, value ranges and choices; TrainConfigError naming the key."""
    def bad(key: str, problem: str) -> TrainConfigError:
        return TrainConfigError(f"{where}'{key}' {problem}")

    for key, kind, nullable in _NUMERIC:
        value = _lookup(cfg, key)
        if value is None and nullable:
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is int:
            ok = ok and float(value).is_integer()
        if not ok:
            raise bad(key, f"must be {'an integer' if kind is int else 'a number'}"
                           f"{' or null' if nullable else ''}, got {value!r}")
    betas = cfg["optimizer"]["betas"]
    if not (isinstance(betas, (list, tuple)) and len(betas) == 2
            and all(isinstance(b, (int, float)) for b in betas)):
        raise bad("optimizer.betas", f"must be two numbers, got {betas!r}")

    if int(cfg["batch_size"]) < 1:
        raise bad("batch_size", f"must be >= 1, got {cfg['batch_size']}")
    if int(cfg["epochs"]) < 1:
        raise bad("epochs", f"must be >= 1, got {cfg['epochs']}")
    if cfg["precision"] not in PRECISIONS:
        raise bad("precision", f"must be one of {PRECISIONS}, got {cfg['precision']!r}")
    if cfg["device"] not in DEVICES:
        raise bad("device", f"must be one of {DEVICES}, got {cfg['device']!r}")
    if cfg["schedule"]["name"] not in SCHEDULES:
        raise bad("schedule.name", f"must be one of {SCHEDULES}, got {cfg['schedule']['name']!r}")
    if not float(cfg["optimizer"]["lr"]) > 0:
        raise bad("optimizer.lr", f"must be > 0, got {cfg['optimizer']['lr']}")
    data = cfg["data"]
    if data["source"] not in SOURCES:
        raise bad("data.source", f"must be one of {SOURCES}, got {data['source']!r}")
    if data["source"] == "interhand" and not data["root"]:
        raise bad("data.root", "must name the InterHand2.6M folder (holding images/ and "
                               "annotations/) for data.source interhand")
    if data["bad_frames"] not in ("skip", "stop"):
        raise bad("data.bad_frames", f"must be 'skip' or 'stop', got {data['bad_frames']!r}")
    for key in ("train_frames", "val_frames"):
        if int(data["synthetic"][key]) < (1 if key == "train_frames" else 0):
            raise bad(f"data.synthetic.{key}", f"is too small: {data['synthetic'][key]}")
    if cfg["max_steps_per_epoch"] is not None and int(cfg["max_steps_per_epoch"]) < 1:
        raise bad("max_steps_per_epoch", "must be >= 1 or null")
    try:
        AugmentConfig.from_dict(cfg["augment"])
    except (TypeError, ValueError) as err:
        raise TrainConfigError(f"{where}augment: {err}") from None


def make_optimizer(params: Any, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """AdamW with the configured lr, betas and weight decay."""
    o = cfg["optimizer"]
    return torch.optim.AdamW(params, lr=float(o["lr"]), betas=tuple(float(b) for b in o["betas"]),
                             weight_decay=float(o["weight_decay"]))


def make_schedule(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any]
                  ) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch learning-rate schedule: cosine to eta_min over the epochs (release),
    step (x gamma at the milestones) or constant."""
    s = cfg["schedule"]
    if s["name"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(cfg["epochs"]),
                                                          eta_min=float(s["eta_min"]))
    if s["name"] == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, [int(m) for m in s["milestones"]],
                                                    gamma=float(s["gamma"]))
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
