"""Tests for the embedding network and its model file."""

from __future__ import annotations

import pickle

import pytest
import torch

from imgsim.core.errors import ModelNotLoadedError
from imgsim.model.network import EmbeddingNet, load_model, read_model_file, save_model, stem_stride

from .conftest import tiny_model_config


@pytest.mark.parametrize("size", [32, 48, 64, 100, 224])
def test_any_input_size_gives_unit_embeddings(size: int) -> None:
    model = EmbeddingNet(tiny_model_config(image_size=size, embedding_dim=12)).eval()
    x = torch.randint(0, 256, (3, 3, size, size), dtype=torch.uint8)
    with torch.inference_mode():
        emb = model(x)
    assert emb.shape == (3, 12)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)


def test_depth_and_width_are_configurable() -> None:
    small = EmbeddingNet(tiny_model_config(widths=(8,), blocks=(1,)))
    deep = EmbeddingNet(tiny_model_config(widths=(8, 16, 32), blocks=(2, 2, 2)))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(deep) > 10 * count(small)


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="image_size"):
        EmbeddingNet(tiny_model_config(image_size=16))
    with pytest.raises(ValueError, match="same"):
        EmbeddingNet(tiny_model_config(widths=(8, 16), blocks=(1,)))


def test_stem_downsamples_more_for_large_inputs() -> None:
    assert stem_stride(32) == 1 and stem_stride(64) == 2 and stem_stride(224) == 4


def test_model_file_round_trip(tmp_path) -> None:
    model = EmbeddingNet(tiny_model_config()).eval()
    path = tmp_path / "m.pt"
    mid = save_model(path, model, ["a", "b"], train_config={"epochs": 3}, metrics={"r1": 0.5})
    # The file holds only tensors and plain data: the safe loader reads it.
    raw = torch.load(path, weights_only=True)
    assert raw["categories"] == ["a", "b"] and raw["model_id"] == mid
    loaded, info = load_model(path)
    assert info["train_config"] == {"epochs": 3} and info["metrics"] == {"r1": 0.5}
    assert loaded.config == model.config
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))


def test_missing_model_file_says_run_training(tmp_path) -> None:
    with pytest.raises(ModelNotLoadedError, match=r"Model not loaded.*run training first"):
        load_model(tmp_path / "nope.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"format": "imgsim-model", "x": _Evil()}, fh)
    with pytest.raises(ModelNotLoadedError, match="not an imgsim model file") as refused:
        read_model_file(path)
    assert "weights_only" not in str(refused.value)  # ours, not PyTorch's advice to trust it


def test_foreign_file_is_refused(tmp_path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ModelNotLoadedError, match="not an imgsim model"):
        read_model_file(path)


def test_test_flip_embeds_an_image_as_its_mirror() -> None:
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(0)
    flipped = EmbeddingNet(tiny_model_config(test_flip="on")).eval()
    plain = EmbeddingNet(tiny_model_config(test_flip="off")).eval()
    plain.load_state_dict(flipped.state_dict())
    with torch.inference_mode():
        emb, mirror = flipped(x), flipped(x.flip(-1))
        assert torch.allclose(emb, mirror, atol=1e-5)  # the average of both views
        assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
        expected = torch.nn.functional.normalize(plain(x) + plain(x.flip(-1)), dim=1)
        assert torch.allclose(emb, expected, atol=1e-5)
        assert not torch.allclose(plain(x), plain(x.flip(-1)), atol=1e-3)
    flipped.train()  # training sees each (augmented) image once
    assert torch.allclose(flipped(x), plain.train()(x), atol=1e-5)


@pytest.mark.parametrize("batch", [1, 5])
def test_the_onnx_export_keeps_the_flip_at_any_batch(batch: int) -> None:
    from imgsim.model.embedder import Embedder

    model = EmbeddingNet(tiny_model_config(test_flip="on")).eval()
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
    torch_emb = Embedder.from_model(model, "torch").embed(images.numpy())
    onnx_emb = Embedder.from_model(model, "onnx").embed(images.numpy())
    assert onnx_emb.shape == (batch, 16)
    assert abs(onnx_emb - torch_emb).max() < 1e-4
    mirrored = Embedder.from_model(model, "onnx").embed(images.flip(-1).numpy())
    assert abs(onnx_emb - mirrored).max() < 1e-4
