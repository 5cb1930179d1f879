"""The CLI and a server changing one collection at the same moment: the races that lost images.

Each test pauses `imgsim index` inside its embedding step, lets "the server" (a Searcher on the
same workdir, as in another process) add or delete an image right then, and checks that
nothing is lost, nothing is left without its file, and every name is still its own image.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

import imgsim.extract
import imgsim.update
from imgsim.config import ExtractConfig
from imgsim.search import Searcher
from imgsim.store import open_store
from imgsim.update import update_index


@pytest.fixture
def workdir(make_workdir) -> Path:
    work = make_workdir(per_shape=6)
    update_index(config(work), update=False, progress=False)
    return work


def config(work: Path) -> ExtractConfig:
    return ExtractConfig(
        data_dir=str(work.parent / "data"),
        output_dir=str(work),
        model_path=str(work / "triplet_base_final.pt"),
        workers=1,
    )


def during_embedding(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
    """Run `action` once, in the middle of the next embedding step (full or update)."""
    done: list[bool] = []
    real = imgsim.extract.embed_records

    def embed(*args, **kwargs):
        result = real(*args, **kwargs)
        if not done:
            done.append(True)
            action()
        return result

    monkeypatch.setattr(imgsim.extract, "embed_records", embed)
    monkeypatch.setattr(imgsim.update, "embed_records", embed)


def assert_consistent(work: Path) -> set[str]:
    """Every indexed name has its file, every file its entry, and finds itself first."""
    data = work.parent / "data"
    searcher = Searcher.from_workdir(work)
    with open_store(work) as store:
        names = set(store.facts())
    assert names == {p.name for p in data.iterdir()}
    for name in sorted(names)[::4]:
        top = searcher.search(data / name, top_k=1)[0]
        assert top.embedding_distance < 1e-3 and top.filename.split("_")[0] == name.split("_")[0]
    searcher.store.close()  # type: ignore[union-attr]
    return names


@pytest.mark.parametrize("update", [False, True], ids=["full", "update"])
def test_an_upload_during_imgsim_index_is_kept(
    workdir: Path, shapes_dir: Path, monkeypatch: pytest.MonkeyPatch, update: bool
) -> None:
    upload = (shapes_dir / "stripes_00003.png").read_bytes()
    server = Searcher.from_workdir(workdir)
    during_embedding(monkeypatch, lambda: server.add_images({"stripes_00003.png": upload}))
    (workdir.parent / "data" / "circle_00001.png").unlink()  # something for the update to do
    update_index(config(workdir), update=update, progress=False)
    names = assert_consistent(workdir)
    assert "stripes_00003.png" in names and "circle_00001.png" not in names


@pytest.mark.parametrize("update", [False, True], ids=["full", "update"])
def test_a_delete_during_imgsim_index_stays_deleted(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, update: bool
) -> None:
    server = Searcher.from_workdir(workdir)
    during_embedding(monkeypatch, lambda: server.remove_images(["square_00002.png"]))
    (workdir.parent / "data" / "circle_00001.png").unlink()
    update_index(config(workdir), update=update, progress=False)
    names = assert_consistent(workdir)
    assert "square_00002.png" not in names and "circle_00001.png" not in names


def test_an_upload_interrupted_after_its_commit_is_finished_at_start(
    workdir: Path, shapes_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgsim import staging

    upload = (shapes_dir / "stripes_00004.png").read_bytes()
    server = Searcher.from_workdir(workdir)

    def crash(self, staged, *args, **kwargs):
        os.close(staged.lock_fd)  # the process dies between the commit and the move
        raise KeyboardInterrupt

    monkeypatch.setattr(staging.Staging, "publish", crash)
    with pytest.raises(KeyboardInterrupt):
        server.add_images({"stripes_00004.png": upload})
    monkeypatch.undo()
    # What a killed process leaves: the staged file and its intent, unlocked.
    restarted = Searcher.from_workdir(workdir)
    restarted.recover_uploads()
    assert (workdir.parent / "data" / "stripes_00004.png").read_bytes() == upload
    assert not list((workdir / ".imgsim-staging").iterdir())
    assert "stripes_00004.png" in assert_consistent(workdir)


def test_an_upload_interrupted_before_its_commit_is_dropped_at_start(
    workdir: Path, shapes_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload = (shapes_dir / "stripes_00005.png").read_bytes()
    server = Searcher.from_workdir(workdir)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(server.store, "add", crash)
    monkeypatch.setattr(  # dies before cleaning up: only its lock goes, with the process
        "imgsim.staging.Staging.discard", lambda self, staged: os.close(staged.lock_fd)
    )
    with pytest.raises(KeyboardInterrupt):
        server.add_images({"stripes_00005.png": upload})
    monkeypatch.undo()
    assert list((workdir / ".imgsim-staging").glob("*.png"))  # left behind by the "crash"
    Searcher.from_workdir(workdir).recover_uploads()
    assert not list((workdir / ".imgsim-staging").iterdir())
    assert "stripes_00005.png" not in assert_consistent(workdir)
