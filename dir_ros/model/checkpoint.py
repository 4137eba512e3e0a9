"""Loading the authors' release checkpoint (dict with key 'net') into our DIR module.

Every way a weights file can be unusable (not a checkpoint, empty, not a state dict, values
that are not tensors, non-finite values, names or shapes that do not fit the model) raises
one WeightsFileError (a ValueError) whose message is a single line naming the file; the
full details go to the 'dir_ros.model.checkpoint' logger at DEBUG level. Files are only
ever read with torch's safe loader (weights_only=True).
"""
from __future__ import annotations

import logging
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

LOG = logging.getLogger(__name__)

# Prefix of hand-model buffers; these stay as configured and are only compared.
HAND_MODEL_PREFIX = "th_"
# Key of the network state dict inside the release checkpoint file.
RELEASE_NET_KEY = "net"
# Prefix added by torch.nn.DataParallel, stripped if present.
DATA_PARALLEL_PREFIX = "module."
# First bytes of the two formats torch.save writes: a zip archive (torch >= 1.6) or a bare
# pickle (legacy format, pickle protocol >= 2 starts with the PROTO opcode 0x80).
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO_OPCODE = b"\x80"
# Bytes of a file's start read to recognise its format, and shown when it is not a checkpoint.
SNIFF_BYTES = 64
SHOWN_START_CHARS = 24
# A UTF-8 character is at most 4 bytes, so a read can cut at most 3 of them off.
UTF8_MAX_CUT_BYTES = 3
# Keys named per category in one-line messages (the full lists go to the debug log).
SHOWN_KEYS = 3
# Entries of the hand-model difference warning shown before '...'.
SHOWN_HAND_MODEL_DIFFERENCES = 3

Source = Union[str, Path, None]


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
        """One line (used in log lines); summary() has every key."""
        return self.brief()

    def _categories(self) -> list[tuple[str, str, list[str]]]:
        """(title, short label, entries) of the problem categories, in report order."""
        return [("missing from checkpoint", "missing", self.missing),
                ("unexpected in checkpoint", "unexpected", self.unexpected),
                ("shape mismatch", "mis-shaped", self.mismatched),
                ("hand model differs (kept configured)", "hand-model arrays differ (kept "
                 "configured)", self.hand_model_differences)]

    def brief(self, shown: int = SHOWN_KEYS) -> str:
        """One line: counts per category and the first `shown` keys of each."""
        parts = [f"loaded {self.loaded} tensors"] if self.loaded else []
        for _, label, items in self._categories():
            if items:
                more = f"; ... {len(items) - shown} more" if len(items) > shown else ""
                parts.append(f"{len(items)} {label} ({'; '.join(items[:shown])}{more})")
        return ", ".join(parts) if parts else "nothing to load"

    def summary(self) -> str:
        """Multi-line human-readable report listing every key."""
        lines = [f"loaded {self.loaded} tensors"]
        for title, _, items in self._categories():
            if items:
                lines.append(f"{title} ({len(items)}):")
                lines += [f"  {x}" for x in items]
        return "\n".join(lines)


class WeightsFileError(ValueError):
    """A weights file (or state dict) that cannot be loaded. str() is one line naming the
    file; `details` holds the long form, which is logged at DEBUG when raised."""

    def __init__(self, source: Source, problem: str, details: str = "") -> None:
        where = f"weights file '{source}'" if source is not None else "state dict"
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.problem = problem
        self.details = details
        LOG.debug("%s: %s%s", where, problem, f"\n{details}" if details else "")


class CheckpointMismatchError(WeightsFileError):
    """The checkpoint does not fit the model: one line with counts and the first keys of
    each kind; `report` holds every offending key (name and shape)."""

    def __init__(self, report: LoadReport, source: Source = None) -> None:
        super().__init__(source, f"does not fit the model: {report.brief()}", report.summary())
        self.report = report


def _shape(t: torch.Tensor) -> str:
    """Shape as a tuple string, e.g. '(3, 512)'."""
    return str(tuple(t.shape))


def _is_hand_model_key(key: str) -> bool:
    """True for the hand-model buffers (th_*), which stay as configured."""
    return key.rsplit(".", 1)[-1].startswith(HAND_MODEL_PREFIX)


def _first(items: list[str], shown: int = SHOWN_KEYS) -> str:
    """The first `shown` items joined, with a count of the rest."""
    more = f", ... {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _describe(obj: Any) -> str:
    """What a loaded object is, for messages: 'a list', 'a single tensor (3, 4)', ..."""
    if isinstance(obj, torch.Tensor):
        return f"a single tensor {_shape(obj)}"
    if isinstance(obj, Mapping) and not obj:
        return "an empty dict"
    name = type(obj).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def _as_text(head: bytes) -> Optional[str]:
    """The start of a file as text when it is printable UTF-8 (a multi-byte character cut
    at the end of `head` is allowed), else None."""
    text = head.decode("utf-8", errors="replace")
    body = text.rstrip("\ufffd")
    if len(text) - len(body) > UTF8_MAX_CUT_BYTES:  # more than one cut character
        return None
    if not body or not all(c.isprintable() or c in "\t\r\n" for c in body):
        return None  # U+FFFD (undecodable byte) is printable, so also check for it
    return None if "\ufffd" in body else body


def _sniff(path: Path) -> None:
    """Refuse, before unpickling, a file that is neither of torch.save's formats."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as err:
        raise WeightsFileError(path, f"cannot be read ({err.strerror or err})") from err
    if not head:
        raise WeightsFileError(path, "is empty (0 bytes), not a PyTorch checkpoint")
    if head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_PROTO_OPCODE):
        return
    text = _as_text(head)
    if text is None:
        kind = f"unrecognised binary data (starting {head[:SHOWN_START_CHARS // 2].hex()})"
    else:
        stripped = text.lstrip()
        kind = ("JSON text" if stripped[:1] in ("{", "[") else "a text file") \
            + f" starting {stripped[:SHOWN_START_CHARS]!r}"
    raise WeightsFileError(path, f"is {kind}, not a PyTorch checkpoint (a file written by "
                                 f"torch.save holding the network's state dict)")


def _unsafe_globals(path: Path) -> list[str]:
    """Names of the non-tensor classes/functions a checkpoint pickles (best effort, read
    without executing anything); [] where torch cannot list them."""
    lister = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if lister is None:
        return []
    try:
        return list(lister(path))
    except Exception as err:  # noqa: BLE001 - only used to improve a message
        LOG.debug("%s: cannot list pickled globals: %s", path, err)
        return []


def _load_file(path: Path) -> Any:
    """torch.load with the safe loader; every failure becomes one WeightsFileError."""
    _sniff(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        names = _unsafe_globals(path)
        if names:
            problem = (f"pickles objects other than tensors ({_first(names)}), which the "
                       f"safe loader refuses; save only the state dict: "
                       f"torch.save({{'{RELEASE_NET_KEY}': model.state_dict()}}, path)")
        else:
            problem = f"cannot be unpickled safely ({str(err).splitlines()[0][:200]})"
        raise WeightsFileError(path, problem, str(err)) from err
    # torch.load reports corrupt or truncated files with many exception types (EOFError,
    # RuntimeError from the zip reader, KeyError, ...): any of them means "not readable".
    except Exception as err:  # noqa: BLE001
        first = str(err).splitlines()[0][:200] if str(err) else ""
        raise WeightsFileError(
            path, f"cannot be read as a PyTorch checkpoint, truncated or damaged "
                  f"({type(err).__name__}{': ' + first if first else ''})", repr(err)) from err


def _state_from(obj: Any, source: Source) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded object: its 'net' entry (release) or the object
    itself, checked to map names to tensors, with a DataParallel prefix stripped."""
    state = obj[RELEASE_NET_KEY] if isinstance(obj, Mapping) and RELEASE_NET_KEY in obj \
        else obj
    if not isinstance(state, Mapping) or not state:
        inside = f" under key '{RELEASE_NET_KEY}'" if state is not obj else ""
        raise WeightsFileError(source, f"holds {_describe(state)}{inside}, not a state dict "
                                       f"(a dict of tensors, or a dict with key "
                                       f"'{RELEASE_NET_KEY}' holding one)")
    bad = [f"{k!r}: {type(v).__name__}" for k, v in state.items()
           if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsFileError(source, f"is not a state dict: {len(bad)} of {len(state)} "
                                       f"entries are not named tensors ({_first(bad)})",
                               "\n".join(bad))
    if all(k.startswith(DATA_PARALLEL_PREFIX) for k in state):
        state = {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in state.items()}
    return dict(state)


def check_finite(state: Mapping[str, torch.Tensor], source: Source = None) -> None:
    """Refuse a state dict holding any NaN or infinite value (a diverged training run or a
    damaged file would otherwise give NaN hands on every frame)."""
    bad = []
    for key, value in state.items():
        if value.is_floating_point() or value.is_complex():
            nonfinite = int((~torch.isfinite(value)).sum().item())
            if nonfinite:
                bad.append(f"{key} ({nonfinite} of {value.numel()})")
    if bad:
        raise WeightsFileError(source, f"{len(bad)} of {len(state)} tensors hold NaN or "
                                       f"infinite values ({_first(bad)})", "\n".join(bad))


def read_state_dict(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file: its 'net' entry (release) or the file itself.

    Read with torch's safe loader only (tensors and plain containers). Raises
    WeightsFileError (one line naming the file) for anything that is not a finite state
    dict.
    """
    path = Path(path)
    state = _state_from(_load_file(path), path)
    check_finite(state, path)
    return state


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> LoadReport:
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


def load_release_checkpoint(model: nn.Module, path: Union[str, Path, Mapping],
                            strict: bool = True) -> LoadReport:
    """Load the network weights of a release checkpoint (file path, or an already loaded
    state dict) into model, keeping the model's own hand-model buffers (th_*).

    strict: raise CheckpointMismatchError (counts and the first missing / unexpected /
    mis-shaped keys in one line; every key in its report) before touching the model;
    otherwise load what fits. A file or dict that is not a finite state dict raises
    WeightsFileError. Differences in th_* arrays never raise: they are warned about.
    """
    source: Optional[Path] = None if isinstance(path, Mapping) else Path(path)
    if source is None:
        state = _state_from(path, None)
        check_finite(state, None)
    else:
        state = read_state_dict(source)
    rep = check_state_dict(model, state)
    if strict and not rep.ok:
        raise CheckpointMismatchError(rep, source)
    own = model.state_dict()
    # Network tensors that fit (shape mismatches were reported above).
    to_load = {k: v for k, v in state.items()
               if k in own and not _is_hand_model_key(k) and v.shape == own[k].shape}
    model.load_state_dict(to_load, strict=False)
    rep.loaded = len(to_load)
    if rep.hand_model_differences:
        LOG.debug("hand-model arrays of %s:\n  %s", source or "the state dict",
                  "\n  ".join(rep.hand_model_differences))
        warnings.warn(f"checkpoint hand-model arrays differ from the configured hand model "
                      f"in {len(rep.hand_model_differences)} arrays "
                      f"({_first(rep.hand_model_differences, SHOWN_HAND_MODEL_DIFFERENCES)});"
                      f" keeping the configured one", stacklevel=2)
    return rep
