"""Automatic similarity threshold: the cutoff best separating same- from other-category pairs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from .model import EmbeddingNet

CRITERION = "best F1 of same-category pairs among validation query × training image pairs"


@dataclass
class ThresholdChoice:
    """The chosen cutoff, in distance and in similarity percent, and how well it separates."""

    similarity: float  # percent: results below it are dropped by default
    distance: float
    f1: float
    precision: float
    recall: float
    pairs: int
    criterion: str = CRITERION

    def to_dict(self) -> dict:
        return asdict(self)


def best_f1_threshold(same: np.ndarray, different: np.ndarray) -> ThresholdChoice:
    """The distance cutoff d maximising F1 when "distance ≤ d" predicts "same category".

    Every observed distance is a candidate, so the optimum is exact; ties in F1 go to the
    larger cutoff, which keeps more results.
    """
    from .search import similarity_from_distance

    same, different = np.asarray(same, np.float64), np.asarray(different, np.float64)
    if len(same) == 0 or len(different) == 0:
        raise ValueError("threshold tuning needs both same- and different-category pairs")
    dist = np.concatenate([same, different])
    is_same = np.concatenate([np.ones(len(same)), np.zeros(len(different))])
    order = np.argsort(dist, kind="stable")
    dist, is_same = dist[order], is_same[order]
    tp = np.cumsum(is_same)
    predicted = np.arange(1, len(dist) + 1)
    # Only the last of equal distances is a real cutoff: "≤ d" takes them all.
    last = np.append(dist[1:] != dist[:-1], True)
    precision = tp / predicted
    recall = tp / len(same)
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    f1 = np.where(last, f1, -1.0)
    best = len(f1) - 1 - int(np.argmax(f1[::-1]))
    d = float(dist[best])
    return ThresholdChoice(
        similarity=round(similarity_from_distance(d), 2),
        distance=d,
        f1=float(f1[best]),
        precision=float(precision[best]),
        recall=float(recall[best]),
        pairs=len(dist),
    )


def pair_distances(
    queries: np.ndarray, query_labels: np.ndarray, refs: np.ndarray, ref_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances of every query × reference pair, split into same and different."""
    q, r = np.asarray(queries, np.float64), np.asarray(refs, np.float64)
    sq = (q**2).sum(1)[:, None] + (r**2).sum(1)[None, :] - 2 * q @ r.T
    dist = np.sqrt(np.maximum(sq, 0.0))
    same = np.asarray(query_labels)[:, None] == np.asarray(ref_labels)[None, :]
    return dist[same], dist[~same]


def choose_threshold(
    model: EmbeddingNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    train_rows: torch.Tensor,
    val_rows: torch.Tensor,
    seed: int = 0,
    max_queries: int = 1000,
    max_refs: int = 3000,
) -> ThresholdChoice | None:
    """Tune on held-out images searched against training images; None without validation."""
    import torch

    from .train import embed_rows

    if len(val_rows) == 0:
        return None
    gen = torch.Generator().manual_seed(seed)
    queries = val_rows[torch.randperm(len(val_rows), generator=gen)[:max_queries]]
    refs = train_rows[torch.randperm(len(train_rows), generator=gen)[:max_refs]]
    same, different = pair_distances(
        embed_rows(model, images, queries).numpy(),
        labels[queries].numpy(),
        embed_rows(model, images, refs).numpy(),
        labels[refs].numpy(),
    )
    if len(same) == 0 or len(different) == 0:
        return None
    return best_f1_threshold(same, different)


def tune_model_threshold(model_path: str, data_dir: str) -> ThresholdChoice:
    """Recompute a model file's threshold on an image folder and store it in the file."""
    from .config import TrainConfig, from_dict
    from .errors import DatasetError
    from .model import load_model, update_model_file
    from .train import load_training_images, stratified_split

    model, info = load_model(model_path)
    config = from_dict(TrainConfig, info.get("train_config") or {})
    config.data_dir = data_dir
    data = load_training_images(config, model.config.image_size)
    fraction = config.val_fraction or 0.1
    train_rows, val_rows = stratified_split(data.labels, fraction, config.seed)
    choice = choose_threshold(model, data.images, data.labels, train_rows, val_rows, config.seed)
    if choice is None:
        raise DatasetError(
            "Threshold tuning needs categories with at least 4 images each, to hold some out"
        )
    update_model_file(model_path, {"threshold": choice.similarity,
                                   "threshold_info": choice.to_dict()})  # fmt: skip
    return choice
