"""`imgsim watch` and `serve --watch`: the index follows the image folder (issue 26)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from imgsim.core.config import MANIFEST_FILE, MODEL_FILE, WATCH_STATUS_FILE, ExtractConfig
from imgsim.embed.watch import FolderWatcher, WatchLock, WatchLockHeld, run_watch, watch_status
from imgsim.store import open_store
from imgsim.store.database import Database

SRC = Path(__file__).resolve().parents[1] / "src"
WITHIN = 10.0  # seconds a change may take to reach the index here (2 busy cores, tests alongside)


def _config(work: Path) -> ExtractConfig:
    return ExtractConfig(
        data_dir=str(work.parent / "data"), output_dir=str(work),
        model_path=str(work / MODEL_FILE), workers=1,
    )  # fmt: skip


def _names(work: Path) -> set[str]:
    with open_store(work) as store:
        return set(store.facts())


def _until(check: Callable[[], bool], what: str, within: float = WITHIN) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, f"not within {within}s: {what}"
        time.sleep(0.05)
    return time.monotonic() - start


def _jpeg(source: Path) -> bytes:
    out = io.BytesIO()
    Image.open(source).convert("RGB").save(out, "JPEG", quality=95)
    return out.getvalue()


@pytest.fixture
def watched(make_workdir) -> Iterator[tuple[Path, Path, FolderWatcher]]:
    """(workdir, data folder, a started watcher) over 3×4 shape images."""
    work = make_workdir(per_shape=4)
    watcher = FolderWatcher(_config(work))
    watcher.start()
    try:
        yield work, work.parent / "data", watcher
    finally:
        watcher.stop()


def test_new_deleted_and_moved_files_reach_the_index(watched, shapes_dir: Path) -> None:
    work, data, _ = watched
    assert len(_names(work)) == 12  # the start caught up: everything indexed
    (data / "circle_00020.jpg").write_bytes(_jpeg(shapes_dir / "circle_00020.png"))
    _until(lambda: "circle_00020.jpg" in _names(work), "a new JPEG indexed")
    (data / "square_00001.png").unlink()
    (data / "triangle_00001.png").rename(data / "triangle_00099.png")
    _until(
        lambda: (
            not {"square_00001.png", "triangle_00001.png"} & _names(work)
            and "triangle_00099.png" in _names(work)
        ),
        "deleted and moved files",
    )
    status = watch_status(work)
    assert status["running"] is True and status["pending"] == 0
    # RFC 3339, with the offset's colon: what the page's Date() reads in every browser
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d([+-]\d\d:\d\d|Z)", status["last_change"])


def test_a_file_being_written_is_read_only_once_complete(watched, shapes_dir: Path, caplog) -> None:
    work, data, _ = watched
    blob = _jpeg(shapes_dir / "square_00020.png")
    with open(data / "square_00020.jpg", "wb") as fh:  # a slow copy: 5 pieces, 0.15 s apart
        for i in range(5):
            fh.write(blob[i * len(blob) // 5 : (i + 1) * len(blob) // 5])
            fh.flush()
            time.sleep(0.15)
            assert "square_00020.jpg" not in _names(work)
    _until(lambda: "square_00020.jpg" in _names(work), "the finished file indexed")
    assert "unreadable" not in caplog.text.lower()


def test_a_bad_file_is_named_once_and_skipped(watched, shapes_dir: Path, caplog) -> None:
    work, data, _ = watched
    caplog.set_level(logging.WARNING, logger="imgsim")
    (data / "circle_00050.jpg").write_bytes(b"not an image at all")
    _until(lambda: watch_status(work)["unreadable"] == ["circle_00050.jpg"], "named as bad")
    for i in (21, 22):  # two more batches: the bad file is not read again
        shutil.copy(shapes_dir / f"circle_000{i}.png", data)
        _until(lambda i=i: f"circle_000{i}.png" in _names(work), "a later batch")
    assert caplog.text.count("circle_00050.jpg") == 1
    (data / "circle_00050.jpg").write_bytes(_jpeg(shapes_dir / "circle_00023.png"))  # fixed
    _until(lambda: "circle_00050.jpg" in _names(work), "the repaired file indexed")


def test_one_watcher_per_workdir(watched) -> None:
    work, _, watcher = watched
    with pytest.raises(WatchLockHeld):
        run_watch(_config(work))
    assert watch_status(work)["running"] is True
    watcher.stop()
    assert watch_status(work)["running"] is False and watch_status(work)["pending"] == 0
    lock = WatchLock(work)  # free again
    assert lock.acquire()
    lock.release()


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen(
        [sys.executable, "-m", "imgsim.cli", *args], env=env, stderr=subprocess.PIPE, text=True
    )


def test_kill_9_mid_batch_loses_nothing(make_workdir, shapes_dir: Path) -> None:
    work = make_workdir(per_shape=2)
    data = work.parent / "data"
    args = ("watch", "--data", str(data), "--workdir", str(work), "--workers", "1")
    proc = _cli(*args)
    try:
        _until(lambda: (work / WATCH_STATUS_FILE).exists(), "the watcher started", 60)
        new = {p.name for p in shapes_dir.iterdir()} - {p.name for p in data.iterdir()}
        for name in new:  # 90 files: one batch, read for a while
            shutil.copy(shapes_dir / name, data)
        caught = _kill_while_reading(proc.pid, new, data)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert not new <= _names(work), f"the batch had committed ({caught} read)"
    on_disk = {p.name for p in data.iterdir()}
    proc = _cli(*args)  # the restart catches up: the lock died with the killed process
    try:
        _until(lambda: _names(work) == on_disk, "everything indexed after the restart", 60)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    _exactly_once(work, on_disk)


def _kill_while_reading(pid: int, new: set[str], data: Path, within: float = 30) -> str:
    """kill -9 `pid` the moment it has one of the `new` files open (a batch reads them)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            fds = []
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if os.path.dirname(target) == str(data.resolve()) and os.path.basename(target) in new:
                os.kill(pid, signal.SIGKILL)
                return os.path.basename(target)
        time.sleep(0.001)
    raise AssertionError(f"process {pid} never read a new file within {within}s")


def _exactly_once(work: Path, on_disk: set[str]) -> None:
    """Every file on disk has one row and one live vector in the index; nothing else does."""
    db = Database(work / MANIFEST_FILE)
    try:
        rows = [path for (path,) in db.query("SELECT path FROM images")]
    finally:
        db.close()
    assert len(rows) == len(set(rows)), "a file indexed twice"
    assert set(rows) == on_disk
    with open_store(work) as store:
        vectors = [name for names, _ in store.iter_vectors() for name in names]
        assert sorted(vectors) == sorted(on_disk) and store.count() == len(on_disk)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_serve_watch_with_two_workers(make_workdir, shapes_dir: Path) -> None:
    from imgsim.embed.update import update_index

    work = make_workdir(per_shape=4)
    data = work.parent / "data"
    update_index(_config(work), progress=False)
    port = _free_port()
    proc = _cli("-q", "serve", "--watch", "--workers", "2", "--threads", "2",
                "--port", str(port), "--workdir", str(work))  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _health(base).get("watcher", {}).get("running"), "serving, watching", 60)
        blob = _jpeg(shapes_dir / "stripes_00001.png")
        (data / "stripes_00001.jpg").write_bytes(blob)
        _until(lambda: "stripes_00001.jpg" in _search(base, blob), "searchable")
        (data / "stripes_00001.jpg").unlink()
        _until(lambda: "stripes_00001.jpg" not in _search(base, blob), "gone")
        for _ in range(6):  # every worker agrees
            assert "stripes_00001.jpg" not in _search(base, blob)
        assert _health(base)["watcher"]["last_change"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _health(base: str) -> dict:
    try:
        return _get(f"{base}/health")
    except OSError:
        return {}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _search_body(image: bytes, top_k: int = 50) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a POST /search for `image` (no threshold)."""
    boundary = "imgsim-watch-test"
    head = f"--{boundary}\r\nContent-Disposition: form-data; name="
    parts = [f'{head}"top_k"\r\n\r\n{top_k}\r\n', f'{head}"threshold"\r\n\r\n0\r\n']
    parts.append(f'{head}"image"; filename="q.jpg"\r\nContent-Type: image/jpeg\r\n\r\n')
    body = "".join(parts).encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _search(base: str, image: bytes) -> list[str]:
    """The names /search returns for `image` (top 50, no threshold)."""
    request = urllib.request.Request(f"{base}/search", *_search_body(image))
    with urllib.request.urlopen(request, timeout=10) as response:
        return [r["filename"] for r in json.loads(response.read())["results"]]


def test_polling_for_network_mounts(make_workdir, shapes_dir: Path) -> None:
    work = make_workdir(per_shape=2)
    watcher = FolderWatcher(_config(work), poll=True)
    watcher.start()
    try:
        shutil.copy(shapes_dir / "square_00023.png", work.parent / "data")
        _until(lambda: "square_00023.png" in _names(work), "found by polling")
        assert watch_status(work)["mode"] == "polling"
    finally:
        watcher.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_a_file_moved_out_is_handed_on_without_watchdogs_pairing_wait(tmp_path: Path) -> None:
    from watchdog.observers import Observer
    from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper

    from imgsim.embed.watch import MOVE_PAIRING_SECONDS, _Events, _pair_moves_quickly

    folder, outside = tmp_path / "data", tmp_path / "held"
    folder.mkdir()
    outside.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "red_1.png")
    _pair_moves_quickly()
    # The wait each observer's grouper takes (watchdog's own is 0.5 s): a watchdog upgrade that
    # renames or moves it fails here rather than slowing the watcher silently.
    assert InotifyMoveEventGrouper().delay == MOVE_PAIRING_SECONDS < 0.5
    events, observer = _Events(folder), Observer()
    observer.schedule(events, str(folder), recursive=True)
    observer.start()
    try:
        time.sleep(0.2)
        (folder / "red_1.png").rename(outside / "red_1.png")  # no IN_MOVED_TO will follow
        assert events.wake.wait(10)
    finally:
        observer.stop()
        observer.join()
    assert events.take()[0] == {"red_1.png"}


def test_new_images_duplicate_data_comes_after_their_batch(
    watched, shapes_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Indexed first, duplicate data next (in chunks, while no event waits): a file moved out
    during a large batch's duplicate data is not held behind it."""
    import imgsim.embed.extract
    import imgsim.embed.watch

    work, data, watcher = watched
    monkeypatch.setattr(imgsim.embed.watch, "DUPLICATE_DATA_CHUNK", 2)
    chunks: list[list[str]] = []
    real = imgsim.embed.extract.keep_duplicate_data

    def keep(store, config, names, done) -> None:
        chunks.append(list(names))
        time.sleep(0.3)  # a slow chunk: the move below must not wait for all of them
        real(store, config, names, done)

    monkeypatch.setattr(imgsim.embed.extract, "keep_duplicate_data", keep)
    new = [f"circle_{i:05d}.png" for i in range(10, 16)]
    for name in new:
        shutil.copy(shapes_dir / name, data / name)
    _until(lambda: set(new) <= _names(work), "the new files indexed")
    assert not chunks or len(chunks[0]) <= 2  # indexed before any duplicate data
    (data / "square_00001.png").unlink()
    _until(lambda: "square_00001.png" not in _names(work), "the deleted file gone")
    _until(lambda: not watcher.underived, "the duplicate data kept")
    assert sorted(n for chunk in chunks for n in chunk) == sorted(new)
    assert all(len(chunk) <= 2 for chunk in chunks)
    with open_store(work) as store:
        assert set(new) <= set(store.derived())
