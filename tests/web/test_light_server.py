"""A light server: `imgsim serve` with the onnx runtime never loads torch, in the gunicorn
master or in any worker (issues 26 and 28), which is read from each process's /proc/PID/maps."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_workers import free_port, http, multipart

from imgsim.core.config import MODEL_FILE, ONNX_FILE, SearchConfig
from imgsim.web.server import cores, share_cores

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="Linux /proc only")


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (gunicorn's workers of its master)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue  # not a process, or one that ended meanwhile
        # The command name (field 2) may hold spaces; the parent id follows its ")".
        if entry.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def mapped_libraries(pid: int) -> str:
    return (Path("/proc") / str(pid) / "maps").read_text()


@pytest.fixture(params=["kept", "missing"])
def server(request: pytest.FixtureRequest, own_workdir: Path) -> Iterator[tuple[str, int]]:
    """(URL, master pid) of `imgsim serve --workers 2`, with the model's ONNX export kept (as
    extract leaves it) or missing (a model file alone: serve exports it before forking)."""
    from imgsim.model.export import export_onnx

    if request.param == "kept":
        export_onnx(own_workdir / MODEL_FILE)
    port = free_port()
    command = [sys.executable, "-m", "imgsim.cli", "-q", "serve", "--workers", "2",
               "--port", str(port), "--workdir", str(own_workdir), "--runtime", "onnx"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _healthy(base):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _healthy(base: str) -> bool:
    try:
        return http(f"{base}/health")[0] == 200
    except OSError:
        return False


def test_onnx_workers_answer_without_torch(server: tuple[str, int], own_workdir: Path) -> None:
    base, master = server
    query = next((own_workdir.parent / "data").glob("red_*"))
    body, ctype = multipart("image", query.name, query.read_bytes(), top_k="5", threshold="0")
    for _ in range(6):  # enough requests that both workers answer some
        status, answer = http(f"{base}/search", "POST", body, ctype)
        assert status == 200, answer
        assert http(f"{base}/similar/{query.name}")[0] == 200
    workers = children(master)
    assert len(workers) == 2, workers
    for pid in [master, *workers]:
        maps = mapped_libraries(pid)
        assert "libtorch" not in maps, f"process {pid} loaded torch"
    for pid in workers:  # they did answer, with onnxruntime
        assert "onnxruntime" in mapped_libraries(pid)
    assert (own_workdir / ONNX_FILE).is_file()


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_workers_share_the_cores_when_the_runtime_would_take_them_all(threads: int) -> None:
    config = share_cores(SearchConfig(runtime_threads=threads), workers=2)
    expected = threads or max(1, cores() // 2)
    assert config.runtime_threads == expected
