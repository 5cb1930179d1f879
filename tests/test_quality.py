"""Smoke version of the Fashion-MNIST quality benchmark: training must beat raw pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgsim.core.config import ModelConfig, TrainConfig
from imgsim.images.sample import FASHION_MNIST_DIR, fashion_mnist_available

from .benchmark_import import load_benchmark

quality = load_benchmark("quality")
QualitySettings, pixel_metrics = quality.QualitySettings, quality.pixel_metrics
run_quality, to_rgb_batch = quality.run_quality, quality.to_rgb_batch


def test_to_rgb_batch_resizes_and_repeats_grey() -> None:
    images = np.full((2, 28, 28), 200, dtype=np.uint8)
    batch = to_rgb_batch(images, 32)
    assert tuple(batch.shape) == (2, 3, 32, 32) and int(batch.min()) == int(batch.max()) == 200


def test_pixel_metrics_on_separable_digits() -> None:
    rng = np.random.default_rng(0)
    tr = np.concatenate([np.zeros((5, 28, 28)), np.full((5, 28, 28), 255)]).astype(np.uint8)
    te = np.clip(tr[[0, 9]] + rng.integers(0, 20, (2, 28, 28)), 0, 255).astype(np.uint8)
    metrics = pixel_metrics(tr, np.array([0] * 5 + [1] * 5), te, np.array([0, 1]))
    assert metrics["precision_at_1"] == 1.0 and metrics["mean_average_precision_at_r"] == 1.0


@pytest.mark.slow
@pytest.mark.skipif(
    not fashion_mnist_available(), reason="apt-get install dataset-fashion-mnist for this test"
)
def test_trained_model_beats_raw_pixels(tmp_path: Path) -> None:
    settings = QualitySettings(
        data=str(FASHION_MNIST_DIR), output_dir=str(tmp_path), train_limit=8000, test_limit=1000,
        model=ModelConfig(image_size=32, widths=(16, 32, 64, 128)),
        train=TrainConfig(epochs=2, loss="multisimilarity", augment=False, augment_below=0,
                          val_fraction=0.05, workers=1),
    )  # fmt: skip
    results = run_quality(settings, progress=False)
    trained = results["trained"]["precision_at_1"]
    assert trained > results["raw_pixels"]["precision_at_1"], results
    assert trained > results["untrained"]["precision_at_1"]
    assert 0 < results["threshold"] < 100


def test_checkpoint_quality_reads_model_files_and_checkpoints(tmp_path: Path) -> None:
    import torch

    from imgsim.model.network import EmbeddingNet, save_model

    from .conftest import tiny_model_config

    network = load_benchmark("checkpoint_quality").network
    model = EmbeddingNet(tiny_model_config()).eval()
    save_model(tmp_path / "m.pt", model, ["a", "b"])
    from_file = torch.load(tmp_path / "m.pt", weights_only=True)
    checkpoint = {"model_config": from_file["model_config"], "model_state": model.state_dict()}
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.inference_mode():
        assert torch.equal(network(from_file, "off")(x), model(x))
        flipped = network(checkpoint, "on")
        assert torch.allclose(flipped(x), flipped(x.flip(-1)), atol=1e-5)
