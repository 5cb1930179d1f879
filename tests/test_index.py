"""Tests for the index files: round trip, atomic writes, mismatches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgsim.errors import EmbeddingsNotLoadedError
from imgsim.index import load_index, save_index


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


def test_mismatched_files_are_refused(tmp_path: Path) -> None:
    save_index(tmp_path, _unit(4, 8), ["a_1.jpg", "a_2.jpg", "b_1.jpg", "b_2.jpg"], "d", "m")
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
