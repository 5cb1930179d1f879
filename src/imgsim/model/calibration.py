"""Similarity people can read: the probability that two images share a category.

Fitted by `imgsim train` on held-out images (Platt scaling: a logistic curve over the cosine
similarity of query-reference pairs), stored in the model file and used for every score shown.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..core.config import NEAR_COPY_SIMILARITY

MIN_PAIRS = 20  # fewer held-out pairs (or no pair of each kind): no calibration, say so


@dataclass(frozen=True)
class Calibration:
    """P(same category) = 1 / (1 + exp(-(intercept + slope · cosine similarity)))."""

    slope: float
    intercept: float
    pairs: int  # held-out pairs it was fitted on
    brier: float  # mean squared error of the probabilities on held-out pairs (0 = perfect)
    expected_error: float  # mean |predicted - observed| over probability bins (ECE)

    def probability(self, distance: float | np.ndarray) -> float | np.ndarray:
        """Probability from the Euclidean distance of L2-normalised embeddings."""
        cosine = 1.0 - np.square(distance) / 2.0
        z = np.clip(self.intercept + self.slope * cosine, -60.0, 60.0)
        p = 1.0 / (1.0 + np.exp(-z))
        return float(p) if np.ndim(p) == 0 else p

    def to_dict(self) -> dict[str, Any]:
        return {"method": "platt", **asdict(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Calibration | None:
        if not values or values.get("method") != "platt":
            return None
        return cls(*(float(values[k]) for k in ("slope", "intercept")), int(values["pairs"]),
                   float(values["brier"]), float(values["expected_error"]))  # fmt: skip


def fit(distances: np.ndarray, same: np.ndarray, seed: int = 0) -> Calibration | None:
    """Fit on one half of the pairs, score on the other, refit on all; None if it cannot."""
    from sklearn.linear_model import LogisticRegression

    distances, same = np.asarray(distances, np.float64), np.asarray(same, bool)
    if len(same) < MIN_PAIRS or same.all() or not same.any():
        return None
    cosine = (1.0 - distances**2 / 2.0).reshape(-1, 1)
    half = np.random.default_rng(seed).random(len(same)) < 0.5
    brier, ece = float("nan"), float("nan")
    if same[half].any() and not same[half].all() and (~half).any():
        first = LogisticRegression(C=1e4).fit(cosine[half], same[half])
        held = first.predict_proba(cosine[~half])[:, 1]
        brier = float(np.mean((held - same[~half]) ** 2))
        ece = expected_error(held, same[~half])
    model = LogisticRegression(C=1e4).fit(cosine, same)
    slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
    if not slope > 0 or not math.isfinite(intercept):
        return None  # closer pairs not more often the same category: nothing to calibrate
    return Calibration(slope, intercept, len(same), brier, ece)


def expected_error(predicted: np.ndarray, observed: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: |mean predicted − fraction observed|, weighted by bin size."""
    edges = np.minimum((np.asarray(predicted) * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = edges == b
        if inside.any():
            total += inside.sum() * abs(predicted[inside].mean() - observed[inside].mean())
    return float(total / max(1, len(predicted)))


def cosine_percent(distance: float) -> float:
    """The similarity a result shows: the cosine of the two embeddings in percent, from 0.

    It reads as "how alike": 100 for the same picture, high 90s for a near copy, whatever
    the categories; the calibrated confidence answers "same category?" instead.
    """
    return float(min(100.0, max(0.0, 100.0 * (1.0 - distance * distance / 2.0))))


def tuned_threshold(distance: float) -> float:
    """A tuned cutoff distance on the similarity scale results are compared on (rounded as a
    result's similarity is, so the last result tuning kept stays), never above a near copy's
    similarity (NEAR_COPY_SIMILARITY), so a near copy of the query always shows."""
    return min(NEAR_COPY_SIMILARITY, round(cosine_percent(distance), 2))


def confidence_percent(distance: float, calibration: Calibration | None) -> float | None:
    """The calibrated probability, in percent, that a result is in the query's category."""
    return None if calibration is None else 100.0 * float(calibration.probability(distance))


def similarity_percent(distance: float, calibration: Calibration | None) -> float:
    """What a result shows: the calibrated probability in percent, else the cosine similarity.

    Without a calibration (older model files, too few held-out images) the cosine similarity
    of the two embeddings, in percent and clipped at 0, stands in.
    """
    if calibration is not None:
        return 100.0 * float(calibration.probability(distance))
    return float(min(100.0, max(0.0, 100.0 * (1.0 - distance * distance / 2.0))))
