"""What `imgsim train` tells: its plan, progress and ETA, the kept epoch, a missed target."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imgsim.cli.commands import main
from imgsim.train.run_clock import RunClock, duration
from imgsim.train.threshold import ThresholdChoice

TINY = ["--image-size", "32", "--backbone", "scratch", "--widths", "8,16", "--blocks", "1,1",
        "--embedding-dim", "16", "--head-hidden", "32", "--threads", "1", "--workers", "0",
        "--loss", "triplet", "--batch-size", "32", "--m-per-class", "8"]  # fmt: skip


def test_a_run_says_its_plan_progress_and_kept_epoch(
    shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    # A precision of 100 % is out of reach after 3 epochs on these pictures: the warning shows.
    args = ["train", str(shapes_dir), "--workdir", str(work), "--epochs", "3",
            "--threshold-precision", "1", *TINY]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    err, out = captured.err, captured.out
    plan = next(line for line in err.splitlines() if line.startswith("Plan: "))
    assert re.search(r"\d+ training images in 4 categories", plan), plan
    assert "scratch backbone" in plan and "3 epochs × 3 steps per epoch × batch 32" in plan
    progress = [line for line in err.splitlines() if re.match(r"epoch \d+/3: loss", line)]
    assert [line.split(":")[0] for line in progress] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "33% of the run done, about" in progress[0] and "(ETA " in progress[0]
    assert "100% of the run done" in progress[-1]
    assert re.search(r"Estimated training time: .+ for 3 epochs", err), err
    assert re.search(r"warning: The default threshold reached [\d.]+% precision against its "
                     r"100% target", err), err  # fmt: skip
    assert re.search(r"Saved .+: the weights of epoch 3 of 3 .*; kept: the last epoch", out), out


def test_the_threshold_warns_only_below_its_target() -> None:
    choice = ThresholdChoice(70.0, 0.6, precision=0.649, kept=0.5, target=0.8, top_k=10, pairs=9)
    warning = choice.shortfall()
    assert warning is not None and "reached 64.9% precision against its 80% target" in warning
    assert "35% of the results" in warning
    met = ThresholdChoice(70.0, 0.6, precision=0.85, kept=0.5, target=0.8, top_k=10, pairs=9)
    assert met.shortfall() is None


def test_the_clock_extrapolates_the_epochs_timed_here() -> None:
    clock = RunClock(epochs=10, first_epoch=5, started=0.0)  # resumed after epoch 4
    import time

    clock.started = time.monotonic() - 20  # epochs 5 and 6 took 20 s
    assert 39 <= clock.left(6) <= 41  # 4 epochs more at 10 s each
    assert clock.progress(6).startswith("60% of the run done, about 40 s left")
    assert duration(200) == "3 min 20 s" and duration(7500) == "2 h 05 min"
