"""Tests for several-process training: rank shares of a batch, and torchrun against one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from imgsim.model.network import EmbeddingNet, load_model
from imgsim.train.distributed import Dist, from_env, gather
from imgsim.train.trainer import seed_everything

ROOT = Path(__file__).resolve().parent.parent
WORKER = str(ROOT / "tests" / "ddp_worker.py")
FLAGS = [
    "-q", "train", "--image-size", "32", "--widths", "8,16", "--blocks", "1,1",
    "--head-hidden", "32", "--embedding-dim", "16", "--epochs", "2", "--steps-per-epoch", "2",
    "--batch-size", "32", "--m-per-class", "8", "--workers", "1", "--threads", "1",
    "--val-fraction", "0.2", "--loss", "triplet", "--mining", "all", "--lr", "3e-3", "--augment",
]  # fmt: skip


def _run(prefix: list[str], data: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("WORLD_SIZE", None)
    argv = [*prefix, WORKER, *FLAGS, "--data", str(data), "--output-dir", str(out)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)


def test_two_gloo_processes_train_the_model_one_process_trains(
    shapes_dir: Path, tmp_path: Path
) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2"]  # fmt: skip
    two = _run(torchrun, shapes_dir, tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    assert "terminate called" not in two.stderr
    assert two.stdout.count("Saved") == 1  # rank 0 alone reports and writes
    one = _run([sys.executable], shapes_dir, tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]

    a, info_a = load_model(tmp_path / "one" / "triplet_base_final.pt")
    b, info_b = load_model(tmp_path / "two" / "triplet_base_final.pt")
    seed_everything(0)
    start = EmbeddingNet(a.config).state_dict()
    moved = diff = 0.0
    for name, x in a.state_dict().items():
        y = b.state_dict()[name]
        assert torch.allclose(x.float(), y.float(), atol=1e-4), name
        moved += float((x.float() - start[name].float()).pow(2).sum())
        diff += float((x.float() - y.float()).pow(2).sum())
    assert moved > 0.01  # the runs trained, and agree to far better than what they learned
    assert (diff / moved) ** 0.5 < 1e-3
    losses = lambda info: [h["loss"] for h in info["metrics"]["history"]]  # noqa: E731
    assert torch.allclose(torch.tensor(losses(info_a)), torch.tensor(losses(info_b)), rtol=1e-4)


def test_one_process_without_torchrun(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert from_env() == Dist() and not from_env().enabled and from_env().main
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert from_env() == Dist(2, 4, 0) and not from_env().main
    x = torch.ones(3, 2, requires_grad=True)
    assert gather(Dist(), x) is x
