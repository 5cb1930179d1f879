"""Ctrl+C on `imgsim demo` once it serves: the server stops within 5 s, without abort text."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_a_terminal_starts_it() -> None:
    # A shell starts a background job with Ctrl+C ignored, and a child inherits that (Python
    # then never installs its own handler): a harness started so would measure nothing.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_until_up(url: str, process: subprocess.Popen, limit_s: float = 240) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the demo's server never answered {url}")


def test_ctrl_c_on_the_demo_stops_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "demo.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "imgsim.cli", "demo", "--dir", str(tmp_path / "demo"),
             "--per-class", "6", "--epochs", "1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_as_a_terminal_starts_it,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )  # fmt: skip
        try:
            _wait_until_up(f"http://127.0.0.1:{port}/health", process)
            time.sleep(2)
            started = time.monotonic()
            os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl+C does
            process.wait(timeout=20)
            seconds = time.monotonic() - started
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    text = log.read_text()
    for abort in ("terminate called", "std::system_error", "SIGABRT", "SIGKILL", "Traceback"):
        assert abort not in text, text[-3000:]
    assert seconds < 5, f"{seconds:.1f} s to stop (docs/stopping.md promises 5)"
    assert process.returncode == 130
    assert f"Stopped. To continue: imgsim serve --workdir {tmp_path / 'demo'}" in text
