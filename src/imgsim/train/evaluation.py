"""Held-out figures of a model: embeddings, validation loss on mixed batches, Recall@1."""

from __future__ import annotations

import math
from typing import Any

import torch

from .trainset import ImageLoader

EVAL_BATCH = 256
MAX_REFERENCES = 5000  # training images standing in for the index when measuring Recall@1
# Held-out images scored each epoch: a seeded sample, the same every epoch, so the figures of
# two epochs compare the same images and the cost stays flat as the folder grows (Recall@1 of
# 5,000 queries: standard error under 0.8 points).
MAX_QUERIES = 5000
# Validation may take about this share of a run; embedding an image costs about a third of a
# training step on it (forward only).
VALIDATION_SHARE = 0.1
FORWARD_COST = 1 / 3


def validation_interval(n_train: int, n_val: int) -> int:
    """Epochs between validations so that they take about a tenth of the run.

    On a small folder, validation embeds the held-out images and all training references each
    time: more than an epoch's training costs. Those epochs are better spent training.
    """
    if n_val == 0 or n_train == 0:
        return 1
    embedded = min(n_val, MAX_QUERIES) + min(n_train, MAX_REFERENCES)
    return max(1, math.ceil(embedded * FORWARD_COST / (VALIDATION_SHARE * n_train)))


DISTANCE_CHUNK = 1024  # queries whose distances to every reference are held at once


@torch.inference_mode()
def embed(
    model: torch.nn.Module, loader: ImageLoader, rows: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 CPU embeddings, the rows they belong to) in eval mode; unreadable rows drop out."""
    model.eval()
    plan = (rows[i : i + EVAL_BATCH].tolist() for i in range(0, len(rows), EVAL_BATCH))
    # Written into one tensor as they come: a list of per-batch outputs joined at the end
    # holds them twice and leaves the heap in pieces.
    out, kept, n = torch.empty(0, 0), torch.empty(len(rows), dtype=torch.long), 0
    for indices, images in loader.batches(plan):
        emb = model(images.to(device, non_blocking=True)).float().cpu()
        if n == 0:
            out = torch.empty(len(rows), emb.shape[1])
        out[n : n + len(emb)], kept[n : n + len(emb)] = emb, indices
        n += len(emb)
    return out[:n], kept[:n]


def sample_rows(rows: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """At most `limit` of `rows`: a seeded sample, in ascending order (all rows when fewer)."""
    gen = torch.Generator().manual_seed(seed)
    return rows[torch.randperm(len(rows), generator=gen)[:limit]].sort().values


@torch.inference_mode()
def validation_loss(
    emb: torch.Tensor, labels: torch.Tensor, loss_fn: Any, miner: Any, batch: int, seed: int
) -> float:
    """Mean loss over shuffled batches of the validation embeddings.

    Shuffled with a fixed seed, so batches mix categories (in file-name order a batch holds
    one category and scores 0) and every epoch is scored on the same batches.
    """
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=gen)
    total, count = 0.0, 0
    for chunk in order.split(max(2, batch)):
        if len(chunk) < 2:
            continue
        e, y = emb[chunk], labels[chunk]
        value = float(loss_fn(e, y, miner(e, y) if miner else None))
        total, count = total + value * len(chunk), count + len(chunk)
    return total / count if count else float("nan")


def recall_at_1(
    query: torch.Tensor, query_labels: torch.Tensor, ref: torch.Tensor, ref_labels: torch.Tensor
) -> float:
    """Fraction of queries whose nearest reference shares their category."""
    if len(query) == 0 or len(ref) == 0:
        return float("nan")
    # Nearest by ‖r‖² − 2 q·r (the squared distance less ‖q‖², the same for every reference),
    # a chunk of queries at a time into one reused buffer: a fresh block per chunk (cdist's)
    # fragmented the heap, +270 MB at 20,000 queries.
    ref_sq = (ref * ref).sum(1)
    buf = torch.empty(min(DISTANCE_CHUNK, len(query)), len(ref))
    nearest = torch.empty(len(query), dtype=torch.long)
    for start in range(0, len(query), DISTANCE_CHUNK):
        q = query[start : start + DISTANCE_CHUNK]
        dist = torch.addmm(ref_sq, q, ref.T, alpha=-2, out=buf[: len(q)])
        nearest[start : start + len(q)] = dist.argmin(dim=1)
    return float((ref_labels[nearest] == query_labels).float().mean())


def evaluate(
    model: torch.nn.Module,
    loader: ImageLoader,
    labels: torch.Tensor,
    train_rows: torch.Tensor,
    val_rows: torch.Tensor,
    parts: tuple[Any, Any],
    batch: int,
    seed: int,
    device: torch.device,
) -> dict[str, float | None]:
    """Validation loss, Recall@1 of held-out images against training images, mean distance."""
    if len(val_rows) == 0:
        return {"val_loss": None, "val_recall_at_1": None, "val_mean_distance": None}
    val_emb, val_kept = embed(model, loader, sample_rows(val_rows, MAX_QUERIES, seed), device)
    val_labels = labels[val_kept]
    # A sample of the training images stands in for the index: the query is held out, the
    # collection is what the model saw, as when a user searches with a new photo.
    refs = sample_rows(train_rows, MAX_REFERENCES, seed)
    ref_emb, ref_kept = embed(model, loader, refs, device)
    sample = val_emb[:512]
    return {
        "val_loss": validation_loss(val_emb, val_labels, *parts, batch, seed),
        "val_recall_at_1": recall_at_1(val_emb, val_labels, ref_emb, labels[ref_kept]),
        "val_mean_distance": float(torch.pdist(sample).mean()) if len(sample) > 1 else None,
    }
