"""Two gloo processes with batch B each compute the same loss, gradients and batch-norm
statistics as one process with batch 2B (the trainer's own step: DDP, synchronised batch
norm, the whole-batch loss on gathered outputs)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dir_ros.hand_model import load_hand_model, open_hand_dir
from dir_ros.model import DIRTarget, HandTarget, build_dir
from dir_ros.train import ddp
from dir_ros.train.sample import AugmentConfig, Batch, collate
from dir_ros.data.synthetic import SyntheticConfig, SyntheticHands
from dir_ros.train.datasets import SyntheticDataset
from dir_ros.train.trainer import forward_loss

LIGHT = Path(__file__).resolve().parents[1] / "config" / "model" / "dir_light.yaml"
PER_PROCESS = 2                 # B
WORLD = 2
# The comparison runs in float64 (the losses themselves are computed in float32): sums in
# another order (2 x B vs 2B, all-reduce) then differ by float64 rounding, amplified where a
# batch norm sees nearly constant features at initialisation, and by the float32 loss.
LOSS_RTOL = 1e-6
GRAD_RTOL = 1e-6          # whole-model gradient, relative (float32 runs: ~5e-5)
TENSOR_RTOL = 1e-5        # each parameter's gradient, relative (measured <1e-7) ...
NEGLIGIBLE = 1e-6         # ... unless its norm is below this fraction of the whole model's
                          # (biases before a batch norm: zero up to rounding)


def as_double(batch: Batch) -> Batch:
    """The batch with its float tensors in float64."""
    def d(t: torch.Tensor | None) -> torch.Tensor | None:
        return t.double() if t is not None and t.is_floating_point() else t

    tg = batch.target
    hands = {s: HandTarget(*(d(getattr(tg.hand(s), f)) for f in
                             ("joints_uv", "verts_uv", "joints_xyz", "verts_xyz", "valid")))
             for s in ("left", "right")}
    return Batch(d(batch.images), DIRTarget(hands["left"], hands["right"], d(tg.offset),
                                            tg.seg, d(tg.dense)),
                 batch.params, batch.K, batch.names)


def one_step(info: ddp.DistInfo, indices: list[int]) -> dict:
    """The trainer's forward/backward on the given frames: loss, gradients, BN buffers."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    arrays = load_hand_model(open_hand_dir())
    model = build_dir(LIGHT, arrays=arrays)
    model.train()
    gen = SyntheticHands(arrays, SyntheticConfig(width=128, height=128))
    data = SyntheticDataset(gen, 2 * PER_PROCESS, model.input_size, augment=AugmentConfig())
    batch, bad = collate([data[i] for i in indices])
    assert not bad
    model.double()
    model.seg_loss.float()          # the losses compute in float32 (dir_ros/model/losses.py)
    batch = as_double(batch)
    runner = ddp.wrap_model(model, info, sync_bn=True)
    goods, _ = ddp.exchange_counts(len(batch), 0, info)
    terms = forward_loss(runner, model, batch, goods, info)
    terms["total"].backward()
    return {"loss": float(terms["total"].detach()),
            "grads": {n: p.grad.detach().clone() for n, p in model.named_parameters()
                      if p.grad is not None},
            "bn": {n: b.detach().clone() for n, b in model.named_buffers()
                   if "running" in n}}


def worker(rank: int, init_file: str, out_dir: str) -> None:
    """One of the two gloo processes: its slice of the batch, results to a file."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    try:
        info = ddp.attach(ddp.DistInfo(rank=rank, world_size=WORLD, backend="gloo"))
        out = one_step(info, list(range(rank * PER_PROCESS, (rank + 1) * PER_PROCESS)))
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one_process_with_twice_the_batch(tmp_path: Path) -> None:
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    single = one_step(ddp.DistInfo(), list(range(WORLD * PER_PROCESS)))
    for r in ranks:
        assert r["loss"] == pytest.approx(single["loss"], rel=LOSS_RTOL)
    # DDP averages the processes' gradients; every process holds the result
    assert set(ranks[0]["grads"]) == set(single["grads"])
    names = list(single["grads"])
    whole = torch.cat([single["grads"][n].flatten() for n in names])
    for r in ranks:
        mine = torch.cat([r["grads"][n].flatten() for n in names])
        assert float((mine - whole).norm() / whole.norm()) < GRAD_RTOL
        for n in names:
            g = single["grads"][n]
            if g.norm() > NEGLIGIBLE * whole.norm():
                assert float((r["grads"][n] - g).norm() / g.norm()) < TENSOR_RTOL, n
    # synchronised batch norm: running statistics of the whole batch on every process
    for name, b in single["bn"].items():
        for r in ranks:
            assert torch.allclose(r["bn"][name], b, rtol=1e-4, atol=1e-6), name
    # and the processes hold identical gradients (DDP's average)
    for name in single["grads"]:
        assert torch.equal(ranks[0]["grads"][name], ranks[1]["grads"][name])


def test_sharded_sampler_slices_the_single_process_batches() -> None:
    one = list(ddp.ShardedBatchSampler(10, 4, shuffle=True, seed=3))
    two = [list(ddp.ShardedBatchSampler(10, 4, rank=r, world_size=2, shuffle=True, seed=3))
           for r in range(2)]
    assert len(one) == 2 and all(len(b) == 4 for b in one)             # drop_last
    for step, batch in enumerate(one):
        assert two[0][step] + two[1][step] == batch
    val = [list(ddp.ShardedBatchSampler(5, 4, rank=r, world_size=2, shuffle=False,
                                        drop_last=False)) for r in range(2)]
    assert sorted(i for r in val for b in r for i in b) == list(range(5))
    with pytest.raises(ValueError, match="divisible"):
        ddp.ShardedBatchSampler(10, 3, world_size=2)
