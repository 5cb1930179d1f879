"""`imgsim train`: check the settings, plan the run, run the Trainer, write the model file."""

# config ─► checks ─► collection + split ─► plan ─► Trainer.run ─► threshold ─► outputs

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.config import (
    CHECKPOINT_DIR,
    HISTORY_PLOT,
    LOSSES,
    LR_SCHEDULES,
    MODEL_FILE,
    PRETRAINED,
    RELIABILITY_PLOT,
    SAMPLERS,
    TRAIN_CONFIG_FILE,
    ModelConfig,
    SearchConfig,
    TrainConfig,
    to_dict,
)
from ..core.errors import ConfigError, DatasetError
from ..core.fileio import write_text_atomic
from ..model.backbone import pretrained as pretrained_backbone
from ..model.device import resolve_device
from ..model.modelfile import loss_title
from ..model.network import pretrained_model, save_model
from . import checkpoints, distributed
from .autosize import collection_sides, resolve_backbone, resolve_image_size
from .evaluation import recall_at_1, sample_rows
from .featurecache import cache_features, view_count
from .losses import is_proxy_loss, miner_name, uses_label_smoothing, uses_margin
from .samplers import batch_shape
from .threshold import MAX_QUERIES, MAX_REFERENCES, Tuning, choose_threshold, tuning_fields
from .trainer import Plan, Split, Trainer
from .trainset import Collection, scan_collection, stratified_split

log = logging.getLogger("imgsim")

_DEFAULTS = TrainConfig()


@dataclass
class TrainResult:
    """What a finished run produced."""

    model_path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    stopped_early: str | None = None
    kept_epoch: int = 0  # whose weights the model file holds
    kept_reason: str = ""  # why those, in words


def check_settings(config: TrainConfig) -> None:
    """Refuse unknown choices, and settings the run would silently ignore."""
    for name, allowed in (("loss", LOSSES), ("sampler", SAMPLERS), ("lr_schedule", LR_SCHEDULES)):
        if getattr(config, name) not in allowed:
            raise ConfigError(f"unknown {name} {getattr(config, name)!r}; use {', '.join(allowed)}")
    ignored = []
    if config.margin != _DEFAULTS.margin and not uses_margin(config):
        ignored.append(
            f"--margin {config.margin:g}: the {config.loss} loss with the "
            f"{miner_name(config)} miner has no margin (use --loss triplet or --mining semihard)"
        )
    if is_proxy_loss(config.loss) and config.mining != "auto":
        ignored.append(
            f"--mining {config.mining}: the {config.loss} loss compares each image with its "
            "category's proxy; it has no pairs to mine"
        )
    if not is_proxy_loss(config.loss) and config.proxy_lr_scale != _DEFAULTS.proxy_lr_scale:
        ignored.append(f"--proxy-lr-scale: the {config.loss} loss has no proxies")
    smoothing = config.label_smoothing != _DEFAULTS.label_smoothing
    if smoothing and not uses_label_smoothing(config.loss):
        ignored.append(
            f"--label-smoothing: the {config.loss} loss has no categories to smooth over "
            "(use --loss normsoftmax or arcface)"
        )
    if not config.early_stop and config.patience != _DEFAULTS.patience:
        ignored.append("--patience: early stopping is off (--early-stop false)")
    elif config.val_fraction <= 0 and config.patience != _DEFAULTS.patience:
        ignored.append("--patience: no validation Recall@1 to wait for (--val-fraction 0)")
    if config.val_fraction <= 0:  # no images held out: nothing is validated or tuned
        if config.validate_every != _DEFAULTS.validate_every:
            ignored.append("--validate-every: nothing to validate (--val-fraction 0)")
        if config.threshold_precision != _DEFAULTS.threshold_precision:
            ignored.append(
                "--threshold-precision: the threshold is tuned on validation images "
                "(--val-fraction 0 holds none out)"
            )
    if not config.mixed_precision and config.device in ("cpu", "mps"):
        # autocast_dtype: only CUDA autocasts; the CPU and MPS always run float32.
        ignored.append(
            f"--no-mixed-precision: --device {config.device} always runs float32 "
            "(mixed precision is for CUDA GPUs)"
        )
    if config.sampler != "m_per_class" and config.m_per_class != _DEFAULTS.m_per_class:
        ignored.append(
            f"--m-per-class {config.m_per_class}: the {config.sampler} sampler ignores it"
        )
    for name in ("auto_images_seen", "max_auto_epochs"):
        if config.epochs > 0 and getattr(config, name) != getattr(_DEFAULTS, name):
            ignored.append(f"{name}: only used with --epochs 0 (auto)")
    if ignored:
        raise ConfigError("settings that would be ignored:\n  " + "\n  ".join(ignored))
    if config.batch_size < 2:
        raise ConfigError("batch_size must be at least 2: the loss compares images in a batch")
    if not 0 <= config.label_smoothing < 1:
        raise ConfigError("label_smoothing must be at least 0 and below 1")


def plan_run(config: TrainConfig, n_train: int, n_classes: int) -> Plan:
    """Epochs, steps and batch from the collection's size: the same on every machine."""
    batch = config.batch_size
    if config.sampler == "m_per_class":
        batch, _ = batch_shape(config.batch_size, config.m_per_class, n_classes)
    steps = config.steps_per_epoch or max(1, math.ceil(n_train / batch))
    epochs = config.epochs
    if epochs <= 0:
        epochs = round(config.auto_images_seen / (steps * batch))
        epochs = max(1, min(config.max_auto_epochs, epochs))
        log.info(
            "Training for %d epochs of %d steps of %d images: about %s images seen "
            "(auto_images_seen %s, at most %d epochs; --epochs N fixes the number)",
            epochs, steps, batch, f"{epochs * steps * batch:,}",
            f"{config.auto_images_seen:,}", config.max_auto_epochs,
        )  # fmt: skip
    return Plan(epochs, steps, batch)


def choose_augment(config: TrainConfig, n_train: int, n_classes: int) -> bool:
    """Augment when asked, or when the categories are small (and say which and why)."""
    per_class = n_train / max(1, n_classes)
    if config.augment:
        return True
    if per_class < config.augment_below:
        log.info(
            "Augmenting (random crop, flip, colour): %.0f training images per category, under "
            "augment_below %d (--augment-below 0 turns this off)", per_class, config.augment_below,
        )  # fmt: skip
        return True
    if config.flip:
        log.info("Mirroring half the training images at random (--no-flip turns this off)")
    return False


def resolve_model(model_config: ModelConfig, data: Collection, flipped: bool) -> ModelConfig:
    """The network's auto settings decided: backbone and input size from the images, flip from
    the training."""
    # The images' headers, read once for both auto settings.
    auto = model_config.backbone == "auto" or not model_config.image_size
    sides = collection_sides(data) if auto else None
    backbone = resolve_backbone(model_config.backbone, data, sides)
    size = resolve_image_size(model_config.image_size, data, backbone, sides)
    flip = model_config.test_flip
    if flip == "auto":
        flip = "on" if flipped else "off"
        if flipped:
            log.info("Embedding each image and its mirror image (trained on flipped images; "
                     "--test-flip off embeds once, twice as fast)")  # fmt: skip
    return dataclasses.replace(model_config, backbone=backbone, image_size=size, test_flip=flip)


def train(
    config: TrainConfig,
    model_config: ModelConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    data: Collection | None = None,
) -> TrainResult:
    """Train an embedding network on an image folder; writes the model file, plot and config.

    Under torchrun every process calls this; rank 0 alone writes files. `data` skips reading
    the folder: benchmarks pass images already in memory.
    """
    model_config = model_config or ModelConfig()
    check_settings(config)
    job = distributed.from_env()
    device = resolve_device(config.device, job.local_rank if job.enabled else None)
    distributed.start(job, device)
    try:
        return _train(config, model_config, resume, progress, data, job, device)
    finally:
        distributed.stop(job)


def _train(
    config: TrainConfig, model_config: ModelConfig, resume: bool, progress: bool,
    data: Collection | None, job: distributed.Dist, device: torch.device,
) -> TrainResult:  # fmt: skip
    out = Path(config.output_dir)
    data = data or scan_collection(config.data_dir, config.workers)
    train_rows, val_rows = stratified_split(data.labels, config.val_fraction, config.seed)
    if len(val_rows) == 0:
        log.warning("Too few images per category for validation; validation is skipped")
    plan = plan_run(config, len(train_rows), len(data.categories))
    augment = choose_augment(config, len(train_rows), len(data.categories))
    resolved = dataclasses.replace(config, epochs=plan.epochs, augment=augment)
    model_config = resolve_model(model_config, data, augment or config.flip)
    found = _find_run(out / CHECKPOINT_DIR, config, model_config) if resume else None
    if found:
        _check_same_data(found[1], data)
    if model_config.backbone == PRETRAINED:
        data, train_rows, val_rows = _cached(data, train_rows, val_rows, model_config, resolved,
                                             device, progress)  # fmt: skip
    trainer = Trainer(resolved, model_config, Split(data, train_rows, val_rows), plan, job,
                      device, progress)  # fmt: skip
    trainer.log_plan()
    if found:
        run_dir, payload = found
        trainer.load_state(payload)
        log.info("Resuming %s (epoch %d of %d)", payload["path"], payload["epoch"], plan.epochs)
    else:
        run_dir = checkpoints.new_run(out / CHECKPOINT_DIR) if job.main else out
    trainer.run(_checkpointer(trainer, run_dir, config))
    if trainer.stopped_early:
        log.warning("Stopped early: %s. imgsim train --resume continues the run from its last "
                    "checkpoint.", trainer.stopped_early)  # fmt: skip
    if trainer.converged:
        log.info("Stopped after epoch %d of %d: %s", len(trainer.history), plan.epochs,
                 trainer.converged)  # fmt: skip
    if not job.main:
        return TrainResult(out / MODEL_FILE, trainer.history, data.categories)
    return _finish(trainer, out, run_dir.name)


def _cached(
    data: Collection, train_rows: torch.Tensor, val_rows: torch.Tensor, model: ModelConfig,
    config: TrainConfig, device: torch.device, progress: bool,
) -> tuple[Collection, torch.Tensor, torch.Tensor]:  # fmt: skip
    """The collection as cached backbone features; rows whose image is unreadable drop out."""
    views = view_count(config.augment)
    backbone = pretrained_backbone(model.image_size)
    data, ok = cache_features(backbone, model.image_size, data, views, device, config.workers,
                              config.seed, progress)  # fmt: skip
    return data, train_rows[ok[train_rows]], val_rows[ok[val_rows]]


def repeatable(config: TrainConfig) -> TrainConfig:
    """The run's resolved settings as a config file that repeats it (training_config.json).

    Its epochs are fixed, so the auto-epoch settings, which check_settings refuses beside a
    fixed number as ignored, go back to their defaults (the model file keeps them as run).
    """
    return dataclasses.replace(
        config,
        auto_images_seen=_DEFAULTS.auto_images_seen,
        max_auto_epochs=_DEFAULTS.max_auto_epochs,
    )


def _checkpointer(trainer: Trainer, run_dir: Path, requested: TrainConfig) -> Callable[[int], None]:
    """Writes the run's state at an epoch: everything --resume needs, in the run's folder."""
    data = trainer.split.data
    extra = {"categories": data.categories, "data_fingerprint": data.fingerprint(),
             "run_id": run_dir.name}  # fmt: skip

    def save(epoch: int) -> None:
        checkpoints.store(run_dir, epoch, trainer.checkpoint_payload(requested, extra))

    return save


def _find_run(
    root: Path, config: TrainConfig, model_config: ModelConfig
) -> tuple[Path, dict[str, Any]] | None:
    found = checkpoints.latest(root)
    if found is None:
        legacy = " (checkpoints an older imgsim wrote beside the run folders cannot be resumed)"
        log.warning("No checkpoint to resume from in %s%s; starting a new run", root,
                    legacy if any(root.glob("epoch_*.pt")) else "")  # fmt: skip
        return None
    checkpoints.check_resumable(found[1], config, model_config)
    return found


def _check_same_data(payload: dict[str, Any], data: Collection) -> None:
    if payload["categories"] != data.categories:
        raise DatasetError(
            "The image folder's categories changed since the checkpoint was written "
            f"({len(payload['categories'])} then, {len(data.categories)} now); "
            "train again without --resume"
        )
    if payload.get("data_fingerprint") not in (None, data.fingerprint()):
        raise DatasetError(
            "The image folder changed since the checkpoint was written (images added, removed "
            "or renamed); train again without --resume"
        )


def _finish(trainer: Trainer, out: Path, run_id: str) -> TrainResult:
    """Calibrate scores and tune the default threshold on held-out images; write the outputs."""
    split, config = trainer.split, trainer.config
    if trainer.model.pretrained and len(split.val_rows):
        _keep_untrained_if_better(trainer)
    tuning = _tune(trainer) if len(split.val_rows) else None
    if tuning is not None:
        log.info(tuning.choice.describe())
        if tuning.choice.shortfall():
            log.warning(tuning.choice.shortfall())
    else:
        log.warning("Too few held-out images to calibrate scores: results show the cosine "
                    "similarity and no default threshold")  # fmt: skip
    validation = {
        "names": [split.data.name(i) for i in split.val_rows.tolist()],
        "fraction": config.val_fraction,
        "seed": config.seed,
    }
    extra = {"run_id": run_id, "stopped_early": trainer.stopped_early, "validation": validation,
             "converged": trainer.converged}  # fmt: skip
    _write_outputs(out, trainer, tuning, extra)
    return TrainResult(out / MODEL_FILE, trainer.history, split.data.categories,
                       trainer.stopped_early, trainer.kept_epoch, trainer.kept_reason)  # fmt: skip


def _keep_untrained_if_better(trainer: Trainer) -> None:
    """Validation decides: the ImageNet features as they are, when the trained head is not
    ahead of them on the held-out images (it can over-fit a small, varied folder)."""
    size, frozen = trainer.model_config.image_size, trainer.model.backbone  # never trained
    untrained = pretrained_model(size, frozen).to(trainer.device)
    trained_r1, untrained_r1 = (_held_out_recall(trainer, m) for m in (None, untrained))
    if trained_r1 > untrained_r1:
        log.info("Validation Recall@1 %.3f with the trained head, %.3f with the pretrained "
                 "features alone: keeping the trained head", trained_r1, untrained_r1)  # fmt: skip
        return
    log.warning("Validation Recall@1 %.3f with the trained head, %.3f with the pretrained "
                "features alone: keeping the pretrained features (the head did not help on "
                "this folder)", trained_r1, untrained_r1)  # fmt: skip
    # training_config.json keeps the settings that repeat the run
    trainer.keep_network(
        untrained,
        "none of the trained head's: the pretrained features alone searched the held-out "
        "images better",
    )


def _held_out_recall(trainer: Trainer, model: torch.nn.Module | None) -> float:
    """Recall@1 of held-out queries among training images, by `model` (the run's without)."""
    split, labels, seed = trainer.split, trainer.split.data.labels, trainer.config.seed
    q, q_rows = trainer.embed_rows(sample_rows(split.val_rows, MAX_QUERIES, seed), model)
    r, r_rows = trainer.embed_rows(sample_rows(split.train_rows, MAX_REFERENCES, seed), model)
    return recall_at_1(q, labels[q_rows], r, labels[r_rows])


def _tune(trainer: Trainer) -> Tuning | None:
    """Held-out images searched among (a sample of) the training images, as a user would."""
    split, config, labels = trainer.split, trainer.config, trainer.split.data.labels
    refs = sample_rows(split.train_rows, MAX_REFERENCES, config.seed)
    queries = sample_rows(split.val_rows, MAX_QUERIES, config.seed)
    q, q_rows = trainer.embed_rows(queries)
    r, r_rows = trainer.embed_rows(refs)
    return choose_threshold(
        q.numpy(), labels[q_rows].numpy(), r.numpy(), labels[r_rows].numpy(),
        target=config.threshold_precision, top_k=SearchConfig().top_k, seed=config.seed,
    )  # fmt: skip


def _write_outputs(
    out: Path, trainer: Trainer, tuning: Tuning | None, extra: dict[str, Any]
) -> None:
    from .plots import plot_history, plot_reliability

    history, config = trainer.history, trainer.config
    metrics = {
        "final": history[-1] if history else {},
        "best_val_recall_at_1": max(
            (h["val_recall_at_1"] for h in history if h.get("val_recall_at_1") is not None),
            default=None,
        ),
        "history": history,
    }
    metrics["best_epoch"] = trainer.best_epoch or None  # best validation Recall@1
    metrics["kept_epoch"] = trainer.kept_epoch or None  # the weights in the file
    extra = {**extra, **tuning_fields(tuning)}
    path = out / MODEL_FILE
    save_model(path, trainer.model, trainer.split.data.categories, to_dict(config), metrics, extra)
    plot_history(history, out / HISTORY_PLOT, loss_title(config.loss), metrics["kept_epoch"])
    written = [MODEL_FILE, HISTORY_PLOT, TRAIN_CONFIG_FILE]
    if tuning is not None:
        plot_reliability(tuning.distances, tuning.same, tuning.calibration,
                         tuning.choice, out / RELIABILITY_PLOT)  # fmt: skip
        written.insert(2, RELIABILITY_PLOT)
    settings = {"model": to_dict(trainer.model_config), "train": to_dict(repeatable(config))}
    write_text_atomic(out / TRAIN_CONFIG_FILE, json.dumps(settings, indent=2) + "\n")
    # The model file itself is named by the caller's summary (imgsim train: "Saved …").
    log.info("Wrote %s in %s", ", ".join(written[1:]), out)
