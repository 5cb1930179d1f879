"""Tests for imgsim.train.metrics against values worked out by hand on a few 2-D points.

Every example puts its points on the x axis at positions whose pairwise distances are all
different (a Golomb ruler: 0 1 4 10 12 17), so each query's neighbour order is unambiguous and
written out beside it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from imgsim.train.metrics import DEFAULT_METRICS, recall_at_k, retrieval_metrics


def on_x_axis(*xs: float) -> np.ndarray:
    return np.array([[x, 0.0] for x in xs], dtype=np.float32)


# --- recall_at_k -------------------------------------------------------------------------------

KNN = torch.tensor([[1, 0, 0], [0, 0, 1], [2, 2, 2], [3, 1, 0]])
QUERIES = torch.tensor([0, 1, 2, 0])
# First same-label neighbour per query, by rank: 2, 3, 1, 3.


@pytest.mark.parametrize(("k", "expected"), [(1, 1 / 4), (2, 2 / 4), (3, 4 / 4), (10, 4 / 4)])
def test_recall_at_k(k: int, expected: float) -> None:
    assert recall_at_k(KNN, QUERIES, k) == pytest.approx(expected)


def test_recall_at_k_counts_a_query_once_however_many_hits() -> None:
    knn = torch.tensor([[0, 0, 0], [1, 1, 1]])
    assert recall_at_k(knn, torch.tensor([0, 0]), 3) == pytest.approx(0.5)


def test_recall_at_k_without_queries_is_nan() -> None:
    assert math.isnan(recall_at_k(torch.zeros(0, 3), torch.zeros(0), 1))


# --- retrieval_metrics: queries searched among themselves --------------------------------------

# x:      0  1  4 10 12 17 40
# label:  0  0  1  0  1  1  2   (label 2 has one point: a "lone" query, left out of every metric)
SELF_X = (0, 1, 4, 10, 12, 17, 40)
SELF_LABELS = np.array([0, 0, 1, 0, 1, 1, 2])
# Neighbours of each query (itself excluded), nearest first, as labels; R = 2 for every query:
#   x=0  (0): 0@1  1@4  0@10 1@12 1@17   P@1 1  R-prec 1/2  AP@R (1/1)/2       = 1/2
#   x=1  (0): 0@1  1@3  0@9  1@11 1@16   P@1 1  R-prec 1/2  AP@R (1/1)/2       = 1/2
#   x=4  (1): 0@3  0@4  0@6  1@8  1@13   P@1 0  R-prec 0    AP@R 0
#   x=10 (0): 1@2  1@6  1@7  0@9  0@10   P@1 0  R-prec 0    AP@R 0
#   x=12 (1): 0@2  1@5  1@8  0@11 0@12   P@1 0  R-prec 1/2  AP@R (1/2)/2       = 1/4
#   x=17 (1): 1@5  0@7  1@13 0@16 0@17   P@1 1  R-prec 1/2  AP@R (1/1)/2       = 1/2
# (the lone point at x=40 is the farthest neighbour of all, so it changes no rank above.)
SELF_EXPECTED = {
    "precision_at_1": 3 / 6,
    "recall_at_1": 3 / 6,
    "recall_at_5": 6 / 6,  # every query has a same-label neighbour within its first 3
    "recall_at_10": 6 / 6,
    "r_precision": (1 / 2 + 1 / 2 + 0 + 0 + 1 / 2 + 1 / 2) / 6,  # 1/3
    "mean_average_precision_at_r": (1 / 2 + 1 / 2 + 0 + 0 + 1 / 4 + 1 / 2) / 6,  # 7/24
}


def test_retrieval_metrics_without_reference() -> None:
    result = retrieval_metrics(on_x_axis(*SELF_X), SELF_LABELS)
    assert set(result) == set(DEFAULT_METRICS)
    assert result == pytest.approx(SELF_EXPECTED)
    assert all(isinstance(v, float) for v in result.values())


def test_retrieval_metrics_accepts_torch_tensors() -> None:
    result = retrieval_metrics(torch.from_numpy(on_x_axis(*SELF_X)), torch.from_numpy(SELF_LABELS))
    assert result == pytest.approx(SELF_EXPECTED)


def test_retrieval_metrics_include_picks_metrics() -> None:
    result = retrieval_metrics(
        on_x_axis(*SELF_X), SELF_LABELS, include=("precision_at_1", "r_precision")
    )
    assert result == pytest.approx({"precision_at_1": 0.5, "r_precision": 1 / 3})


# --- retrieval_metrics: queries against a separate reference set -------------------------------

# references x:  0  1  4 10 12 17 30
# label:         0  0  1  0  1  1  2     R = 3 for labels 0 and 1, R = 1 for label 2
REF_X = (0, 1, 4, 10, 12, 17, 30)
REF_LABELS = np.array([0, 0, 1, 0, 1, 1, 2])
QUERY_X = (2.4, 11.3, 7.2, 16, -3, 5)
QUERY_LABELS = np.array([0, 1, 1, 0, 2, 3])
# Reference labels in neighbour order, with the first same-label rank (recall), R-precision
# and AP@R = (1/R) · Σ precision at each relevant rank within the first R:
#   x=2.4  (0): 0 1 0 0 1 1 2   first 1  R-prec 2/3  AP@R (1 + 2/3)/3   = 5/9
#   x=11.3 (1): 1 0 1 1 0 0 2   first 1  R-prec 2/3  AP@R (1 + 2/3)/3   = 5/9
#   x=7.2  (1): 0 1 1 0 0 1 2   first 2  R-prec 2/3  AP@R (1/2 + 2/3)/3 = 7/18
#   x=16   (0): 1 1 0 1 2 0 0   first 3  R-prec 1/3  AP@R (1/3)/3       = 1/9
#   x=-3   (2): 0 0 1 0 1 1 2   first 7  R-prec 0    AP@R 0
#   x=5    (3): label 3 is not among the references: a lone query, left out of every metric
REF_EXPECTED = {
    "precision_at_1": 2 / 5,
    "recall_at_1": 2 / 5,
    "recall_at_5": 4 / 5,
    "recall_at_10": 5 / 5,
    "r_precision": (2 / 3 + 2 / 3 + 2 / 3 + 1 / 3 + 0) / 5,  # 7/15
    "mean_average_precision_at_r": (5 / 9 + 5 / 9 + 7 / 18 + 1 / 9 + 0) / 5,  # 29/90
}


def test_retrieval_metrics_with_reference() -> None:
    result = retrieval_metrics(on_x_axis(*QUERY_X), QUERY_LABELS, on_x_axis(*REF_X), REF_LABELS)
    assert result == pytest.approx(REF_EXPECTED)


def test_retrieval_metrics_do_not_depend_on_the_plane_orientation() -> None:
    # The same points rotated by 30°: distances, hence every metric, are unchanged.
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    rotation = np.array([[c, -s], [s, c]], dtype=np.float32)
    result = retrieval_metrics(
        on_x_axis(*QUERY_X) @ rotation, QUERY_LABELS, on_x_axis(*REF_X) @ rotation, REF_LABELS
    )
    assert result == pytest.approx(REF_EXPECTED)


def test_retrieval_metrics_perfect_clusters() -> None:
    points = np.array([[0, 0], [0, 1], [1, 0], [9, 9], [9, 10], [10, 9]], dtype=np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1])
    result = retrieval_metrics(points, labels)
    assert result == pytest.approx(dict.fromkeys(DEFAULT_METRICS, 1.0))
