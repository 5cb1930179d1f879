"""The collection's map: computed from the store, stored atomically, recomputed after a change."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgsim.core.config import MAP_FILE
from imgsim.explore.collection_map import CollectionMap, MapSettings, compute_map
from imgsim.explore.kept_document import read_document, write_document
from imgsim.store import Item, Store, open_store
from imgsim.store.exports import build_collection

NAMES = [f"cat{i % 3}_{i:03d}.jpg" for i in range(30)] + ["sub/deep_001.jpg"]
PCA = MapSettings(max_points=12, method="pca", seed=0)


def unit(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def store(store_spec: str, tmp_path: Path):
    opened = open_store(tmp_path, store_spec, "m1")
    build_collection(opened, unit(len(NAMES)), NAMES, tmp_path / "data", "m1")
    yield opened
    opened.close()


def test_map_of_a_store_is_a_bounded_stratified_sample(store: Store) -> None:
    document = compute_map(store, PCA)
    assert document["generation"] == store.generation()
    assert (document["total_images"], document["shown"]) == (31, 12)
    assert document["categories"] == {"cat0": 10, "cat1": 10, "cat2": 10, "sub": 1}
    points = document["points"]
    assert len(points) == 12 and [p["filename"] for p in points] == sorted(
        p["filename"] for p in points
    )
    shown = [p["category"] for p in points]
    assert shown.count("sub") == 1 and all(3 <= shown.count(f"cat{i}") <= 4 for i in range(3))
    assert all(0 <= p["x"] <= 1 and 0 <= p["y"] <= 1 for p in points)
    assert compute_map(store, PCA) == document  # deterministic for a seed


def test_tsne_map_is_deterministic(store: Store) -> None:
    settings = MapSettings(max_points=20, method="tsne", seed=4)
    assert compute_map(store, settings)["points"] == compute_map(store, settings)["points"]


def test_map_is_computed_in_background_and_recomputed_after_a_change(
    store: Store, tmp_path: Path
) -> None:
    cache = CollectionMap(tmp_path)
    first = cache.current(store, PCA)
    assert (first.document, first.computing) == (None, True)
    cache.wait(60)
    ready = cache.current(store, PCA)
    assert ready.current and not ready.computing
    assert read_document(tmp_path / MAP_FILE, "points") == ready.document

    store.add([Item("cat9_031.jpg", unit(1, seed=9)[0])], "m1")
    stale = cache.current(store, PCA)
    assert stale.document == ready.document and not stale.current and stale.computing
    cache.wait(60)
    fresh = cache.current(store, PCA)
    assert fresh.current and fresh.document["generation"] == store.generation()
    assert "cat9" in fresh.document["categories"] and fresh.document["total_images"] == 32

    # Other settings are another map; another process finds the file and needs no compute.
    assert not cache.current(store, MapSettings(12, "pca", seed=1)).current
    cache.wait(60)
    other = CollectionMap(tmp_path).current(store, MapSettings(12, "pca", seed=1))
    assert other.current and not other.computing


def test_a_failed_computation_is_reported_not_retried(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def broken(*args: object) -> None:
        calls.append(args)
        raise MemoryError("out of memory")

    monkeypatch.setattr("imgsim.explore.collection_map.compute_map", broken)
    cache = CollectionMap(tmp_path)
    cache.current(store, PCA)
    cache.wait(60)
    state = cache.current(store, PCA)
    assert state.document is None and not state.computing
    assert state.error == "cannot compute the map: out of memory" and len(calls) == 1


def test_map_file_is_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / MAP_FILE
    write_document({"points": [], "generation": 1}, path)
    with pytest.raises(TypeError):
        write_document({"points": [object()]}, path)
    assert json.loads(path.read_text()) == {"points": [], "generation": 1}
    assert [p.name for p in tmp_path.iterdir()] == [MAP_FILE]
    path.write_text("{not json")
    assert read_document(path, "points") is None
    assert read_document(tmp_path / "missing.json", "points") is None


def test_map_is_computed_on_one_openmp_thread(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    threads = []

    def recording(*args: object) -> dict:
        threads.append(_openmp_effective_n_threads())
        return compute_map(*args)  # type: ignore[arg-type]

    monkeypatch.setattr("imgsim.explore.collection_map.compute_map", recording)
    cache = CollectionMap(tmp_path)
    cache.current(store, PCA)
    cache.wait(60)
    assert threads == [1] and cache.current(store, PCA).current
