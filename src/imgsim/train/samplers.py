"""Batch samplers: which training rows make up each global batch, and each process's share."""

# Written here rather than taken from pytorch-metric-learning's MPerClassSampler: that one draws
# from NumPy's global random state and knows nothing of processes, while a run must give the same
# batches for the same seed on one process or many.

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from ..core.errors import ConfigError


def batch_shape(batch_size: int, m_per_class: int, n_classes: int) -> tuple[int, int]:
    """(batch size, images per category) that an m-per-class batch can hold.

    With few categories each one must supply more images to fill a batch.
    """
    m = max(2, m_per_class, math.ceil(batch_size / n_classes))
    batch = max(m * 2, (min(batch_size, m * n_classes) // m) * m)
    return min(batch, m * n_classes), m


class GlobalBatches:
    """Base: an epoch's global batches of positions into `labels`, and this process's slice.

    `set_epoch` picks the epoch (batches are seeded by seed and epoch, so a resumed run draws
    exactly the batches the interrupted one would); iterating yields this rank's contiguous
    share of each global batch, as DataLoader's `batch_sampler`.
    """

    def __init__(
        self, labels: torch.Tensor, batch: int, steps: int, seed: int, rank: int = 0, world: int = 1
    ) -> None:
        if batch % world:
            raise ConfigError(
                f"the batch of {batch} images cannot be shared equally by {world} processes; "
                f"choose a --batch-size that is a multiple of {world}"
            )
        self.labels, self.batch, self.steps = labels, batch, steps
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1000 + self.epoch)

    def global_batches(self) -> torch.Tensor:
        """steps × batch positions into `labels` for the current epoch."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        share = self.batch // self.world
        for batch in self.global_batches():
            yield batch[self.rank * share : (self.rank + 1) * share].tolist()


class RandomBatches(GlobalBatches):
    """Batches drawn from a fresh permutation each pass over the rows, whatever the category."""

    def global_batches(self) -> torch.Tensor:
        gen, n = self.generator(), len(self.labels)
        need = self.steps * self.batch
        order = torch.cat([torch.randperm(n, generator=gen) for _ in range(math.ceil(need / n))])
        return order[:need].view(self.steps, self.batch)


class MPerClassBatches(GlobalBatches):
    """Batches of `batch / m` categories with `m` images each, so every anchor has positives.

    Categories are taken in shuffled rounds (all appear before any repeats); within a category
    images are drawn from a shuffled queue, refilled when it runs out (with repeats when a
    category has fewer than m images).
    """

    def __init__(self, labels: torch.Tensor, m: int, batch: int, steps: int, seed: int,
                 rank: int = 0, world: int = 1) -> None:  # fmt: skip
        super().__init__(labels, batch, steps, seed, rank, world)
        if batch % m:
            raise ConfigError(f"batch size {batch} is not a multiple of m_per_class {m}")
        self.m = m
        self.classes = labels.unique()
        self.rows_of = [(labels == c).nonzero().flatten() for c in self.classes.tolist()]
        if batch // m > len(self.classes):
            raise ConfigError(f"a batch of {batch} needs {batch // m} categories of {m} images")

    def global_batches(self) -> torch.Tensor:
        gen = self.generator()
        per_batch = self.batch // self.m
        # Each category's shuffled rows, taken from the end; `left` of them not taken yet.
        # Tensors, not lists: a list of Python ints per category is ~40 bytes a row.
        queues = [rows[:0] for rows in self.rows_of]
        left = [0] * len(self.rows_of)
        class_stream: list[int] = []
        out = torch.empty(self.steps, self.batch, dtype=torch.long)
        for step in range(self.steps):
            picked: list[int] = []
            skipped: list[int] = []
            while len(picked) < per_batch:  # distinct categories within one batch
                if not class_stream:
                    class_stream = torch.randperm(len(self.rows_of), generator=gen).tolist()
                c = class_stream.pop()
                (skipped if c in picked else picked).append(c)
            class_stream.extend(reversed(skipped))  # they come first in the next batch
            parts: list[torch.Tensor] = []
            for c in picked:
                need = self.m
                while need:
                    if not left[c]:
                        perm = torch.randperm(len(self.rows_of[c]), generator=gen)
                        queues[c], left[c] = self.rows_of[c][perm], len(perm)
                    take = min(need, left[c])
                    parts.append(queues[c][left[c] - take : left[c]].flip(0))
                    left[c], need = left[c] - take, need - take
            out[step] = torch.cat(parts)
        return out


def build_sampler(
    kind: str, labels: torch.Tensor, batch_size: int, m_per_class: int, steps: int, seed: int,
    rank: int = 0, world: int = 1,
) -> GlobalBatches:  # fmt: skip
    """The configured sampler over `labels` (positions, not dataset indices)."""
    if kind == "random":
        return RandomBatches(labels, batch_size, steps, seed, rank, world)
    if kind == "m_per_class":
        batch, m = batch_shape(batch_size, m_per_class, len(labels.unique()))
        return MPerClassBatches(labels, m, batch, steps, seed, rank, world)
    raise ConfigError(f"unknown sampler {kind!r}; use m_per_class or random")
