"""A work folder remembers its image folder: later commands there need no flags."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from imgsim.cli.commands import main
from imgsim.core.config import WORKFOLDER_FILE
from imgsim.core.workfolder import recall, settle

TINY = [
    "--epochs", "1", "--steps-per-epoch", "2", "--workers", "1", "--threads", "1",
    "--batch-size", "32", "--image-size", "32", "--widths", "8", "--blocks", "1",
    "--head-hidden", "16", "--embedding-dim", "8", "--backbone", "scratch", "--loss", "triplet",
]  # fmt: skip


def test_train_then_extract_then_update_with_no_flags(
    shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["-q", "train", str(shapes_dir), *TINY]) == 0
    assert capsys.readouterr().out.strip().endswith("Next: imgsim extract")
    assert recall(work) == {"data_dir": str(shapes_dir)}
    assert main(["extract", "--workers", "1"]) == 0
    out = capsys.readouterr()
    assert "Embedded 96 images" in out.out and (out.out + out.err).count("Embedded") == 1
    assert out.err.count(f"image folder {shapes_dir}") == 1  # said once
    assert main(["index", "--update"]) == 0
    assert "96 unchanged" in capsys.readouterr().out


def test_workdir_named_from_elsewhere(
    shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    work = tmp_path / "w"
    assert main(["-q", "train", "--data", str(shapes_dir), "--workdir", str(work), *TINY]) == 0
    assert capsys.readouterr().out.strip().endswith(f"Next: imgsim extract --workdir {work}")
    assert main(["-q", "extract", "--workdir", str(work), "--workers", "1"]) == 0
    assert main(["-q", "stats", "--workdir", str(work), "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["total_images"] == 96


def test_settle_records_only_what_exists(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert settle(tmp_path, {"data_dir": str(tmp_path / "missing")}, ["data_dir"]) == {}
    assert not (tmp_path / WORKFOLDER_FILE).exists()  # a typo is not remembered
    settle(tmp_path, {"data_dir": str(tmp_path), "store": "milvus://h:1"}, ["data_dir"])
    with caplog.at_level(logging.INFO, "imgsim"):
        assert settle(tmp_path, {}, ["data_dir", "store"]) == {
            "data_dir": str(tmp_path),
            "store": "milvus://h:1",
        }
    assert "remembered by" in caplog.text
    (tmp_path / WORKFOLDER_FILE).write_text("{not json")
    assert recall(tmp_path) == {}  # unreadable: a warning, never a crash


def test_one_folder_two_spellings(shapes_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["stats", str(shapes_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_images"] == 96
    with pytest.raises(SystemExit):
        main(["stats", str(shapes_dir), "--data", "/elsewhere"])
    assert "two image folders" in capsys.readouterr().err
