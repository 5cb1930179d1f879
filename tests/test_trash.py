"""Tests for imgsim.files.trash: removed files wait in the work folder and can always come back."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from imgsim.cli.commands import main
from imgsim.core import fileio
from imgsim.core.config import TRASH_DIR, TRASH_JOURNAL
from imgsim.core.errors import TrashError, UnsafePathError
from imgsim.files import trash
from imgsim.files.trash import empty, list_trash, move_to_trash, restore


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(workdir, data folder) with a few images, one in a category folder."""
    work, data = tmp_path / "work", tmp_path / "data"
    (data / "hats").mkdir(parents=True)
    work.mkdir()
    (data / "shirt_001.jpg").write_bytes(b"shirt one")
    (data / "shirt_002.jpg").write_bytes(b"shirt two")
    (data / "hats" / "a.png").write_bytes(b"a hat")
    return work, data


def test_move_records_and_restore_puts_back(dirs: tuple[Path, Path]) -> None:
    work, data = dirs
    item = move_to_trash(work, data, "hats/a.png")
    assert not (data / "hats" / "a.png").exists()
    assert Path(item.stored).read_bytes() == b"a hat"
    assert Path(item.stored).is_relative_to((work / TRASH_DIR).resolve())
    assert item.name == "hats/a.png" and item.data_dir == str(data.resolve())
    assert item.size == 5 and item.sha256 == hashlib.sha256(b"a hat").hexdigest()
    assert abs(item.trashed_at - time.time()) < 60
    assert list_trash(work) == [item]

    assert restore(work, "hats/a.png") == data.resolve() / "hats" / "a.png"
    assert (data / "hats" / "a.png").read_bytes() == b"a hat"
    assert list_trash(work) == []
    assert [p.name for p in (work / TRASH_DIR).iterdir() if not p.name.startswith(".")] == [
        TRASH_JOURNAL
    ]


def test_the_journal_is_written_before_the_file_moves(
    dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    work, data = dirs
    seen = []

    def crash(source: Path, target: Path) -> None:
        seen.append((work / TRASH_DIR / TRASH_JOURNAL).read_text())
        raise KeyboardInterrupt  # a crash between the journal and the move

    monkeypatch.setattr(trash, "_move", crash)
    with pytest.raises(KeyboardInterrupt):
        move_to_trash(work, data, "shirt_001.jpg")
    assert '"shirt_001.jpg"' in seen[0]
    assert (data / "shirt_001.jpg").read_bytes() == b"shirt one"  # still where it was
    assert list_trash(work) == []  # and not listed as trashed


def test_same_name_twice_never_overwrites_and_restores_newest_first(
    dirs: tuple[Path, Path],
) -> None:
    work, data = dirs
    first = move_to_trash(work, data, "shirt_001.jpg")
    (data / "shirt_001.jpg").write_bytes(b"second version")
    second = move_to_trash(work, data, "shirt_001.jpg")
    assert first.id != second.id and first.stored != second.stored
    assert Path(first.stored).read_bytes() == b"shirt one"
    assert restore(work, "shirt_001.jpg").read_bytes() == b"second version"
    with pytest.raises(TrashError, match="already exists"):
        restore(work, "shirt_001.jpg")  # the older one would overwrite the restored file
    assert (data / "shirt_001.jpg").read_bytes() == b"second version"
    assert list_trash(work) == [first]
    (data / "shirt_001.jpg").rename(data / "kept_001.jpg")
    assert restore(work, first.id).read_bytes() == b"shirt one"


def test_restore_by_original_path_and_unknown_names(dirs: tuple[Path, Path]) -> None:
    work, data = dirs
    move_to_trash(work, data, "hats/a.png")
    with pytest.raises(TrashError, match="imgsim trash list"):
        restore(work, "hats/b.png")
    assert restore(work, str(data.resolve() / "hats" / "a.png")).exists()


def test_restore_recreates_a_removed_category_folder(dirs: tuple[Path, Path]) -> None:
    work, data = dirs
    move_to_trash(work, data, "hats/a.png")
    (data / "hats").rmdir()
    assert restore(work, "hats/a.png").read_bytes() == b"a hat"


def test_missing_and_escaping_names_are_refused(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    work, data = dirs
    with pytest.raises(TrashError, match="no file"):
        move_to_trash(work, data, "nope_001.jpg")
    (tmp_path / "outside.jpg").write_bytes(b"x")
    with pytest.raises(UnsafePathError):
        move_to_trash(work, data, "../outside.jpg")
    assert (tmp_path / "outside.jpg").exists()


def test_moves_across_file_systems(
    dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    work, data = dirs
    real_link = os.link

    def cross_device(src: str, dst: str, **kwargs: object) -> None:
        if not str(dst).endswith(".partial") and not str(src).endswith(".partial"):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_link(src, dst, **kwargs)

    monkeypatch.setattr(os, "link", cross_device)
    item = move_to_trash(work, data, "shirt_002.jpg")
    assert not (data / "shirt_002.jpg").exists()
    assert Path(item.stored).read_bytes() == b"shirt two"
    assert not list(Path(item.stored).parent.glob("*.partial"))
    assert restore(work, item.id).read_bytes() == b"shirt two"


def test_a_failed_copy_keeps_the_original(
    dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    work, data = dirs

    def no_link(src: str, dst: str, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def disk_full(src: object, dst: object, length: int = 0) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(fileio.shutil, "copyfileobj", disk_full)
    with pytest.raises(OSError, match="No space"):
        move_to_trash(work, data, "shirt_002.jpg")
    assert (data / "shirt_002.jpg").read_bytes() == b"shirt two"


def test_empty_all_or_older_than(dirs: tuple[Path, Path]) -> None:
    work, data = dirs
    old = move_to_trash(work, data, "shirt_001.jpg")
    new = move_to_trash(work, data, "shirt_002.jpg")
    journal = work / TRASH_DIR / TRASH_JOURNAL
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    records[0]["trashed_at"] -= 3 * 86400
    journal.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert empty(work, older_than_days=2) == 1
    assert not Path(old.stored).exists() and [i.id for i in list_trash(work)] == [new.id]
    assert empty(work) == 1
    assert list_trash(work) == [] and empty(work) == 0
    with pytest.raises(TrashError):
        empty(work, older_than_days=-1)
    assert empty(work.parent / "no-workdir") == 0


def test_a_damaged_journal_line_hides_nothing_else(dirs: tuple[Path, Path]) -> None:
    work, data = dirs
    move_to_trash(work, data, "shirt_001.jpg")
    with open(work / TRASH_DIR / TRASH_JOURNAL, "a") as fh:
        fh.write('{"event": "trashed", "id": "cut sho')
    move_to_trash(work, data, "shirt_002.jpg")
    assert [i.name for i in list_trash(work)] == ["shirt_001.jpg", "shirt_002.jpg"]


def test_cli_list_restore_empty(dirs: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    work, data = dirs
    move_to_trash(work, data, "hats/a.png")
    move_to_trash(work, data, "shirt_001.jpg")
    assert main(["trash", "--workdir", str(work), "list"]) == 0
    out = capsys.readouterr().out
    assert "hats/a.png" in out and "2 files in the trash" in out
    assert main(["trash", "list", "--json", "--workdir", str(work)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [i["name"] for i in listed] == ["hats/a.png", "shirt_001.jpg"]
    assert set(listed[0]) >= {"id", "name", "data_dir", "trashed", "size", "sha256"}

    assert main(["trash", "--workdir", str(work), "restore", "hats/a.png"]) == 0
    assert (data / "hats" / "a.png").exists()
    (data / "shirt_001.jpg").write_bytes(b"new")
    assert main(["trash", "--workdir", str(work), "restore", "shirt_001.jpg"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["trash", "--workdir", str(work), "empty", "--older-than", "1"]) == 0
    assert "Deleted 0 files" in capsys.readouterr().out
    assert main(["trash", "--workdir", str(work), "empty"]) == 0
    assert "Deleted 1 file " in capsys.readouterr().out
    assert (data / "shirt_001.jpg").read_bytes() == b"new"
