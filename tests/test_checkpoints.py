"""Tests for checkpoints: one folder per run, pruning inside it by epoch number, resume checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imgsim.core.config import ModelConfig, TrainConfig, to_dict
from imgsim.core.errors import CheckpointError
from imgsim.train import checkpoints


def _payload(**train: object) -> dict:
    config = TrainConfig(**train)  # type: ignore[arg-type]
    return {"train_config": to_dict(config), "requested_config": to_dict(config),
            "model_config": to_dict(ModelConfig(image_size=64)), "history": []}  # fmt: skip


def test_pruning_stays_inside_a_run_and_counts_epochs_as_numbers(tmp_path: Path) -> None:
    old = checkpoints.new_run(tmp_path)
    for epoch in (95, 100):
        checkpoints.store(old, epoch, _payload())
    new = checkpoints.new_run(tmp_path)
    assert (old.name, new.name) == ("run_0001", "run_0002")
    checkpoints.store(new, 5, _payload())
    assert [p.name for p in sorted(new.iterdir())] == ["epoch_0005.pt"]
    assert len(list(old.iterdir())) == 2  # the earlier run is not touched
    for epoch in (999, 1000, 1001):
        checkpoints.store(new, epoch, _payload())
    assert sorted(p.name for p in new.iterdir()) == ["epoch_1000.pt", "epoch_1001.pt"]


def test_latest_is_the_newest_run_even_with_fewer_epochs(tmp_path: Path) -> None:
    old = checkpoints.new_run(tmp_path)
    checkpoints.store(old, 100, _payload())
    new = checkpoints.new_run(tmp_path)
    checkpoints.store(new, 5, _payload())
    run_dir, payload = checkpoints.latest(tmp_path)
    assert run_dir == new and payload["epoch"] == 5


def test_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    run = checkpoints.new_run(tmp_path)
    checkpoints.store(run, 1, _payload())
    (run / "epoch_0002.pt").write_bytes(b"cut off")
    assert checkpoints.latest(tmp_path)[1]["epoch"] == 1


def test_resume_names_each_setting_that_would_change_the_result(tmp_path: Path) -> None:
    run = checkpoints.new_run(tmp_path)
    checkpoints.store(run, 1, _payload(epochs=4, learning_rate=1e-3))
    _, payload = checkpoints.latest(tmp_path)
    changed = TrainConfig(epochs=6, learning_rate=1e-2, workers=3, output_dir="elsewhere")
    with pytest.raises(CheckpointError) as info:
        checkpoints.check_resumable(payload, changed, ModelConfig(image_size=32))
    message = str(info.value)
    assert "epochs: 4 in the run, 6 now" in message and "learning_rate" in message
    assert "image_size: 64 in the run, 32 now" in message
    assert "workers" not in message and "output_dir" not in message  # same model either way
    checkpoints.check_resumable(payload, TrainConfig(epochs=4, workers=3), ModelConfig(64))


def test_a_run_saved_before_a_setting_existed_resumes_as_it_trained() -> None:
    payload = _payload(epochs=4)
    for added in ("flip", "label_smoothing"):
        del payload["requested_config"][added], payload["train_config"][added]
    train, _ = checkpoints.saved_configs(payload)
    assert train.flip is False and train.label_smoothing == 0.0  # not today's defaults
    assert TrainConfig().flip is True


def test_checkpoints_load_without_unpickling_code(tmp_path: Path) -> None:
    run = checkpoints.new_run(tmp_path)
    path = checkpoints.store(run, 3, _payload())
    assert torch.load(path, weights_only=True)["format"] == checkpoints.CHECKPOINT_FORMAT


def test_a_run_that_died_before_its_first_checkpoint_is_not_replaced_by_an_older_one(
    tmp_path: Path,
) -> None:
    old = checkpoints.new_run(tmp_path)
    checkpoints.store(old, 100, _payload())
    checkpoints.new_run(tmp_path)  # started, killed before epoch 1 ended
    assert checkpoints.latest(tmp_path) is None
