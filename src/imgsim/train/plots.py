"""Figures of a training run, written next to its model: loss history and score reliability."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.fileio import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no screen on servers and CI
    import matplotlib.pyplot as plt

    return plt


def plot_history(
    history: list[dict[str, float]], path: str | Path, loss_name: str, kept_epoch: int | None = None
) -> None:
    """Loss (named after the loss actually used) per epoch and validation Recall@1 at each
    validation, with the epoch whose weights were kept marked."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    validated = [h for h in history if h.get("val_recall_at_1") is not None]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["loss"] for h in history], "o-", label="training loss")
    if any(h.get("val_loss") is not None for h in validated):
        ax_loss.plot([h["epoch"] for h in validated], [h["val_loss"] for h in validated], "o-",
                     label="validation loss")  # fmt: skip
    ax_loss.set(xlabel="epoch", ylabel=f"{loss_name} loss", title=f"Loss ({loss_name})")
    ax_loss.legend()
    ax_metric.plot([h["epoch"] for h in validated], [h["val_recall_at_1"] for h in validated],
                   "o-", color="green")  # fmt: skip
    if kept_epoch:
        for ax in (ax_loss, ax_metric):
            ax.axvline(kept_epoch, color="grey", linestyle="--", label=f"kept: epoch {kept_epoch}")
        ax_metric.legend(loc="lower right")
    ax_metric.set(xlabel="epoch", ylabel="Recall@1", title="Validation Recall@1", ylim=(0, 1.02))
    _save(fig, path)


def plot_reliability(
    distances: np.ndarray, same: np.ndarray, calibration: Any, choice: Any, path: str | Path
) -> None:
    """Reliability of the scores: predicted probability against how often pairs really share a
    category, on held-out pairs, with the default threshold marked."""
    from sklearn.calibration import calibration_curve

    plt = _pyplot()
    predicted = np.asarray(calibration.probability(distances))
    observed, mean_predicted = calibration_curve(same, predicted, n_bins=10, strategy="uniform")
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(10, 4))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    ax.plot(mean_predicted, observed, "o-", label="imgsim's score")
    # The threshold is a similarity (cosine) cutoff: marked at the confidence of its distance.
    ax.axvline(float(calibration.probability(choice.distance)), color="red", linestyle="--",
               label=f"default threshold (similarity {choice.similarity:.0f}%)")  # fmt: skip
    errors = f"Brier {calibration.brier:.3f}, ECE {calibration.expected_error:.3f}"
    ax.set(xlabel="confidence shown (probability of the same category)",
           ylabel="fraction of pairs in the same category", xlim=(0, 1), ylim=(0, 1),
           title=f"Reliability ({errors}, held-out half)")  # fmt: skip
    ax.legend(loc="upper left")
    hist.hist([predicted[same], predicted[~same]], bins=20, range=(0, 1), stacked=True,
              label=["same category", "other category"], log=True)  # fmt: skip
    title = f"{len(same):,} held-out pairs"
    hist.set(xlabel="confidence shown", ylabel="held-out pairs", title=title)
    hist.legend()
    _save(fig, path)


def _save(fig: Any, path: str | Path) -> None:
    plt = _pyplot()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
