"""Tests for the batch samplers: m images per category, repeatable, shared across processes."""

from __future__ import annotations

import pytest
import torch

from imgsim.core.errors import ConfigError
from imgsim.train.samplers import MPerClassBatches, RandomBatches, build_sampler

LABELS = torch.tensor([0] * 10 + [1] * 7 + [2] * 3 + [3] * 12 + [4] * 5)


def test_every_batch_holds_m_images_of_distinct_categories() -> None:
    batches = MPerClassBatches(LABELS, m=4, batch=12, steps=20, seed=0).global_batches()
    assert batches.shape == (20, 12)
    for batch in batches:
        labels = LABELS[batch]
        counts = labels.bincount(minlength=5)
        assert sorted(counts[counts > 0].tolist()) == [4, 4, 4]


def test_every_image_is_seen_before_any_repeats_within_a_category() -> None:
    batches = MPerClassBatches(LABELS, m=2, batch=10, steps=10, seed=3).global_batches()
    rows_of_3 = [int(r) for r in batches.flatten() if LABELS[r] == 3]
    assert len(set(rows_of_3[:12])) == min(12, len(rows_of_3))


def test_same_seed_and_epoch_same_batches_other_epoch_other_batches() -> None:
    a = MPerClassBatches(LABELS, 4, 12, 5, seed=1)
    b = MPerClassBatches(LABELS, 4, 12, 5, seed=1)
    a.set_epoch(2)
    b.set_epoch(2)
    assert torch.equal(a.global_batches(), b.global_batches())
    b.set_epoch(3)
    assert not torch.equal(a.global_batches(), b.global_batches())


@pytest.mark.parametrize("kind", ["m_per_class", "random"])
def test_ranks_get_disjoint_parts_of_the_same_global_batch(kind: str) -> None:
    one = build_sampler(kind, LABELS, 16, 4, 6, seed=5)
    shares = [build_sampler(kind, LABELS, 16, 4, 6, seed=5, rank=r, world=2) for r in (0, 1)]
    for whole, first, second in zip(one, *shares, strict=True):
        assert len(first) == len(second) == 8
        assert first + second == whole


def test_random_batches_cover_every_row_each_pass() -> None:
    batches = RandomBatches(LABELS, batch=37, steps=1, seed=0).global_batches()
    assert sorted(batches.flatten().tolist()) == list(range(37))


def test_a_batch_that_processes_cannot_share_is_refused() -> None:
    with pytest.raises(ConfigError, match="multiple of 3"):
        build_sampler("random", LABELS, 16, 4, 2, seed=0, rank=0, world=3)


def _list_queue_batches(sampler: MPerClassBatches) -> torch.Tensor:
    """The draw as first written, with a Python list per category: the batches must not change."""
    gen, per_batch = sampler.generator(), sampler.batch // sampler.m
    queues: list[list[int]] = [[] for _ in sampler.rows_of]
    class_stream: list[int] = []
    out = []
    for _ in range(sampler.steps):
        picked: list[int] = []
        skipped: list[int] = []
        while len(picked) < per_batch:
            if not class_stream:
                class_stream = torch.randperm(len(sampler.rows_of), generator=gen).tolist()
            c = class_stream.pop()
            (skipped if c in picked else picked).append(c)
        class_stream.extend(reversed(skipped))
        rows = []
        for c in picked:
            for _ in range(sampler.m):
                if not queues[c]:
                    perm = torch.randperm(len(sampler.rows_of[c]), generator=gen)
                    queues[c] = sampler.rows_of[c][perm].tolist()
                rows.append(queues[c].pop())
        out.append(rows)
    return torch.tensor(out)


@pytest.mark.parametrize(("m", "batch"), [(4, 12), (2, 10), (8, 16)])  # 8: more than category 2 has
def test_tensor_queues_draw_exactly_the_batches_list_queues_drew(m: int, batch: int) -> None:
    sampler = MPerClassBatches(LABELS, m, batch, steps=40, seed=5)
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        assert torch.equal(sampler.global_batches(), _list_queue_batches(sampler))
