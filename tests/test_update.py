"""Tests for `imgsim index [--update]`: only new and changed files are embedded."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import imgsim.embed.extract
import imgsim.embed.update
from imgsim.cli.commands import main
from imgsim.core.config import ExtractConfig
from imgsim.embed.update import update_index
from imgsim.model.network import load_model, save_model
from imgsim.search.searcher import Searcher
from imgsim.store import open_store


@pytest.fixture
def workdir(make_workdir) -> Path:
    """A workdir with the trained model and no index, over a copy of shape images."""
    return make_workdir()


def _vectors(work: Path) -> tuple[list[str], object]:
    import numpy as np

    with open_store(work) as store:
        parts = list(store.iter_vectors())
    return [n for names, _ in parts for n in names], np.concatenate([v for _, v in parts])


def _config(work: Path) -> ExtractConfig:
    return ExtractConfig(
        data_dir=str(work.parent / "data"),
        output_dir=str(work),
        model_path=str(work / "triplet_base_final.pt"),
        workers=1,
    )


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the images run through the model."""
    names: list[str] = []
    real = imgsim.embed.update.embed_records

    def spy(model, size, records, *args, **kwargs):
        names.extend(r.name for r in records)
        return real(model, size, records, *args, **kwargs)

    monkeypatch.setattr(imgsim.embed.update, "embed_records", spy)
    monkeypatch.setattr(imgsim.embed.extract, "embed_records", spy)  # full rebuilds embed there
    return names


def test_update_embeds_only_new_and_changed_files(
    workdir: Path, shapes_dir: Path, embedded: list[str]
) -> None:
    first = update_index(_config(workdir), progress=False)
    assert first.full and "No index" in first.reason and first.total == 24
    embedded.clear()
    data = workdir.parent / "data"
    shutil.copy(shapes_dir / "stripes_00001.png", data / "stripes_00001.png")  # new
    shutil.copy(shapes_dir / "stripes_00002.png", data / "stripes_00002.png")  # new
    (data / "circle_00001.png").unlink()  # deleted
    shutil.copy(shapes_dir / "square_00020.png", data / "square_00002.png")  # changed content
    os.utime(data / "square_00003.png", ns=(1, 1))  # new time, same content
    (data / "triangle_00001.png").rename(data / "triangle_09999.png")  # moved

    result = update_index(_config(workdir), progress=False)

    assert sorted(embedded) == ["square_00002.png", "stripes_00001.png", "stripes_00002.png"]
    assert (result.embedded, result.reused, result.removed) == (3, 1, 2)
    assert result.unchanged == 21 and result.total == 25 and not result.full
    with open_store(workdir) as store:
        assert not store.contains("circle_00001.png") and store.contains("triangle_09999.png")
        assert store.facts()["square_00003.png"].mtime_ns == 1
    searcher = Searcher.from_workdir(workdir)
    hits = searcher.search(shapes_dir / "circle_00001.png", top_k=25)
    assert "circle_00001.png" not in {h.filename for h in hits}  # deleted: never in results
    assert searcher.search(data / "square_00002.png", top_k=1)[0].filename == "square_00002.png"


def test_update_without_changes_embeds_nothing(workdir: Path, embedded: list[str]) -> None:
    update_index(_config(workdir), progress=False)
    embedded.clear()
    before = _vectors(workdir)
    result = update_index(_config(workdir), progress=False)
    assert embedded == [] and result.unchanged == 24 and result.embedded == 0
    after = _vectors(workdir)
    assert before[0] == after[0] and (before[1] == after[1]).all()


def test_a_no_op_update_reads_the_folder_once_and_takes_no_lock(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    update_index(_config(workdir), progress=False)
    scans, locks = [], []
    real_scan, real_lock = imgsim.embed.update.scan_names, imgsim.embed.update.changing
    monkeypatch.setattr(
        imgsim.embed.update, "scan_names", lambda d: scans.append(d) or real_scan(d)
    )
    monkeypatch.setattr(imgsim.embed.update, "changing", lambda w: locks.append(w) or real_lock(w))
    assert update_index(_config(workdir), progress=False).unchanged == 24
    assert len(scans) == 1 and locks == []
    # A removal only: committed under the lock from the one look (nothing was embedded and no
    # writer came between), so a watched folder forgets a deleted file after one scan.
    (workdir.parent / "data" / "circle_00001.png").unlink()
    assert update_index(_config(workdir), progress=False).removed == 1
    assert len(scans) == 2 and len(locks) == 1
    # Something to embed: the folder is read again under the lock, after the embedding.
    with Image.open(workdir.parent / "data" / "circle_00002.png") as image:
        image.rotate(90).save(workdir.parent / "data" / "new.png")
    assert update_index(_config(workdir), progress=False).embedded == 1
    assert len(scans) == 4 and len(locks) == 2


def test_a_removal_planned_before_a_writer_came_is_planned_again(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    update_index(_config(workdir), progress=False)
    scans: list[str] = []
    real_scan = imgsim.embed.update.scan_names
    upload = workdir.parent / "data" / "square_00002.png"

    def scan_then_another_writer(folder: str) -> list:
        records = real_scan(folder)
        scans.append(folder)
        if len(scans) == 1:  # between the first look and the lock, another process commits
            store = open_store(str(workdir))
            store.remove([upload.name])
            store.close()
        return records

    monkeypatch.setattr(imgsim.embed.update, "scan_names", scan_then_another_writer)
    (workdir.parent / "data" / "circle_00001.png").unlink()
    result = update_index(_config(workdir), progress=False)
    assert len(scans) == 2  # the generation moved: the folder was read again under the lock
    assert result.removed == 1 and result.embedded + result.reused == 1  # the file is back


def test_another_model_re_embeds_everything(
    workdir: Path, embedded: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    update_index(_config(workdir), progress=False)
    model, info = load_model(workdir / "triplet_base_final.pt")
    with torch.no_grad():
        model.head[-1].bias.add_(0.1)  # different weights: a different model id
    save_model(workdir / "triplet_base_final.pt", model, info["categories"])
    embedded.clear()
    result = update_index(_config(workdir), progress=False)
    assert result.full and len(embedded) == 24
    assert "re-embedding all images" in caplog.text and "was embedded with model" in caplog.text
    with open_store(workdir) as store:
        assert store.info().model_id != info["model_id"]


def test_update_keeps_the_original_files_in_step(workdir: Path) -> None:
    import numpy as np

    update_index(_config(workdir), progress=False)
    (workdir.parent / "data" / "circle_00002.png").unlink()
    update_index(_config(workdir), progress=False)
    names = np.load(workdir / "triplet_images.npy").tolist()
    features = np.load(workdir / "triplet_features.npy")
    assert len(names) == len(features) == 23 and "circle_00002.png" not in names


def test_cli_index_update_and_kind(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    data = str(workdir.parent / "data")
    assert main(["index", "--data", data, "--workdir", str(workdir)]) == 0
    assert "Indexed 24 images" in capsys.readouterr().out
    (workdir.parent / "data" / "square_00004.png").unlink()
    args = ["index", "--update", "--data", data, "--workdir", str(workdir), "--kind", "hnsw"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 embedded, 0 reused, 1 removed, 23 unchanged; 23 images (hnsw index" in out
    with open_store(workdir) as store:
        assert store.info().kind == "hnsw"
    assert main(["index", "--update", "--data", data, "--workdir", str(workdir)]) == 0
    assert "(hnsw index" in capsys.readouterr().out  # the choice is remembered


def test_extract_builds_the_same_index(workdir: Path, embedded: list[str]) -> None:
    from imgsim.embed.extract import extract

    result = extract(_config(workdir), progress=False)
    with open_store(workdir) as store:
        assert result.count == store.count() == 24 and result.kind == "flat"
        assert all(f.sha256 and f.size and f.inode for f in store.facts().values())
    embedded.clear()
    assert update_index(_config(workdir), progress=False).unchanged == 24 and not embedded


def test_a_file_replaced_with_the_same_size_and_time_is_noticed(
    workdir: Path, shapes_dir: Path, embedded: list[str]
) -> None:
    update_index(_config(workdir), progress=False)
    data = workdir.parent / "data"
    target = data / "square_00002.png"
    st = target.stat()
    replacement = (shapes_dir / "circle_00020.png").read_bytes()[: st.st_size]
    replacement += b"\0" * (st.st_size - len(replacement))  # same size (then unreadable)
    tmp = data / "incoming.tmp"
    tmp.write_bytes(replacement)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # same modification time (cp -p)
    os.replace(tmp, target)  # a new inode and change time
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    embedded.clear()
    result = update_index(_config(workdir), progress=False)
    assert embedded == ["square_00002.png"] and result.embedded + result.skipped == 1


def test_a_full_disk_stops_an_update_with_one_line_and_no_change(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import errno
    import sqlite3

    import imgsim.store.faiss_store
    import imgsim.store.vectors

    data = str(workdir.parent / "data")
    assert main(["index", "--data", data, "--workdir", str(workdir)]) == 0
    (workdir.parent / "data" / "square_00004.png").unlink()
    before = _vectors(workdir)
    capsys.readouterr()

    def full(*_args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as patch:
        patch.setattr(imgsim.store.faiss_store, "delete_paths", full)
        assert main(["index", "--update", "--data", data, "--workdir", str(workdir)]) == 1
    err = capsys.readouterr().err  # after the progress bar: one line, no traceback
    assert err.splitlines()[-1] == (
        "error: the disk is full: the index was not changed; free some space and try again"
    )
    assert "Traceback" not in err and err.count("error:") == 1
    names, vectors = _vectors(workdir)
    assert names == before[0] and (vectors == before[1]).all()

    # The start-up cache is only a cache: a full disk there is a warning, the update stands.
    def no_space(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(imgsim.store.vectors, "write_file", no_space)
        assert main(["index", "--update", "--data", data, "--workdir", str(workdir)]) == 0
    assert "1 removed" in capsys.readouterr().out
    assert "square_00004.png" not in _vectors(workdir)[0]
