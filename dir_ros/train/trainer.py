"""The training loop: data, model, optimiser, validation, checkpoints, resume, curves.

Output folder (cfg out_dir):
  last.pth         after every epoch: {'net', 'optimizer', 'schedule', 'last_epoch', 'scaler',
                   'train'} (the release's checkpoint layout plus our run state), what
                   `--resume` continues from; loads in the node like the release checkpoint
  best.pth         {'net', 'last_epoch', 'metrics'}: the epoch with the lowest validation
                   MPJPE (written when validation runs)
  model.yaml       the network configuration the weights belong to (the node's model_config)
  history.json     per-step training loss and per-epoch validation metrics
  loss_curve.png   training loss per step and validation MPJPE per epoch

Every file is written under a temporary name in the same folder and renamed when complete
(dir_ros/train/files.py), so an interrupted run never leaves a half-written checkpoint;
checkpoints are written only after complete epochs. A non-finite loss stops the run before
the optimiser step (no checkpoint of that epoch); a bad frame is skipped with a warning
naming it, or stops the run (data.bad_frames 'stop').
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
import yaml

from dir_ros.hand_model import SIDES, load_hand_model, open_hand_dir
from dir_ros.model import DIR, build_dir, load_release_checkpoint, resolve_config
from dir_ros.model.checkpoint import WeightsFileError, _load_file
from dir_ros.model.outputs import XYZ_SCALE, DIROutput, HandPrediction, LevelOutput
from dir_ros.model.losses import DIRTarget, HandTarget
from dir_ros.common.resources import resolve_resource

from dir_ros.train import ddp
from dir_ros.train.files import BEST_METRIC, atomic_save, atomic_write_text, plot_curves
from dir_ros.train.recipe import make_optimizer, make_schedule, resolve_train_config
from dir_ros.train.sample import AugmentConfig, Batch, collate

LOG = logging.getLogger("dir_ros.train")

CHECKPOINT_LAST = "last.pth"
CHECKPOINT_BEST = "best.pth"
MODEL_YAML = "model.yaml"
HISTORY_JSON = "history.json"
CURVES_PNG = "loss_curve.png"
# Bad frames named one by one per epoch before they are only counted.
SHOWN_BAD_FRAMES = 5
# Frame names quoted in the message of a non-finite loss.
SHOWN_FRAME_NAMES = 3


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite loss, a bad frame under 'stop', unusable resume
    checkpoint); the message says what and where, and which checkpoint is the last good one."""


# ---------------------------------------------------------------------------------------
# Model and data


def build_model(cfg: Mapping[str, Any]) -> tuple[DIR, dict[str, Any], dict[str, Any]]:
    """(network, hand model arrays, resolved model config) of a training config: its
    model_config with the training config's loss_weights merged into `loss`, the hand
    model of `hand_model`, else of the model config, else the open hand model."""
    path = resolve_resource(cfg["model_config"])
    if not Path(path).is_file():
        raise FileNotFoundError(f"model_config '{cfg['model_config']}' not found")
    model_cfg = resolve_config(path)
    model_cfg["loss"] = {**(model_cfg.get("loss") or {}), **(cfg.get("loss_weights") or {})}
    folder = cfg.get("hand_model") or model_cfg.get("hand_model") or open_hand_dir()
    arrays = load_hand_model(resolve_resource(folder))
    if cfg.get("hand_model"):
        model_cfg["hand_model"] = str(folder)
    return build_dir(model_cfg, arrays=arrays), arrays, model_cfg


def build_datasets(cfg: Mapping[str, Any], arrays: Mapping[str, Any], input_size: int,
                   root_joint: int) -> tuple[Any, Optional[Any]]:
    """(training dataset, validation dataset or None) of data.source."""
    d = cfg["data"]
    aug = AugmentConfig.from_dict(cfg["augment"])
    seed = int(cfg["seed"])
    if d["source"] == "interhand":
        from dir_ros.train.datasets import InterHandDataset

        train = InterHandDataset(d["root"], d["train_split"], arrays, input_size, root_joint,
                                 aug, seed, d["bad_frames"], d["train_max_frames"])
        val = None
        if d.get("val_split"):
            val = InterHandDataset(d["root"], d["val_split"], arrays, input_size, root_joint,
                                   None, seed, d["bad_frames"], d["val_max_frames"])
        return train, val
    from dir_ros.data.synthetic import SyntheticConfig, SyntheticHands
    from dir_ros.train.datasets import SyntheticDataset

    s = d["synthetic"]
    gen = SyntheticHands(arrays, SyntheticConfig(
        seed=int(s["seed"]), width=int(s["width"]), height=int(s["height"]),
        rotation_deg=float(s["rotation_deg"]), pca_std=float(s["pca_std"]),
        betas_std=float(s["betas_std"])))
    train = SyntheticDataset(gen, int(s["train_frames"]), input_size, root_joint, aug, seed,
                             start=0, cache=bool(s["cache"]))
    val = None
    if int(s["val_frames"]) > 0:
        val = SyntheticDataset(gen, int(s["val_frames"]), input_size, root_joint, None, seed,
                               start=int(s["train_frames"]), cache=True)
    return train, val


def _worker_init(_worker_id: int) -> None:
    """Data-loader workers compute with one thread each (the processes share the CPUs)."""
    torch.set_num_threads(1)


def make_loader(dataset: Any, sampler: ddp.ShardedBatchSampler, workers: int,
                pin: bool) -> torch.utils.data.DataLoader:
    """A DataLoader of (Batch or None, bad-frame reasons) per step."""
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                       num_workers=int(workers), pin_memory=pin,
                                       worker_init_fn=_worker_init if workers else None)


# ---------------------------------------------------------------------------------------
# One step


_PRED_FIELDS = ("joints_uv", "verts_uv", "joints_xyz", "verts_xyz", "camera", "params")
_TARGET_FIELDS = ("joints_uv", "verts_uv", "joints_xyz", "verts_xyz")


def gather_batch(out: DIROutput, target: DIRTarget, counts: tuple[int, ...],
                 info: ddp.DistInfo) -> tuple[DIROutput, DIRTarget]:
    """The outputs and targets of the whole batch over all processes, in rank order
    (unchanged when alone); the outputs stay differentiable."""
    if not info.distributed:
        return out, target
    tensors: list[Optional[torch.Tensor]] = []
    for level in out.levels:
        for side in SIDES:
            tensors += [getattr(level.hand(side), f) for f in _PRED_FIELDS]
        tensors.append(level.offset)
    tensors += [out.seg, out.dense]
    for side in SIDES:
        tensors += [getattr(target.hand(side), f) for f in _TARGET_FIELDS]
    tensors += [target.offset, target.seg, target.dense]
    full = iter(ddp.gather_rows(tensors, counts, info))
    levels = []
    for _ in out.levels:
        hands = {s: HandPrediction(*(next(full) for _ in _PRED_FIELDS)) for s in SIDES}
        levels.append(LevelOutput(hands["left"], hands["right"], next(full)))
    seg, dense = next(full), next(full)
    thands = {s: HandTarget(*(next(full) for _ in _TARGET_FIELDS)) for s in SIDES}
    tgt = DIRTarget(thands["left"], thands["right"], next(full), seg=next(full), dense=next(full))
    return DIROutput(levels=levels, seg=seg, dense=dense), tgt


def autocast_context(device: torch.device, dtype: Optional[torch.dtype]
                     ) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA (dtype fp16/bf16), nothing otherwise."""
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def forward_loss(runner: torch.nn.Module, model: DIR, batch: Batch, counts: tuple[int, ...],
                 info: ddp.DistInfo, amp_dtype: Optional[torch.dtype] = None
                 ) -> dict[str, torch.Tensor]:
    """Forward this process's part of the batch, gather the whole batch and compute the
    release losses on it (identical on every process). runner: the model or its DDP
    wrapper; counts: every process's number of samples."""
    with autocast_context(info.device, amp_dtype):
        out = runner(batch.images)
    full_out, full_tgt = gather_batch(out, batch.target, counts, info)
    return model.compute_loss(full_out, full_tgt)


# ---------------------------------------------------------------------------------------
# Validation


def frame_samples(level: LevelOutput, target: DIRTarget) -> list[tuple[Any, Any]]:
    """(prediction, ground truth) evaluator.FrameSample pairs of a batch: each hand's
    root-relative joints and mesh, the right hand placed at the (predicted or true)
    offset from the left hand's root, so MRRPE is the release's |pred - GT| offset error."""
    from dir_ros.eval.evaluator import FrameSample, HandSample

    def place(hand: Any, shift: np.ndarray, b: int) -> HandSample:
        # float32 halves what validation gathers from the other processes (um-level rounding)
        joints = hand.joints_xyz[b].double().cpu().numpy() + shift
        verts = hand.verts_xyz[b].double().cpu().numpy() + shift
        return HandSample(valid=True, joints=joints.astype(np.float32),
                          vertices=verts.astype(np.float32), metric=True)

    pairs = []
    for b in range(level.offset.shape[0]):
        po = level.offset[b].double().cpu().numpy() * XYZ_SCALE
        go = target.offset[b].double().cpu().numpy() * XYZ_SCALE
        zero = np.zeros(3)
        pairs.append((FrameSample(place(level.left, zero, b), place(level.right, po, b)),
                      FrameSample(place(target.left, zero, b), place(target.right, go, b))))
    return pairs


@torch.no_grad()
def validate(model: DIR, dataset: Any, info: ddp.DistInfo, batch_size: int, workers: int,
             amp_dtype: Optional[torch.dtype], progress: bool, epoch: int) -> dict[str, Any]:
    """Validation loss and metrics (dir_ros/eval/evaluator.py: MPJPE, MPVPE wrist-aligned and
    scaled, MRRPE) of the final level over the validation set, shared by all processes."""
    from dir_ros.eval.evaluator import Evaluator

    model.eval()
    sampler = ddp.ShardedBatchSampler(len(dataset), max(batch_size, info.world_size) //
                                      info.world_size * info.world_size, info.rank,
                                      info.world_size, shuffle=False, drop_last=False)
    loss_sum, count, pairs, bad = 0.0, 0, [], []
    bar = _bar(len(sampler), f"validate {epoch + 1}", progress and info.is_main)
    for batch, reasons in make_loader(dataset, sampler, workers, info.device.type == "cuda"):
        bad += reasons
        bar.update(1)
        if batch is None:
            continue
        batch = batch.to(info.device)
        with autocast_context(info.device, amp_dtype):
            out = model(batch.images)
        out = _float_output(out)
        loss_sum += float(model.compute_loss(out, batch.target)["total"]) * len(batch)
        count += len(batch)
        pairs += frame_samples(out.final, batch.target)
    bar.close()
    model.train()
    parts = ddp.all_gather_objects((loss_sum, count, pairs, bad), info)
    loss_sum = sum(p[0] for p in parts)
    count = sum(p[1] for p in parts)
    ev = Evaluator(compute_iv=False)
    for p in parts:
        for pred, gt in p[2]:
            ev.add(pred, gt)
    bad_all = [r for p in parts for r in p[3]]
    summary = ev.summary()
    wrist = summary.get("metrics", {}).get("wrist", {}).get("mean", {})
    return {"epoch": epoch, "frames": count, "loss": loss_sum / count if count else None,
            "mpjpe_mm": wrist.get("mpjpe_mm"), "mpvpe_mm": wrist.get("mpvpe_mm"),
            "mrrpe_mm": summary.get("mrrpe_mm"), "skipped_frames": len(bad_all)}


def _float_output(out: DIROutput) -> DIROutput:
    """The output with every tensor in float32 (after autocast)."""
    def f(h: HandPrediction) -> HandPrediction:
        return HandPrediction(*(getattr(h, k).float() for k in _PRED_FIELDS))

    return DIROutput([LevelOutput(f(lv.left), f(lv.right), lv.offset.float()) for lv in out.levels],
                     None if out.seg is None else out.seg.float(),
                     None if out.dense is None else out.dense.float())


def _bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm progress bar on stderr (a silent stand-in when disabled)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, disable=not enabled,
                dynamic_ncols=True, leave=False)


# ---------------------------------------------------------------------------------------
# The run


def resolve_precision(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype: None (fp32) on CPU or for 'fp32'; 'auto' = bf16 where the GPU has it,
    else fp16."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if precision == "fp16" else torch.bfloat16


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint written by this trainer (safe loader); TrainingError naming
    the file when it is not one."""
    try:
        ckpt = _load_file(Path(path))
    except WeightsFileError as err:
        raise TrainingError(f"cannot resume: {err}") from None
    missing = [k for k in ("net", "optimizer", "schedule", "last_epoch", "train")
               if not isinstance(ckpt, Mapping) or k not in ckpt]
    if missing:
        raise TrainingError(f"cannot resume from '{path}': not a training checkpoint of "
                            f"dir-ros train (missing {', '.join(missing)}; a release or best.pth "
                            f"checkpoint can start a run through init_weights instead)")
    return dict(ckpt)


class Trainer:
    """One training run of a resolved training config (see recipe.py)."""

    def __init__(self, cfg: Mapping[str, Any], resume: Optional[str | Path] = None,
                 progress: bool = True) -> None:
        self.cfg = resolve_train_config(dict(cfg))
        self.progress = progress
        self.info = ddp.init_distributed(self.cfg["device"])
        if self.cfg["threads"]:
            torch.set_num_threads(int(self.cfg["threads"]))
        if int(self.cfg["batch_size"]) % self.info.world_size:
            raise ValueError(f"batch_size {self.cfg['batch_size']} must be divisible by the "
                             f"number of processes ({self.info.world_size})")
        self.out_dir = Path(self.cfg["out_dir"]).expanduser()
        torch.manual_seed(int(self.cfg["seed"]))
        self.model, self.arrays, self.model_cfg = build_model(self.cfg)
        if self.cfg["init_weights"]:
            rep = load_release_checkpoint(self.model, resolve_resource(self.cfg["init_weights"]))
            LOG.info("initial weights %s: %s", self.cfg["init_weights"], rep)
        self.train_set, self.val_set = build_datasets(
            self.cfg, self.arrays, self.model.input_size, int(self.model_cfg["root_joint"]))
        self.model.to(self.info.device)
        self.runner = ddp.wrap_model(self.model, self.info, bool(self.cfg["sync_bn"]))
        self.optimizer = make_optimizer(self.model.parameters(), self.cfg)
        self.schedule = make_schedule(self.optimizer, self.cfg)
        self.amp_dtype = resolve_precision(self.cfg["precision"], self.info.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.start_epoch = 0
        self.history: dict[str, Any] = {"loss": [], "epoch_of_step": [], "val": [],
                                        "skipped_frames": 0}
        self.best = math.inf
        if resume is not None:
            self._resume(Path(resume))

    # ---- checkpoints
    def _resume(self, path: Path) -> None:
        """Continue from a last.pth: weights, optimiser, schedule, epoch, history."""
        ckpt = read_checkpoint(path)
        try:
            load_release_checkpoint(self.model, {"net": ckpt["net"]})
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (WeightsFileError, ValueError) as err:
            raise TrainingError(f"cannot resume from '{path}': it does not fit this run's "
                                f"network ({' '.join(str(err).split())})") from None
        self.schedule.load_state_dict(ckpt["schedule"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        state = ckpt["train"]
        self.start_epoch = int(ckpt["last_epoch"]) + 1
        self.history = {**self.history, **json.loads(state.get("history_json", "{}"))}
        self.best = float(state.get("best", math.inf))
        LOG.info("resumed from %s after epoch %d", path, self.start_epoch)

    def _state_dict(self) -> dict[str, torch.Tensor]:
        """The network's state dict on the CPU (release key names)."""
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    def _save(self, epoch: int, val: Optional[dict[str, Any]]) -> None:
        """Write last.pth (and best.pth when the validation metric improved), model.yaml,
        history.json and the curves (main process only)."""
        if not self.info.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        net = self._state_dict()
        improved = val is not None and val.get(BEST_METRIC) is not None and \
            val[BEST_METRIC] < self.best
        if improved:
            self.best = float(val[BEST_METRIC])
        train_state = {"config_yaml": yaml.safe_dump(self.cfg, sort_keys=False),
                       "model_yaml": yaml.safe_dump(self.model_cfg, sort_keys=False),
                       "history_json": json.dumps(self.history), "best": self.best,
                       "world_size": self.info.world_size}
        atomic_save({"net": net, "optimizer": self.optimizer.state_dict(),
                     "schedule": self.schedule.state_dict(), "last_epoch": epoch,
                     "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                     "train": train_state}, self.out_dir / CHECKPOINT_LAST)
        if improved:
            atomic_save({"net": net, "last_epoch": epoch,
                         "metrics": {k: float(v) for k, v in val.items()
                                     if isinstance(v, (int, float))}},
                        self.out_dir / CHECKPOINT_BEST)
        atomic_write_text(self.out_dir / MODEL_YAML,
                          yaml.safe_dump(self.model_cfg, sort_keys=False))
        atomic_write_text(self.out_dir / HISTORY_JSON, json.dumps(self.history, indent=1))
        plot_curves(self.history, self.out_dir / CURVES_PNG)

    # ---- the loop
    def _check_bad(self, reasons: list[str], bads: tuple[int, ...], epoch: int, step: int,
                   shown: int) -> int:
        """Report the bad frames of a step; raise under bad_frames 'stop' (on every process,
        so none waits for the others). Returns the number named so far this epoch."""
        for r in reasons:
            if shown < SHOWN_BAD_FRAMES:
                LOG.warning("skipping bad frame: %s", r)
            shown += 1
        total = sum(bads)
        if total and self.cfg["data"]["bad_frames"] == "stop":
            where = reasons[0] if reasons else f"{total} bad frame(s) on another process"
            raise TrainingError(f"stopped at epoch {epoch + 1} step {step + 1} on a bad frame "
                                f"(data.bad_frames 'stop'): {where}; {self._last_good()}")
        self.history["skipped_frames"] += total if self.info.is_main else 0
        return shown

    def _last_good(self) -> str:
        """Which checkpoint a stopped run leaves behind."""
        last = self.out_dir / CHECKPOINT_LAST
        return (f"the last complete checkpoint is {last}" if last.is_file()
                else "no checkpoint was written")

    def train_epoch(self, epoch: int) -> None:
        """One pass over the training set (or max_steps_per_epoch steps)."""
        cfg, info = self.cfg, self.info
        self.train_set.epoch = epoch
        sampler = ddp.ShardedBatchSampler(
            len(self.train_set), int(cfg["batch_size"]), info.rank, info.world_size,
            shuffle=True, seed=int(cfg["seed"]), drop_last=True,
            max_steps=cfg["max_steps_per_epoch"])
        if len(sampler) == 0:
            raise TrainingError(f"the training set has {len(self.train_set)} frames, fewer than "
                                f"one batch of {cfg['batch_size']}")
        sampler.set_epoch(epoch)
        self.runner.train()
        bar = _bar(len(sampler), f"epoch {epoch + 1}/{cfg['epochs']}",
                   self.progress and info.is_main)
        shown, log_every = 0, max(int(cfg["log_every"]), 1)
        recent: list[float] = []
        loader = make_loader(self.train_set, sampler, int(cfg["data"]["workers"]),
                             info.device.type == "cuda")
        for step, (batch, reasons) in enumerate(loader):
            goods, bads = ddp.exchange_counts(0 if batch is None else len(batch), len(reasons),
                                              info)
            shown = self._check_bad(reasons, bads, epoch, step, shown)
            bar.update(1)
            if min(goods) == 0:  # some process has nothing left: every process skips
                continue
            batch = batch.to(info.device)
            terms = forward_loss(self.runner, self.model, batch, goods, info, self.amp_dtype)
            loss = terms["total"]
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss is {loss.item()} at epoch {epoch + 1} step {step + 1} (frames "
                    f"{', '.join(batch.names[:SHOWN_FRAME_NAMES])}, ...); stopped before the "
                    f"optimiser step; {self._last_good()}")
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                loss.backward()
            if cfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(cfg["grad_clip"]))
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            value = float(loss.detach())
            self.history["loss"].append(value)
            self.history["epoch_of_step"].append(epoch)
            recent.append(value)
            if len(recent) >= log_every:
                bar.set_postfix(loss=f"{np.mean(recent):.4g}",
                                lr=f"{self.optimizer.param_groups[0]['lr']:.2g}")
                recent = []
        bar.close()
        if shown > SHOWN_BAD_FRAMES:
            LOG.warning("epoch %d: %d bad frames skipped in all", epoch + 1, shown)

    def run(self) -> dict[str, Any]:
        """Train from start_epoch to epochs; returns a summary (losses, metrics, files)."""
        cfg, info = self.cfg, self.info
        t0 = time.perf_counter()
        steps0 = len(self.history["loss"])
        val: Optional[dict[str, Any]] = None
        try:
            if cfg["val_at_start"] and self.start_epoch == 0 and self.val_set is not None:
                val0 = validate(self.model, self.val_set, info, int(cfg["batch_size"]),
                                int(cfg["data"]["workers"]), self.amp_dtype, self.progress, -1)
                self.history["val"].append(val0)
                if info.is_main:
                    LOG.info("validation before training: %s", _describe(val0))
            for epoch in range(self.start_epoch, int(cfg["epochs"])):
                self.train_epoch(epoch)
                self.schedule.step()
                val = None
                last = epoch + 1 == int(cfg["epochs"])
                if self.val_set is not None and ((epoch + 1) % max(int(cfg["val_every"]), 1) == 0
                                                 or last):
                    val = validate(self.model, self.val_set, info, int(cfg["batch_size"]),
                                   int(cfg["data"]["workers"]), self.amp_dtype, self.progress,
                                   epoch)
                    self.history["val"].append(val)
                    if info.is_main:
                        LOG.info("epoch %d validation: %s", epoch + 1, _describe(val))
                self._save(epoch, val)
                ddp.barrier(info)
        finally:
            ddp.cleanup(info)
        losses = self.history["loss"]
        k = max(1, min(int(cfg["log_every"]), len(losses) // 2))  # steps averaged at each end
        return {"epochs": int(cfg["epochs"]), "steps": len(losses),
                "steps_this_run": len(losses) - steps0, "time_s": time.perf_counter() - t0,
                "loss_first": float(np.mean(losses[:k])) if losses else None,
                "loss_last": float(np.mean(losses[-k:])) if losses else None,
                "val": val, "best_" + BEST_METRIC: None if math.isinf(self.best) else self.best,
                "skipped_frames": self.history["skipped_frames"],
                "checkpoint": str(self.out_dir / CHECKPOINT_LAST),
                "model_config": str(self.out_dir / MODEL_YAML), "world_size": info.world_size}


def _describe(val: Mapping[str, Any]) -> str:
    """One line of validation figures."""
    parts = []
    for key, label, unit in (("loss", "loss", ""), ("mpjpe_mm", "MPJPE", " mm"),
                             ("mpvpe_mm", "MPVPE", " mm"), ("mrrpe_mm", "MRRPE", " mm")):
        if val.get(key) is not None:
            parts.append(f"{label} {val[key]:.4g}{unit}")
    return ", ".join(parts) + f" ({val.get('frames', 0)} frames)"


def train(config: str | Path | Mapping[str, Any], overrides: Optional[Mapping[str, Any]] = None,
          resume: Optional[str | Path] = None, progress: bool = True) -> dict[str, Any]:
    """Run `dir-ros train`: config = YAML path or mapping, overrides merged on top."""
    cfg = resolve_train_config(config, overrides)
    return Trainer(cfg, resume=resume, progress=progress).run()
