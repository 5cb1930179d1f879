"""The training loop: one Trainer holds a run's state; `run` reads top to bottom."""

# The trainer knows the network only as a module that maps images to embeddings; the loss, the
# miner and the batch sampler are passed in as parts, chosen independently by the config.

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.config import ModelConfig, TrainConfig
from ..model.device import autocast_dtype, describe
from ..model.init_weights import load_init_weights
from ..model.modelfile import loss_title
from ..model.network import build_network
from . import checkpoints
from .augment import augment_batch, flip_batch, pick_views
from .distributed import Dist, agree, barrier, gather, wrap
from .evaluation import MAX_QUERIES, embed, evaluate, validation_interval
from .losses import build_loss, build_miner, miner_name
from .run_clock import RunClock
from .samplers import GlobalBatches, build_sampler
from .stopping import Stopping, noise_margin, patience_for
from .trainset import Collection, ImageLoader

log = logging.getLogger("imgsim")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (pytorch-metric-learning's miners use them)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate at a global step: constant, or cosine decay after a short warm-up."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    warmup = max(1, total_steps // 50)
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class Plan:
    """How long the run is, decided from the collection alone (never from measured speed)."""

    epochs: int
    steps_per_epoch: int
    batch: int  # global: all processes together


@dataclass
class Split:
    """The collection and which of its rows train and which are held out."""

    data: Collection
    train_rows: torch.Tensor
    val_rows: torch.Tensor


@dataclass
class Parts:
    """What a run trains and how: the network, the loss and its miner, the optimizer, mixed
    precision, the batches and the stopping rule. Built by `build_parts` alone."""

    model: torch.nn.Module  # the network whose weights the model file keeps
    net: torch.nn.Module  # what a step runs: the model, or its DDP wrapper (distributed.wrap)
    loss_fn: torch.nn.Module
    miner: Any
    optimizer: torch.optim.Optimizer
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler
    sampler: GlobalBatches
    loader: ImageLoader
    validate_every: int
    stopping: Stopping


def build_parts(
    config: TrainConfig, model_config: ModelConfig, split: Split, plan: Plan, job: Dist,
    device: torch.device,
) -> Parts:  # fmt: skip
    """The one factory of a run's parts, each chosen by the config on its own."""
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)  # the same initial weights in every process
    model = build_network(model_config)
    if config.init_weights:
        load_init_weights(model, config.init_weights)
    # Channels-last: the CPU's convolutions ran the training step 1.7× faster (batch 63,
    # 32 px, 2 cores; docs/benchmarks.md); the weights saved are the same numbers.
    model = model.to(device, memory_format=torch.channels_last)
    net = wrap(model, job, device)
    loss_fn = build_loss(config, len(split.data.categories), model_config.embedding_dim)
    loss_fn = loss_fn.to(device)
    amp_dtype = autocast_dtype(device, config.mixed_precision)
    data, rows = split.data, split.train_rows
    return Parts(
        model=model,
        net=net,
        loss_fn=loss_fn,
        miner=build_miner(config),
        optimizer=build_optimizer(config, model, loss_fn),
        amp_dtype=amp_dtype,
        # Loss scaling only for float16: bfloat16 has float32's range.
        scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        sampler=build_sampler(
            config.sampler,
            data.labels[rows],
            plan.batch,
            config.m_per_class,
            plan.steps_per_epoch,
            config.seed,
            job.rank,
            job.world,
        ),
        loader=ImageLoader(
            data.dataset(model_config.image_size, config.cache_mb),
            data.workers(config.workers),
            pin_memory=device.type == "cuda",  # lets the copy to the GPU overlap compute
        ),
        validate_every=config.validate_every
        or validation_interval(len(split.train_rows), len(split.val_rows)),
        stopping=Stopping(
            patience_for(config.patience, plan.epochs),
            config.early_stop,
            queries=min(len(split.val_rows), MAX_QUERIES),
        ),
    )


def build_optimizer(
    config: TrainConfig, model: torch.nn.Module, loss_fn: torch.nn.Module
) -> torch.optim.Optimizer:
    """Adam(W) over the network, and over the loss's proxies at a higher learning rate.

    Proxies start random and must move far, while the network's weights must move little:
    the Proxy Anchor authors train them at 100 times the network's rate (for normalized
    softmax too: 10 times measured worse on Fashion-MNIST).
    """
    trained = [p for p in model.parameters() if p.requires_grad]  # not a frozen backbone
    groups = [{"params": trained, "lr_scale": 1.0}]
    proxies = [p for p in loss_fn.parameters() if p.requires_grad]
    if proxies:
        groups.append({"params": proxies, "lr_scale": config.proxy_lr_scale, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)


@dataclass
class Trainer:
    """One run: the network, its optimizer, the parts of the loss, the data, and the history.

    Its parts come from `build_parts`; train.py drives it through its public methods.
    """

    config: TrainConfig
    model_config: ModelConfig
    split: Split
    plan: Plan
    job: Dist
    device: torch.device
    progress: bool = True
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: str | None = None  # the time budget ran out: --resume continues
    converged: str | None = None  # stopped because more epochs would teach nothing
    kept_epoch: int = 0  # whose weights the model file holds: the last, or the best validated
    kept_reason: str = ""  # why those weights, in words for the summary

    def __post_init__(self) -> None:
        parts = build_parts(
            self.config, self.model_config, self.split, self.plan, self.job, self.device
        )
        self.model, self.net = parts.model, parts.net
        self.loss_fn, self.miner, self.optimizer = parts.loss_fn, parts.miner, parts.optimizer
        self.amp_dtype, self.scaler = parts.amp_dtype, parts.scaler
        self.sampler, self.loader = parts.sampler, parts.loader
        self.validate_every, self.stopping = parts.validate_every, parts.stopping
        budget = self.config.time_budget_min
        self.deadline = time.monotonic() + budget * 60 if budget > 0 else None

    # -- the run ---------------------------------------------------------------------------

    def run(self, save_checkpoint: Callable[[int], None]) -> list[dict[str, Any]]:
        """Train from the epoch after the history's last to the plan's end (or the deadline)."""
        clock = RunClock(self.plan.epochs, len(self.history) + 1)
        for epoch in range(len(self.history) + 1, self.plan.epochs + 1):
            record = {"epoch": epoch, **self.train_epoch(epoch)}
            if self.job.main and (epoch % self.validate_every == 0 or epoch == self.plan.epochs):
                record.update(self.evaluate())
            self.history.append(record)
            if self.job.main:
                report_epoch(record, self.config, self.plan.epochs, clock.progress(epoch))
                if epoch == clock.first_epoch and epoch < self.plan.epochs:
                    log.info(clock.estimate(epoch))
            if self.stopped_early:
                break  # a partial epoch is never checkpointed: --resume redoes it whole
            reason = self.stopping.update(record, self.weights) if self.job.main else None
            if agree(self.job, reason is not None):
                self.converged = reason or "the main process stopped"
            last = epoch == self.plan.epochs or self.converged
            if epoch % self.config.checkpoint_every == 0 or last:
                if self.job.main:
                    save_checkpoint(epoch)
                barrier(self.job)
            if self.converged:
                break
        self.keep_best()
        return self.history

    @property
    def best_epoch(self) -> int:
        """The epoch of the best validation Recall@1 so far (0 before any validation)."""
        return self.stopping.best_epoch

    def weights(self) -> dict[str, Any]:
        """The network's and the loss's parameters, as the best epoch keeps them."""
        return {"model": self.model.state_dict(), "loss": self.loss_fn.state_dict()}

    def keep_best(self) -> None:
        """Go back to the best validated epoch's weights when it is clearly ahead of the last."""
        best, last = self.stopping.best_state, len(self.history)
        self.kept_epoch = last
        self.kept_reason = "the last epoch trained"
        if best is None or self.stopping.best_epoch == last:
            if best is not None:
                self.kept_reason = "the last epoch, also the best validation Recall@1"
            return
        queries = self.stopping.queries
        recall = self.history[-1].get("val_recall_at_1") or float("nan")
        if not self.stopping.best_is_clearly_ahead(self.history[-1]):
            self.kept_reason = (
                f"the last epoch: the best validation Recall@1, epoch {self.stopping.best_epoch}, "
                f"was not ahead by more than chance on {queries} held-out images"
            )
            log.info(
                "Keeping the last epoch, %d (validation Recall@1 %.3f): the best, epoch %d "
                "(%.3f), is within the noise of %d held-out images (±%.3f)",
                last, recall, self.stopping.best_epoch, self.stopping.best_recall, queries,
                noise_margin(self.stopping.best_recall, queries),
            )  # fmt: skip
            return
        self.model.load_state_dict(best["model"])
        self.loss_fn.load_state_dict(best["loss"])
        self.kept_epoch = self.stopping.best_epoch
        self.kept_reason = (
            f"the best validation Recall@1 ({self.stopping.best_recall:.3f}, clearly ahead of "
            f"the last epoch's {recall:.3f})"
        )
        log.info(
            "Keeping the weights of epoch %d, the best validation Recall@1 (%.3f); the last "
            "epoch, %d, scored %.3f",
            self.stopping.best_epoch, self.stopping.best_recall, last, recall,
        )  # fmt: skip

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch of the sampler's batches; returns the mean loss (and the speed, to read)."""
        from tqdm import tqdm

        self.sampler.set_epoch(epoch)
        # Seeded per epoch, so a resumed run augments (and anything drawing from the global
        # generators draws) exactly as the interrupted one would.
        seed_everything(self.config.seed * 1000 + epoch)
        gen = torch.Generator().manual_seed(self.config.seed * 1000 + epoch)
        rows = self.split.train_rows
        plan = ([int(rows[p]) for p in batch] for batch in self.sampler)
        self.net.train()
        losses, start = [], time.perf_counter()
        steps = self.plan.steps_per_epoch
        bar = tqdm(total=steps, desc=f"epoch {epoch}/{self.plan.epochs}",
                   disable=not (self.progress and self.job.main))  # fmt: skip
        with contextlib.closing(bar):  # closed here when stopped too, not after the last line
            self._steps(epoch, plan, bar, losses, gen)
        seconds = time.perf_counter() - start
        record: dict[str, Any] = {
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "images_per_s": len(losses) * self.plan.batch / max(seconds, 1e-9),
        }
        if self.stopped_early:
            record["partial"] = True
        return record

    def _steps(
        self, epoch: int, plan: Iterator[list[int]], bar: Any, losses: list[float],
        gen: torch.Generator,
    ) -> None:  # fmt: skip
        """The epoch's steps, each loss added to `losses`; ends early at the time budget."""
        steps = self.plan.steps_per_epoch
        for step, (indices, images) in enumerate(self.loader.batches(plan, self.job.enabled)):
            global_step = (epoch - 1) * steps + step
            losses.append(
                self.train_step(images, self.split.data.labels[indices], global_step, gen)
            )
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if self.deadline is not None and agree(self.job, time.monotonic() > self.deadline):
                self.stopped_early = (
                    f"the time budget of {self.config.time_budget_min:g} min ran out in epoch "
                    f"{epoch}, step {step + 1} of {steps}"
                )
                break

    def train_step(
        self, images: torch.Tensor, labels: torch.Tensor, global_step: int, gen: torch.Generator
    ) -> float:
        """One optimisation step on this process's share of a global batch; returns its loss."""
        lr = learning_rate(self.config, global_step, self.plan.epochs * self.plan.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        x = self.inputs(images.to(self.device, non_blocking=True), gen)
        with self.autocast():
            local = self.net(x)
        # The loss sees the whole global batch, in float32 whatever the autocast.
        emb = gather(self.job, local.float())
        y = gather(self.job, labels.to(self.device, non_blocking=True))
        loss = self.loss_fn(emb, y, self.miner(emb, y) if self.miner else None)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.item()

    def inputs(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """This step's network inputs: images augmented or mirrored, or cached features' views."""
        share = self.plan.batch // self.job.world
        where = {"offset": self.job.rank * share, "total": self.plan.batch}
        if x.dim() == 3:  # N×V×F features of a frozen backbone (featurecache.py)
            count = x.shape[1] if self.config.augment else (2 if self.config.flip else 1)
            return pick_views(x, count, gen, **where)
        if self.config.augment:
            x = augment_batch(x, gen, **where)
        elif self.config.flip:
            x = flip_batch(x, gen, **where)
        return x.contiguous(memory_format=torch.channels_last)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision where the device has it; nothing at all elsewhere (CPU, MPS)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def embed_rows(
        self, rows: torch.Tensor, model: torch.nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of these rows of the collection by `model` (the run's network without
        one), with the rows they belong to; unreadable rows drop out."""
        return embed(self.model if model is None else model, self.loader, rows, self.device)

    def keep_network(self, model: torch.nn.Module, reason: str) -> None:
        """Keep `model` (no epoch's weights: a network as it came) instead of the trained one."""
        self.model = model
        self.kept_epoch = 0
        self.kept_reason = reason

    def log_plan(self) -> None:
        """The run's plan in one line, before the first step; the time comes after epoch one."""
        split, config, job, plan, model = (
            self.split, self.config, self.job, self.plan, self.model_config
        )  # fmt: skip
        log.info(
            "Plan: %d training images in %d categories (%d held out for validation); %s "
            "backbone at %d px; %d epochs × %d steps per epoch × batch %d; on %s%s; %s loss, "
            "%s miner, %s sampler; the time is estimated after the first epoch",
            len(split.train_rows), len(split.data.categories), len(split.val_rows),
            model.backbone, model.image_size, plan.epochs, plan.steps_per_epoch, plan.batch,
            describe(self.device, self.amp_dtype), f", {job.world} processes" if job.enabled
            else "", loss_title(config.loss), miner_name(config), config.sampler,
        )  # fmt: skip

    def evaluate(self) -> dict[str, float | None]:
        """Held-out figures for the history (rank 0 only; the others wait at the barrier)."""
        s = self.split
        return evaluate(
            self.model, self.loader, s.data.labels, s.train_rows, s.val_rows,
            (self.loss_fn, self.miner), self.plan.batch, self.config.seed, self.device,
        )  # fmt: skip

    # -- state for checkpoints ---------------------------------------------------------------

    def load_state(self, payload: dict[str, Any]) -> None:
        """Continue a run from a checkpoint: weights, optimizer, loss scale and history."""
        self.model.load_state_dict(payload["model_state"])
        if payload.get("loss_state"):
            self.loss_fn.load_state_dict(payload["loss_state"])
        self.optimizer.load_state_dict(payload["optimizer_state"])
        if payload.get("scaler_state"):
            self.scaler.load_state_dict(payload["scaler_state"])
        self.history = list(payload["history"])
        self.stopping.load(payload.get("stopping") or {})

    def checkpoint_payload(self, requested: TrainConfig, extra: dict[str, Any]) -> dict[str, Any]:
        """What `load_state` reads back: the run's state now, with `extra` (the collection's
        categories and fingerprint, the run's id) and the settings as `requested`."""
        return checkpoints.make_payload(
            self.model, self.optimizer, self.scaler_state(), self.config, requested,
            {**extra, "history": self.history, "loss_state": self.loss_state(),
             "stopping": self.stopping.to_dict()},
        )  # fmt: skip

    def loss_state(self) -> dict[str, torch.Tensor]:
        """The loss's learned proxies (empty for losses without parameters)."""
        return {k: v.detach().cpu() for k, v in self.loss_fn.state_dict().items()}

    def scaler_state(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler.is_enabled() else {}


COLLAPSE_DISTANCE = 0.05  # mean pairwise distance below this: every image embeds alike


def report_epoch(
    record: dict[str, Any], config: TrainConfig, epochs: int = 0, progress: str = ""
) -> None:
    """Log an epoch's figures (and the run's `progress`), and warn when every image embeds
    alike (a collapse)."""
    recall = record.get("val_recall_at_1")
    log.info(
        "epoch %d%s: loss %.4f, val loss %s, val Recall@1 %s, %.0f img/s%s",
        record["epoch"],
        f"/{epochs}" if epochs else "",
        record["loss"],
        "n/a" if record.get("val_loss") is None else f"{record['val_loss']:.4f}",
        "n/a" if recall is None else f"{recall:.3f}",
        record["images_per_s"],
        f"; {progress}" if progress else "",
    )
    dist = record.get("val_mean_distance")
    if dist is not None and dist < COLLAPSE_DISTANCE:
        log.warning(
            "Embedding collapse: images embed almost alike (mean distance %.3f). Try a lower "
            "--learning-rate, another --loss or --mining, more images per category, or fewer "
            "epochs.",
            dist,
        )
