"""Automatic similarity threshold: the cutoff best separating same- from other-category pairs."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("imgsim")

CRITERION = "best F1 of same-category pairs among pairs of validation images"


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


def within_pairs(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances of every pair of distinct images of one set (each pair once), same/different."""
    same, different = pair_distances(emb, labels, emb, labels)
    n = len(labels)
    # pair_distances flattens row by row; keep the strict upper triangle: no self-pairs.
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)
    is_same = np.asarray(labels)[:, None] == np.asarray(labels)[None, :]
    return same[upper[is_same]], different[upper[~is_same]]


def choose_threshold(
    emb: np.ndarray, labels: np.ndarray, seed: int = 0, max_images: int = 1000
) -> ThresholdChoice | None:
    """Tune on pairs of held-out images only (a sample of `max_images`); None without pairs."""
    emb, labels = np.asarray(emb), np.asarray(labels)
    if len(labels) > max_images:
        keep = np.sort(np.random.default_rng(seed).choice(len(labels), max_images, replace=False))
        emb, labels = emb[keep], labels[keep]
    same, different = within_pairs(emb, labels)
    if len(same) == 0 or len(different) == 0:
        return None
    return best_f1_threshold(same, different)


def tune_model_threshold(model_path: str, data_dir: str, workers: int = 0) -> ThresholdChoice:
    """Recompute a model file's threshold on the validation images it names; store it there.

    Only the images held out when the model was trained are used: pairs of images the network
    was trained on would make it look better separated than it is on new photos.
    """
    import torch

    from .data import category_of
    from .errors import DatasetError
    from .evaluation import embed
    from .model import load_model, update_model_file
    from .trainset import Collection, ImageLoader

    model, info = load_model(model_path)
    names = _validation_names(info, data_dir)
    root = Path(data_dir)
    present = [n for n in names if (root / n).is_file()]
    if len(present) < len(names):
        log.warning("%d of the model's %d validation images are missing from %s",
                    len(names) - len(present), len(names), root)  # fmt: skip
    categories = sorted({category_of(n) or "" for n in present})
    labels = torch.tensor([categories.index(category_of(n) or "") for n in present])
    data = Collection(str(root), np.array([n.encode() for n in present], dtype=np.bytes_),
                      labels, categories)  # fmt: skip
    loader = ImageLoader(data.dataset(model.config.image_size), data.workers(workers))
    emb, kept = embed(model, loader, torch.arange(len(present)), torch.device("cpu"))
    seed = int((info.get("validation") or {}).get("seed", 0))
    choice = choose_threshold(emb.numpy(), labels[kept].numpy(), seed)
    if choice is None:
        raise DatasetError(
            "Threshold tuning needs validation images of at least 2 categories, with 2 or more "
            "images in some; train with a larger --val-fraction or more images per category"
        )
    update_model_file(model_path, {"threshold": choice.similarity,
                                   "threshold_info": choice.to_dict()})  # fmt: skip
    return choice


def _validation_names(info: dict, data_dir: str) -> list[str]:
    """The held-out images named in the model file; older files name none, so redo the split."""
    stored = (info.get("validation") or {}).get("names")
    if stored is not None:
        return list(stored)
    from .config import TrainConfig, from_dict
    from .trainset import scan_collection, stratified_split

    log.warning(
        "This model file predates stored validation splits: redoing its split on %s; "
        "the threshold is right only if the folder is the one it was trained on",
        data_dir,
    )
    config = from_dict(TrainConfig, info.get("train_config") or {})
    data = scan_collection(data_dir, config.workers)
    _, val_rows = stratified_split(data.labels, config.val_fraction or 0.1, config.seed)
    return [data.name(i) for i in val_rows.tolist()]
