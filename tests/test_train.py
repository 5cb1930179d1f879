"""Tests for training: learning, validation, outputs, checkpoints and resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from imgsim.core.config import TrainConfig
from imgsim.core.errors import ConfigError, DatasetError
from imgsim.model.network import load_model
from imgsim.search.searcher import Searcher
from imgsim.train.metrics import retrieval_metrics
from imgsim.train.samplers import batch_shape
from imgsim.train.train import plan_run, train
from imgsim.train.trainer import Trainer, learning_rate, report_epoch
from imgsim.train.trainset import stratified_split

from .conftest import tiny_model_config, tiny_train_config


def _embed_folder(workdir: Path, folder: Path) -> tuple[np.ndarray, list[str]]:
    searcher = Searcher.from_workdir(workdir)
    paths = sorted(folder.glob("*.png"))
    return searcher.embed(paths), [p.name.split("_")[0] for p in paths]


def test_loss_goes_down_and_unseen_images_find_their_category(
    trained_workdir: Path, shapes_dir: Path, shapes_queries: Path
) -> None:
    _, info = load_model(trained_workdir / "triplet_base_final.pt")
    history = info["metrics"]["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    queries, q_labels = _embed_folder(trained_workdir, shapes_queries)
    refs, r_labels = _embed_folder(trained_workdir, shapes_dir)
    names = sorted(set(r_labels))
    to_int = lambda labels: np.array([names.index(x) for x in labels])  # noqa: E731
    metrics = retrieval_metrics(queries, to_int(q_labels), refs, to_int(r_labels))
    assert metrics["recall_at_1"] >= 0.75  # chance is 0.25 with four categories


def test_outputs_describe_the_run(trained_workdir: Path) -> None:
    _, info = load_model(trained_workdir / "triplet_base_final.pt")
    assert info["categories"] == ["circle", "square", "stripes", "triangle"]
    assert info["train_config"]["epochs"] == 4
    assert {"loss", "val_loss", "val_recall_at_1"} <= set(info["metrics"]["final"])
    saved = json.loads((trained_workdir / "training_config.json").read_text())
    assert saved["model"]["image_size"] == 32 and saved["train"]["margin"] == 0.2
    assert (trained_workdir / "training_history.png").stat().st_size > 1000
    assert [p.name for p in (trained_workdir / "checkpoints").iterdir()] == ["run_0001"]
    assert [p.name for p in (trained_workdir / "checkpoints" / "run_0001").iterdir()] == [
        "epoch_0004.pt"
    ]
    assert info["run_id"] == "run_0001" and info["stopped_early"] is None


class _Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_an_uninterrupted_run(
    shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kwargs = dict(epochs=4, checkpoint_every=2, augment=True, steps_per_epoch=3)
    full = train(
        tiny_train_config(shapes_dir, tmp_path / "full", **kwargs),
        tiny_model_config(),
        progress=False,
    )

    real_train_epoch = Trainer.train_epoch

    def dying_train_epoch(self: Trainer, epoch: int) -> dict:
        if epoch == 3:  # die after the epoch-2 checkpoint
            raise _Interrupt
        return real_train_epoch(self, epoch)

    part_dir = tmp_path / "part"
    monkeypatch.setattr(Trainer, "train_epoch", dying_train_epoch)
    with pytest.raises(_Interrupt):
        train(
            tiny_train_config(shapes_dir, part_dir, **kwargs), tiny_model_config(), progress=False
        )
    assert not (part_dir / "triplet_base_final.pt").exists()
    monkeypatch.setattr(Trainer, "train_epoch", real_train_epoch)
    resumed = train(
        tiny_train_config(shapes_dir, part_dir, **kwargs),
        tiny_model_config(),
        resume=True,
        progress=False,
    )

    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    a, _ = load_model(full.model_path)
    b, _ = load_model(resumed.model_path)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(x.float(), y.float(), atol=1e-5), name


def test_same_seed_same_model(shapes_dir: Path, tmp_path: Path) -> None:
    runs = [
        train(
            tiny_train_config(shapes_dir, tmp_path / str(i), epochs=1, steps_per_epoch=2),
            tiny_model_config(),
            progress=False,
        )
        for i in range(2)
    ]
    a, _ = load_model(runs[0].model_path)
    b, _ = load_model(runs[1].model_path)
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_resume_refuses_a_changed_folder(shapes_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    train(
        tiny_train_config(shapes_dir, out, epochs=1, steps_per_epoch=1),
        tiny_model_config(),
        progress=False,
    )
    other = tmp_path / "other"
    other.mkdir()
    for p in sorted(shapes_dir.glob("circle_*"))[:4] + sorted(shapes_dir.glob("square_*"))[:4]:
        (other / p.name).write_bytes(p.read_bytes())
    with pytest.raises(DatasetError, match="categories changed"):
        train(
            tiny_train_config(other, out, epochs=1, steps_per_epoch=1),
            tiny_model_config(),
            resume=True,
            progress=False,
        )


@pytest.mark.parametrize("mining", ["semihard", "hard", "all"])
def test_every_mining_mode_trains(shapes_dir: Path, tmp_path: Path, mining: str) -> None:
    result = train(
        tiny_train_config(
            shapes_dir, tmp_path, epochs=1, steps_per_epoch=2, loss="triplet", mining=mining
        ),
        tiny_model_config(),
        progress=False,
    )
    assert np.isfinite(result.history[0]["loss"])


def test_multisimilarity_loss_trains(
    shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import imgsim.train.plots

    named = []
    monkeypatch.setattr(
        imgsim.train.plots, "plot_history", lambda h, p, name, best: named.append(name)
    )
    result = train(
        tiny_train_config(
            shapes_dir, tmp_path, epochs=2, steps_per_epoch=3, loss="multisimilarity"
        ),
        tiny_model_config(),
        progress=False,
    )
    assert np.isfinite(result.history[-1]["loss"])
    assert named == ["multi-similarity"]  # the plot names the loss actually used


def test_unknown_mining_is_refused(shapes_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mining"):
        train(
            tiny_train_config(shapes_dir, tmp_path, mining="random"),
            tiny_model_config(),
            progress=False,
        )


def test_too_few_categories_is_a_clear_error(tmp_path: Path, shapes_dir: Path) -> None:
    data = tmp_path / "one"
    data.mkdir()
    for p in sorted(shapes_dir.glob("circle_*"))[:5]:
        (data / p.name).write_bytes(p.read_bytes())
    with pytest.raises(DatasetError, match="No categories detected"):
        train(tiny_train_config(data, tmp_path), tiny_model_config(), progress=False)


def test_corrupt_image_is_skipped_by_name(
    tmp_path: Path, shapes_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for p in sorted(shapes_dir.glob("circle_*"))[:4] + sorted(shapes_dir.glob("square_*"))[:4]:
        (data / p.name).write_bytes(p.read_bytes())
    (data / "square_09999.png").write_bytes(b"not a png at all")
    result = train(
        tiny_train_config(data, tmp_path / "out", epochs=1), tiny_model_config(), progress=False
    )
    assert "square_09999.png" in caplog.text
    assert result.categories == ["circle", "square"]


def test_stratified_split_holds_out_every_category() -> None:
    labels = torch.tensor([0] * 20 + [1] * 10 + [2] * 3)
    train_rows, val_rows = stratified_split(labels, 0.2, seed=0)
    assert sorted(torch.cat([train_rows, val_rows]).tolist()) == list(range(33))
    assert labels[val_rows].bincount().tolist() == [4, 2]  # the 3-image category stays whole


@pytest.mark.parametrize(
    ("batch", "m", "classes", "expected"),
    [(64, 4, 20, (64, 4)), (64, 4, 10, (63, 7)), (32, 4, 2, (32, 16)), (16, 4, 100, (16, 4))],
)
def test_batch_shape_fits_the_sampler(batch: int, m: int, classes: int, expected: tuple) -> None:
    got = batch_shape(batch, m, classes)
    assert got == expected and got[0] % got[1] == 0 and got[0] <= got[1] * classes


def test_cosine_schedule_warms_up_and_decays() -> None:
    cfg = tiny_train_config(Path("."), Path("."), learning_rate=1.0)
    lrs = [learning_rate(cfg, s, 100) for s in range(100)]
    assert lrs[0] < lrs[2] <= 1.0 and lrs[-1] < 0.01
    assert (
        learning_rate(tiny_train_config(Path("."), Path("."), lr_schedule="constant"), 50, 100)
        == 3e-3
    )


def test_collapse_is_warned_with_advice(caplog: pytest.LogCaptureFixture) -> None:
    record = {"epoch": 3, "loss": 0.2, "images_per_s": 100.0, "val_loss": 0.2,
              "val_recall_at_1": 0.1, "val_mean_distance": 0.004}  # fmt: skip
    report_epoch(record, tiny_train_config(Path("."), Path(".")))
    assert "Embedding collapse" in caplog.text and "learning-rate" in caplog.text
    caplog.clear()
    report_epoch({**record, "val_mean_distance": 0.9}, tiny_train_config(Path("."), Path(".")))
    assert "collapse" not in caplog.text


@pytest.mark.parametrize(
    ("n_train", "seen", "cap", "epochs"),
    [(80, 500_000, 100, 100), (80, 3200, 100, 25), (60_000, 500_000, 100, 8), (10, 1, 100, 1)],
)
def test_auto_epochs_come_from_the_collection(
    n_train: int, seen: int, cap: int, epochs: int
) -> None:
    config = tiny_train_config(Path("."), Path("."), epochs=0, auto_images_seen=seen,
                               max_auto_epochs=cap, batch_size=64, m_per_class=4)  # fmt: skip
    plan = plan_run(config, n_train, 16)
    assert plan.epochs == epochs and plan.batch == 64
    assert plan.steps_per_epoch == -(-n_train // 64)


def test_auto_epochs_are_stored_resolved(shapes_dir: Path, tmp_path: Path) -> None:
    config = tiny_train_config(shapes_dir, tmp_path, epochs=0, auto_images_seen=64,
                               steps_per_epoch=1)  # fmt: skip
    result = train(config, tiny_model_config(), progress=False)
    assert len(result.history) == 2  # 64 images / 32 per step / 1 step per epoch
    model, info = load_model(result.model_path)
    assert info["train_config"]["epochs"] == 2  # resolved, for --resume
    assert model.config.test_flip == "off"  # resolved too: tiny_train_config does not augment
    # training_config.json repeats the run as a config file: epochs fixed, and no auto-epoch
    # setting beside them that check_settings would refuse as ignored.
    from imgsim.core.config import load_config
    from imgsim.train.train import check_settings

    again = load_config(tmp_path / "training_config.json").train
    check_settings(again)
    assert again.epochs == 2 and again.auto_images_seen == TrainConfig().auto_images_seen


@pytest.mark.parametrize(
    ("settings", "flip"),
    [
        ({"augment_below": 0}, "off"),
        ({"augment": True}, "on"),
        ({"augment": True, "flip": "off"}, "off"),
    ],
)
def test_test_flip_follows_the_training(
    shapes_dir: Path, tmp_path: Path, settings: dict, flip: str
) -> None:
    model_flip = settings.pop("flip", "auto")
    config = tiny_train_config(shapes_dir, tmp_path, epochs=1, steps_per_epoch=1, **settings)
    result = train(config, tiny_model_config(test_flip=model_flip), progress=False)
    model, _ = load_model(result.model_path)
    assert model.config.test_flip == flip


def _same_weights(a_path: Path, b_path: Path) -> bool:
    a, _ = load_model(a_path)
    b, _ = load_model(b_path)
    return all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_a_slowed_run_trains_the_same_model(
    shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import imgsim.train.trainset

    kwargs = dict(epochs=2, steps_per_epoch=2, augment=True)
    fast = train(tiny_train_config(shapes_dir, tmp_path / "fast", **kwargs), tiny_model_config(),
                 progress=False)  # fmt: skip
    real_decode, real_step = imgsim.train.trainset.decode_file, Trainer.train_step

    def slow_decode(*args, **kw):  # runs in the decode worker (forked after the patch)
        time.sleep(0.005)
        return real_decode(*args, **kw)

    def slow_step(self, *args, **kw):
        time.sleep(0.2)
        return real_step(self, *args, **kw)

    monkeypatch.setattr(imgsim.train.trainset, "decode_file", slow_decode)
    monkeypatch.setattr(Trainer, "train_step", slow_step)
    slow = train(tiny_train_config(shapes_dir, tmp_path / "slow", **kwargs), tiny_model_config(),
                 progress=False)  # fmt: skip
    assert _same_weights(fast.model_path, slow.model_path)
    assert [h["epoch"] for h in slow.history] == [1, 2]  # speed decided nothing


def test_time_budget_stops_early_and_says_so(
    shapes_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tiny_train_config(shapes_dir, tmp_path, epochs=5, steps_per_epoch=3,
                               time_budget_min=1e-6)  # fmt: skip
    result = train(config, tiny_model_config(), progress=False)
    assert result.stopped_early and "time budget" in result.stopped_early
    assert "Stopped early" in caplog.text
    assert len(result.history) == 1 and result.history[0]["partial"] is True
    _, info = load_model(result.model_path)
    assert "time budget" in info["stopped_early"]
    # A partial epoch is never checkpointed, so --resume redoes it whole.
    assert not list((tmp_path / "checkpoints" / "run_0001").iterdir())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"loss": "multisimilarity", "margin": 0.3}, "--margin 0.3"),
        ({"loss": "multisimilarity", "mining": "hard", "margin": 0.1}, "hard miner has no margin"),
        ({"sampler": "random", "m_per_class": 6}, "--m-per-class 6"),
        ({"epochs": 4, "auto_images_seen": 10}, "auto_images_seen"),
        ({"loss": "contrastive"}, "unknown loss"),
        ({"loss": "proxyanchor", "mining": "hard"}, "--mining hard: the proxyanchor loss"),
        ({"loss": "triplet", "proxy_lr_scale": 10.0}, "--proxy-lr-scale"),
        ({"early_stop": False, "patience": 3}, "--patience"),
        ({"val_fraction": 0.0, "early_stop": True, "patience": 3}, "--patience: no validation"),
        ({"val_fraction": 0.0, "validate_every": 2}, "--validate-every"),
        ({"val_fraction": 0.0, "threshold_precision": 0.9}, "--threshold-precision"),
        ({"mixed_precision": False}, "--no-mixed-precision: --device cpu"),
        ({"mixed_precision": False, "device": "mps"}, "--device mps always runs float32"),
    ],
)
def test_settings_that_would_be_ignored_are_refused(settings: dict, message: str) -> None:
    from imgsim.train.train import check_settings

    with pytest.raises(ConfigError, match=re.escape(message)):
        check_settings(tiny_train_config(Path("."), Path("."), **settings))


def test_settings_that_are_used_are_accepted() -> None:
    from imgsim.train.train import check_settings

    for settings in ({"loss": "multisimilarity", "mining": "semihard", "margin": 0.3},
                     {"loss": "triplet", "mining": "multisimilarity", "margin": 0.1},
                     {"sampler": "random", "m_per_class": 4},
                     {"val_fraction": 0.0},
                     {"val_fraction": 0.2, "early_stop": True, "patience": 3, "validate_every": 2,
                      "threshold_precision": 0.9},
                     {"mixed_precision": False, "device": "cuda"},
                     {"mixed_precision": False, "device": "auto"}):  # fmt: skip
        check_settings(tiny_train_config(Path("."), Path("."), **settings))


def test_cli_resume_keeps_the_runs_settings_and_refuses_changes(
    shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from imgsim.cli.commands import main

    out = tmp_path / "out"
    tiny = "--image-size 32 --widths 8,16 --blocks 1,1 --head-hidden 32 --embedding-dim 16 "
    tiny += "--epochs 2 --steps-per-epoch 1 --batch-size 32 --m-per-class 8 --workers 1 "
    tiny += "--threads 1 --loss triplet"
    base = ["-q", "train", "--data", str(shapes_dir), "--output-dir", str(out)]
    assert main([*base, *tiny.split()]) == 0
    assert main([*base, "--resume"]) == 0  # no flags: the run's own settings
    capsys.readouterr()
    assert main([*base, "--resume", "--lr", "0.5", "--epochs", "3"]) == 1
    err = capsys.readouterr().err
    assert "learning_rate: 0.001 in the run, 0.5 now" in err and "epochs: 2 in the run" in err
    assert main([*base, "--resume", "--workers", "2"]) == 0  # same model either way


def test_validation_loss_mixes_categories() -> None:
    from pytorch_metric_learning.losses import TripletMarginLoss

    from imgsim.train.evaluation import validation_loss

    gen = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(40, 8, generator=gen), dim=1)
    labels = torch.arange(4).repeat_interleave(10)  # in file-name order: one category per chunk
    loss = TripletMarginLoss(margin=0.2)
    in_order = [float(loss(e, y)) for e, y in zip(emb.split(10), labels.split(10), strict=True)]
    assert max(in_order) == 0.0  # what the old chunking scored
    mixed = validation_loss(emb, labels, loss, None, batch=10, seed=0)
    assert mixed > 0.05
    assert mixed == validation_loss(emb, labels, loss, None, batch=10, seed=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_mixed_precision_path_trains_and_saves_float32(
    shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype
) -> None:
    """The GPU's autocast and loss scaling, exercised on the CPU (which runs both dtypes)."""
    import imgsim.train.trainer

    monkeypatch.setattr(imgsim.train.trainer, "autocast_dtype", lambda device, enabled=True: dtype)
    config = tiny_train_config(shapes_dir, tmp_path, epochs=1, steps_per_epoch=2)
    result = train(config, tiny_model_config(), progress=False)
    assert np.isfinite(result.history[0]["loss"])
    model, _ = load_model(result.model_path)
    assert all(v.dtype in (torch.float32, torch.int64) for v in model.state_dict().values())
    (ckpt,) = (tmp_path / "checkpoints" / "run_0001").iterdir()
    scaler = torch.load(ckpt, weights_only=True)["scaler_state"]
    assert bool(scaler) == (dtype == torch.float16)  # loss scaling only for float16
