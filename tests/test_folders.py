"""The shared folder walk: unreadable folders and symlink loops are skipped with one warning."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import imgsim.folders
from imgsim.data import is_image_name
from imgsim.folders import walk_names


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imgsim.folders, "_warned", set())  # once per process: per test here


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
