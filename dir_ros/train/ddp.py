"""Distributed training through torchrun: DistributedDataParallel on one or several nodes,
NCCL on GPUs, gloo on CPUs.

The batch is split across processes so that W processes with batch B each compute exactly
what one process computes with batch W*B (up to float rounding):

* batch norm is synchronised: torch's SyncBatchNorm on GPUs, GlooSyncBatchNorm (below) on
  CPUs, where torch has none;
* the loss is not an average of per-process losses (the Lovasz-softmax over all pixels of
  the batch, the class-weighted cross-entropy and the masked means are not decomposable):
  every process gathers the whole batch's outputs and targets (gather_rows, differentiable)
  and computes the full-batch loss; the gradient of the gathered rows is summed over
  processes on the way back, so after DDP's averaging each parameter gets d(loss)/d(param)
  of the full batch;
* ShardedBatchSampler gives process r the r-th slice of the same global batch a single
  process would draw.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

# How long a process waits for the others at a collective before failing (validation and
# checkpoint writing on one process can take minutes on big datasets).
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=60)
# torchrun's environment variables.
ENV_WORLD_SIZE, ENV_RANK, ENV_LOCAL_RANK = "WORLD_SIZE", "RANK", "LOCAL_RANK"
ENV_LOCAL_WORLD_SIZE = "LOCAL_WORLD_SIZE"


@dataclass
class DistInfo:
    """Where this process stands: rank, world size, local rank, device, backend (None when
    not distributed) and the extra process group of the loss/batch-norm collectives."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: Optional[str] = None
    group: Any = None

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that logs, validates the summary and writes checkpoints."""
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1), or
    return a single-process DistInfo. device: auto | cpu | cuda; the backend is NCCL on
    CUDA and gloo on CPU."""
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    world = int(os.environ.get(ENV_WORLD_SIZE, "1"))
    if world <= 1:
        return DistInfo(device=torch.device("cuda" if use_cuda else "cpu"))
    rank = int(os.environ[ENV_RANK])
    local = int(os.environ.get(ENV_LOCAL_RANK, "0"))
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    return attach(DistInfo(rank=rank, world_size=world, local_rank=local, backend=backend,
                           device=torch.device(f"cuda:{local}" if use_cuda else "cpu")))


def attach(info: DistInfo) -> DistInfo:
    """Give info its own process group for the loss and batch-norm collectives (kept apart
    from DDP's gradient buckets, which reduce asynchronously on the default group)."""
    if info.distributed:
        info.group = dist.new_group(list(range(info.world_size)), timeout=COLLECTIVE_TIMEOUT)
    return info


def cleanup(info: DistInfo) -> None:
    """Leave the process group (when this process joined one)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op when alone)."""
    if info.distributed:
        dist.barrier(group=info.group)


# ---------------------------------------------------------------------------------------
# Differentiable collectives


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of every input is the sum of the output gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:  # type: ignore[override]
        ctx.group = group
        y = x.detach().clone()
        dist.all_reduce(y, group=group)
        return y

    @staticmethod
    def backward(ctx: Any,  # type: ignore[override]
                 grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        g = grad.contiguous().clone()
        dist.all_reduce(g, group=ctx.group)
        return g, None


def all_reduce_sum(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Differentiable sum of x over the processes (x itself when alone)."""
    return _AllReduceSum.apply(x, info.group) if info.distributed else x


class _GatherRows(torch.autograd.Function):
    """Concatenate every process's rows (padded to the same count); the gradient of the
    local rows is the sum over processes of the gradient of their place in the result."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor,  # type: ignore[override]
                counts: tuple[int, ...], rank: int, group: Any) -> torch.Tensor:
        pad = max(counts)
        ctx.counts, ctx.rank, ctx.group, ctx.pad = counts, rank, group, pad
        xp = x.detach().new_zeros((pad,) + tuple(x.shape[1:]))
        xp[: x.shape[0]] = x.detach()
        parts = [torch.empty_like(xp) for _ in counts]
        dist.all_gather(parts, xp.contiguous(), group=group)
        return torch.cat([p[:n] for p, n in zip(parts, counts)], dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        counts, pad = ctx.counts, ctx.pad
        full = grad.new_zeros((len(counts) * pad,) + tuple(grad.shape[1:]))
        start = 0
        for r, n in enumerate(counts):
            full[r * pad: r * pad + n] = grad[start: start + n]
            start += n
        dist.all_reduce(full, group=ctx.group)
        mine = full[ctx.rank * pad: ctx.rank * pad + counts[ctx.rank]]
        return mine, None, None, None


def exchange_counts(good: int, bad: int, info: DistInfo
                    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Every process's numbers of usable and of bad samples in this step: (goods, bads),
    one entry per rank ((good,), (bad,) alone)."""
    if not info.distributed:
        return (int(good),), (int(bad),)
    device = info.device if info.backend == "nccl" else torch.device("cpu")  # NCCL: GPU tensors
    t = torch.tensor([int(good), int(bad)], dtype=torch.int64, device=device)
    parts = [torch.zeros_like(t) for _ in range(info.world_size)]
    dist.all_gather(parts, t, group=info.group)
    return tuple(int(p[0]) for p in parts), tuple(int(p[1]) for p in parts)


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every process's picklable obj, in rank order ([obj] alone)."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj, group=info.group)
    return out


def gather_rows(tensors: Sequence[Optional[torch.Tensor]], counts: tuple[int, ...],
                info: DistInfo) -> list[Optional[torch.Tensor]]:
    """The whole batch of each tensor (B_local, ...) -> (sum of B, ...) in rank order, in one
    collective; differentiable for float tensors. None entries stay None. Alone: unchanged."""
    if not info.distributed:
        return list(tensors)
    present = [t for t in tensors if t is not None]
    device = present[0].device
    # one float dtype for all: float64 when any tensor is (exactness tests), else float32
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in present) else torch.float32
    flat = torch.cat([t.reshape(t.shape[0], -1).to(dtype) for t in present], dim=1)
    # gloo gathers CPU tensors; NCCL device tensors
    work = flat if info.backend == "nccl" else flat.cpu()
    full = _GatherRows.apply(work, counts, info.rank, info.group).to(device)
    out: list[Optional[torch.Tensor]] = []
    col = 0
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        width = t[0].numel() if t.shape[0] else int(torch.tensor(t.shape[1:]).prod())
        piece = full[:, col: col + width].reshape((full.shape[0],) + tuple(t.shape[1:]))
        out.append(piece if t.is_floating_point() else piece.round().to(t.dtype))
        col += width
    return out


# ---------------------------------------------------------------------------------------
# Batch norm across CPU processes


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics cover every process's batch (two passes: mean,
    then variance), for backends where torch's SyncBatchNorm is not available (CPU/gloo).
    Same parameters and buffers (names, shapes) as BatchNorm1d/2d: state dicts are
    interchangeable. Evaluation uses the running statistics, without communication."""

    def __init__(self, num_features: int, info: DistInfo, eps: float = 1e-5,
                 momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.info = info

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise x (N,C,...) with the statistics of all processes' batches."""
        if not (self.training and self.info.distributed):
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                self.training or not self.track_running_stats,
                                0.0 if self.momentum is None else self.momentum, self.eps)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        local = torch.tensor([float(x.numel() // x.shape[1])], dtype=torch.float64)
        dist.all_reduce(local, group=self.info.group)
        count = float(local.item())
        xf = x if x.dtype == torch.float64 else x.float()
        mean = all_reduce_sum(xf.sum(dims), self.info) / count
        xc = xf - mean.view(shape)
        var = all_reduce_sum((xc * xc).sum(dims), self.info) / count
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                     else self.momentum)
                unbiased = var * (count / max(count - 1.0, 1.0))
                self.running_mean.mul_(1 - m).add_(mean.detach().to(self.running_mean.dtype),
                                                   alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.detach().to(self.running_var.dtype),
                                                  alpha=m)
        return y.to(x.dtype)


def convert_batchnorm(module: nn.Module, info: DistInfo) -> nn.Module:
    """Replace every BatchNorm1d/2d/3d in module by its synchronised version (torch's
    SyncBatchNorm with NCCL, GlooSyncBatchNorm otherwise); parameters and buffers are kept
    (the same tensors)."""
    if not info.distributed:
        return module
    if info.backend == "nccl":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group=info.group)
    return _convert_gloo(module, info)


def _convert_gloo(module: nn.Module, info: DistInfo) -> nn.Module:
    """Recursive replacement of batch norms by GlooSyncBatchNorm."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
            module, (GlooSyncBatchNorm, nn.SyncBatchNorm)):
        new = GlooSyncBatchNorm(module.num_features, info, module.eps, module.momentum,
                                module.affine, module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in list(module.named_children()):
        setattr(module, name, _convert_gloo(child, info))
    return module


def wrap_model(model: nn.Module, info: DistInfo, sync_bn: bool = True) -> nn.Module:
    """The module to run the training forward with: model itself when alone, else
    DistributedDataParallel of it (batch norms synchronised when sync_bn). Parameters the
    forward does not use (the backbone's fc, the release's skipped transformer block) are
    allowed."""
    if not info.distributed:
        return model
    if sync_bn:
        model = convert_batchnorm(model, info)
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                               find_unused_parameters=True)


# ---------------------------------------------------------------------------------------
# Sampling


class ShardedBatchSampler:
    """Batches of dataset indices for one process: each step's global batch (batch_size
    indices of a per-epoch permutation seeded by (seed, epoch), or in order without
    shuffling) is cut into world_size consecutive slices and process r takes slice r.
    drop_last drops the incomplete last global batch (training); otherwise the last one is
    split as evenly as possible (validation)."""

    def __init__(self, num_items: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = True,
                 max_steps: Optional[int] = None) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} must be divisible by the number of "
                             f"processes {world_size}")
        self.n, self.batch = int(num_items), int(batch_size)
        self.rank, self.world = rank, world_size
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.max_steps = max_steps
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of an epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        steps = self.n // self.batch if self.drop_last else -(-self.n // self.batch)
        return min(steps, self.max_steps) if self.max_steps else steps

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        for step in range(len(self)):
            chunk = order[step * self.batch: (step + 1) * self.batch]
            per, extra = divmod(len(chunk), self.world)
            start = self.rank * per + min(self.rank, extra)
            yield chunk[start: start + per + (1 if self.rank < extra else 0)]
