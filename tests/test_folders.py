"""The shared folder walk: unreadable folders and symlink loops are skipped with one warning."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import imgsim.files.folders
from imgsim.files.folders import walk_names
from imgsim.images.data import is_image_name


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imgsim.files.folders, "_warned", set())  # once per process: per test here


def deny(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make `folder` unreadable as mode 000 does for a user other than root (tests run as root)."""
    real_scandir, real_stat = os.scandir, os.stat
    locked = os.path.abspath(folder)  # no resolve(): it would stat through the patch

    def scandir(path=".", *args, **kwargs):
        if os.path.abspath(os.fsdecode(path)) == locked:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_scandir(path, *args, **kwargs)

    def stat(path, *args, **kwargs):
        if os.path.dirname(os.path.abspath(os.fsdecode(path))) == locked:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "stat", stat)


def test_unreadable_folders_and_symlink_loops_are_skipped_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a_1.jpg").write_bytes(b"")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "b_1.jpg").write_bytes(b"")
    (tmp_path / "loopdir").symlink_to("loopdir")
    (tmp_path / "loop_1.jpg").symlink_to("loop_1.jpg")
    deny(monkeypatch, tmp_path / "locked")
    with caplog.at_level(logging.WARNING, logger="imgsim"):
        assert walk_names(tmp_path, is_image_name) == ["ok/a_1.jpg"]
        assert walk_names(tmp_path, is_image_name) == ["ok/a_1.jpg"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3, warnings  # once each, though walked twice
    assert any("locked: Permission denied" in w for w in warnings)
    assert any("loopdir: a symlink loop" in w for w in warnings)
    assert any("loop_1.jpg: a symlink loop" in w for w in warnings)


def test_every_command_skips_an_unreadable_folder_and_a_loop(
    make_workdir,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from imgsim.cli.commands import main

    work = make_workdir(shapes=("circle", "square", "triangle", "stripes"))
    data = work.parent / "data"
    (data / "locked").mkdir()
    (data / "locked" / "x_1.png").write_bytes((data / "circle_00001.png").read_bytes())
    (data / "loopdir").symlink_to("loopdir")
    deny(monkeypatch, data / "locked")
    d, w = str(data), str(work)
    out = str(tmp_path / "trained")
    commands = {
        "stats": ["stats", "--data", d],
        "index": ["index", "--data", d, "--workdir", w],
        "update": ["index", "--update", "--data", d, "--workdir", w],
        "tune-threshold": ["tune-threshold", "--data", d, "--model", f"{w}/triplet_base_final.pt",
                           "--workers", "1"],
        "train": ["train", "--data", d, "--output-dir", out, "--epochs", "1",
                  "--steps-per-epoch", "1", "--batch-size", "16", "--m-per-class", "4",
                  "--workers", "1", "--image-size", "32", "--embedding-dim", "16"],
    }  # fmt: skip
    printed = ""
    for command, args in commands.items():
        imgsim.files.folders._warned.clear()
        assert main(args) == 0, command
        out, err = capsys.readouterr()
        printed += out
        warned = [line for line in err.splitlines() if "skipped" in line]
        assert len(warned) == 2, (command, warned)  # one each, however often walked
        assert any("locked: Permission denied" in m for m in warned), (command, warned)
        assert any("loopdir: a symlink loop" in m for m in warned), (command, warned)
    assert "Indexed 32 images" in printed  # x_1.png, in the locked folder, is not one


def test_the_rename_journal_check_skips_an_unreadable_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from imgsim.files.rename_journal import check_folder

    (tmp_path / "locked").mkdir()
    (tmp_path / "open").mkdir()
    deny(monkeypatch, tmp_path / "locked")
    with caplog.at_level(logging.WARNING, logger="imgsim"):
        check_folder(tmp_path)  # was: PermissionError checking for a journal in it
    assert [r.getMessage().split("/")[-1] for r in caplog.records] == ["locked: Permission denied"]
