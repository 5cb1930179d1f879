"""The CLI and a server changing one collection at the same moment: the races that lost images.

Each test pauses `imgsim index` inside its embedding step, lets "the server" (a Searcher on the
same workdir, as in another process) add or delete an image right then, and checks that
nothing is lost, nothing is left without its file, and every name is still its own image.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgsim.embed.extract
import imgsim.embed.update
from imgsim.core.config import ExtractConfig
from imgsim.embed.update import update_index
from imgsim.search.editor import CollectionEditor
from imgsim.search.searcher import Searcher
from imgsim.store import open_store


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
    real = imgsim.embed.extract.embed_records

    def embed(*args, **kwargs):
        result = real(*args, **kwargs)
        if not done:
            done.append(True)
            action()
        return result

    monkeypatch.setattr(imgsim.embed.extract, "embed_records", embed)
    monkeypatch.setattr(imgsim.embed.update, "embed_records", embed)


def something_to_do(data: Path) -> None:
    """A deleted image and a new one: the update has a file to embed (a no-op embeds nothing)."""
    (data / "circle_00001.png").unlink()
    pixels = np.random.default_rng(7).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(data / "noise_00001.png")


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
    during_embedding(
        monkeypatch, lambda: CollectionEditor(server).add_images({"stripes_00003.png": upload})
    )
    something_to_do(workdir.parent / "data")
    update_index(config(workdir), update=update, progress=False)
    names = assert_consistent(workdir)
    assert "stripes_00003.png" in names and "circle_00001.png" not in names


@pytest.mark.parametrize("update", [False, True], ids=["full", "update"])
def test_a_delete_during_imgsim_index_stays_deleted(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, update: bool
) -> None:
    server = Searcher.from_workdir(workdir)
    during_embedding(
        monkeypatch, lambda: CollectionEditor(server).remove_images(["square_00002.png"])
    )
    something_to_do(workdir.parent / "data")
    update_index(config(workdir), update=update, progress=False)
    names = assert_consistent(workdir)
    assert "square_00002.png" not in names and "circle_00001.png" not in names


def test_an_upload_interrupted_after_its_commit_is_finished_at_start(
    workdir: Path, shapes_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgsim.files import staging

    upload = (shapes_dir / "stripes_00004.png").read_bytes()
    server = Searcher.from_workdir(workdir)

    def crash(self, staged, *args, **kwargs):
        os.close(staged.lock_fd)  # the process dies between the commit and the move
        raise KeyboardInterrupt

    monkeypatch.setattr(staging.Staging, "publish", crash)
    with pytest.raises(KeyboardInterrupt):
        CollectionEditor(server).add_images({"stripes_00004.png": upload})
    monkeypatch.undo()
    # What a killed process leaves: the staged file and its intent, unlocked.
    restarted = Searcher.from_workdir(workdir)
    CollectionEditor(restarted).recover_uploads()
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
        "imgsim.files.staging.Staging.discard", lambda self, staged: os.close(staged.lock_fd)
    )
    with pytest.raises(KeyboardInterrupt):
        CollectionEditor(server).add_images({"stripes_00005.png": upload})
    monkeypatch.undo()
    assert list((workdir / ".imgsim-staging").glob("*.png"))  # left behind by the "crash"
    CollectionEditor(Searcher.from_workdir(workdir)).recover_uploads()
    assert not list((workdir / ".imgsim-staging").iterdir())
    assert "stripes_00005.png" not in assert_consistent(workdir)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_same_name_uploads_and_deletes_from_two_servers(workdir: Path, shapes_dir: Path) -> None:
    """6 threads, 2 Searchers (two server processes) on one workdir, one name: every change
    is an add, a remove or "not there"; nothing is left staged, open or half done."""
    import random
    import threading

    servers = [Searcher.from_workdir(workdir) for _ in range(2)]
    uploads = [(shapes_dir / f"stripes_{i:05d}.png").read_bytes() for i in (1, 2)]
    fds = _open_fds()
    errors: list[BaseException] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(8):
                server = rng.choice(servers)
                if rng.random() < 0.5:
                    CollectionEditor(server).add_images({"stripes_07777.png": rng.choice(uploads)})
                else:
                    CollectionEditor(server).remove_images(
                        ["stripes_07777.png"]
                    )  # [] when another won
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert not list((workdir / ".imgsim-staging").iterdir())
    assert _open_fds() <= fds + 2  # SQLite may have opened its WAL index meanwhile
    for server in servers:
        server.store.close()  # type: ignore[union-attr]
    assert_consistent(workdir)


def test_a_failed_move_leaves_no_intent_and_no_entry(
    workdir: Path, shapes_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgsim.files import staging

    server = Searcher.from_workdir(workdir)
    fds = _open_fds()

    def fail(source: Path, target: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(staging, "_move", fail)
    with pytest.raises(OSError):
        CollectionEditor(server).add_images(
            {"stripes_00004.png": (shapes_dir / "stripes_00004.png").read_bytes()}
        )
    assert not list((workdir / ".imgsim-staging").iterdir())
    assert _open_fds() == fds
    assert not server.store.contains("stripes_00004.png")  # type: ignore[union-attr]
    server.store.close()  # type: ignore[union-attr]
    assert_consistent(workdir)


def test_a_delete_is_never_undone_by_an_update_in_its_window(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`index --update` started between a delete's commit and its file's move to the trash
    waits for the move, so it never indexes the deleted image again."""
    import threading

    import imgsim.search.editor

    server = Searcher.from_workdir(workdir)
    name = sorted(p.name for p in (workdir.parent / "data").iterdir())[0]
    real_move = imgsim.search.editor.finish  # the move of a trash item reserved before the commit
    updates: list[threading.Thread] = []

    def slow_move(*args: object) -> object:
        update = threading.Thread(target=update_index, args=(config(workdir),), daemon=True)
        update.start()
        updates.append(update)
        update.join(timeout=1.0)  # it waits on the change lock, not on this
        assert update.is_alive()
        return real_move(*args)

    monkeypatch.setattr(imgsim.search.editor, "finish", slow_move)
    assert CollectionEditor(server).remove_images([name]) == [name]
    updates[0].join(timeout=60)
    server.store.close()  # type: ignore[union-attr]
    assert name not in assert_consistent(workdir)


def test_an_update_finishes_under_steady_uploads(
    workdir: Path, shapes_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploads at ~10/s all through an update: it applies what it has, in one go."""
    import threading
    import time

    server = Searcher.from_workdir(workdir)
    sources = sorted(shapes_dir.glob("stripes_*"))[:20]
    done = threading.Event()
    added: list[str] = []

    def uploads() -> None:
        for path in sources:
            if done.is_set():
                break
            CollectionEditor(server).add_images({path.name: path.read_bytes()})
            added.append(path.name)
            time.sleep(0.1)

    real_embed = imgsim.embed.update.embed_records

    def slow_embed(*args, **kwargs):  # the update's embedding lasts while 3 uploads land
        # Waiting on the uploads rather than a fixed 0.5 s: on a loaded machine fewer than 3
        # uploads fit in a fixed time, and the test said nothing about the update.
        before, deadline = len(added), time.monotonic() + 20
        while len(added) < before + 3 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return real_embed(*args, **kwargs)

    monkeypatch.setattr(imgsim.embed.update, "embed_records", slow_embed)
    something_to_do(workdir.parent / "data")
    thread = threading.Thread(target=uploads)
    thread.start()
    try:
        started = time.monotonic()
        result = update_index(config(workdir), progress=False)
        seconds = time.monotonic() - started
    finally:
        done.set()
        thread.join(timeout=60)
    assert result.removed == 1 and seconds < 30
    assert len(added) >= 3  # the uploads went on meanwhile
    server.store.close()  # type: ignore[union-attr]
    assert set(added) <= assert_consistent(workdir)


def test_a_file_copied_in_during_an_update_is_left_to_the_next_and_said_once(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from imgsim.model.model_handle import ModelFile

    data = workdir.parent / "data"
    rng = np.random.default_rng(8)

    def copy_in(name: str) -> Callable[[], None]:
        pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        return lambda: Image.fromarray(pixels).save(data / name)

    something_to_do(data)
    during_embedding(monkeypatch, copy_in("noise_00002.png"))
    with caplog.at_level("WARNING", logger="imgsim"):
        result = update_index(config(workdir), update=True, progress=False)
    assert result.late == 1
    assert "1 files appeared or changed while the update ran" in caplog.text
    # The watcher's pass: its own next batch takes the late file, so no advice to run a command.
    caplog.clear()
    during_embedding(monkeypatch, copy_in("noise_00003.png"))
    with caplog.at_level("INFO", logger="imgsim"), open_store(workdir) as store:
        model = ModelFile(str(workdir / "triplet_base_final.pt"))
        result = imgsim.embed.update.update_pass(store, model, config(workdir))
        assert result.late == 1 and "index --update" not in caplog.text
        assert imgsim.embed.update.update_pass(store, model, config(workdir)).late == 0
    assert {"noise_00002.png", "noise_00003.png"} <= assert_consistent(workdir)
