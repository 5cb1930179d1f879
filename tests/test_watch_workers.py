"""Issue 26's done-when cases on real processes: `serve --watch` with 2 gunicorn workers.

100 files deleted or moved: 2 s later no search, from either worker, returns a missing file.
kill -9 of the watcher process while it reads a batch: after the takeover every file is in the
index exactly once. Which worker answered is read from /proc (the worker holding the socket).
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgsim.core.config import WATCH_LOCK_FILE
from imgsim.images.sample import generate_shapes

from .benchmark_import import load_benchmark
from .conftest import SHAPES
from .test_watch import (
    _cli,
    _config,
    _exactly_once,
    _free_port,
    _health,
    _kill_while_reading,
    _names,
    _search_body,
    _until,
)

probe = load_benchmark("worker_probe")
pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
AFTER = 2.0  # issue 26: no search returns a missing file this long after the change
PER_WORKER = 3  # searches each worker must answer


@pytest.fixture
def served(make_workdir) -> Iterator[tuple[Path, Path, int, subprocess.Popen]]:
    """(workdir, data, port, server): 160 indexed images under `serve --watch --workers 2`."""
    from imgsim.embed.update import update_index

    work = make_workdir(per_shape=0)
    data = work.parent / "data"
    generate_shapes(data, per_class=40, size=32, seed=3, shapes=SHAPES)
    update_index(_config(work), progress=False)
    port = _free_port()
    proc = _cli("-q", "serve", "--watch", "--workers", "2", "--threads", "2",
                "--port", str(port), "--workdir", str(work))  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _until(lambda: _health(base).get("watcher", {}).get("running"), "serving, watching", 60)
        _until(lambda: len(probe.worker_pids(proc.pid)) == 2, "two workers", 30)
        yield work, data, port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _search_each_worker(port: int, master: int, image: bytes) -> dict[int, list[list[str]]]:
    """Search with `image` on new connections until each worker answered PER_WORKER times;
    each worker's result lists (names, best first)."""
    workers = probe.worker_pids(master)
    answers: dict[int, list[list[str]]] = {pid: [] for pid in workers}
    for _ in range(60):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", "/search", *_search_body(image, top_k=100))
            response = conn.getresponse()
            assert response.status == 200, response.read()
            names = [r["filename"] for r in json.loads(response.read())["results"]]
            answers.setdefault(probe.connection_owner(conn, workers) or 0, []).append(names)
        finally:
            conn.close()
        if all(len(answers[pid]) >= PER_WORKER for pid in workers):
            return answers
    raise AssertionError(f"not every worker answered: {[len(a) for a in answers.values()]}")


def test_100_deletes_and_moves_reach_both_workers_within_2s(served) -> None:
    work, data, port, proc = served
    names = sorted(p.name for p in data.iterdir())
    deleted, moved_out, renamed = names[0:160:4], names[1:120:4], names[2:120:4]
    assert len(deleted) + len(moved_out) + len(renamed) == 100
    queries = [(data / n).read_bytes() for n in (deleted[0], moved_out[0], renamed[0])]
    elsewhere = work.parent / "moved_out"  # off the watched folder: gone from its view
    elsewhere.mkdir()
    for name in deleted:
        (data / name).unlink()
    for name in moved_out:
        (data / name).rename(elsewhere / name)
    for name in renamed:
        (data / name).rename(data / name.replace(".png", "_moved.png"))
    done = time.monotonic()
    on_disk = {p.name for p in data.iterdir()}
    time.sleep(max(0.0, done + AFTER - time.monotonic()))
    late = time.monotonic() - done
    assert _names(work) == on_disk  # the moved files are there under their new names

    for query in queries:  # each the bytes of a file that is gone: its stale entry would lead
        for pid, lists in _search_each_worker(port, proc.pid, query).items():
            for found in lists:
                missing = set(found) - on_disk
                assert not missing, f"worker {pid}, {late:.1f}s after: {sorted(missing)[:5]}"
                assert len(found) == len(set(found)), f"worker {pid}: a name twice"


def test_kill_9_of_the_watcher_mid_batch_loses_nothing(served, tmp_path: Path) -> None:
    work, data, port, proc = served
    watcher = int((work / WATCH_LOCK_FILE).read_text())
    # A process of its own beside the workers: batches never wait on searches' GIL.
    assert probe.watcher_pids(proc.pid) == [watcher]
    assert watcher not in probe.worker_pids(proc.pid)
    incoming = tmp_path / "incoming"
    generate_shapes(incoming, per_class=75, size=32, seed=4, shapes=SHAPES, ext="jpg")
    new = {p.name for p in incoming.iterdir()}  # 300 files: one batch, read for a while
    for path in incoming.iterdir():
        shutil.copy(path, data)
    caught = _kill_while_reading(watcher, new, data)
    on_disk = {p.name for p in data.iterdir()}
    assert not new <= _names(work), f"the batch had committed ({caught} read)"
    # The master starts the watcher again; it takes the lock and catches up.
    _until(lambda: _names(work) == on_disk, "everything indexed after the takeover", 60)
    _exactly_once(work, on_disk)
    assert int((work / WATCH_LOCK_FILE).read_text()) != watcher
    image = (data / sorted(new)[0]).read_bytes()
    for lists in _search_each_worker(port, proc.pid, image).values():
        assert all(len(found) == len(set(found)) for found in lists)
        assert all(set(found) <= on_disk for found in lists)
