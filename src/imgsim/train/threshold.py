"""The default threshold and the calibration of scores, tuned on held-out images.

The calibration gives each result its confidence, the probability that it shares the query's
category (see calibration.py). The default threshold is the lowest score at which the top-k
results a search shows are still right `precision` of the time, measured on held-out queries;
it is stored as a distance and on the scale search compares results on, the similarity (the
cosine in percent), never above NEAR_COPY_SIMILARITY.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np

from ..core.config import NEAR_COPY_SIMILARITY
from ..model.calibration import Calibration, cosine_percent, fit, tuned_threshold

log = logging.getLogger("imgsim")

CRITERION = "lowest score at which the top-{k} results of held-out queries are {p:.0%} right"
MAX_QUERIES = 2000  # held-out queries used (a seeded sample)
MAX_REFERENCES = 5000  # references they are searched among (a seeded sample)
MAX_PAIRS = 200_000  # query-reference pairs the calibration is fitted on (a seeded sample)
QUERY_CHUNK = 256  # queries whose distances are held at once


@dataclass
class ThresholdChoice:
    """The chosen cutoff, in similarity percent and in distance, and what it keeps."""

    similarity: float  # percent of the cosine (what search shows): results below are hidden
    distance: float
    precision: float  # of the top-k results it keeps
    kept: float  # fraction of the top-k results it keeps
    target: float  # the precision asked for
    top_k: int
    pairs: int  # query-reference pairs the calibration was fitted on
    criterion: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line: the score, and what it keeps of the top-k results."""
        return (
            f"Default similarity threshold {self.similarity:.1f}%: keeps {self.kept:.0%} of the "
            f"top-{self.top_k} results of held-out queries, {self.precision:.1%} of them in the "
            f"query's category (target {self.target:.0%})"
        )

    def shortfall(self) -> str | None:
        """A warning when the threshold misses its precision target, saying what it means."""
        if self.precision >= self.target:
            return None
        wrong = 1 - self.precision
        return (
            f"The default threshold reached {self.precision:.1%} precision against its "
            f"{self.target:.0%} target: about {wrong:.0%} of the results a search shows above "
            "it are of another category. The model cannot yet tell these categories apart "
            "that well: more images per category or more epochs may help "
            "(--threshold-precision sets the target)"
        )


def precision_cutoff(scores: np.ndarray, right: np.ndarray, target: float) -> int:
    """How many of the results, best score first, to keep so their precision is ≥ `target`.

    The largest such prefix; when none reaches the target, the prefix with the best precision
    (at least one result).
    """
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(right[order])
    precision = hits / np.arange(1, len(order) + 1)
    meets = np.flatnonzero(precision >= target)
    return int(meets[-1]) + 1 if len(meets) else int(np.argmax(precision)) + 1


def top_k_results(
    queries: np.ndarray, query_labels: np.ndarray, refs: np.ndarray, ref_labels: np.ndarray,
    k: int, same_set: bool = False, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(sampled pair distances, their same-category flags, top-k distances, top-k right flags).

    In float32 chunks of queries, keeping at most MAX_PAIRS pairs (a seeded sample) for the
    calibration: 2,000 × 5,000 pairs in float64 would take gigabytes for a 2-parameter fit.
    `same_set`: queries and references are the same images; a query never finds itself.
    """
    q, r = np.asarray(queries, np.float32), np.asarray(refs, np.float32)
    ref_labels, query_labels = np.asarray(ref_labels), np.asarray(query_labels)
    k = min(k, len(r) - (1 if same_set else 0))
    keep = min(1.0, MAX_PAIRS / max(1, len(q) * len(r)))
    rng = np.random.default_rng(seed)
    pairs, flags, top_d, top_ok = [], [], [], []
    r_sq = (r**2).sum(1)
    for start in range(0, len(q), QUERY_CHUNK):
        chunk = q[start : start + QUERY_CHUNK]
        dist = np.sqrt(np.maximum((chunk**2).sum(1)[:, None] + r_sq[None] - 2 * chunk @ r.T, 0))
        same = query_labels[start : start + len(chunk), None] == ref_labels[None]
        valid = np.ones(dist.shape, bool)
        if same_set:
            valid[np.arange(len(chunk)), np.arange(start, start + len(chunk))] = False
            dist[~valid] = np.inf
        picked = valid & (rng.random(dist.shape) < keep)
        pairs.append(dist[picked])
        flags.append(same[picked])
        top = np.argpartition(dist, k - 1, axis=1)[:, :k]
        top_d.append(np.take_along_axis(dist, top, 1).ravel())
        top_ok.append(np.take_along_axis(same, top, 1).ravel())
    return tuple(np.concatenate(x) for x in (pairs, flags, top_d, top_ok))  # type: ignore[return-value]


@dataclass
class Tuning:
    """A calibration, the threshold chosen with it, and the held-out pairs (for the plot)."""

    choice: ThresholdChoice
    calibration: Calibration
    distances: np.ndarray
    same: np.ndarray


def choose_threshold(
    queries: np.ndarray, query_labels: np.ndarray, refs: np.ndarray | None = None,
    ref_labels: np.ndarray | None = None, *, target: float = 0.9, top_k: int = 10, seed: int = 0,
) -> Tuning | None:  # fmt: skip
    """Calibrate scores and choose the default threshold; None without usable pairs.

    Without references the queries are searched among each other.
    """
    rng = np.random.default_rng(seed)
    queries, query_labels = _sample(np.asarray(queries), np.asarray(query_labels), MAX_QUERIES, rng)
    same_set = refs is None
    if same_set:
        refs, ref_labels = queries, query_labels
    else:
        refs, ref_labels = _sample(np.asarray(refs), np.asarray(ref_labels), MAX_REFERENCES, rng)
    if len(queries) < 2 or len(refs) < 2:
        return None
    dist, same, top_dist, top_right = top_k_results(
        queries, query_labels, refs, ref_labels, top_k, same_set, seed
    )
    calibration = fit(dist, same, seed)
    if calibration is None or len(top_dist) == 0:
        return None
    scores = 100.0 * np.asarray(calibration.probability(top_dist.astype(np.float64)))
    keep = precision_cutoff(scores, top_right, target)
    order = np.argsort(-scores, kind="stable")
    cutoff = float(np.floor(scores[order[keep - 1]] * 100) / 100)  # the last kept one stays
    # Never so high that most searches show nothing: at most the median query's best score.
    best = scores.reshape(len(queries), -1).max(axis=1)
    ceiling = float(np.floor(np.median(best) * 100) / 100)
    # The cutoff as a distance, stored on the scale search compares results on (the cosine
    # in percent, capped at NEAR_COPY_SIMILARITY); what it keeps is counted by search's rule.
    distance = float(top_dist[scores >= min(cutoff, ceiling)].max())
    similarity = tuned_threshold(distance)
    capped = similarity < round(cosine_percent(distance), 2)
    if capped:  # the distance at the cap, which search turns back into the same cutoff
        distance = math.sqrt(2.0 * (1.0 - NEAR_COPY_SIMILARITY / 100.0))
    shown = np.round(np.clip(100.0 * (1.0 - np.square(top_dist) / 2.0), 0, 100), 2) >= similarity
    precision = float(top_right[shown].mean())
    caveat = _caveat(cutoff, ceiling, precision, target, capped)
    choice = ThresholdChoice(
        similarity=similarity,
        distance=distance,
        precision=precision,
        kept=float(shown.mean()),
        target=target,
        top_k=top_k,
        pairs=calibration.pairs,
        criterion=CRITERION.format(k=top_k, p=target) + caveat,
    )
    return Tuning(choice, calibration, dist, same)


def _caveat(
    cutoff: float, ceiling: float, precision: float, target: float, capped: bool = False
) -> str:
    """What kept the threshold from the plain criterion, said in its description."""
    if capped:
        return f", lowered to {NEAR_COPY_SIMILARITY:.0f}% so that a near copy always shows"
    if cutoff > ceiling:
        return ", lowered so that half the searches show their best result"
    if precision < target:
        return "; not reachable, so the most precise cutoff"
    return ""


def _sample(emb: np.ndarray, labels: np.ndarray, limit: int, rng: np.random.Generator) -> tuple:
    if len(labels) <= limit:
        return emb, labels
    keep = np.sort(rng.choice(len(labels), limit, replace=False))
    return emb[keep], labels[keep]


def tune_model_threshold(
    model_path: str, data_dir: str, workers: int = 0, precision: float = 0.8, top_k: int = 10
) -> ThresholdChoice:
    """Recompute a model file's calibration and threshold; store them there.

    As at the end of training: the images held out then are the queries, searched among the
    folder's other images — never pairs of two images the network was trained on.
    """
    import torch

    from ..core.errors import DatasetError
    from ..model.network import load_model, update_model_file
    from .evaluation import embed, sample_rows
    from .trainset import ImageLoader, scan_collection

    model, info = load_model(model_path)
    names = set(_validation_names(info, data_dir))
    data = scan_collection(data_dir, workers)
    is_val = torch.tensor([data.name(i) in names for i in range(len(data))], dtype=torch.bool)
    if int(is_val.sum()) < len(names):
        log.warning("%d of the model's %d validation images are missing from %s",
                    len(names) - int(is_val.sum()), len(names), data_dir)  # fmt: skip
    seed = int((info.get("validation") or {}).get("seed", 0))
    loader = ImageLoader(data.dataset(model.config.image_size), data.workers(workers))
    cpu = torch.device("cpu")
    queries = sample_rows(torch.nonzero(is_val).flatten(), MAX_QUERIES, seed)
    q, q_rows = embed(model, loader, queries, cpu)
    refs = sample_rows(torch.nonzero(~is_val).flatten(), MAX_REFERENCES, seed)
    r, r_rows = embed(model, loader, refs, cpu)
    tuning = choose_threshold(q.numpy(), data.labels[q_rows].numpy(), r.numpy(),
                              data.labels[r_rows].numpy(), target=precision, top_k=top_k,
                              seed=seed)  # fmt: skip
    if tuning is None:
        raise DatasetError(
            "Threshold tuning needs held-out images and other images of at least 2 categories; "
            "train with a larger --val-fraction or more images per category"
        )
    update_model_file(model_path, tuning_fields(tuning))
    return tuning.choice


def tuning_fields(tuning: Tuning | None) -> dict:
    """What a model file keeps of a tuning (None: no threshold, scores uncalibrated)."""
    if tuning is None:
        return {"threshold": None, "threshold_info": None, "calibration": None}
    return {
        "threshold": tuning.choice.similarity,
        "threshold_info": tuning.choice.to_dict(),
        "calibration": tuning.calibration.to_dict(),
    }


def _validation_names(info: dict, data_dir: str) -> list[str]:
    """The held-out images named in the model file; older files name none, so redo the split."""
    stored = (info.get("validation") or {}).get("names")
    if stored is not None:
        return list(stored)
    from ..core.config import TrainConfig, from_dict
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
