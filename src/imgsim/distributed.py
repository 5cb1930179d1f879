"""Several processes training one model (torchrun): who am I, and the global batch's embeddings."""

from __future__ import annotations

import os
from dataclasses import dataclass

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


def barrier(job: Dist) -> None:
    if job.enabled:
        dist.barrier()


def gather(job: Dist, local: torch.Tensor) -> torch.Tensor:
    """Every process's rows, concatenated in rank order: the whole global batch.

    The autograd-aware all_gather sends each process the gradient of its own rows summed over
    all processes' (identical) losses, i.e. world × the gradient; DDP's gradient averaging then
    divides by world, so the update equals one process training on the global batch.
    """
    if not job.enabled:
        return local
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(local))


def agree(job: Dist, flag: bool) -> bool:
    """Whether any process says yes (e.g. the time budget ran out): all stop together."""
    if not job.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def broadcast_object(job: Dist, obj: object) -> object:
    """Rank 0's value of `obj` on every process."""
    if not job.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
