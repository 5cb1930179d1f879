"""Retrieval metrics: pytorch-metric-learning's AccuracyCalculator plus Recall@k."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

RECALL_KS = (1, 5, 10)
DEFAULT_METRICS = (
    "precision_at_1",
    "recall_at_1",
    "recall_at_5",
    "recall_at_10",
    "mean_average_precision_at_r",
    "r_precision",
)


def recall_at_k(knn_labels: torch.Tensor, query_labels: torch.Tensor, k: int) -> float:
    """Fraction of queries with at least one same-label item among their k nearest neighbours."""
    if len(query_labels) == 0:
        return float("nan")
    top = knn_labels[:, :k]
    hits = (top == query_labels.view(-1, 1)).any(dim=1)
    return float(hits.float().mean().item())


class RetrievalCalculator(AccuracyCalculator):
    """AccuracyCalculator with recall_at_1/5/10 ("any relevant item in the top k")."""

    def requires_knn(self) -> list[str]:
        return [*super().requires_knn(), *(f"recall_at_{k}" for k in RECALL_KS)]

    def _recall(self, k: int, knn_labels, query_labels, not_lone_query_mask, **_) -> float:
        return recall_at_k(knn_labels[not_lone_query_mask], query_labels[not_lone_query_mask], k)

    def calculate_recall_at_1(self, **kwargs) -> float:
        return self._recall(1, **kwargs)

    def calculate_recall_at_5(self, **kwargs) -> float:
        return self._recall(5, **kwargs)

    def calculate_recall_at_10(self, **kwargs) -> float:
        return self._recall(10, **kwargs)


def retrieval_metrics(
    query: np.ndarray | torch.Tensor,
    query_labels: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor | None = None,
    reference_labels: np.ndarray | torch.Tensor | None = None,
    include: tuple[str, ...] = DEFAULT_METRICS,
    k: int | str | None = None,
) -> dict[str, float]:
    """Retrieval quality of query embeddings against a reference set (or against themselves).

    With no reference, each query is searched among the other queries (itself excluded).
    `k=None` looks as deep as MAP@R and R-Precision need (the largest category) and at least
    as deep as Recall@10.
    """
    if k is None:
        ref_labels = query_labels if reference_labels is None else reference_labels
        largest = int(np.bincount(np.asarray(ref_labels, dtype=np.int64).ravel()).max())
        n_ref = len(query) if reference is None else len(reference)
        k = max(1, min(max(largest, max(RECALL_KS)), n_ref - (1 if reference is None else 0)))
    calc = RetrievalCalculator(include=include, k=k, device=torch.device("cpu"))
    result = calc.get_accuracy(
        _as_tensor(query),
        _as_tensor(query_labels),
        None if reference is None else _as_tensor(reference),
        None if reference_labels is None else _as_tensor(reference_labels),
        ref_includes_query=False,
    )
    return {name: float(value) for name, value in result.items()}


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
