"""What a training run writes into its out_dir, written so that an interrupted run never
leaves a half-written file: checkpoints and text files under a temporary name, fsync'ed and
renamed; the loss-curve PNG (training loss per step, validation error per epoch)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

# Validation metric that picks best.pth (wrist-aligned, scaled: the paper's main table).
BEST_METRIC = "mpjpe_mm"
# Moving-average window of the loss curve (steps).
CURVE_SMOOTHING = 25


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary name beside path, fsync, rename: path is either the old
    file or the complete new one, never a half-written one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file atomically (temporary name, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def plot_curves(history: Mapping[str, Any], path: Path) -> None:
    """Training loss per step (and its moving average) and validation MPJPE per epoch as a
    PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = np.asarray(history.get("loss", []), dtype=np.float64)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    if losses.size:
        steps = np.arange(1, losses.size + 1)
        ax1.plot(steps, losses, lw=0.6, alpha=0.4, label="step")
        k = min(CURVE_SMOOTHING, losses.size)
        avg = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax1.plot(steps[k - 1:], avg, lw=1.5, label=f"mean of {k}")
        ax1.set_yscale("log")
        ax1.legend()
    ax1.set_xlabel("step")
    ax1.set_ylabel("training loss (total)")
    ax1.grid(True, alpha=0.3)
    val = history.get("val", [])
    ep = [v["epoch"] + 1 for v in val if v.get(BEST_METRIC) is not None]
    if ep:
        ax2.plot(ep, [v[BEST_METRIC] for v in val if v.get(BEST_METRIC) is not None], "o-",
                 label="MPJPE")
        mv = [(v["epoch"] + 1, v["mpvpe_mm"]) for v in val if v.get("mpvpe_mm") is not None]
        if mv:
            ax2.plot(*zip(*mv), "s-", label="MPVPE")
        ax2.legend()
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation error (mm, wrist-aligned, scaled)")
    ax2.grid(True, alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
