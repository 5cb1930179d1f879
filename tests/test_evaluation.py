"""Tests for the held-out figures: Recall@1, bounded samples, embeddings written in place."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from imgsim.model.network import EmbeddingNet
from imgsim.train import evaluation
from imgsim.train.evaluation import embed, evaluate, recall_at_1, sample_rows
from imgsim.train.trainset import ImageLoader, in_memory

from .conftest import tiny_model_config

SRC = Path(__file__).resolve().parents[1] / "src"


def _points(n: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("chunk", [1024, 7])
def test_recall_at_1_finds_the_euclidean_nearest_reference(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evaluation, "DISTANCE_CHUNK", chunk)  # 7: many chunks, a short last one
    query, ref = _points(300, 8, 0), _points(50, 8, 1)
    ref_labels = torch.arange(50)
    nearest = torch.cdist(query, ref).argmin(dim=1)
    assert recall_at_1(query, nearest, ref, ref_labels) == 1.0
    assert recall_at_1(query, (nearest + 1) % 50, ref, ref_labels) == 0.0
    half = nearest.clone()
    half[::2] = (half[::2] + 1) % 50
    assert recall_at_1(query, half, ref, ref_labels) == 0.5
    assert math.isnan(recall_at_1(query[:0], nearest[:0], ref, ref_labels))  # nothing to score


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmHWM")
def test_recall_at_1_of_many_queries_keeps_memory_flat() -> None:
    # glibc told to keep freed memory (as it does once big blocks have come and gone in a long
    # run): a fresh 20 MB block per chunk of queries then adds up, +360 MB at 20,000 queries.
    script = textwrap.dedent("""
        import torch
        from imgsim.train.evaluation import recall_at_1
        def peak_mb():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        torch.set_num_threads(1)
        gen = torch.Generator().manual_seed(0)
        q, r = torch.randn(20000, 128, generator=gen), torch.randn(5000, 128, generator=gen)
        before = peak_mb()
        recall_at_1(q, torch.zeros(20000, dtype=torch.long), r, torch.zeros(5000, dtype=torch.long))
        print(peak_mb() - before)
    """)
    env = {**os.environ, "PYTHONPATH": str(SRC), "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
           "MALLOC_TRIM_THRESHOLD_": str(2**30)}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert float(out.stdout) < 60  # one 20 MB buffer of distances, reused


def test_sample_rows_keeps_small_sets_whole_and_samples_large_ones_alike() -> None:
    rows = torch.arange(0, 200, 2)
    assert torch.equal(sample_rows(rows, 100, seed=3), rows)  # all of them, in order
    picked = sample_rows(rows, 10, seed=3)
    assert len(picked) == 10 and len(picked.unique()) == 10
    assert torch.equal(picked, picked.sort().values) and bool(torch.isin(picked, rows).all())
    assert torch.equal(picked, sample_rows(rows, 10, seed=3))  # the same every epoch
    assert not torch.equal(picked, sample_rows(rows, 10, seed=4))


def _tiny_setup(n: int) -> tuple[torch.nn.Module, ImageLoader, torch.Tensor]:
    torch.manual_seed(0)
    images = torch.randint(0, 255, (n, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(n) % 4
    data = in_memory(images, labels, ["a", "b", "c", "d"])
    model = EmbeddingNet(tiny_model_config())
    return model, ImageLoader(data.dataset(32), workers=0), labels


def test_embed_writes_every_row_in_order() -> None:
    model, loader, _ = _tiny_setup(600)  # three batches, the last one short
    rows = torch.arange(5, 600, 1)
    emb, kept = embed(model, loader, rows, torch.device("cpu"))
    assert torch.equal(kept, rows) and emb.shape == (len(rows), 16)
    with torch.inference_mode():
        direct = model(loader._loader.dataset.images[rows[-3:]])
    assert torch.allclose(emb[-3:], direct, atol=1e-5)
    empty, none = embed(model, loader, rows[:0], torch.device("cpu"))
    assert len(empty) == 0 and len(none) == 0


def test_evaluate_scores_a_bounded_sample_of_held_out_images(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, loader, labels = _tiny_setup(120)
    asked: list[int] = []

    def counting_embed(*args: object) -> tuple[torch.Tensor, torch.Tensor]:
        asked.append(len(args[2]))  # type: ignore[arg-type]
        return embed(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(evaluation, "embed", counting_embed)
    monkeypatch.setattr(evaluation, "MAX_QUERIES", 30)
    monkeypatch.setattr(evaluation, "MAX_REFERENCES", 40)
    train_rows, val_rows = torch.arange(0, 60), torch.arange(60, 120)
    parts = (lambda e, y, pairs: torch.tensor(0.0), None)
    figures = evaluate(model, loader, labels, train_rows, val_rows, parts, 16, 0,
                       torch.device("cpu"))  # fmt: skip
    assert asked == [30, 40]
    assert 0.0 <= figures["val_recall_at_1"] <= 1.0  # type: ignore[operator]
    asked.clear()
    monkeypatch.setattr(evaluation, "MAX_QUERIES", 5000)  # under the cap: every held-out image
    evaluate(model, loader, labels, train_rows, val_rows, parts, 16, 0, torch.device("cpu"))
    assert asked == [60, 40]
