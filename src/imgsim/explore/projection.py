"""2-D projection of embeddings: a category-stratified sample laid out by t-SNE (or PCA)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from ..core.config import MAP_METHODS

METHODS = MAP_METHODS


def stratified_sample(categories: Sequence[str], max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `max_points` items, each category keeping its share.

    Shares are rounded by largest remainder and every category keeps at least one point
    while there is room, so a small category never vanishes from the map. The same
    categories, bound and seed give the same indices.
    """
    total = len(categories)
    if max_points < 1:
        raise ValueError("max_points must be at least 1")
    if total <= max_points:
        return np.arange(total)
    counts = Counter(categories)
    order = sorted(counts)  # a stable order, whatever order the items came in
    quota = _quotas([counts[c] for c in order], max_points)
    rng = np.random.default_rng(seed)
    members: dict[str, list[int]] = {c: [] for c in order}
    for i, category in enumerate(categories):
        members[category].append(i)
    keep = [
        rng.choice(np.asarray(members[c]), q, replace=False)
        for c, q in zip(order, quota, strict=True)
        if q
    ]
    return np.sort(np.concatenate(keep))


def _quotas(sizes: list[int], budget: int) -> list[int]:
    by_size = sorted(range(len(sizes)), key=lambda i: -sizes[i])  # stable: ties by name
    if budget <= len(sizes):  # one point each for the largest categories
        return [int(i in set(by_size[:budget])) for i in range(len(sizes))]
    exact = [budget * s / sum(sizes) for s in sizes]
    quota = [max(1, int(e)) for e in exact]
    while sum(quota) > budget:  # the minimum of one went over: the most over-served give back
        over = max((i for i in by_size if quota[i] > 1), key=lambda i: quota[i] - exact[i])
        quota[over] -= 1
    for i in sorted(by_size, key=lambda i: quota[i] - exact[i]):  # largest remainder first
        if sum(quota) >= budget:
            break
        quota[i] = min(sizes[i], quota[i] + 1)
    return quota


def project(features: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """N×2 coordinates of N embeddings; the same input, method and seed give the same output.

    t-SNE keeps neighbourhoods (what a similarity search sees); PCA is linear and fast,
    the fallback for very large samples. Fewer than 4 points are laid out by PCA.
    """
    if method not in METHODS:
        raise ValueError(f"unknown projection method {method!r}; known: {', '.join(METHODS)}")
    points = np.asarray(features, dtype=np.float32)
    n = len(points)
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if n == 1:
        return np.zeros((1, 2), dtype=np.float32)
    if method == "tsne" and n >= 4:
        from sklearn.manifold import TSNE

        # Perplexity must stay below N; 30 (scikit-learn's default) once there are enough.
        perplexity = float(max(2, min(30, (n - 1) // 3)))
        tsne = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca")
        return tsne.fit_transform(points).astype(np.float32)
    from sklearn.decomposition import PCA

    components = min(2, n, points.shape[1])
    xy = PCA(n_components=components, random_state=seed).fit_transform(points)
    if components < 2:
        xy = np.hstack([xy, np.zeros((n, 2 - components))])
    return xy.astype(np.float32)


def unit_square(xy: np.ndarray) -> np.ndarray:
    """Coordinates scaled into [0, 1]², centred, keeping the aspect ratio (for drawing)."""
    if len(xy) == 0:
        return xy
    low, high = xy.min(axis=0), xy.max(axis=0)
    span = float((high - low).max()) or 1.0
    return ((xy - (low + high) / 2) / span + 0.5).astype(np.float32)
