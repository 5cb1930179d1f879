"""Tests for imgsim.fileio: writes replace the target only when they complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgsim.fileio import atomic_path, write_text_atomic


class Boom(Exception):
    pass


def test_atomic_path_creates_the_target(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    with atomic_path(target) as tmp:
        assert tmp != target
        assert tmp.parent == tmp_path  # same folder, so the rename stays on one file system
        assert tmp.exists()
        assert not target.exists()  # nothing visible until the block ends
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_atomic_path_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    target.write_text("old")
    with atomic_path(str(target)) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"  # readers still see the old file meanwhile
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]


def test_atomic_path_leaves_old_file_on_exception(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    target.write_text("old")
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_text("half written")
        raise Boom
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]  # no temp file left


def test_atomic_path_exception_without_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "features.npy"
    with pytest.raises(Boom), atomic_path(target):
        raise Boom
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_temp_file_removed_by_the_block_is_fine_on_error(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.unlink()
        raise Boom
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_creates_parent_folders(tmp_path: Path) -> None:
    target = tmp_path / "out" / "checkpoints" / "epoch_1.pt"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x"
    assert list(target.parent.iterdir()) == [target]


def test_atomic_path_temp_names_are_unique(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        first.write_text("first")
        second.write_text("second")
    assert target.read_text() == "first"  # the outer block finishes last and wins
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_write_text_atomic(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("old")
    write_text_atomic(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
