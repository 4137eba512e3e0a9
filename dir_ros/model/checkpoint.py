"""Loading the authors' release checkpoint (dict with key 'net') into our DIR module."""
from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

# Prefix of hand-model buffers; these stay as configured and are only compared.
HAND_MODEL_PREFIX = "th_"
# Key of the network state dict inside the release checkpoint file.
RELEASE_NET_KEY = "net"
# Prefix added by torch.nn.DataParallel, stripped if present.
DATA_PARALLEL_PREFIX = "module."


@dataclass
class LoadReport:
    """What load_release_checkpoint found. Entries are 'key shape' strings."""
    loaded: int = 0
    missing: list[str] = field(default_factory=list)       # in model, not in checkpoint
    unexpected: list[str] = field(default_factory=list)    # in checkpoint, not in model
    mismatched: list[str] = field(default_factory=list)    # 'key: checkpoint S vs model S'
    hand_model_differences: list[str] = field(default_factory=list)  # th_* kept from model

    @property
    def ok(self) -> bool:
        """True when every network tensor matched by name and shape."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        """Multi-line human-readable report."""
        lines = [f"loaded {self.loaded} tensors"]
        for title, items in (("missing from checkpoint", self.missing),
                             ("unexpected in checkpoint", self.unexpected),
                             ("shape mismatch", self.mismatched),
                             ("hand model differs (kept configured)",
                              self.hand_model_differences)):
            if items:
                lines.append(f"{title} ({len(items)}):")
                lines += [f"  {x}" for x in items]
        return "\n".join(lines)


class CheckpointMismatchError(RuntimeError):
    """The checkpoint does not fit the model; the message lists every offending key."""

    def __init__(self, report: LoadReport) -> None:
        super().__init__("checkpoint does not match the model:\n" + report.summary())
        self.report = report


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def _is_hand_model_key(key: str) -> bool:
    return key.rsplit(".", 1)[-1].startswith(HAND_MODEL_PREFIX)


def read_state_dict(path: str | Path, weights_only: bool = True) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file: its 'net' entry (release) or the file itself.

    weights_only: torch.load's safe mode (tensors and plain containers only); pass False
    only for a trusted file that also pickles other objects (e.g. optimizer extras).
    """
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(
            f"{path}: the file pickles more than tensors, so the safe loader refused it "
            f"({str(err).splitlines()[0]}). If you trust the file, load it with "
            f"weights_only=False.") from err
    state = obj[RELEASE_NET_KEY] if isinstance(obj, dict) and RELEASE_NET_KEY in obj else obj
    if not isinstance(state, dict):
        raise TypeError(f"{path}: expected a state dict or a dict with key "
                        f"'{RELEASE_NET_KEY}', got {type(state).__name__}")
    if state and all(k.startswith(DATA_PARALLEL_PREFIX) for k in state):
        state = {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in state.items()}
    return state


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> LoadReport:
    """Compare a state dict with the model's without loading anything."""
    own = model.state_dict()
    rep = LoadReport()
    for key, value in own.items():
        if key not in state:
            if not _is_hand_model_key(key):
                rep.missing.append(f"{key} {_shape(value)}")
            else:
                rep.hand_model_differences.append(f"{key}: absent from checkpoint")
            continue
        theirs = state[key]
        if _is_hand_model_key(key):
            if theirs.shape != value.shape:
                rep.hand_model_differences.append(
                    f"{key}: checkpoint {_shape(theirs)} vs configured {_shape(value)}")
            elif not torch.equal(theirs.to(value.dtype), value.cpu()):
                diff = (theirs.double() - value.cpu().double()).abs().max().item()
                rep.hand_model_differences.append(f"{key}: values differ (max |d| {diff:.3g})")
        elif theirs.shape != value.shape:
            rep.mismatched.append(f"{key}: checkpoint {_shape(theirs)} vs model "
                                  f"{_shape(value)}")
    rep.unexpected = [f"{k} {_shape(v)}" for k, v in state.items() if k not in own]
    return rep


def load_release_checkpoint(model: nn.Module, path: str | Path | dict,
                            strict: bool = True, weights_only: bool = True) -> LoadReport:
    """Load the network weights of a release checkpoint (file path, or an already loaded
    state dict) into model, keeping the model's own hand-model buffers (th_*).

    strict: raise CheckpointMismatchError listing every missing / unexpected / mis-shaped
    key (name and shape) before touching the model; otherwise load what fits.
    Differences in th_* arrays never raise: they are reported and warned about.
    """
    state = path if isinstance(path, dict) else read_state_dict(path, weights_only)
    rep = check_state_dict(model, state)
    if strict and not rep.ok:
        raise CheckpointMismatchError(rep)
    own = model.state_dict()
    # Network tensors that fit (shape mismatches were reported above).
    to_load = {k: v for k, v in state.items()
               if k in own and not _is_hand_model_key(k) and v.shape == own[k].shape}
    model.load_state_dict(to_load, strict=False)
    rep.loaded = len(to_load)
    if rep.hand_model_differences:
        warnings.warn("checkpoint hand-model arrays differ from the configured hand model; "
                      "keeping the configured one:\n  "
                      + "\n  ".join(rep.hand_model_differences[:12])
                      + ("\n  ..." if len(rep.hand_model_differences) > 12 else ""),
                      stacklevel=2)
    return rep
