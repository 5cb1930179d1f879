"""Checkpoints: one folder per run (checkpoints/<run id>/epoch_N.pt), pruned within that run."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from ..core.config import ModelConfig, TrainConfig, from_dict, to_dict
from ..core.errors import CheckpointError
from ..core.fileio import atomic_path

log = logging.getLogger("imgsim")

CHECKPOINT_FORMAT = "imgsim-checkpoint"
KEEP = 2  # checkpoints kept per run: the newest, and one in case it was cut off mid-write
_RUN = re.compile(r"^run_(\d+)$")
_EPOCH = re.compile(r"^epoch_(\d+)\.pt$")
# Settings that change where or how fast a run goes, not the model it makes.
NEUTRAL = frozenset(
    {"data_dir", "output_dir", "workers", "cache_mb", "checkpoint_every", "time_budget_min",
     "device", "mixed_precision"}
)  # fmt: skip


def _numbered(folder: Path, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    """Entries of `folder` whose names match `pattern`, sorted by their number (not as text)."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return sorted(found)


def new_run(root: Path) -> Path:
    """Create the next run's folder: run_0001, run_0002, …"""
    runs = _numbered(root, _RUN)
    number = runs[-1][0] + 1 if runs else 1
    path = root / f"run_{number:04d}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def store(run_dir: Path, epoch: int, payload: dict[str, Any], keep: int = KEEP) -> Path:
    """Write epoch_NNNN.pt atomically, then prune this run's older checkpoints by epoch number."""
    path = run_dir / f"epoch_{epoch:04d}.pt"
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, "epoch": epoch, **payload}, tmp)
    for _, old in _numbered(run_dir, _EPOCH)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def latest_epoch(root: Path) -> int:
    """The newest checkpoint's epoch in the latest run (0: none yet), without reading it."""
    runs = _numbered(root, _RUN)
    epochs = _numbered(runs[-1][1], _EPOCH) if runs else []
    return epochs[-1][0] if epochs else 0


def latest(root: Path) -> tuple[Path, dict[str, Any]] | None:
    """The latest run and its newest readable checkpoint (damaged ones skipped), or None.

    Only the latest run counts: when it stopped before its first checkpoint, resuming an
    earlier run would hand back that run's model as if it were this one's.
    """
    runs = _numbered(root, _RUN)
    if not runs:
        return None
    run_dir = runs[-1][1]
    for _, path in reversed(_numbered(run_dir, _EPOCH)):
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged file must not stop a resume from an older one
            log.warning("Skipping unreadable checkpoint %s: %s", path, exc)
            continue
        if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
            payload["path"] = str(path)
            return run_dir, payload
    log.warning("The latest run, %s, has no readable checkpoint", run_dir)
    return None


# Settings added after runs were saved with checkpoints: the values those runs trained with,
# so that resuming one after an upgrade gives the model it would have given.
_BEFORE_ADDED = {"flip": False, "label_smoothing": 0.0}


def saved_configs(payload: dict[str, Any]) -> tuple[TrainConfig, ModelConfig]:
    """The settings a run was started with (epochs as asked, 0 = auto), and its network."""
    train = {**_BEFORE_ADDED, **(payload.get("requested_config") or payload["train_config"])}
    model = {"backbone": "scratch", **payload["model_config"]}  # runs before the backbone
    return from_dict(TrainConfig, train), from_dict(ModelConfig, model)


def differences(payload: dict[str, Any], train: TrainConfig, model: ModelConfig) -> list[str]:
    """Settings that differ from the run's and would change its result, as `name: then → now`."""
    old_train, old_model = saved_configs(payload)
    out = []
    for old, new in ((to_dict(old_train), to_dict(train)), (to_dict(old_model), to_dict(model))):
        for key, value in new.items():
            if key not in NEUTRAL and key in old and old[key] != value:
                out.append(f"{key}: {old[key]!r} in the run, {value!r} now")
    return out


def check_resumable(payload: dict[str, Any], train: TrainConfig, model: ModelConfig) -> None:
    """Refuse to resume with settings that would make a different model than the run's."""
    diffs = differences(payload, train, model)
    if diffs:
        raise CheckpointError(
            f"--resume would continue {payload['path']} with different settings:\n  "
            + "\n  ".join(diffs)
            + "\nResume without those flags (the run keeps its own), or start a new run "
            "without --resume."
        )


def make_payload(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler_state: dict[str, Any] | None,
    train: TrainConfig,
    requested: TrainConfig,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Everything a resume needs, in plain data and CPU tensors (loadable with weights_only)."""
    return {
        "model_config": to_dict(model.config),  # type: ignore[attr-defined]
        "train_config": to_dict(train),
        "requested_config": to_dict(requested),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer_state": optimizer.state_dict(),
        "scaler_state": scaler_state or {},
        **extra,
    }
