"""When training has stopped teaching: the best epoch so far, and whether to stop now."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ZERO_LOSS = 1e-4  # a training loss this low teaches nothing: no pair or triplet is violated
ZERO_LOSS_EPOCHS = 3  # stop after this many such epochs in a row
MIN_PATIENCE = 5
# Measured on Fashion-MNIST (docs/benchmarks.md): on a few hundred held-out images the best
# validated epoch came out of noise, and the last epoch of the decayed schedule searched as well
# or better in every regime. The best replaces it only when clearly ahead.
NOISE_STANDARD_ERRORS = 2.0


def noise_margin(recall: float, queries: int) -> float:
    """How far apart two Recall@1 on `queries` held-out images can be by chance alone."""
    p = min(max(recall, 0.05), 0.95)  # a rate of exactly 0 or 1 still has some uncertainty
    return NOISE_STANDARD_ERRORS * math.sqrt(p * (1 - p) / max(1, queries))


def patience_for(requested: int, epochs: int) -> int:
    """Epochs without a better validation Recall@1 before stopping; 0 = a fifth of the run."""
    return requested if requested > 0 else max(MIN_PATIENCE, round(epochs / 5))


@dataclass
class Stopping:
    """Keeps the weights of the epoch with the best validation Recall@1, and says when to stop.

    Ties in Recall@1 (frequent on small validation sets) go to the lower validation loss. A
    Recall@1 within the held-out set's noise of the best (`noise_margin` for `queries` images)
    counts as level with it: the run stops only after `patience` epochs clearly behind.
    """

    patience: int
    enabled: bool = True
    queries: int = 0  # held-out images each validation scores; 0 = no noise allowance
    best_epoch: int = 0
    best_recall: float | None = None
    best_val_loss: float | None = None
    best_state: dict[str, Any] | None = field(default=None, repr=False)
    level_epoch: int = 0  # the last validated epoch within the noise of the best
    zero_loss_epochs: int = 0

    def update(self, record: dict[str, Any], state: Callable[[], dict[str, Any]]) -> str | None:
        """Take one epoch's record (keeping `state()` if it is the best); why to stop, or None."""
        epoch, recall = record["epoch"], record.get("val_recall_at_1")
        if recall is not None and not math.isnan(recall):
            if self._better(record):
                self.best_epoch, self.best_recall = epoch, recall
                self.best_val_loss = record.get("val_loss")
                self.best_state = copy.deepcopy(state())
            if not self.best_is_clearly_ahead(record):
                self.level_epoch = epoch
        loss = record["loss"]
        self.zero_loss_epochs = self.zero_loss_epochs + 1 if loss <= ZERO_LOSS else 0
        if not self.enabled:
            return None
        if self.zero_loss_epochs >= ZERO_LOSS_EPOCHS:
            return (
                f"the training loss has been 0 for {ZERO_LOSS_EPOCHS} epochs: no pair in a batch "
                "is wrong any more, so further epochs would not change the network"
            )
        if self.level_epoch and epoch - self.level_epoch >= self.patience:
            return (
                f"validation Recall@1 has been below its best ({self.best_recall:.3f} at epoch "
                f"{self.best_epoch}) by more than chance for {self.patience} epochs"
            )
        return None

    def best_is_clearly_ahead(self, last: dict[str, Any]) -> bool:
        """Whether the best epoch beats `last` by more than the held-out set's noise."""
        recall = last.get("val_recall_at_1")
        if self.best_recall is None or recall is None or math.isnan(recall):
            return self.best_recall is not None  # the last was not validated: trust the best
        margin = noise_margin(self.best_recall, self.queries) if self.queries else 0.0
        return self.best_recall - recall > margin

    def _better(self, record: dict[str, Any]) -> bool:
        recall, loss = record["val_recall_at_1"], record.get("val_loss")
        if self.best_recall is None or recall > self.best_recall:
            return True
        if recall < self.best_recall or loss is None or self.best_val_loss is None:
            return False
        return loss < self.best_val_loss

    def to_dict(self) -> dict[str, Any]:
        """Plain data and tensors for a checkpoint (a resumed run keeps its best epoch)."""
        return {
            "best_epoch": self.best_epoch,
            "best_recall": self.best_recall,
            "best_val_loss": self.best_val_loss,
            "best_state": self.best_state,
            "level_epoch": self.level_epoch,
            "zero_loss_epochs": self.zero_loss_epochs,
        }

    def load(self, saved: dict[str, Any]) -> None:
        for key, value in saved.items():
            setattr(self, key, value)
