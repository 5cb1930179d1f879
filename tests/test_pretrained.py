"""The pretrained backbone: its ImageNet weights, search with no training, training on top of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgsim.core.config import PRETRAINED, ModelConfig
from imgsim.core.errors import ModelNotLoadedError
from imgsim.images.sample import generate_shapes
from imgsim.model import backbone
from imgsim.model.network import (
    EmbeddingNet,
    ensure_pretrained,
    load_model,
    model_type,
    pretrained_model,
    read_model_file,
    save_model,
)
from imgsim.train.autosize import PRETRAINED_SIZE, SCRATCH_FROM, resolve_backbone
from imgsim.train.trainset import in_memory

from .conftest import tiny_train_config

# Reference photographs that ship inside packages imgsim depends on (nothing is downloaded).
SITE = Path(np.__file__).parents[1]
FLOWER = SITE / "sklearn/datasets/images/flower.jpg"
HOPPER = SITE / "matplotlib/mpl-data/sample_data/grace_hopper.jpg"
DAISY, MILITARY_UNIFORM = 985, 652  # ImageNet class indices


def _batch(path: Path, size: int) -> torch.Tensor:
    with Image.open(path) as im:
        arr = np.array(im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
    return torch.from_numpy(arr).permute(2, 0, 1)[None].float()


def test_weights_load_strictly_and_classify_as_an_imagenet_network() -> None:
    net = backbone.pretrained(224, classifier=True)
    with torch.inference_mode():
        flower = net.classify(_batch(FLOWER, 224)).softmax(1)
        hopper = net.classify(_batch(HOPPER, 224)).softmax(1)
    assert int(flower.argmax()) == DAISY
    assert int(hopper.argmax()) == MILITARY_UNIFORM and float(hopper.max()) > 0.3


def test_state_dict_names_match_the_shipped_file_exactly() -> None:
    shipped = torch.load(backbone.weights_file(), map_location="cpu", weights_only=True)
    ours = backbone.EfficientNetLite0(224, classifier=True).state_dict()
    assert set(ours) == set(shipped)
    assert all(ours[k].shape == shipped[k].shape for k in ours)


@pytest.mark.parametrize("size", [96, 160, 224])
def test_same_padding_keeps_tensorflow_output_sizes(size: int) -> None:
    net = backbone.pretrained(size)
    with torch.inference_mode():
        out = net(torch.rand(2, 3, size, size) * 255)
    assert out.shape == (2, backbone.FEATURE_DIM)


def test_pretrained_model_embeds_unit_vectors_and_finds_the_same_picture() -> None:
    model = pretrained_model(PRETRAINED_SIZE)
    images = torch.cat([_batch(FLOWER, PRETRAINED_SIZE), _batch(HOPPER, PRETRAINED_SIZE)])
    with torch.inference_mode():
        emb = model(images.to(torch.uint8))
        shifted = model(images.roll(4, dims=-1).to(torch.uint8))
    assert emb.shape == (2, backbone.FEATURE_DIM)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    sims = shifted @ emb.T  # a slightly shifted copy is nearest its original
    assert sims.argmax(1).tolist() == [0, 1]
    assert model_type({"model_config": {"backbone": PRETRAINED}}).startswith("EfficientNet")


def test_cached_features_give_the_same_embedding_as_images() -> None:
    config = ModelConfig(backbone=PRETRAINED, image_size=96, test_flip="on")
    model = EmbeddingNet(config)
    model.backbone = backbone.pretrained(96)
    model.eval()
    x = (torch.rand(3, 3, 96, 96) * 255).to(torch.uint8)
    with torch.inference_mode():
        views = torch.stack([model.features(x), model.features(x.flip(-1))], 1)
        assert torch.allclose(model(x), model(views), atol=1e-5)


def test_model_files_from_before_the_backbone_load_as_the_scratch_network(tmp_path: Path) -> None:
    model = EmbeddingNet(ModelConfig(image_size=32, widths=(8,), blocks=(1,), head_hidden=8))
    path = tmp_path / "old.pt"
    save_model(path, model, ["a"])
    payload = torch.load(path, weights_only=True)
    del payload["model_config"]["backbone"]
    torch.save(payload, path)
    loaded, _ = load_model(path)
    assert loaded.config.backbone == "scratch"


def test_auto_backbone_is_scratch_only_for_many_small_images() -> None:
    def collection(side: int, per_category: int):
        images = torch.zeros(per_category * 2, 3, side, side, dtype=torch.uint8)
        return in_memory(images, torch.arange(2).repeat_interleave(per_category), ["a", "b"])

    assert resolve_backbone("auto", collection(28, SCRATCH_FROM)) == "scratch"
    assert resolve_backbone("auto", collection(28, 30)) == PRETRAINED
    assert resolve_backbone("auto", collection(96, SCRATCH_FROM)) == PRETRAINED
    assert resolve_backbone("scratch", collection(96, 30)) == "scratch"


def test_ensure_pretrained_never_replaces_a_trained_model(tmp_path: Path) -> None:
    path = tmp_path / "triplet_base_final.pt"
    first = ensure_pretrained(path, 96)
    assert ensure_pretrained(path, 96) == first  # reused, not written again
    trained = EmbeddingNet(ModelConfig(image_size=32, widths=(8,), blocks=(1,), head_hidden=8))
    save_model(path, trained, ["a"], train_config={"loss": "triplet"})
    before = path.read_bytes()
    with pytest.raises(ModelNotLoadedError, match="trained on your images"):
        ensure_pretrained(path, 96)
    assert path.read_bytes() == before


def _imgsim(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imgsim.cli", *args], cwd=cwd, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


def test_extract_pretrained_searches_an_unlabelled_folder_at_once(tmp_path: Path) -> None:
    photos = tmp_path / "camera"
    photos.mkdir()
    for i, source in enumerate([FLOWER, HOPPER]):
        with Image.open(source) as im:
            im.convert("RGB").save(photos / f"IMG_{i:04d}.jpg")
    generate_shapes(photos, per_class=2, size=64, seed=3, shapes=("circle", "square"))
    done = _imgsim("extract", "--pretrained", "--data", str(photos), "--output-dir", "work",
                   "--workers", "1", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "pretrained EfficientNet-Lite0" in done.stdout
    info = read_model_file(tmp_path / "work/triplet_base_final.pt")
    assert info["pretrained"] == PRETRAINED and info["model_config"]["backbone"] == PRETRAINED
    found = _imgsim("search", "--workdir", "work", str(photos / "IMG_0001.jpg"), "-k", "2",
                    "--json", cwd=tmp_path)  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert '"IMG_0001.jpg"' in found.stdout.split("\n", 3)[0] + found.stdout  # nearest: itself


def test_train_on_the_pretrained_backbone_decodes_each_image_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgsim.train import trainset
    from imgsim.train.train import train

    data = tmp_path / "photos"
    generate_shapes(data, per_class=10, size=64, seed=4, shapes=("circle", "square", "stripes"))
    log = tmp_path / "decoded.txt"  # decode workers are processes: they write down each decode
    real = trainset.decode_file

    def counting(path: Path, size: int) -> np.ndarray:
        with log.open("a") as f:
            f.write(f"{path}\n")
        return real(path, size)

    monkeypatch.setattr(trainset, "decode_file", counting)
    config = tiny_train_config(data, tmp_path / "out", epochs=3, augment=True)
    result = train(config, ModelConfig(backbone=PRETRAINED, image_size=64), progress=False)
    decoded = log.read_text().split()
    assert len(decoded) == 30 and len(set(decoded)) == 30  # once each, for all three epochs
    model, _ = load_model(result.model_path)
    assert model.config.backbone == PRETRAINED and model.config.image_size == 64
    with torch.inference_mode():
        emb = model((torch.rand(2, 3, 64, 64) * 255).to(torch.uint8))
    assert emb.shape[0] == 2 and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("test_flip", ["off", "on"])
def test_onnx_export_of_the_pretrained_network_matches_torch(test_flip: str) -> None:
    from imgsim.model.embedder import Embedder

    model = EmbeddingNet(ModelConfig(backbone=PRETRAINED, image_size=96, test_flip=test_flip))
    model.backbone = backbone.pretrained(96)
    model.eval()
    images = np.stack([_batch(p, 96)[0].to(torch.uint8).numpy() for p in (FLOWER, HOPPER)])
    torch_emb = Embedder.from_model(model, "torch").embed(images)
    onnx_emb = Embedder.from_model(model, "onnx").embed(images)
    assert np.allclose(torch_emb, onnx_emb, atol=1e-4)
