"""The embedded engine's own promises: the SQLite database is the truth, FAISS only its cache."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from imgsim.core.errors import EmbeddingsNotLoadedError
from imgsim.store import Item, open_store, vectors
from imgsim.store.exports import build_collection, write_exports
from imgsim.store.faiss_store import FaissStore

from .test_store import NAMES, unit


def fill(work: Path, n: int = 40, kind: str | None = None) -> np.ndarray:
    feats = unit(n)
    with open_store(work) as store:
        build_collection(store, feats, NAMES[:n], work / "data", "m1", kind=kind)
        store.flush()
    return feats


def answers(store: FaissStore, queries: np.ndarray) -> list[list[tuple[str, float]]]:
    return [[(h.name, round(h.distance, 4)) for h in row] for row in store.search(queries, 5)]


def test_one_database_holds_names_facts_and_vectors(tmp_path: Path) -> None:
    fill(tmp_path)
    rows = sqlite3.connect(tmp_path / "triplet_manifest.sqlite").execute(
        "SELECT path, category, model_id, length(vector) FROM images ORDER BY vector_id"
    )
    assert next(rows) == ("cat0_000.jpg", "cat0", "m1", 8 * 4)
    assert (tmp_path / "triplet_index.faiss").is_file()


def test_the_cache_file_is_adopted_and_caught_up(tmp_path: Path) -> None:
    feats = fill(tmp_path)
    cache = (tmp_path / "triplet_index.faiss").read_bytes()
    with open_store(tmp_path) as store:
        store.add([Item("new_001.jpg", unit(1, seed=3)[0])], "m1")
        store.remove([NAMES[0]])
        expected = answers(store, feats[:5])
    assert (tmp_path / "triplet_index.faiss").read_bytes() == cache  # two SQLite commits only
    with open_store(tmp_path) as fresh:
        assert answers(fresh, feats[:5]) == expected and fresh.count() == 40


def test_a_missing_damaged_or_foreign_cache_costs_time_not_answers(tmp_path: Path) -> None:
    feats = fill(tmp_path)
    with open_store(tmp_path) as store:
        expected = answers(store, feats[:5])
    other = tmp_path / "other"
    fill(other)
    cache = tmp_path / "triplet_index.faiss"
    with open_store(other) as store:  # same names, other vectors: a foreign file
        store.add([Item("x_001.jpg", unit(1, seed=8)[0])], "m1")
        store.flush()
    for content in [(other / "triplet_index.faiss").read_bytes(), b"garbage", None]:
        if content is None:
            cache.unlink()
        else:
            cache.write_bytes(content)
        with open_store(tmp_path) as store:
            assert answers(store, feats[:5]) == expected


KILLED_WHILE_CACHING = """
import os, sys
from imgsim.store import vectors
from imgsim.store import Item, open_store
import numpy as np
def half_write(path, data):
    with open(path, "wb") as fh:  # no rename, no cleanup: the process dies mid-write
        fh.write(memoryview(data)[: len(data) // 2])
    os._exit(3)
vectors.write_file = half_write
store = open_store(sys.argv[1])
store.add([Item("new_001.jpg", np.ones(8, np.float32) / 8**0.5)], "m1")
store.flush()
"""


def test_a_process_killed_while_writing_the_cache_loses_nothing(tmp_path: Path) -> None:
    feats = fill(tmp_path)
    child = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_CACHING, str(tmp_path)], capture_output=True
    )
    assert child.returncode == 3, child.stderr.decode()
    with open_store(tmp_path) as store:
        assert store.count() == 41 and store.contains("new_001.jpg")
        assert store.search(feats[[4]], 1)[0][0].name == NAMES[4]


def clustered(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16)).astype(np.float32)
    x = centres[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, 16)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_hnsw_recall_and_distances(tmp_path: Path) -> None:
    x, queries = np.split(clustered(3200), [3000])
    names = [f"c{i % 7}_{i}.jpg" for i in range(3000)]
    results = {}
    for kind in ("flat", "hnsw"):
        with open_store(tmp_path / kind) as store:
            build_collection(store, x, names, tmp_path, "m", kind=kind)
            store.wait()
            assert vectors.kind_of(store._index) == kind
            results[kind] = store.search(queries, 10)
    recall = np.mean(
        [
            len({h.name for h in a} & {h.name for h in e}) / 10
            for a, e in zip(results["hnsw"], results["flat"], strict=True)
        ]
    )
    assert recall >= 0.95
    assert all(np.all(np.diff([h.distance for h in row]) >= 0) for row in results["hnsw"])


def test_category_filters_on_hnsw_match_a_brute_force_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seven large categories (14 % each: the graph walk skips other ids through the bitmap)
    # and one tiny one (2 %, under EXACT_FILTER_FRACTION: searched exactly over its vectors).
    x, queries = np.split(clustered(3100), [3000])
    names = [f"tiny_{i}.jpg" if i % 50 == 0 else f"c{i % 7}_{i}.jpg" for i in range(3000)]
    with open_store(tmp_path) as store:
        build_collection(store, x, names, tmp_path, "m", kind="hnsw")
        store.wait()
        store.remove([names[50]])  # a dead vector of the tiny category must stay out
        assert vectors.kind_of(store._index) == "hnsw" and store.count() == 2999
        exact_calls = []
        real_exact = store._exact
        monkeypatch.setattr(store, "_exact", lambda *a: exact_calls.append(1) or real_exact(*a))
        for wanted, exact in ((["c3"], False), (["tiny"], True), (["c1", "tiny"], False)):
            found = store.search(queries, 10, categories=wanted)
            assert bool(exact_calls) == exact, wanted
            exact_calls.clear()
            keep = [i for i, n in enumerate(names) if n.split("_")[0] in wanted and i != 50]
            near = np.argsort(((x[keep][None] - queries[:, None]) ** 2).sum(-1), axis=1)[:, :10]
            recall = np.mean(
                [
                    len({h.name for h in row} & {names[keep[j]] for j in best}) / 10
                    for row, best in zip(found, near, strict=True)
                ]
            )
            assert all(len(row) == 10 for row in found), wanted  # k of them, not k cut down
            assert {h.name.split("_")[0] for row in found for h in row} <= set(wanted)
            assert recall >= (1.0 if exact else 0.95), (wanted, recall)


def test_past_the_threshold_hnsw_is_built_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vectors, "HNSW_MIN_VECTORS", 50)
    feats = fill(tmp_path)
    with open_store(tmp_path) as store:
        assert vectors.kind_of(store._index) == "flat"
        built = threading.Event()
        real_build = vectors.build

        def slow_build(*args, **kwargs):  # the build waits; searches must not
            built.wait(10)
            return real_build(*args, **kwargs)

        monkeypatch.setattr(vectors, "build", slow_build)
        store.add([Item(f"more_{i}.jpg", v) for i, v in enumerate(unit(15, seed=2))], "m1")
        assert store.search(feats[[3]], 1)[0][0].name == NAMES[3]  # the old index answers
        built.set()
        store.wait()
        assert vectors.kind_of(store._index) == "hnsw" and store.count() == 55
    with open_store(tmp_path) as store:  # the cache written after the build is adopted
        assert vectors.kind_of(store._index) == "hnsw"


def test_many_removals_compact_the_index(tmp_path: Path) -> None:
    feats = fill(tmp_path)
    with open_store(tmp_path) as store:
        store.remove(NAMES[:20])
        store.wait()
        assert store._index.ntotal == 20 and not store._dead
        hit = store.search(feats[[25]], 1)[0][0]
        assert hit.name == NAMES[25] and hit.distance < 1e-3


def test_the_kind_can_be_forced(tmp_path: Path) -> None:
    fill(tmp_path, kind="hnsw")
    with open_store(tmp_path) as store:
        store.wait()
        assert vectors.kind_of(store._index) == "hnsw"
        store.set_kind("flat")
        store.wait()
        assert vectors.kind_of(store._index) == "flat"


def test_a_version_1_manifest_is_migrated(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "triplet_manifest.sqlite")
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE images (path TEXT PRIMARY KEY, category TEXT NOT NULL, size INTEGER,"
        " mtime_ns INTEGER, sha256 TEXT, vector_id INTEGER NOT NULL, model_id TEXT NOT NULL,"
        " vector BLOB NOT NULL);"
    )
    feats = unit(3)
    rows = [(f"a_{i}.jpg", "a", 10, 20, "h", i, "m1", feats[i].tobytes()) for i in range(3)]
    db.executemany("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    meta = {"model_id": '"m1"', "dim": "8", "data_dir": '"/d"', "generation": "4"}
    db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    db.commit()
    db.close()
    with open_store(tmp_path) as store:
        assert store.count() == 3 and store.info().model_id == "m1"
        assert store.search(feats[[2]], 1)[0][0].name == "a_2.jpg"
        store.add([Item("b_1.jpg", unit(1, seed=1)[0])], "m1")
        assert store.count() == 4


def test_the_originals_arrays_alone_are_imported_once(tmp_path: Path) -> None:
    feats = fill(tmp_path)
    with open_store(tmp_path) as store:
        write_exports(store, tmp_path)
    for name in ("triplet_manifest.sqlite", "triplet_index.faiss"):
        (tmp_path / name).unlink()
    with open_store(tmp_path) as store:
        assert store.count() == 40 and store.search(feats[[1]], 1)[0][0].name == NAMES[1]
    np.save(tmp_path / "triplet_images.npy", np.array(["a_1.jpg"]))
    (tmp_path / "triplet_manifest.sqlite").unlink()
    with pytest.raises(EmbeddingsNotLoadedError, match="do not match"):
        open_store(tmp_path)


def test_searches_and_writers_in_threads(tmp_path: Path) -> None:
    feats = fill(tmp_path)
    errors: list[BaseException] = []
    with open_store(tmp_path) as store, open_store(tmp_path) as writer:

        def search() -> None:
            try:
                for _ in range(100):
                    hit = store.search(feats[[39]], 5)[0][0]  # NAMES[39] is never removed
                    assert hit.name == NAMES[39] and hit.distance < 1e-3
            except BaseException as exc:  # reported below: pytest does not see thread errors
                errors.append(exc)

        threads = [threading.Thread(target=search) for _ in range(2)]
        for t in threads:
            t.start()
        for i in range(20):
            writer.add([Item(f"t_{i}.jpg", unit(1, seed=100 + i)[0])], "m1")
            writer.remove([NAMES[i]])
        for t in threads:
            t.join()
        store.wait()
        assert not errors and store.count() == 40
