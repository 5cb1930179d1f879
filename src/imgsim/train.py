"""Triplet training: data split, mining, the epoch loop, validation, checkpoints and resume."""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import (
    CHECKPOINT_DIR,
    HISTORY_PLOT,
    MODEL_FILE,
    TRAIN_CONFIG_FILE,
    ModelConfig,
    TrainConfig,
    from_dict,
    to_dict,
)
from .data import DatasetError, default_workers, iter_decoded, require_categories, scan_images
from .fileio import atomic_path, write_text_atomic
from .model import EmbeddingNet, save_model
from .threshold import ThresholdChoice, choose_threshold

log = logging.getLogger("imgsim")

MINING_CHOICES = ("semihard", "hard", "all")
LOSS_CHOICES = ("triplet", "multisimilarity")
CHECKPOINT_FORMAT = "imgsim-checkpoint"
COLLAPSE_DISTANCE = 0.05  # mean pairwise distance below this: every image embeds alike


@dataclass
class TrainData:
    """Decoded images held in memory, with integer labels into `categories`."""

    images: torch.Tensor  # uint8 N×3×S×S
    labels: torch.Tensor  # int64 N
    categories: list[str]
    names: list[str]


@dataclass
class TrainResult:
    """What a finished run produced."""

    model_path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy (used by pytorch-metric-learning's sampler) and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_training_images(config: TrainConfig, image_size: int) -> TrainData:
    """Scan the folder and decode every usable image once (corrupt ones skipped and named)."""
    from tqdm import tqdm

    root = Path(config.data_dir)
    candidates = require_categories(scan_images(root), root)
    needed_mb = len(candidates) * 3 * image_size * image_size / 2**20
    if needed_mb > config.max_cache_mb:
        raise DatasetError(
            f"{len(candidates)} images at {image_size}px need {needed_mb:.0f} MB of memory "
            f"(limit max_cache_mb={config.max_cache_mb}); lower --image-size or raise the limit"
        )
    workers = config.workers or default_workers()
    chunks, decoded = [], []
    with tqdm(total=len(candidates), desc="decoding", unit="img", leave=False) as bar:
        for rows, arr in iter_decoded(candidates, image_size, batch_size=64, workers=workers):
            chunks.append(torch.from_numpy(arr))
            decoded.extend(candidates[i] for i in rows)
            bar.update(len(rows))
    # Skipped corrupt files may leave a category too small: check again on what decoded.
    usable = {r.name for r in require_categories(decoded, root)}
    keep = [j for j, r in enumerate(decoded) if r.name in usable]
    records = [decoded[j] for j in keep]
    categories = sorted({r.category for r in records if r.category})
    lookup = {c: i for i, c in enumerate(categories)}
    labels = torch.tensor([lookup[r.category] for r in records], dtype=torch.long)
    images = torch.cat(chunks)[keep]
    return TrainData(images, labels, categories, [r.name for r in records])


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation row indices, the same fraction of every category held out.

    Categories with fewer than 4 images stay whole in training: they need their pairs there.
    """
    gen = torch.Generator().manual_seed(seed)
    train_rows, val_rows = [], []
    for label in labels.unique().tolist():
        rows = (labels == label).nonzero().flatten()
        rows = rows[torch.randperm(len(rows), generator=gen)]
        n_val = 0
        if fraction > 0 and len(rows) >= 4:
            n_val = max(1, min(int(len(rows) * fraction), len(rows) - 3))
        val_rows.append(rows[:n_val])
        train_rows.append(rows[n_val:])
    return torch.cat(train_rows).sort().values, torch.cat(val_rows).sort().values


def build_loss(config: TrainConfig) -> tuple[Any, Any]:
    """pytorch-metric-learning loss and the selected miner (None mines nothing)."""
    from pytorch_metric_learning import losses, miners

    if config.loss not in LOSS_CHOICES:
        raise ValueError(f"loss must be one of {', '.join(LOSS_CHOICES)}")
    if config.mining not in MINING_CHOICES:
        raise ValueError(f"mining must be one of {', '.join(MINING_CHOICES)}")
    if config.loss == "multisimilarity":
        # The pair-based alternative: weighs every pair in the batch by how informative it
        # is; PML's recommended settings for it.
        return losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5), (
            miners.MultiSimilarityMiner(epsilon=0.1)
        )
    loss = losses.TripletMarginLoss(margin=config.margin)
    if config.mining == "semihard":
        return loss, miners.TripletMarginMiner(margin=config.margin, type_of_triplets="semihard")
    if config.mining == "hard":
        return loss, miners.BatchHardMiner()
    return loss, None


def batch_shape(batch_size: int, m_per_class: int, n_classes: int) -> tuple[int, int]:
    """(batch size, images per category) that the m-per-class sampler can serve.

    With few categories each one must supply more images to fill a batch.
    """
    m = max(2, m_per_class, math.ceil(batch_size / n_classes))
    batch = max(m * 2, (min(batch_size, m * n_classes) // m) * m)
    return min(batch, m * n_classes), m


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate at a global step: constant, or cosine decay after a short warm-up."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    warmup = max(1, total_steps // 50)
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.inference_mode()
def embed_rows(model: EmbeddingNet, images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Embeddings of the given rows of an image tensor, in eval mode."""
    model.eval()
    out = [model(images[rows[i : i + 256]]) for i in range(0, len(rows), 256)]
    return torch.cat(out) if out else torch.empty(0, model.config.embedding_dim)


def evaluate(
    model: EmbeddingNet,
    data: TrainData,
    train_rows: torch.Tensor,
    val_rows: torch.Tensor,
    loss_fn: Any,
    miner: Any,
    config: TrainConfig,
) -> dict[str, float | None]:
    """Validation loss, Recall@1 of held-out images against training images, mean distance."""
    from .metrics import retrieval_metrics

    if len(val_rows) == 0:
        return {"val_loss": None, "val_recall_at_1": None, "val_mean_distance": None}
    val_emb, val_labels = embed_rows(model, data.images, val_rows), data.labels[val_rows]
    with torch.inference_mode():
        chunk = config.batch_size
        losses = [
            float(loss_fn(e, y, miner(e, y) if miner else None))
            for e, y in zip(val_emb.split(chunk), val_labels.split(chunk), strict=True)
        ]
    # A sample of the training images stands in for the index: the query is held out, the
    # collection is what the model saw, as when a user searches with a new photo.
    gen = torch.Generator().manual_seed(config.seed)
    ref_rows = train_rows[torch.randperm(len(train_rows), generator=gen)[:5000]]
    ref_emb = embed_rows(model, data.images, ref_rows)
    recall = retrieval_metrics(
        val_emb, val_labels, ref_emb, data.labels[ref_rows], include=("recall_at_1",), k=1
    )["recall_at_1"]
    sample = val_emb[:512]
    mean_dist = float(torch.pdist(sample).mean()) if len(sample) > 1 else None
    return {
        "val_loss": float(np.mean(losses)),
        "val_recall_at_1": recall,
        "val_mean_distance": mean_dist,
    }


def train_step(
    model: EmbeddingNet,
    optimizer: torch.optim.Optimizer,
    data: TrainData,
    rows: torch.Tensor,
    config: TrainConfig,
    gen: torch.Generator,
    loss_fn: Any,
    miner: Any,
) -> float:
    """One optimisation step on the given rows; returns the loss."""
    from .augment import augment_batch

    x = augment_batch(data.images[rows], gen) if config.augment else data.images[rows].float()
    y = data.labels[rows]
    emb = model(x)
    loss = loss_fn(emb, y, miner(emb, y) if miner else None)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def run_epoch(
    model: EmbeddingNet,
    optimizer: torch.optim.Optimizer,
    data: TrainData,
    train_rows: torch.Tensor,
    config: TrainConfig,
    epoch: int,
    loss_fn: Any,
    miner: Any,
    progress: bool,
) -> dict[str, float]:
    """One epoch of m-per-class batches; returns the mean loss and the throughput."""
    from pytorch_metric_learning.samplers import MPerClassSampler
    from tqdm import tqdm

    # Seeded per epoch, so a resumed run draws exactly the batches the interrupted one would.
    seed_everything(config.seed * 1000 + epoch)
    gen = torch.Generator().manual_seed(config.seed * 1000 + epoch)
    labels = data.labels[train_rows]
    batch, m = batch_shape(config.batch_size, config.m_per_class, len(labels.unique()))
    steps = steps_per_epoch(config, len(train_rows), batch)
    sampler = MPerClassSampler(labels, m, batch_size=batch, length_before_new_iter=steps * batch)
    order = torch.tensor(list(iter(sampler)), dtype=torch.long)
    model.train()
    losses, start = [], time.perf_counter()
    bar = tqdm(range(steps), desc=f"epoch {epoch}/{config.epochs}", disable=not progress)
    for step in bar:
        rows = train_rows[order[step * batch : (step + 1) * batch]]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, (epoch - 1) * steps + step, config.epochs * steps)
        losses.append(train_step(model, optimizer, data, rows, config, gen, loss_fn, miner))
        rate = (step + 1) * batch / (time.perf_counter() - start)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", img_s=f"{rate:.0f}")
    return {
        "loss": float(np.mean(losses)),
        "images_per_s": steps * batch / (time.perf_counter() - start),
    }


def plan_epochs(
    model: EmbeddingNet,
    data: TrainData,
    train_rows: torch.Tensor,
    config: TrainConfig,
    loss_fn: Any,
    miner: Any,
    probe_steps: int = 3,
) -> int:
    """Epochs that fit in the time budget, from a few timed steps on a throwaway copy."""
    import copy

    probe = copy.deepcopy(model).train()
    optimizer = torch.optim.Adam(probe.parameters(), lr=config.learning_rate)
    batch, _ = batch_shape(config.batch_size, config.m_per_class, len(data.labels.unique()))
    gen = torch.Generator().manual_seed(config.seed)
    times = []
    for _ in range(probe_steps + 1):  # the first step pays one-off set-up costs: not counted
        rows = train_rows[torch.randint(len(train_rows), (batch,), generator=gen)]
        start = time.perf_counter()
        train_step(probe, optimizer, data, rows, config, gen, loss_fn, miner)
        times.append(time.perf_counter() - start)
    rate = batch / float(np.median(times[1:]))
    images_per_epoch = steps_per_epoch(config, len(train_rows), batch) * batch
    # ~10 % of the budget goes to validation, checkpoints and the final threshold tuning.
    epochs = int(config.time_budget_min * 60 * 0.9 * rate / images_per_epoch)
    epochs = max(1, min(config.max_auto_epochs, epochs))
    log.info(
        "Training for %d epochs: about %.1f minutes at the measured %.0f images/s "
        "(budget %.0f min; --epochs N fixes the number)",
        epochs,
        epochs * images_per_epoch / rate / 60,
        rate,
        config.time_budget_min,
    )
    return epochs


def steps_per_epoch(config: TrainConfig, n_train: int, batch: int) -> int:
    """Steps per epoch: the configured number, or one pass over the training images."""
    return config.steps_per_epoch or max(1, math.ceil(n_train / batch))


def save_checkpoint(
    directory: Path,
    model: EmbeddingNet,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    categories: list[str],
    epoch: int,
    history: list[dict[str, Any]],
    keep: int = 2,
) -> Path:
    """Write epoch_NNN.pt atomically (everything a resume needs) and prune older ones."""
    path = directory / f"epoch_{epoch:03d}.pt"
    payload = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "model_config": to_dict(model.config),
        "train_config": to_dict(config),
        "categories": categories,
        "history": history,
        "model_state": model.state_dict(),
        "optimizer_state": optimizer.state_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    for old in sorted(directory.glob("epoch_*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def latest_checkpoint(directory: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint in `directory`, or None; damaged ones are skipped."""
    for path in sorted(directory.glob("epoch_*.pt"), reverse=True):
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged file must not stop a resume from an older one
            log.warning("Skipping unreadable checkpoint %s: %s", path, exc)
            continue
        if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
            payload["path"] = str(path)
            return payload
    return None


def _resume_state(
    config: TrainConfig, model_config: ModelConfig, resume: bool, epochs: int | None
) -> tuple[TrainConfig, ModelConfig, dict[str, Any] | None]:
    """The configs to run with: the checkpoint's when resuming (epochs may be raised)."""
    ckpt = latest_checkpoint(Path(config.output_dir) / CHECKPOINT_DIR) if resume else None
    if resume and ckpt is None:
        log.warning("No checkpoint to resume from in %s; starting a new run", config.output_dir)
    if ckpt is None:
        return config, model_config, None
    saved = from_dict(TrainConfig, ckpt["train_config"])
    saved.data_dir, saved.output_dir = config.data_dir, config.output_dir
    if epochs:
        saved.epochs = epochs
    log.info("Resuming from %s (epoch %d of %d)", ckpt["path"], ckpt["epoch"], saved.epochs)
    return saved, from_dict(ModelConfig, ckpt["model_config"]), ckpt


def train(
    config: TrainConfig,
    model_config: ModelConfig | None = None,
    resume: bool = False,
    resume_epochs: int | None = None,
    progress: bool = True,
    data: TrainData | None = None,
) -> TrainResult:
    """Train an embedding network on an image folder; writes the model file, plot and config.

    `data` skips reading the folder: benchmarks pass images already in memory.
    """
    config, model_config, ckpt = _resume_state(
        config, model_config or ModelConfig(), resume, resume_epochs
    )
    out = Path(config.output_dir)
    data = data or load_training_images(config, model_config.image_size)
    if ckpt and ckpt["categories"] != data.categories:
        raise DatasetError(
            "The image folder's categories changed since the checkpoint was written "
            f"({len(ckpt['categories'])} then, {len(data.categories)} now); "
            "train again without --resume"
        )
    train_rows, val_rows = stratified_split(data.labels, config.val_fraction, config.seed)
    if len(val_rows) == 0:
        log.warning("Too few images per category for validation; validation is skipped")
    log.info(
        "Training on %d images in %d categories (%d held out for validation)",
        len(train_rows),
        len(data.categories),
        len(val_rows),
    )
    seed_everything(config.seed)
    model = EmbeddingNet(model_config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    history: list[dict[str, Any]] = []
    if ckpt:
        model.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer_state"])
        history = list(ckpt["history"])
    loss_fn, miner = build_loss(config)
    if config.epochs <= 0:
        config.epochs = plan_epochs(model, data, train_rows, config, loss_fn, miner)
    for epoch in range(len(history) + 1, config.epochs + 1):
        record = {
            "epoch": epoch,
            **run_epoch(
                model, optimizer, data, train_rows, config, epoch, loss_fn, miner, progress
            ),
        }
        record.update(evaluate(model, data, train_rows, val_rows, loss_fn, miner, config))
        history.append(record)
        _report_epoch(record, config)
        if epoch % config.checkpoint_every == 0 or epoch == config.epochs:
            save_checkpoint(
                out / CHECKPOINT_DIR, model, optimizer, config, data.categories, epoch, history
            )
    choice = choose_threshold(model, data.images, data.labels, train_rows, val_rows, config.seed)
    if choice is not None:
        log.info(
            "Default similarity threshold %.1f%% (F1 %.3f on validation pairs)",
            choice.similarity,
            choice.f1,
        )
    return _write_outputs(out, model, config, data.categories, history, choice)


def _report_epoch(record: dict[str, Any], config: TrainConfig) -> None:
    recall = record.get("val_recall_at_1")
    log.info(
        "epoch %d: loss %.4f, val loss %s, val Recall@1 %s, %.0f img/s",
        record["epoch"],
        record["loss"],
        "n/a" if record.get("val_loss") is None else f"{record['val_loss']:.4f}",
        "n/a" if recall is None else f"{recall:.3f}",
        record["images_per_s"],
    )
    dist = record.get("val_mean_distance")
    if dist is not None and dist < COLLAPSE_DISTANCE:
        log.warning(
            "Embedding collapse: images embed almost alike (mean distance %.3f, loss stuck "
            "near the margin %.2f). Try a lower --learning-rate, --mining semihard, more "
            "images per category, or fewer epochs.",
            dist,
            config.margin,
        )


def _write_outputs(
    out: Path,
    model: EmbeddingNet,
    config: TrainConfig,
    categories: list[str],
    history: list[dict[str, Any]],
    threshold: ThresholdChoice | None = None,
) -> TrainResult:
    import json

    from .plots import plot_history

    final = history[-1] if history else {}
    metrics = {
        "final": final,
        "best_val_recall_at_1": max(
            (h["val_recall_at_1"] for h in history if h.get("val_recall_at_1") is not None),
            default=None,
        ),
        "history": history,
    }
    path = out / MODEL_FILE
    extra = {"threshold": None, "threshold_info": None}
    if threshold is not None:
        extra = {"threshold": threshold.similarity, "threshold_info": threshold.to_dict()}
    save_model(path, model, categories, to_dict(config), metrics, extra)
    plot_history(history, out / HISTORY_PLOT)
    settings = {"model": to_dict(model.config), "train": to_dict(config)}
    write_text_atomic(out / TRAIN_CONFIG_FILE, json.dumps(settings, indent=2) + "\n")
    log.info("Saved %s, %s and %s in %s", MODEL_FILE, HISTORY_PLOT, TRAIN_CONFIG_FILE, out)
    return TrainResult(path, history, categories)
