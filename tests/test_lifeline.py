"""kill -9 of a process that runs workers leaves none of them alive (issue 10, "no orphans")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

SRC = str(Path(__file__).resolve().parents[1] / "src")

EXTRACT = """
from imgsim.images.data import scan_images
from imgsim.embed.extract import embed_records
from imgsim.model.network import load_model
model, _ = load_model({model!r})
records = scan_images({data!r}) * 400  # long enough to be killed in the middle
print("started", flush=True)
embed_records(model, model.config.image_size, records, batch_size=4, workers=2, progress=False)
"""

DECODE = """
import time
from imgsim.images.data import iter_decoded, scan_images
records = scan_images({data!r}) * 400
print("started", flush=True)
for _ in iter_decoded(records, 32, batch_size=4, workers=2):
    time.sleep(0.01)
"""


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat and stat[1] == pid and stat[0] != "Z":
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie has ended; only its entry is left


def _start(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True
    )


def _wait_for_workers(proc: subprocess.Popen, count: int, timeout: float = 90) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        workers = [p for p in _children(proc.pid) if _is_worker(p)]
        if len(workers) >= count:
            return _children(proc.pid)
        time.sleep(0.1)
    raise AssertionError("the workers never started")


def _is_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # spawn's workers run "-c from multiprocessing.spawn import spawn_main…"; DataLoader's are
    # forked copies of the parent (its cmdline), which is also never the resource tracker.
    return b"spawn_main" in cmdline or b"resource_tracker" not in cmdline


def _assert_all_end(pids: list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    survivors = [p for p in pids if _alive(p)]
    for pid in survivors:  # do not leave them running after a failure
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"workers outlived their parent: {survivors}"


@pytest.mark.parametrize("script", [EXTRACT, DECODE], ids=["extract", "train-decode"])
def test_kill_9_leaves_no_worker_alive(
    script: str, trained_workdir: Path, shapes_dir: Path
) -> None:
    code = script.format(model=str(trained_workdir / "triplet_base_final.pt"), data=str(shapes_dir))
    proc = _start(code)
    try:
        workers = _wait_for_workers(proc, 2)
        time.sleep(1.0)  # inside their work, not just started
        assert all(_alive(p) for p in workers)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        _assert_all_end(workers)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


def test_the_watchdog_alone_ends_a_worker_whose_parent_died() -> None:
    # The fallback where PR_SET_PDEATHSIG is missing: the worker notices its new parent.
    grandchild = (
        "from imgsim.core.lifeline import bind_to_parent; import time; "
        "bind_to_parent(use_prctl=False, interval=0.1); print('bound', flush=True); time.sleep(60)"
    )
    parent = textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", {grandchild!r}], stdout=subprocess.PIPE)
        child.stdout.readline()
        print(child.pid, flush=True)
        time.sleep(60)
    """)
    proc = _start(parent)
    try:
        line = proc.stdout.readline()
        child = int(line)
        assert _alive(child)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        _assert_all_end([child], timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
