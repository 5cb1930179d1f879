"""Tests for the training recipe: proxy losses, early stopping, input size, starting weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from imgsim.core.errors import ConfigError
from imgsim.model.init_weights import load_init_weights
from imgsim.model.network import EmbeddingNet, load_model
from imgsim.train.autosize import choose_image_size, collection_sides, resolve_image_size
from imgsim.train.stopping import Stopping, noise_margin, patience_for
from imgsim.train.train import train
from imgsim.train.trainset import scan_collection

from .conftest import tiny_model_config, tiny_train_config


@pytest.mark.parametrize("loss", ["proxyanchor", "normsoftmax", "arcface"])
def test_proxy_losses_train_and_learn_their_proxies(
    shapes_dir: Path, tmp_path: Path, loss: str
) -> None:
    config = tiny_train_config(shapes_dir, tmp_path, epochs=2, steps_per_epoch=3, loss=loss)
    result = train(config, tiny_model_config(), progress=False)
    assert np.isfinite(result.history[-1]["loss"])
    (ckpt,) = (tmp_path / "checkpoints" / "run_0001").glob("epoch_*.pt")
    proxies = torch.load(ckpt, weights_only=True)["loss_state"]
    assert proxies and all(v.shape[0] in (4, 16) for v in proxies.values())  # per category


def test_proxies_learn_at_their_own_rate(shapes_dir: Path, tmp_path: Path) -> None:
    from imgsim.train.trainer import Trainer

    seen = {}
    original = Trainer.train_step

    def spy(self, *args):
        out = original(self, *args)
        seen["rates"] = [g["lr"] for g in self.optimizer.param_groups]
        return out

    pytest.MonkeyPatch().setattr(Trainer, "train_step", spy)
    config = tiny_train_config(shapes_dir, tmp_path, epochs=1, steps_per_epoch=1,
                               loss="proxyanchor", lr_schedule="constant",
                               proxy_lr_scale=50.0)  # fmt: skip
    train(config, tiny_model_config(), progress=False)
    assert seen["rates"] == pytest.approx([config.learning_rate, 50 * config.learning_rate])


def _record(epoch: int, recall: float | None, loss: float = 1.0, val_loss: float = 1.0) -> dict:
    return {"epoch": epoch, "loss": loss, "val_recall_at_1": recall, "val_loss": val_loss}


def test_stopping_keeps_the_best_epoch_and_waits_its_patience() -> None:
    stop = Stopping(patience=2)
    recalls = [0.5, 0.7, 0.6, 0.65]
    reasons = [stop.update(_record(e, r), lambda e=e: {"w": e}) for e, r in enumerate(recalls, 1)]
    assert reasons[:3] == [None, None, None]
    assert reasons[3] is not None and "below its best (0.700 at epoch 2)" in reasons[3]
    assert "by more than chance for 2 epochs" in reasons[3]
    assert (stop.best_epoch, stop.best_state) == (2, {"w": 2})


def test_ties_go_to_the_lower_validation_loss() -> None:
    stop = Stopping(patience=5)
    stop.update(_record(1, 0.8, val_loss=0.5), lambda: {"w": 1})
    stop.update(_record(2, 0.8, val_loss=0.4), lambda: {"w": 2})
    stop.update(_record(3, 0.8, val_loss=0.6), lambda: {"w": 3})
    assert stop.best_epoch == 2


def test_a_zero_loss_stops_the_run_and_says_why() -> None:
    stop = Stopping(patience=100)
    reasons = [stop.update(_record(e, 0.5 + e / 100, loss=0.0), dict) for e in (1, 2, 3)]
    assert reasons[:2] == [None, None] and "training loss has been 0" in reasons[2]


def test_stopping_off_never_stops_but_still_keeps_the_best() -> None:
    stop = Stopping(patience=1, enabled=False)
    for e, r in enumerate([0.9, 0.1, 0.1, 0.1], 1):
        assert stop.update(_record(e, r, loss=0.0), lambda e=e: {"w": e}) is None
    assert stop.best_epoch == 1


def test_patience_is_a_fifth_of_the_run() -> None:
    assert patience_for(0, 100) == 20 and patience_for(0, 10) == 5 and patience_for(3, 100) == 3


def _scripted_run(
    shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recalls: list[float]
) -> tuple[Any, dict, dict[int, dict]]:
    """Train with validation Recall@1 scripted; the model, its info and each epoch's weights."""
    import imgsim.train.trainer

    scores = iter(recalls)

    def scripted(*args, **kwargs):
        return {"val_loss": 1.0, "val_recall_at_1": next(scores), "val_mean_distance": 1.0}

    monkeypatch.setattr(imgsim.train.trainer, "evaluate", scripted)
    snapshots = {}
    original = imgsim.train.trainer.Trainer.weights

    def remember(self):
        state = original(self)
        snapshots[len(self.history)] = {k: v.clone() for k, v in state["model"].items()}
        return state

    monkeypatch.setattr(imgsim.train.trainer.Trainer, "weights", remember)
    config = tiny_train_config(shapes_dir, tmp_path, epochs=len(recalls), steps_per_epoch=1,
                               early_stop=True, patience=2, validate_every=1)  # fmt: skip
    result = train(config, tiny_model_config(), progress=False)
    model, info = load_model(result.model_path)
    return model, info, snapshots


def _holds(model: Any, weights: dict) -> bool:
    kept = model.state_dict()
    return all(torch.equal(kept[k], v) for k, v in weights.items())


def test_training_stops_when_validation_stops_improving_and_keeps_the_best(
    shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recalls = [0.5, 1.0, 0.1, 0.1, 0.8, 0.9, 1.0]
    model, info, snapshots = _scripted_run(shapes_dir, tmp_path, monkeypatch, recalls)
    assert len(info["metrics"]["history"]) == 4  # epoch 2 was best; 3 and 4 did not beat it
    assert info["metrics"]["best_epoch"] == 2 and "for 2 epochs" in info["converged"]
    assert info["metrics"]["kept_epoch"] == 2 and _holds(model, snapshots[2])


def test_the_last_epoch_is_kept_when_the_best_is_within_the_noise(
    shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    # A few held-out images: 0.90 against 0.86 is chance, and the last epoch, at the end of
    # the decayed schedule, searched better in every measured regime.
    with caplog.at_level("INFO", logger="imgsim"):
        model, info, snapshots = _scripted_run(
            shapes_dir, tmp_path, monkeypatch, [0.5, 0.9, 0.85, 0.86]
        )
    assert info["metrics"]["best_epoch"] == 2 and info["metrics"]["kept_epoch"] == 4
    last = next(tmp_path.glob("checkpoints/run_*/epoch_0004.pt"))
    assert _holds(model, torch.load(last, weights_only=True)["model_state"])
    assert not _holds(model, snapshots[2])
    assert "Keeping the last epoch, 4" in caplog.text and "within the noise" in caplog.text


def test_the_noise_margin_shrinks_with_the_held_out_images() -> None:
    assert noise_margin(0.85, 300) == pytest.approx(0.0412, abs=1e-4)
    assert noise_margin(0.9, 5000) == pytest.approx(0.0085, abs=1e-4)
    assert noise_margin(1.0, 30) == noise_margin(0.95, 30) > 0  # never certain
    few = Stopping(patience=5, queries=300, best_epoch=3, best_recall=0.90)
    many = Stopping(patience=5, queries=5000, best_epoch=3, best_recall=0.90)
    assert not few.best_is_clearly_ahead(_record(9, 0.87))
    assert many.best_is_clearly_ahead(_record(9, 0.87))
    assert many.best_is_clearly_ahead(_record(9, None))  # the last was not validated


def test_epochs_within_the_noise_of_the_best_hold_off_the_stop() -> None:
    # 300 held-out images: ±0.04 is chance. A lucky 0.84 at epoch 2 must not end the run while
    # the later epochs stay level with it; only epochs clearly behind count towards patience.
    stop = Stopping(patience=2, queries=300)
    level = [0.80, 0.84, 0.81, 0.82, 0.80, 0.83]
    assert all(stop.update(_record(e, r), dict) is None for e, r in enumerate(level, 1))
    assert stop.best_epoch == 2 and stop.level_epoch == 6
    assert stop.update(_record(7, 0.70), dict) is None
    assert "by more than chance for 2 epochs" in stop.update(_record(8, 0.71), dict)


@pytest.mark.parametrize(
    ("sides", "size"), [([28] * 5, 32), ([40, 45, 50], 48), ([800, 600], 64), ([], 64)]
)
def test_input_size_follows_the_images(sides: list[int], size: int) -> None:
    assert choose_image_size(sides) == size


def test_input_size_from_a_folder(shapes_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = scan_collection(shapes_dir, workers=1)
    sides = collection_sides(data)
    assert sides and all(s > 0 for s in sides)
    with caplog.at_level("INFO", logger="imgsim"):
        assert resolve_image_size(0, data) == choose_image_size(sides)
    assert "Input size" in caplog.text and "--image-size N" in caplog.text
    assert resolve_image_size(48, data) == 48


def test_auto_input_size_is_stored_in_the_model(shapes_dir: Path, tmp_path: Path) -> None:
    config = tiny_train_config(shapes_dir, tmp_path, epochs=1, steps_per_epoch=1)
    result = train(config, tiny_model_config(image_size=0), progress=False)
    model, _ = load_model(result.model_path)
    expected = choose_image_size(collection_sides(scan_collection(shapes_dir, workers=1)))
    assert model.config.image_size == expected


def test_init_weights_loads_matching_tensors(tmp_path: Path) -> None:
    source = EmbeddingNet(tiny_model_config())
    torch.save(source.state_dict(), tmp_path / "w.pt")
    target = EmbeddingNet(tiny_model_config())
    assert load_init_weights(target, tmp_path / "w.pt") == len(source.state_dict())
    assert all(torch.equal(target.state_dict()[k], v) for k, v in source.state_dict().items())
    # Another embedding size: the rest loads, the head's last layer stays fresh.
    other = EmbeddingNet(tiny_model_config(embedding_dim=8))
    loaded = load_init_weights(other, tmp_path / "w.pt")
    assert 0 < loaded < len(other.state_dict())


def test_init_weights_refuses_what_does_not_fit(tmp_path: Path) -> None:
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(ConfigError, match="no tensor"):
        load_init_weights(EmbeddingNet(tiny_model_config()), tmp_path / "foreign.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="cannot read"):
        load_init_weights(EmbeddingNet(tiny_model_config()), tmp_path / "junk.pt")
    with pytest.raises(ConfigError, match="not found"):
        load_init_weights(EmbeddingNet(tiny_model_config()), tmp_path / "missing.pt")


def test_train_starts_from_a_trained_model_file(
    trained_workdir: Path, shapes_dir: Path, tmp_path: Path
) -> None:
    path = str(trained_workdir / "triplet_base_final.pt")
    config = tiny_train_config(shapes_dir, tmp_path, epochs=1, steps_per_epoch=1,
                               init_weights=path, learning_rate=1e-9)  # fmt: skip
    result = train(config, tiny_model_config(), progress=False)
    start, _ = load_model(path)
    after, _ = load_model(result.model_path)
    conv = "stem.0.weight"
    assert torch.allclose(start.state_dict()[conv], after.state_dict()[conv], atol=1e-5)


def test_small_folders_are_augmented_and_say_so(caplog: pytest.LogCaptureFixture) -> None:
    from imgsim.core.config import TrainConfig
    from imgsim.train.train import choose_augment

    with caplog.at_level("INFO", logger="imgsim"):
        assert choose_augment(TrainConfig(augment_below=1000), 2700, 10) is True
    assert "270 training images per category" in caplog.text
    assert choose_augment(TrainConfig(augment_below=1000), 54_000, 10) is False
    assert choose_augment(TrainConfig(augment=True), 54_000, 10) is True
    assert choose_augment(TrainConfig(augment_below=0), 30, 10) is False


def test_large_folders_are_mirrored_and_embed_with_the_mirror(
    shapes_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    import imgsim.train.trainer
    from imgsim.train.augment import flip_batch

    batches = []

    def spy(images: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        batches.append(len(images))
        return flip_batch(images, *args, **kwargs)

    monkeypatch.setattr(imgsim.train.trainer, "flip_batch", spy)
    config = tiny_train_config(shapes_dir, tmp_path, epochs=1, steps_per_epoch=2, flip=True)
    with caplog.at_level("INFO", logger="imgsim"):
        result = train(config, tiny_model_config(), progress=False)
    assert batches == [32, 32] and "Mirroring half the training images" in caplog.text
    model, _ = load_model(result.model_path)
    assert model.config.test_flip == "on"  # trained on mirror images: embeds both
    config = tiny_train_config(shapes_dir, tmp_path / "off", epochs=1, steps_per_epoch=1)
    model, _ = load_model(train(config, tiny_model_config(), progress=False).model_path)
    assert model.config.test_flip == "off"


def test_label_smoothing_reaches_the_softmax_losses_only() -> None:
    from imgsim.core.config import TrainConfig
    from imgsim.train.losses import build_loss
    from imgsim.train.train import check_settings

    for loss in ("normsoftmax", "arcface"):
        built = build_loss(TrainConfig(loss=loss, label_smoothing=0.2), 4, 8)
        assert built.cross_entropy.label_smoothing == 0.2
    assert build_loss(TrainConfig(label_smoothing=0.0), 4, 8).cross_entropy.label_smoothing == 0
    check_settings(TrainConfig(loss="triplet"))  # the default is not an error
    with pytest.raises(ConfigError, match="--label-smoothing: the triplet loss"):
        check_settings(TrainConfig(loss="triplet", label_smoothing=0.2))
    with pytest.raises(ConfigError, match="label_smoothing must be"):
        check_settings(TrainConfig(label_smoothing=1.0))


def test_the_resolved_choice_is_stored(shapes_dir: Path, tmp_path: Path) -> None:
    config = tiny_train_config(shapes_dir, tmp_path, epochs=1, steps_per_epoch=1,
                               augment_below=10_000)  # fmt: skip
    result = train(config, tiny_model_config(), progress=False)
    _, info = load_model(result.model_path)
    assert info["train_config"]["augment"] is True


def test_validation_takes_about_a_tenth_of_the_run() -> None:
    from imgsim.train.evaluation import validation_interval

    assert validation_interval(54_000, 6_000) == 1  # big folders: every epoch
    assert validation_interval(2_700, 300) == 4  # 3,000 embedded for 2,700 trained on
    assert validation_interval(270, 30) == 4
    assert validation_interval(100, 0) == 1


def test_validation_runs_every_few_epochs_and_at_the_end(shapes_dir: Path, tmp_path: Path) -> None:
    config = tiny_train_config(shapes_dir, tmp_path, epochs=5, steps_per_epoch=1,
                               validate_every=2)  # fmt: skip
    result = train(config, tiny_model_config(), progress=False)
    validated = [h["epoch"] for h in result.history if h.get("val_recall_at_1") is not None]
    assert validated == [2, 4, 5]
    assert (tmp_path / "training_history.png").stat().st_size > 1000
