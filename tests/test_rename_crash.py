"""Killing `imgsim rename` at any moment loses and hides nothing: --recover finishes the run."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest

from imgsim.cli.commands import main
from imgsim.files import rename
from imgsim.files.rename import JOURNAL_NAME, LOG_NAME, TMP_PREFIX, list_images
from imgsim.files.rename_journal import InterruptedRenameError, check_folder

SRC = str(Path(__file__).resolve().parents[1] / "src")


def make_files(folder: Path, count: int, prefix: str = "IMG_") -> None:
    # Unique contents, so a lost, duplicated or swapped file shows up in the hashes.
    for i in range(count):
        (folder / f"{prefix}{i:05d}.jpg").write_bytes(f"photo {i} {prefix}".encode())


def visible(folder: Path) -> dict[str, str]:
    """name -> SHA-256 of every image a folder scan sees."""
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in list_images(folder)}


def hashes(folder: Path) -> Counter[str]:
    return Counter(visible(folder).values())


def die_after(calls: int, action) -> None:
    """Run `action` in a forked child that dies (os._exit: no handler runs) before the
    `calls`-th rename or replace, as a kill -9 at that moment would leave things."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: see below
        pid = os.fork()
    if pid == 0:  # the child touches only files, so no lock of another thread matters
        count = 0
        real_rename, real_replace = os.rename, os.replace

        def counted(real):
            def move(src, dst):
                nonlocal count
                count += 1
                if count >= calls:
                    os._exit(0)
                real(src, dst)

            return move

        os.rename, os.replace = counted(real_rename), counted(real_replace)
        try:
            action()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def test_temporary_names_stay_visible_images(tmp_path: Path) -> None:
    make_files(tmp_path, 4)
    before = hashes(tmp_path)
    die_after(4, lambda: rename.run(tmp_path, ["x"], yes=True, print_fn=lambda _: None))
    temps = [n for n in os.listdir(tmp_path) if n.startswith(TMP_PREFIX)]
    assert temps and all(n.endswith(".jpg") and not n.startswith(".") for n in temps)
    assert hashes(tmp_path) == before  # half renamed, yet every image is still visible
    assert (tmp_path / JOURNAL_NAME).exists()


def _fresh(folder: Path, names: list[str]) -> dict[str, str]:
    folder.mkdir()
    for i, n in enumerate(names):
        (folder / n).write_bytes(f"photo {i}".encode())
    return visible(folder)


def _quiet_run(folder: Path, **kwargs) -> int:
    return rename.run(folder, print_fn=lambda _: None, yes=True, **kwargs)


@pytest.mark.parametrize("undo", [False, True])
def test_a_kill_at_every_step_is_recovered(tmp_path: Path, undo: bool) -> None:
    # Chains: a_001 -> b_001 while b_001 moves on to b_003, c -> a_001, and so on.
    names = ["b_001.jpg", "a_001.jpg", "a_002.jpg", "c.jpg", "IMG_1.jpg"]
    original = _fresh(tmp_path / "reference", names)
    assert _quiet_run(tmp_path / "reference", categories=["b", "a"]) == 0
    renamed = visible(tmp_path / "reference")
    start, goal = (renamed, original) if undo else (original, renamed)
    assert start != goal
    steps = 0
    while True:
        steps += 1
        folder = tmp_path / f"kill{steps}"
        _fresh(folder, names)
        if undo:
            assert _quiet_run(folder, categories=["b", "a"]) == 0
        die_after(
            steps,
            lambda f=folder: _quiet_run(f, undo=undo, categories=None if undo else ["b", "a"]),
        )
        interrupted = (folder / JOURNAL_NAME).exists()
        assert hashes(folder) == Counter(original.values()), steps  # nothing lost or hidden
        assert _quiet_run(folder, recover_run=True) == 0
        assert not (folder / JOURNAL_NAME).exists()
        assert not [n for n in os.listdir(folder) if TMP_PREFIX in n]
        state = visible(folder)
        assert state == (goal if interrupted else state), f"killed before step {steps}"
        assert state in (start, goal), f"killed before step {steps}"
        if state == renamed:
            # A recovered run is logged like any other: --undo takes it back.
            assert _quiet_run(folder, undo=True) == 0
            assert visible(folder) == original
        if state == goal and not interrupted:
            break  # the run got through: every step before was a kill point
    # Every rename of both phases and each journal and log write was a kill point (an undo
    # of the only run removes the log rather than writing it).
    assert steps == 2 * len(names) + (2 if undo else 3) + 1


def test_every_command_on_a_half_renamed_folder_says_to_recover(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    make_files(data, 6)
    die_after(5, lambda: rename.run(data, ["x", "y"], yes=True, print_fn=lambda _: None))
    with pytest.raises(InterruptedRenameError, match="--recover"):
        check_folder(data)
    for argv in (
        ["stats", "--data", str(data)],
        ["train", "--data", str(data), "--output-dir", str(tmp_path / "out")],
        ["extract", "--data", str(data), "--output-dir", str(tmp_path / "out")],
        ["index", "--data", str(data), "--workdir", str(tmp_path / "out")],
        ["rename", str(data), "--categories", "z", "--yes"],
        ["rename", str(data), "--undo", "--yes"],
    ):
        assert main(argv) == 1, argv
        captured = capsys.readouterr()
        assert f"imgsim rename {data} --recover" in captured.out + captured.err, argv
    assert main(["rename", str(data), "--recover"]) == 0
    assert "finished" in capsys.readouterr().out
    check_folder(data)
    assert sorted(visible(data)) == [f"{c}_{i:03d}.jpg" for c in "xy" for i in (1, 2, 3)]


def test_a_category_folder_half_renamed_is_noticed(tmp_path: Path) -> None:
    (tmp_path / "shirts").mkdir()
    make_files(tmp_path / "shirts", 3)
    die_after(3, lambda: rename.run(tmp_path / "shirts", ["s"], yes=True, print_fn=print))
    with pytest.raises(InterruptedRenameError, match="shirts --recover"):
        check_folder(tmp_path)


def test_a_run_of_an_older_imgsim_is_recovered(tmp_path: Path) -> None:
    # What imgsim before the journal left when killed: its log entry first, then hidden,
    # extension-less temporary names. Here phase 2 had moved the first file only.
    pairs = [("d.jpg", "x_002.jpg"), ("a.jpg", "x_001.jpg"), ("b.jpg", "x_003.jpg")]
    entry = {
        "timestamp": "2026-01-01T00:00:00+00:00",
        "tmp_prefix": ".imgsim_tmp_abcd_",
        "renames": [{"old": o, "new": n} for o, n in pairs],
    }
    (tmp_path / LOG_NAME).write_text(json.dumps({"version": 1, "runs": [entry]}))
    (tmp_path / "x_002.jpg").write_bytes(b"D")
    (tmp_path / ".imgsim_tmp_abcd_1").write_bytes(b"A")
    (tmp_path / ".imgsim_tmp_abcd_2").write_bytes(b"B")
    with pytest.raises(InterruptedRenameError):
        check_folder(tmp_path)
    assert _quiet_run(tmp_path, recover_run=True) == 0
    contents = {n: (tmp_path / n).read_bytes() for n in list_images(tmp_path)}
    assert contents == {"x_001.jpg": b"A", "x_002.jpg": b"D", "x_003.jpg": b"B"}
    assert _quiet_run(tmp_path, undo=True) == 0
    assert sorted(list_images(tmp_path)) == ["a.jpg", "b.jpg", "d.jpg"]


@pytest.mark.slow
def test_sigkill_at_random_moments_on_thousands_of_files(tmp_path: Path) -> None:
    """Real processes killed with SIGKILL, while renaming, undoing and recovering."""
    rng = random.Random(10)
    make_files(tmp_path, 3000)
    original = hashes(tmp_path)
    env = {**os.environ, "PYTHONPATH": SRC}
    outcomes = Counter()
    deadline = time.monotonic() + 25  # keeps it near 30 s on 2 busy cores
    round_no = 0
    while time.monotonic() < deadline or round_no < 6:
        round_no += 1
        cats = ",".join(rng.sample(["red", "green", "blue", "grey", "pink"], rng.randint(1, 4)))
        argv = ["--undo"] if round_no % 3 == 0 else ["--categories", cats]
        _kill_at_random(tmp_path, argv, env, rng)
        assert hashes(tmp_path) == original, f"round {round_no}: a file is lost or hidden"
        if (tmp_path / JOURNAL_NAME).exists() and rng.random() < 0.5:
            _kill_at_random(tmp_path, ["--recover"], env, rng)  # a kill during recovery too
            assert hashes(tmp_path) == original
        outcomes["interrupted" if (tmp_path / JOURNAL_NAME).exists() else "whole"] += 1
        assert rename.run(tmp_path, recover_run=True, print_fn=lambda _: None) == 0
        assert hashes(tmp_path) == original
        assert not [n for n in os.listdir(tmp_path) if n.startswith(TMP_PREFIX)]
        if round_no >= 40:
            break
    assert outcomes["interrupted"] >= 3, outcomes


def _kill_at_random(folder: Path, argv: list[str], env: dict, rng: random.Random) -> None:
    cmd = [sys.executable, "-m", "imgsim.cli", "rename", str(folder), "--yes", *argv]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if rng.random() < 0.8:  # mostly while files move: from the journal's appearance on
        start = time.monotonic()
        while not (folder / JOURNAL_NAME).exists() and proc.poll() is None:
            if time.monotonic() - start > 10:
                break
            time.sleep(0.0005)
        time.sleep(rng.uniform(0, 0.15))
    else:
        time.sleep(rng.uniform(0, 0.6))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
