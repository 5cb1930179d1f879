"""Tests for imgsim.core.fileio: writes replace the target only when they complete."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgsim.core.fileio import (
    STALE_TEMP_SECONDS,
    atomic_path,
    clean_stale_temps,
    default_file_mode,
    is_temp_name,
    write_text_atomic,
)


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


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under the umask given by parametrize, restoring the old one after."""
    from imgsim.core import fileio

    old = os.umask(request.param)
    fileio._umask.cache_clear()
    yield request.param
    os.umask(old)
    fileio._umask.cache_clear()


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077], indirect=True)
def test_atomic_writes_follow_the_umask(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "model.pt"
    write_text_atomic(target, "x")
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert default_file_mode() == 0o666 & ~umask


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_clean_stale_temps_removes_only_old_leftovers_of_atomic_path(tmp_path: Path) -> None:
    with pytest.raises(Boom), atomic_path(tmp_path / "triplet_features.npy") as tmp:
        keep_young = tmp_path / ".triplet_index.json.abcd_123.tmp"
        keep_young.write_text("being written by another process")
        old = tmp_path / tmp.name
        raise Boom
    old.write_text("left by a killed writer")  # what kill -9 leaves: atomic_path's own name
    _age(old, STALE_TEMP_SECONDS + 60)
    others = [".hidden.tmp", "photo.tmp", ".a.jpg.abcdefgh.jpg", ".a.jpg.abcdefghi.tmp"]
    for name in others:
        (tmp_path / name).write_text("user file")
        _age(tmp_path / name, STALE_TEMP_SECONDS + 60)
    (tmp_path / "sub").mkdir()
    nested = tmp_path / "sub" / old.name
    nested.write_text("not in this folder")
    _age(nested, STALE_TEMP_SECONDS + 60)

    assert clean_stale_temps(tmp_path) == [old.name]
    assert not old.exists() and keep_young.exists() and nested.exists()
    assert all((tmp_path / name).exists() for name in others)
    assert clean_stale_temps(tmp_path / "missing") == []


def test_is_temp_name_matches_what_atomic_path_creates(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "triplet_index.faiss") as tmp:
        assert is_temp_name(tmp.name)
    assert not is_temp_name("triplet_index.faiss")


@pytest.mark.parametrize("command", ["index", "extract", "serve"])
def test_index_extract_and_serve_clean_stale_temps_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    import imgsim.web
    from imgsim.cli.commands import main

    monkeypatch.setattr(imgsim.web, "serve", lambda **kwargs: None)
    work = tmp_path / "work"
    work.mkdir()
    stale = work / ".triplet_features.npy.k3j4h5g6.tmp"
    stale.write_bytes(b"left by kill -9")
    _age(stale, STALE_TEMP_SECONDS + 60)
    argv = {
        "index": ["index", "--data", str(tmp_path / "none"), "--workdir", str(work)],
        "extract": ["extract", "--data", str(tmp_path / "none"), "--output-dir", str(work)],
        "serve": ["serve", "--workdir", str(work)],
    }[command]
    main(argv)  # index and extract fail (no model): the clean-up came first
    assert not stale.exists()
