"""Several processes training one model (torchrun): who am I, and the global batch's embeddings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place in the job; rank 0 alone writes checkpoints, logs and outputs."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_env() -> Dist:
    """The job torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK; one process without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def start(job: Dist, device: torch.device) -> None:
    """Join the process group: NCCL between GPUs, gloo between CPU processes."""
    if job.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=job.rank, world_size=job.world)


def stop(job: Dist) -> None:
    """Leave the process group; the barrier first, or gloo may abort at exit (torch 2.13)."""
    if job.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, job: Dist, device: torch.device) -> torch.nn.Module:
    """The module a training step runs: `model` itself alone, DistributedDataParallel (with
    batch statistics over the global batch on GPUs) in a job of several processes. Both
    share `model`'s parameters, so its state_dict is the trained network's either way."""
    if not job.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    net = model
    if device.type == "cuda":  # batch statistics over the global batch
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=ids)


def barrier(job: Dist) -> None:
    if job.enabled:
        dist.barrier()


class _GatherRows(torch.autograd.Function):
    """all_gather whose backward hands each process the summed gradient of its own rows."""

    @staticmethod
    def forward(ctx: Any, local: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local.contiguous())
        ctx.rank, ctx.rows = dist.get_rank(), len(local)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every process's loss pulls on every row: sum them
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather(job: Dist, local: torch.Tensor) -> torch.Tensor:
    """Every process's rows, concatenated in rank order: the whole global batch.

    Each process computes the same loss on the global batch; the backward sends each one the
    gradient of its own rows summed over all processes, i.e. world × the gradient, and DDP's
    averaging then divides by world: the update equals one process training on the batch.
    """
    if not job.enabled:
        return local
    if not local.requires_grad:
        parts = [torch.empty_like(local) for _ in range(job.world)]
        dist.all_gather(parts, local.contiguous())
        return torch.cat(parts)
    return _GatherRows.apply(local)


def agree(job: Dist, flag: bool) -> bool:
    """Whether any process says yes (e.g. the time budget ran out): all stop together."""
    if not job.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)
