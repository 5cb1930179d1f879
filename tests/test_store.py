"""The Store interface, against both engines: the embedded one and a real Milvus server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgsim.files.filefacts import FileFacts
from imgsim.store import (
    ConcurrentChangeError,
    Item,
    ModelMismatchError,
    Store,
    open_store,
)
from imgsim.store.exports import build_collection, write_exports

NAMES = [f"cat{i % 4}_{i:03d}.jpg" for i in range(40)]


def unit(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def opened(store_spec: str, tmp_path: Path):
    """open(model_id) → a store on this test's collection; two calls are two processes' views."""
    stores: list[Store] = []

    def open_(model_id: str = "m1") -> Store:
        stores.append(open_store(tmp_path, store_spec, model_id))
        return stores[-1]

    yield open_
    for store in stores:
        store.close()


@pytest.fixture
def filled(opened) -> tuple[Store, np.ndarray]:
    store = opened()
    feats = unit(40)
    facts = [FileFacts(100 + i, 5, f"{i:064x}", 7, 9) for i in range(40)]
    build_collection(store, feats, NAMES, "/data", "m1", facts)
    return store, feats


def test_round_trip_and_exact_search(filled) -> None:
    store, feats = filled
    info = store.info()
    assert (info.model_id, info.dim, info.data_dir, store.count()) == ("m1", 8, "/data", 40)
    assert store.categories() == {"cat0": 10, "cat1": 10, "cat2": 10, "cat3": 10}
    hits = store.search(feats[[7, 9]], 3)
    assert [h[0].name for h in hits] == [NAMES[7], NAMES[9]] and hits[0][0].category == "cat3"
    brute = np.sort(np.linalg.norm(feats - feats[7], axis=1))[:3]
    assert np.allclose([h.distance for h in hits[0]], brute, atol=1e-3)


def test_category_filter_returns_only_those_categories(filled) -> None:
    store, feats = filled
    (hits,) = store.search(feats[[0]], 40, categories=["cat1", "cat3"])
    assert len(hits) == 20 and {h.category for h in hits} == {"cat1", "cat3"}
    expected = sorted(
        (float(np.linalg.norm(feats[i] - feats[0])), n)
        for i, n in enumerate(NAMES)
        if n.startswith(("cat1", "cat3"))
    )
    assert [h.name for h in hits[:5]] == [n for _, n in expected[:5]]
    assert store.search(feats[[0]], 5, categories=["nothing"]) == [[]]


def test_facts_vectors_and_hashes(filled) -> None:
    store, feats = filled
    facts = store.facts()
    assert facts[NAMES[3]] == FileFacts(103, 5, f"{3:064x}", 7, 9)
    assert np.allclose(store.vector_with_hash(f"{3:064x}"), feats[3], atol=1e-6)
    assert store.vector_with_hash(f"{99:064x}") is None
    got = {}
    for names, vs in store.iter_vectors(batch=7):
        got.update(zip(names, vs, strict=True))
    assert set(got) == set(NAMES) and np.allclose(got[NAMES[5]], feats[5], atol=1e-6)


def test_changes_are_seen_by_every_view_at_once(filled, opened) -> None:
    store, feats = filled
    other = opened()  # another process (a second worker, the CLI) on the same collection
    assert other.count() == 40
    new = unit(2, seed=5)
    store.add([Item("new_001.jpg", new[0]), Item(NAMES[1], new[1])], "m1")  # one replaced
    assert other.remove([NAMES[2], "not_there.jpg"]) == [NAMES[2]]
    for view in (store, other):
        assert view.count() == 40
        assert view.contains("new_001.jpg") and not view.contains(NAMES[2])
        (hits,) = view.search(new[[1]], 1)
        assert hits[0].name == NAMES[1] and hits[0].distance < 1e-3
        (everything,) = view.search(feats[[2]], 40)
        assert NAMES[2] not in {h.name for h in everything}  # removed: never a result
        assert len({h.name for h in everything}) == 40  # nothing twice


def test_writes_of_another_model_or_dimension_are_refused(filled) -> None:
    store, _ = filled
    with pytest.raises(ModelMismatchError, match="rebuild it"):
        store.add([Item("x_001.jpg", unit(1)[0])], "m2")
    with pytest.raises(ModelMismatchError, match="dimensions"):
        store.add([Item("x_001.jpg", unit(1, d=4)[0])], "m1")
    assert store.count() == 40


def test_a_write_based_on_an_old_state_is_refused(filled, opened) -> None:
    store, _ = filled
    seen = store.generation()
    opened().add([Item("new_001.jpg", unit(1, seed=3)[0])], "m1")
    assert store.generation() != seen
    with pytest.raises(ConcurrentChangeError, match="changed by another process"):
        store.add([Item("new_002.jpg", unit(1, seed=4)[0])], "m1", expected=seen)
    with pytest.raises(ConcurrentChangeError):
        build_collection(store, unit(3), NAMES[:3], "/data", "m1", expected=seen)
    assert store.count() == 41 and not store.contains("new_002.jpg")


def test_a_rebuild_replaces_everything_at_once(filled, opened, tmp_path: Path) -> None:
    store, _ = filled
    other = opened()
    assert other.count() == 40
    build_collection(store, unit(5, seed=9), [f"z_{i}.jpg" for i in range(5)], "/d2", "m1")
    assert other.count() == 5 and other.categories() == {"z": 5}
    assert other.info().data_dir == "/d2"
    assert write_exports(other, tmp_path) == 5
    assert np.load(tmp_path / "triplet_features.npy").shape == (5, 8)


def test_an_empty_store_says_so(opened) -> None:
    store = opened()
    assert store.info() is None and store.count() == 0
    assert store.search(unit(1), 3) == [[]]
    with pytest.raises(ModelMismatchError, match="build it first"):
        store.add([Item("a_001.jpg", unit(1)[0])], "m1")


def test_vectors_by_name(filled) -> None:
    store, feats = filled
    got = store.vectors_of([NAMES[3], "not_there.jpg", NAMES[3], NAMES[30]])
    assert set(got) == {NAMES[3], NAMES[30]}
    assert np.allclose(got[NAMES[3]], feats[3], atol=1e-6)
    assert np.allclose(got[NAMES[30]], feats[30], atol=1e-6)
    assert store.vectors_of([]) == {} and store.vectors_of(["x" * 2000 + ".jpg"]) == {}


def test_listing_pages_by_name_in_every_engine(filled) -> None:
    store, _ = filled
    everything = store.list_images(limit=100)
    assert everything == sorted((n, n.split("_")[0]) for n in NAMES)
    assert store.list_images(offset=5, limit=7) == everything[5:12]
    cat2 = sorted(n for n in NAMES if n.startswith("cat2"))
    assert store.list_images("cat2", 0, 4) == [(n, "cat2") for n in cat2[:4]]
    assert store.list_images("cat2", 8, 4) == [(n, "cat2") for n in cat2[8:]]
    assert store.list_images("cat2", 10, 4) == [] and store.list_images("nothing") == []
    store.remove([cat2[0]])
    store.add([Item("cat2_999.jpg", unit(1, seed=7)[0])], "m1")
    assert [n for n, _ in store.list_images("cat2", 0, 100)] == [*cat2[1:], "cat2_999.jpg"]


def test_deep_pages_walk_by_name_past_milvus_query_window(filled, monkeypatch) -> None:
    # Milvus bounds offset + limit (16,384); a tiny window runs the same keyset walk cheaply.
    from imgsim.store import milvus_store

    monkeypatch.setattr(milvus_store, "QUERY_WINDOW", 6)
    store, _ = filled
    everything = sorted((n, n.split("_")[0]) for n in NAMES)
    for offset, limit in ((0, 6), (4, 5), (13, 6), (35, 6), (39, 3), (40, 3)):
        assert store.list_images(offset=offset, limit=limit) == everything[offset:][:limit]
    cat1 = [(n, "cat1") for n in sorted(NAMES) if n.startswith("cat1")]
    assert store.list_images("cat1", 7, 5) == cat1[7:]


def test_category_counts_follow_changes(filled, opened) -> None:
    store, _ = filled
    assert store.categories()["cat0"] == 10
    store.add([Item("cat0_998.jpg", unit(1, seed=11)[0])], "m1")
    assert store.categories()["cat0"] == 11
    store.remove([NAMES[0], NAMES[4]])
    assert store.categories() == {"cat0": 9, "cat1": 10, "cat2": 10, "cat3": 10}
