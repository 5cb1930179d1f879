"""The map's projection: a bounded stratified sample, laid out the same way for the same seed."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from imgsim.explore.projection import project, stratified_sample, unit_square


def clustered(n: int, k: int = 3, d: int = 8, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 4
    labels = [i % k for i in range(n)]
    x = centres[labels] + rng.normal(size=(n, d))
    return x.astype(np.float32), [f"c{label}" for label in labels]


def test_sample_is_bounded_and_keeps_each_category_share() -> None:
    categories = ["big"] * 900 + ["mid"] * 90 + ["tiny"] * 10 + ["one"]
    keep = stratified_sample(categories, 100, seed=3)
    counts = Counter(categories[i] for i in keep)
    assert len(keep) == 100 and len(set(keep.tolist())) == 100
    assert list(keep) == sorted(keep)
    assert counts == {"big": 89, "mid": 9, "tiny": 1, "one": 1}


def test_sample_keeps_every_category_while_there_is_room() -> None:
    categories = ["a"] * 50 + [f"rare{i}" for i in range(8)]
    counts = Counter(categories[i] for i in stratified_sample(categories, 10))
    assert sum(counts.values()) == 10
    assert all(counts[f"rare{i}"] == 1 for i in range(8)) and counts["a"] == 2


def test_more_categories_than_points_still_bounded() -> None:
    categories = [f"c{i}" for i in range(30)] * 2
    assert len(stratified_sample(categories, 7)) == 7


def test_sample_is_deterministic_for_a_seed_and_all_when_small() -> None:
    categories = [f"c{i % 5}" for i in range(1000)]
    first = stratified_sample(categories, 50, seed=1)
    assert np.array_equal(first, stratified_sample(categories, 50, seed=1))
    assert not np.array_equal(first, stratified_sample(categories, 50, seed=2))
    assert np.array_equal(stratified_sample(categories[:40], 50), np.arange(40))
    with pytest.raises(ValueError):
        stratified_sample(categories, 0)


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_projection_is_deterministic_and_separates_clusters(method: str) -> None:
    x, labels = clustered(60)
    xy = project(x, method, seed=0)
    assert xy.shape == (60, 2) and np.isfinite(xy).all()
    assert np.array_equal(xy, project(x, method, seed=0))
    # Each point's nearest neighbour on the map is of its own cluster.
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(60) * 1e9
    same = [labels[i] == labels[j] for i, j in enumerate(dist.argmin(axis=1))]
    assert np.mean(same) > 0.95


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_tiny_collections_have_a_layout(n: int) -> None:
    x, _ = clustered(n) if n else (np.zeros((0, 8), np.float32), [])
    xy = project(x, "tsne")
    assert xy.shape == (n, 2) and np.isfinite(xy).all()


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="umap"):
        project(np.zeros((5, 3)), "umap")


def test_unit_square_keeps_aspect_and_centres() -> None:
    xy = unit_square(np.array([[0, 0], [10, 2], [4, 1]], dtype=np.float32))
    assert xy.min() >= 0 and xy.max() <= 1
    assert np.allclose(xy[:, 0], [0, 1, 0.4]) and np.allclose(xy[:, 1], [0.4, 0.6, 0.5])
    assert np.allclose(unit_square(np.ones((3, 2))), 0.5)


def test_benchmark_script_measures_and_writes_its_section(tmp_path) -> None:
    from .benchmark_import import load_benchmark

    bench = load_benchmark("map_projection")
    rows = bench.measure([40], ["pca", "tsne"])
    assert [(n, m) for n, m, _ in rows] == [(40, "pca"), (40, "tsne")]
    assert all(seconds >= 0 for *_, seconds in rows)
    section = bench.render(rows)
    assert section.startswith("## Map projection\n") and "| 40 | t-SNE |" in section
    docs = tmp_path / "benchmarks.md"
    bench.write_section(bench.SECTION, section, docs)
    assert "| 40 | PCA |" in docs.read_text()
