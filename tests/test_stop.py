"""Ctrl+C and SIGTERM on a busy command: out within 5 s, no abort text, a line on how to go on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgsim.images.sample import generate_shapes

from .conftest import SHAPES

ROOT = Path(__file__).resolve().parents[1]
STOP_LIMIT_S = 5.0
ABORTS = ("Traceback", "terminate called", "std::system_error", "SIGABRT", "SIGKILL")
TINY = ["--image-size", "32", "--backbone", "scratch", "--widths", "8,16", "--blocks", "1,1",
        "--embedding-dim", "16", "--head-hidden", "32", "--threads", "1",
        "--loss", "triplet"]  # fmt: skip


def _as_a_terminal_starts_it() -> None:
    # A shell starts a background job with Ctrl+C ignored, and a child inherits that (Python
    # then never installs its own handler): a harness started so would measure nothing.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(
    args: list[str], log: Path, cwd: Path, program: tuple[str, str] = ("-m", "imgsim.cli")
) -> subprocess.Popen:
    """`imgsim ARGS` in its own process group (as a terminal runs it), output into `log`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, *program, *args], stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_as_a_terminal_starts_it, env=env, cwd=cwd,
        )  # fmt: skip


def wait_for(
    log: Path, text: str, process: subprocess.Popen, limit_s: float = 120, count: int = 1
) -> None:
    deadline = time.monotonic() + limit_s
    while log.read_text().count(text) < count:
        assert process.poll() is None, f"ended before {text!r}:\n{log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"no {text!r} in {limit_s} s"
        time.sleep(0.05)


def stop(process: subprocess.Popen, sig: int, log: Path) -> tuple[int, float, str]:
    """Send `sig` to the whole group, as a terminal's Ctrl+C does; (status, seconds, output)."""
    started = time.monotonic()
    os.killpg(process.pid, sig)
    try:
        status = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    seconds = time.monotonic() - started
    return status, seconds, log.read_text()


def check_clean(status: int, seconds: float, text: str, sig: int) -> None:
    assert seconds < STOP_LIMIT_S, f"took {seconds:.1f} s to stop:\n{text[-2000:]}"
    for abort in ABORTS:
        assert abort not in text, text[-3000:]
    assert status == 128 + sig, text[-2000:]
    assert "Stopped. To continue: imgsim " in text, text[-2000:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_training_run_resumes(tmp_path: Path, sig: int) -> None:
    data, work, log = tmp_path / "data", tmp_path / "work", tmp_path / "train.log"
    generate_shapes(data, per_class=24, size=32, seed=1, shapes=SHAPES)
    args = ["train", str(data), "--workdir", str(work), "--epochs", "6", "--workers", "1",
            "--checkpoint-every", "1", *TINY]  # fmt: skip
    process = start(args, log, tmp_path)
    wait_for(log, "epoch 2/6:", process)
    status, seconds, text = stop(process, sig, log)
    check_clean(status, seconds, text, sig)
    line = next(x for x in text.splitlines() if x.startswith("Stopped. To continue: "))
    assert line == f"Stopped. To continue: imgsim train --resume --workdir {work}"
    assert not (work / "triplet_base_final.pt").exists()  # no half-written model file
    again = subprocess.run(
        [sys.executable, "-m", "imgsim.cli", *line.split("imgsim ", 1)[1].split()],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Resuming" in again.stderr and "the weights of epoch" in again.stdout
    assert (work / "triplet_base_final.pt").is_file()


@pytest.mark.parametrize("command", [["extract"], ["index", "--update"]])
def test_a_stopped_extraction_keeps_the_old_index(
    tmp_path: Path, trained_workdir: Path, command: list[str]
) -> None:
    import shutil

    from imgsim.search.searcher import Searcher

    data, work, log = tmp_path / "data", tmp_path / "work", tmp_path / "extract.log"
    shutil.copytree(trained_workdir, work)  # its index: 96 images of another folder
    generate_shapes(data, per_class=400, size=32, seed=3, shapes=SHAPES)
    process = start([*command, str(data), "--workdir", str(work)], log, tmp_path)
    wait_for(log, "img/s", process)  # embedding
    sig = signal.SIGINT if command == ["extract"] else signal.SIGTERM
    status, seconds, text = stop(process, sig, log)
    check_clean(status, seconds, text, sig)
    assert f"imgsim {' '.join(command)} {data} --workdir {work}" in text
    assert Searcher.from_workdir(work).stats()["total_images"] == 96  # the old index, whole


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_server_exits_within_the_limit(
    tmp_path: Path, trained_workdir: Path, sig: int
) -> None:
    import urllib.request

    port, log = free_port(), tmp_path / "serve.log"
    process = start(["serve", "--workdir", str(trained_workdir), "--port", str(port)], log,
                    tmp_path)  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    # A client in the middle of a slow upload: its request thread must not hold the worker
    # (it used to, until the master killed it: "SIGKILL! Perhaps out of memory?").
    upload = socket.create_connection(("127.0.0.1", port))
    upload.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                   b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n")  # fmt: skip
    time.sleep(0.5)
    status, seconds, text = stop(process, sig, log)
    upload.close()
    check_clean(status, seconds, text, sig)
    assert f"To continue: imgsim serve --workdir {trained_workdir} --port {port}" in text


# The app's loading, as a busy machine can stretch it: seconds in one C call, during which
# Python runs no signal handler (e.g. a shared library's load).
SLOW_LOAD = """
import hashlib, sys
import imgsim.web.server as server
from imgsim.cli.commands import main

load = server.create_app
def create_app(*args, **kwargs):
    print("loading the app", file=sys.stderr, flush=True)
    hashlib.pbkdf2_hmac("sha256", b"x", b"y", 20_000_000)
    return load(*args, **kwargs)
server.create_app = create_app
sys.argv[0] = "imgsim"
raise SystemExit(main())
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_server_stopped_while_its_workers_load_exits_at_once(
    tmp_path: Path, trained_workdir: Path, sig: int
) -> None:
    port, log = free_port(), tmp_path / "serve.log"
    args = ["serve", "--workdir", str(trained_workdir), "--port", str(port), "--workers", "2"]
    process = start(args, log, tmp_path, program=("-c", SLOW_LOAD))
    wait_for(log, "loading the app", process, count=2)  # both workers
    status, seconds, text = stop(process, sig, log)
    check_clean(status, seconds, text, sig)
    assert seconds < 2, text  # not the master's 4 s grace
    assert "was sent" not in text, text  # the workers ended on the signals they were sent


def test_a_second_quit_signal_inside_the_first_does_not_hang_the_worker() -> None:
    import threading
    from types import SimpleNamespace

    from imgsim.web.server import _Worker

    class Pool:  # as gunicorn's thread pool: its shutdown holds a lock that is not re-entrant
        def __init__(self) -> None:
            self.lock, self.calls = threading.Lock(), 0

        def shutdown(self, wait: bool = True) -> None:
            assert self.lock.acquire(timeout=2), "the quit handler ran inside itself: a deadlock"
            try:
                self.calls += 1
                if self.calls == 1:  # the master's signal lands while the terminal's is handled
                    worker.handle_quit(signal.SIGINT, None)
            finally:
                self.lock.release()

    worker = object.__new__(_Worker)
    worker.tpool, worker.alive = Pool(), True
    worker.cfg = SimpleNamespace(worker_int=lambda _worker: None)
    with pytest.raises(SystemExit):
        worker.handle_quit(signal.SIGINT, None)
    assert worker.tpool.calls == 1 and not worker.alive
