"""kill -9 in the middle of training and of an index update: nothing half-written is ever read.

Both run the real `imgsim` command in a subprocess and SIGKILL it: no `finally`, no atexit,
exactly what a power cut or the OOM killer leaves behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from imgsim.core.config import CHECKPOINT_DIR, MODEL_FILE, ExtractConfig
from imgsim.embed.update import update_index
from imgsim.images.sample import generate_shapes
from imgsim.model.network import EmbeddingNet, load_model, save_model
from imgsim.search.searcher import Searcher
from imgsim.store import open_store

from .conftest import tiny_model_config

TINY_FLAGS = [
    "--image-size", "32", "--widths", "8,16", "--blocks", "1,1", "--head-hidden", "16",
    "--embedding-dim", "8", "--no-early-stop", "--augment-below", "0", "--backbone", "scratch",
]  # fmt: skip
SHAPES = ("circle", "square", "triangle")


def imgsim(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "imgsim.cli", "-q", *map(str, args)]


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 90) -> None:
    """Poll every 10 ms; fail early if the process ended on its own."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"process ended (rc {proc.returncode}) before the moment to kill it")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the moment to kill")
        time.sleep(0.01)


def kill_9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def checkpoint_epochs(directory: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in directory.glob("epoch_*.pt"))


def test_kill_9_during_training_then_resume_finishes_a_valid_model(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    generate_shapes(data, per_class=8, size=32, seed=1, shapes=SHAPES)
    train = imgsim(
        "train", "--data", data, "--output-dir", out, "--checkpoint-every", "1",
        "--steps-per-epoch", "2", "--batch-size", "12", "--workers", "1", *TINY_FLAGS,
    )  # fmt: skip
    checkpoints = out / CHECKPOINT_DIR / "run_0001"  # one folder per run (issue 10)
    # 20 epochs: far more than the first checkpoint needs; --resume keeps the run's number.
    proc = subprocess.Popen([*train, "--epochs", "20"], stderr=subprocess.DEVNULL)
    wait_for(lambda: bool(checkpoint_epochs(checkpoints)), proc)
    kill_9(proc)
    assert not (out / MODEL_FILE).exists()
    done = checkpoint_epochs(checkpoints)[-1]
    # What a crash mid-write leaves: a temporary file of the next checkpoint (atomic_path's
    # name), and for good measure a damaged file under a checkpoint's own name.
    whole = (checkpoints / f"epoch_{done:04d}.pt").read_bytes()
    (checkpoints / f".epoch_{done + 1:04d}.pt.x1y2z3.tmp").write_bytes(whole[: len(whole) // 2])
    (checkpoints / f"epoch_{done + 2:04d}.pt").write_bytes(whole[: len(whole) // 3])

    resumed = subprocess.run([*train, "--resume", "--epochs", "20"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Skipping unreadable checkpoint {checkpoints / f'epoch_{done + 2:04d}.pt'}" in (
        resumed.stderr
    )
    assert ".tmp" not in resumed.stderr  # never even looked at
    model, info = load_model(out / MODEL_FILE)
    assert [h["epoch"] for h in info["metrics"]["history"]] == list(range(1, 21))
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 8)


# --- the index ---------------------------------------------------------------------------------

# Runs `imgsim` paused at a chosen moment, for the kill: "commit" is just before the store's
# database (SQLite) takes the changes; a number n is just before os.replace's n-th call, the
# last step of every atomic write: a file written in full under its temporary name but not yet
# renamed.
# (An update renames four: the FAISS file, then the two .npy exports and the .json.)
PAUSED_IMGSIM = """
import os, sys, time
from imgsim.store.faiss_store import FaissStore
marker, point = sys.argv[1], sys.argv[2]
def pause(where):
    with open(marker, "w") as fh:
        fh.write(where)
    time.sleep(600)
real_replace, renames = os.replace, []
def replace(src, dst, *args, **kwargs):
    renames.append(dst)
    if str(len(renames)) == point:
        pause(str(dst))
    return real_replace(src, dst, *args, **kwargs)
real_apply = FaissStore.apply
def apply(self, *args, **kwargs):
    if point == "commit":
        pause("commit")
    return real_apply(self, *args, **kwargs)
os.replace, FaissStore.apply = replace, apply
from imgsim.cli.commands import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture
def indexed(tmp_path: Path) -> tuple[Path, Path]:
    """A workdir indexed over 2 shapes, and a third shape's images added since."""
    data, work = tmp_path / "data", tmp_path / "work"
    generate_shapes(data, per_class=10, size=32, seed=3, shapes=SHAPES[:2])
    work.mkdir()
    model = EmbeddingNet(tiny_model_config(head_hidden=16, embedding_dim=8)).eval()
    save_model(work / MODEL_FILE, model, list(SHAPES))
    update_index(config(data, work), update=False, progress=False)
    generate_shapes(tmp_path / "new", per_class=10, size=32, seed=4, shapes=SHAPES[2:])
    for path in (tmp_path / "new").iterdir():
        path.rename(data / path.name)
    (data / "circle_00001.png").unlink()  # and one deleted
    return data, work


def config(data: Path, work: Path) -> ExtractConfig:
    return ExtractConfig(
        data_dir=str(data), output_dir=str(work), model_path=str(work / MODEL_FILE), workers=1
    )


def assert_searchable(work: Path, data: Path, sizes: set[int]) -> None:
    """The index loads, has one of the expected sizes, and every name in it is a real image."""
    with open_store(work) as store:
        assert store.count() in sizes
        assert set(store.facts()) <= {p.name for p in data.iterdir()} | {"circle_00001.png"}
    searcher = Searcher.from_workdir(work)
    assert searcher.problems == []
    assert len(searcher.search(data / "square_00002.png", top_k=5)) == 5


@pytest.mark.parametrize("point", ["commit", "1", "3", "4"])
def test_kill_9_during_index_update_keeps_an_index_and_the_next_update_completes(
    indexed: tuple[Path, Path], point: str, tmp_path: Path
) -> None:
    data, work = indexed
    marker = tmp_path / "paused-at"
    command = [sys.executable, "-c", PAUSED_IMGSIM, marker, point]
    args = ["index", "--update", "--data", data, "--workdir", work]
    proc = subprocess.Popen([*map(str, command), *map(str, args)], stderr=subprocess.DEVNULL)
    wait_for(marker.exists, proc)
    kill_9(proc)
    if point != "commit":
        assert list(work.glob(".*.tmp")), "the kill should leave a written, unrenamed file"

    assert_searchable(work, data, sizes={20, 29})  # before (2 × 10) or after (+10, −1)
    result = update_index(config(data, work), update=True, progress=False)
    assert result.total == 29
    assert_searchable(work, data, sizes={29})
    fresh = update_index(config(data, work), update=True, progress=False)
    assert (fresh.embedded, fresh.removed, fresh.total) == (0, 0, 29)  # nothing left undone


# --- every writer ------------------------------------------------------------------------------

SRC = Path(__file__).resolve().parents[1] / "src" / "imgsim"
WRITERS = {"save", "savefig", "write_bytes", "write_text", "dump", "tofile"}
# sample.py writes the demo's *input* images (a torn one is skipped as unreadable, and the
# demo makes them again); fileio.py is the atomic writer itself.
# staging.py writes uploads into the staging folder, where nothing reads them before they
# are fsynced and renamed into the data folder (its own crash recovery).
EXEMPT = {"sample.py", "fileio.py", "staging.py"}
NOT_AN_OUTPUT = "# not an output:"


def unprotected_writes(source: str) -> list[int]:
    """Lines that call a writer outside any `with atomic_path(...)` block."""
    import ast

    bad: list[int] = []

    def visit(node: ast.AST, protected: bool) -> None:
        if isinstance(node, ast.With) and any(
            isinstance(item.context_expr, ast.Call)
            and getattr(item.context_expr.func, "id", "") == "atomic_path"
            for item in node.items
        ):
            protected = True
        if isinstance(node, ast.Call) and not protected:
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            modes = [a.value for a in node.args[1:2] if isinstance(a, ast.Constant)]
            modes += [
                k.value.value
                for k in node.keywords
                if k.arg == "mode" and isinstance(k.value, ast.Constant)
            ]
            writes = name == "open" and any(set(str(m)) & set("wax+") for m in modes)
            if name in WRITERS or writes:
                bad.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, protected)

    visit(ast.parse(source), False)
    lines = source.splitlines()
    # A lock file or an in-memory buffer is no output: the line says so, to be read in review.
    return [n for n in bad if NOT_AN_OUTPUT not in lines[n - 1]]


def test_every_output_is_written_through_atomic_path() -> None:
    offenders = {
        str(path.relative_to(SRC)): lines
        for path in sorted(SRC.rglob("*.py"))
        if path.name not in EXEMPT and (lines := unprotected_writes(path.read_text()))
    }
    assert offenders == {}, "write these through imgsim.core.fileio.atomic_path"
    # The check itself works:
    assert unprotected_writes("torch.save(x, 'm.pt')\nopen(p, 'wb')\nopen(p, mode='a')") == [
        1,
        2,
        3,
    ]
    assert (
        unprotected_writes("with atomic_path(p) as t, open(t, 'wb') as f:\n    f.write(b'')") == []
    )
