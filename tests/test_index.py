"""Tests for the index: files, round trip, adds and removals, crashes during saves, HNSW."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from imgsim import vectors
from imgsim.errors import EmbeddingsNotLoadedError
from imgsim.index import EmbeddingIndex, IndexMeta, ModelMismatchError, load_index, save_index
from imgsim.manifest import Manifest, StaleIndexError


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_round_trip_and_exact_search(tmp_path: Path) -> None:
    feats = _unit(50, 8)
    names = [f"cat{i % 3}_{i:03d}.jpg" for i in range(50)]
    save_index(tmp_path, feats, names, "data", "abc")
    index = load_index(tmp_path)
    assert len(index) == 50 and index.dim == 8 and index.meta.model_id == "abc"
    assert index.categories[4] == "cat1"
    dist, pos = index.search(feats[[7, 9]], 3)
    assert pos[:, 0].tolist() == [7, 9] and np.allclose(dist[:, 0], 0, atol=1e-3)
    brute = np.linalg.norm(feats - feats[7], axis=1)
    assert np.allclose(dist[0], np.sort(brute)[:3], atol=1e-4)


def test_files_are_the_originals(tmp_path: Path) -> None:
    save_index(tmp_path, _unit(4, 8), ["a_1.jpg", "a_2.jpg", "b_1.jpg", "b_2.jpg"], "d", "m")
    assert np.load(tmp_path / "triplet_features.npy").dtype == np.float32
    assert np.load(tmp_path / "triplet_images.npy").tolist()[2] == "b_1.jpg"


def test_missing_files_say_run_extraction(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingsNotLoadedError, match=r"No embeddings loaded.*run extraction"):
        load_index(tmp_path)


def test_mismatched_original_files_are_refused(tmp_path: Path) -> None:
    save_index(tmp_path, _unit(4, 8), ["a_1.jpg", "a_2.jpg", "b_1.jpg", "b_2.jpg"], "d", "m")
    (tmp_path / "triplet_manifest.sqlite").unlink()  # only the original's files are left
    np.save(tmp_path / "triplet_images.npy", np.array(["a_1.jpg"]))
    with pytest.raises(EmbeddingsNotLoadedError, match="do not match"):
        load_index(tmp_path)


def test_failed_save_keeps_the_previous_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_index(tmp_path, _unit(4, 8), ["a_1.jpg", "a_2.jpg", "b_1.jpg", "b_2.jpg"], "d", "m")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_index(tmp_path, _unit(9, 8), [f"c_{i}.jpg" for i in range(9)], "d", "m2")
    monkeypatch.undo()
    assert len(load_index(tmp_path)) == 4
    assert not list(tmp_path.glob("*.tmp"))


NAMES = [f"cat{i % 4}_{i:03d}.jpg" for i in range(40)]


def _saved(tmp_path: Path, n: int = 40, kind: str | None = None) -> np.ndarray:
    feats = _unit(n, 8)
    save_index(tmp_path, feats, NAMES[:n], str(tmp_path / "data"), "m1", kind=kind)
    return feats


def _same(a, b) -> None:
    """Two indexes hold the same images, vectors and answers."""
    names_a, vecs_a = a.vectors()
    names_b, vecs_b = b.vectors()
    assert names_a == names_b and np.array_equal(vecs_a, vecs_b)
    assert a.categories == b.categories and a.meta.model_id == b.meta.model_id
    dist_a, ids_a = a.search(vecs_a[:5], 4)
    dist_b, ids_b = b.search(vecs_b[:5], 4)
    assert [[a.name_of(i) for i in row] for row in ids_a] == [
        [b.name_of(i) for i in row] for row in ids_b
    ]
    assert np.allclose(dist_a, dist_b)


def test_writes_faiss_file_and_manifest_beside_the_arrays(tmp_path: Path) -> None:
    _saved(tmp_path)
    for name in ("triplet_index.faiss", "triplet_manifest.sqlite", "triplet_index.json"):
        assert (tmp_path / name).is_file()
    rows = sqlite3.connect(tmp_path / "triplet_manifest.sqlite").execute(
        "SELECT path, category, vector_id, model_id, length(vector) FROM images ORDER BY 3"
    )
    assert next(rows) == ("cat0_000.jpg", "cat0", 0, "m1", 8 * 4)


def test_reload_equals_before(tmp_path: Path) -> None:
    feats = _saved(tmp_path)
    index = load_index(tmp_path)
    index.add_images(["new_001.jpg", "cat1_001.jpg"], _unit(2, 8, seed=5))  # one is replaced
    assert index.remove_images(["cat2_002.jpg", "not_there.jpg"]) == ["cat2_002.jpg"]
    assert len(index) == 40 and "new_001.jpg" in index and "cat2_002.jpg" not in index
    _same(index, load_index(tmp_path))
    _, ids = index.search(feats[[2]], 40)  # everything: the removed image is never there
    assert "cat2_002.jpg" not in {index.name_of(i) for i in ids[0]}


def test_adds_are_replayed_until_the_faiss_file_is_rewritten(tmp_path: Path) -> None:
    _saved(tmp_path)
    before = (tmp_path / "triplet_index.faiss").read_bytes()
    index = load_index(tmp_path)
    index.add_images(["new_001.jpg"], _unit(1, 8, seed=3))
    assert (tmp_path / "triplet_index.faiss").read_bytes() == before  # one SQLite commit only
    _same(index, load_index(tmp_path))
    index.checkpoint()
    assert (tmp_path / "triplet_index.faiss").read_bytes() != before
    _same(index, load_index(tmp_path))


def test_a_faiss_file_the_manifest_does_not_name_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _saved(tmp_path)
    before = load_index(tmp_path)
    other = tmp_path / "other"
    save_index(other, _unit(40, 8, seed=9), NAMES, "d", "m1")
    (tmp_path / "triplet_index.faiss").write_bytes((other / "triplet_index.faiss").read_bytes())
    _same(before, load_index(tmp_path))
    assert "does not match the manifest" in caplog.text


@pytest.mark.parametrize("step", ["faiss_file", "manifest"])
def test_a_crash_during_a_full_save_leaves_the_previous_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    _saved(tmp_path)
    before = load_index(tmp_path)

    def crash(*args, **kwargs):
        raise OSError("power cut")

    target = (vectors, "write_file") if step == "faiss_file" else (Manifest, "replace_all")
    monkeypatch.setattr(*target, crash)
    with pytest.raises(OSError, match="power cut"):
        save_index(tmp_path, _unit(30, 8, seed=4), NAMES[:30], "d", "m2")
    monkeypatch.undo()
    _same(before, load_index(tmp_path))


def test_a_crash_while_checkpointing_keeps_every_committed_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _saved(tmp_path)
    index = load_index(tmp_path)
    index.add_images(["new_001.jpg"], _unit(1, 8, seed=3))
    real_write = vectors.write_file

    def write_then_crash(path, data):
        real_write(path, data)
        raise OSError("power cut")  # after the rename, before the manifest names only it

    monkeypatch.setattr(vectors, "write_file", write_then_crash)
    with pytest.raises(OSError, match="power cut"):
        index.checkpoint()
    monkeypatch.undo()
    _same(index, load_index(tmp_path))


KILL_DURING_SAVE = """
import os, sys, numpy as np
from imgsim import index, vectors
def half_write(path, data):
    with open(path, "wb") as fh:  # no rename, no cleanup: the process dies mid-write
        fh.write(memoryview(data)[: len(data) // 2])
    os._exit(3)
def after_rename(path, data):
    real(path, data)
    os._exit(3)
real = vectors.write_file
vectors.write_file = half_write if sys.argv[2] == "half" else after_rename
rng = np.random.default_rng(1)
x = rng.normal(size=(25, 8)).astype(np.float32)
index.save_index(sys.argv[1], x / np.linalg.norm(x, axis=1, keepdims=True),
                 [f"z_{i}.jpg" for i in range(25)], "d", "m9")
"""


@pytest.mark.parametrize("moment", ["half", "after_rename"])
def test_a_killed_process_during_save_leaves_a_loadable_index(tmp_path: Path, moment: str) -> None:
    _saved(tmp_path)
    before = load_index(tmp_path)
    child = subprocess.run(
        [sys.executable, "-c", KILL_DURING_SAVE, str(tmp_path), moment], capture_output=True
    )
    assert child.returncode == 3, child.stderr.decode()
    _same(before, load_index(tmp_path))


def _clustered(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16)).astype(np.float32)
    x = centres[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, 16)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_hnsw_recall_on_a_small_set_and_same_result_shape(tmp_path: Path) -> None:
    x, queries = np.split(_clustered(3200), [3000])  # queries from the same clusters
    names = [f"c_{i}.jpg" for i in range(3000)]
    meta = IndexMeta("d", "m", 16, 3000, "")
    flat = EmbeddingIndex.from_vectors(x, names, meta, kind="flat")
    hnsw = EmbeddingIndex.from_vectors(x, names, IndexMeta("d", "m", 16, 3000, ""), kind="hnsw")
    assert (flat.kind, hnsw.kind) == ("flat", "hnsw")
    exact_d, exact = flat.search(queries, 10)
    approx_d, approx = hnsw.search(queries, 10)
    assert approx.shape == exact.shape == (200, 10) and approx_d.dtype == exact_d.dtype
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.95
    assert np.all(np.diff(approx_d, axis=1) >= 0)  # ascending, true (not squared) distances
    assert np.allclose(approx_d[:, 0], np.linalg.norm(x[approx[:, 0]] - queries, axis=1))


def test_auto_switches_to_hnsw_past_the_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vectors, "HNSW_MIN_VECTORS", 50)
    _saved(tmp_path)
    index = load_index(tmp_path)
    assert index.kind == "flat" and vectors.resolve_kind("auto", 50) == "hnsw"
    index.add_images([f"more_{i}.jpg" for i in range(15)], _unit(15, 8, seed=2))
    assert index.kind == "hnsw" and load_index(tmp_path).kind == "hnsw"
    _same(index, load_index(tmp_path))


def test_the_kind_can_be_forced(tmp_path: Path) -> None:
    _saved(tmp_path, kind="hnsw")
    index = load_index(tmp_path)
    assert index.kind == "hnsw" and index.requested_kind == "hnsw"
    index.rebuild("flat")
    assert load_index(tmp_path).kind == "flat"


def test_many_removals_renumber_the_index(tmp_path: Path) -> None:
    feats = _saved(tmp_path)
    index = load_index(tmp_path)
    index.remove_images(NAMES[:20])
    assert len(index) == 20 and index._faiss.ntotal == 20  # dead ids are gone
    dist, ids = index.search(feats[[25]], 1)
    assert index.name_of(ids[0, 0]) == NAMES[25] and dist[0, 0] < 1e-3
    _same(index, load_index(tmp_path))


def test_the_originals_files_alone_get_a_manifest_on_the_first_change(tmp_path: Path) -> None:
    _saved(tmp_path)
    for name in ("triplet_manifest.sqlite", "triplet_index.faiss"):
        (tmp_path / name).unlink()
    index = load_index(tmp_path)
    index.remove_images(["cat0_000.jpg"])
    assert (tmp_path / "triplet_manifest.sqlite").is_file()
    _same(index, load_index(tmp_path))


def test_vectors_of_another_model_are_refused(tmp_path: Path) -> None:
    _saved(tmp_path)
    with pytest.raises(ModelMismatchError, match="rebuild it with that model"):
        load_index(tmp_path).add_images(["x_1.jpg"], _unit(1, 8), model_id="m2")


def test_searches_and_one_writer_in_threads(tmp_path: Path) -> None:
    feats = _saved(tmp_path)
    index = load_index(tmp_path)
    errors: list[BaseException] = []

    def search() -> None:
        try:
            for _ in range(100):
                # NAMES[39] is never removed; renumbering must not mislabel it.
                name, _, distance = index.search_hits(feats[[39]], 5)[0][0]
                assert name == NAMES[39] and distance < 1e-3
        except BaseException as exc:  # reported below: pytest does not see thread errors
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(20):
        index.add_images([f"t_{i}.jpg"], _unit(1, 8, seed=100 + i))
        index.remove_images([NAMES[i]])
    for t in threads:
        t.join()
    assert not errors and len(index) == 40


def test_a_writer_with_a_stale_index_is_refused(tmp_path: Path) -> None:
    _saved(tmp_path)
    first, second = load_index(tmp_path), load_index(tmp_path)  # e.g. a server and the CLI
    first.add_images(["new_001.jpg"], _unit(1, 8, seed=3))
    with pytest.raises(StaleIndexError, match="changed by another process"):
        second.add_images(["new_002.jpg"], _unit(1, 8, seed=4))
    with pytest.raises(StaleIndexError):
        second.rebuild()
    assert "new_001.jpg" in load_index(tmp_path) and "new_002.jpg" not in load_index(tmp_path)
    _same(first, load_index(tmp_path))
