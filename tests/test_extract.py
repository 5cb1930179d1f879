"""Tests for extraction: outputs, corrupt files, the t-SNE plot and the reference extractor."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from imgsim.core.config import ExtractConfig
from imgsim.core.errors import DeviceError, ModelNotLoadedError
from imgsim.embed.extract import extract, extract_reference


def _copy(src: Path, dst: Path, pattern: str, n: int) -> None:
    dst.mkdir(exist_ok=True)
    for p in sorted(src.glob(pattern))[:n]:
        shutil.copy(p, dst / p.name)


def test_extract_writes_the_originals_files(
    trained_workdir: Path, shapes_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    _copy(shapes_dir, data, "circle_*", 5)
    _copy(shapes_dir, data, "square_*", 5)
    (data / "square_09999.jpg").write_bytes(b"\xff\xd8\xff broken jpeg")
    result = extract(
        ExtractConfig(
            data_dir=str(data),
            output_dir=str(tmp_path / "out"),
            workers=1,
            plot=True,
            model_path=str(trained_workdir / "triplet_base_final.pt"),
        ),
        progress=False,
    )
    assert result.count == 10 and result.skipped == 1 and result.embedding_dim == 16
    assert "square_09999.jpg" in caplog.text
    feats = np.load(tmp_path / "out" / "triplet_features.npy")
    names = np.load(tmp_path / "out" / "triplet_images.npy").tolist()
    assert feats.shape == (10, 16) and feats.dtype == np.float32
    assert names[0] == "circle_00001.png" and "square_09999.jpg" not in names
    assert np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5)
    assert (tmp_path / "out" / "triplet_embedding_space.png").stat().st_size > 1000


def test_extract_without_a_model_says_run_training(shapes_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotLoadedError, match="run training first"):
        extract(ExtractConfig(data_dir=str(shapes_dir), model_path=str(tmp_path / "x.pt")))


def test_reference_without_weights_says_so(shapes_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotLoadedError, match="none can be downloaded"):
        extract_reference(ExtractConfig(data_dir=str(shapes_dir)), tmp_path / "none.pt")


class _TinyExtractor(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)


def test_reference_with_local_torchscript(shapes_dir: Path, tmp_path: Path) -> None:
    weights = tmp_path / "ref.pt"
    torch.jit.script(_TinyExtractor()).save(str(weights))
    data = tmp_path / "data"
    _copy(shapes_dir, data, "circle_*", 3)
    result = extract_reference(
        ExtractConfig(data_dir=str(data), output_dir=str(tmp_path), workers=1),
        weights,
        32,
        progress=False,
    )
    assert result.count == 3 and result.embedding_dim == 12
    assert (tmp_path / "reference" / "triplet_features.npy").is_file()
    assert not (tmp_path / "triplet_features.npy").exists()  # the trained index is untouched
    if not torch.cuda.is_available():  # --device is honoured: a missing GPU is named
        with pytest.raises(DeviceError, match="--device cuda"):
            extract_reference(
                ExtractConfig(data_dir=str(data), output_dir=str(tmp_path / "gpu"), device="cuda"),
                weights,
                32,
            )


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_workers_that_decode_and_embed_give_the_inline_results_in_order(
    trained_workdir: Path,
    shapes_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import imgsim.embed.embed_pool
    from imgsim.embed.extract import embed_records
    from imgsim.images.data import scan_images
    from imgsim.model.embedder import Embedder
    from imgsim.model.network import load_model

    data = tmp_path / "data"
    shutil.copytree(shapes_dir, data)
    (data / "square_00005.png").write_bytes(b"\x89PNG broken")  # in a middle chunk
    records = scan_images(data)
    model, info = load_model(trained_workdir / "triplet_base_final.pt")
    inline, rows = embed_records(model, 32, records, batch_size=8, workers=1, progress=False)
    onnx = Embedder.from_model(model, "onnx", model_id=info["model_id"])
    monkeypatch.setattr(imgsim.embed.embed_pool, "MIN_IMAGES_PER_WORKER", 8)  # 96 images: 2 workers
    started = []
    real_pool = imgsim.embed.embed_pool.ProcessPoolExecutor
    monkeypatch.setattr(
        imgsim.embed.embed_pool,
        "ProcessPoolExecutor",
        lambda count, **kw: started.append(count) or real_pool(count, **kw),
    )
    pooled, pooled_rows = embed_records(onnx, 32, records, batch_size=8, workers=2, progress=False)
    bad = next(i for i, r in enumerate(records) if r.name == "square_00005.png")
    assert rows == pooled_rows == [i for i in range(len(records)) if i != bad]
    assert _cosines(inline, pooled).min() >= 0.9999
    assert "square_00005.png" in caplog.text
    assert started == [2]  # the pooled run did run in two worker processes


def test_the_thumbnail_cache_skips_decoding_the_second_time(
    trained_workdir: Path, shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import imgsim.images.data

    data = tmp_path / "data"
    _copy(shapes_dir, data, "circle_*", 6)
    config = ExtractConfig(
        data_dir=str(data),
        output_dir=str(tmp_path / "out"),
        model_path=str(trained_workdir / "triplet_base_final.pt"),
        workers=1,
        thumbnail_cache=True,
    )
    extract(config, progress=False)
    first = np.load(tmp_path / "out" / "triplet_features.npy")
    assert len(list((tmp_path / "out" / "thumbnail_cache").rglob("*.u8"))) == 6

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded although the thumbnail is cached")

    monkeypatch.setattr(imgsim.images.data, "decode_file", no_decoding)
    extract(config, progress=False)
    assert np.array_equal(np.load(tmp_path / "out" / "triplet_features.npy"), first)
    # A changed file is decoded again, never served from the cache.
    shutil.copy(shapes_dir / "square_00001.png", data / "circle_00001.png")
    with pytest.raises(AssertionError, match="decoded although"):
        extract(config, progress=False)


def test_extract_runtime_onnx_matches_torch(
    trained_workdir: Path, shapes_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    _copy(shapes_dir, data, "triangle_*", 8)
    features = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / runtime
        config = ExtractConfig(
            data_dir=str(data),
            output_dir=str(out),
            model_path=str(trained_workdir / "triplet_base_final.pt"),
            workers=1,
            runtime=runtime,
        )
        assert extract(config, progress=False).count == 8
        features[runtime] = np.load(out / "triplet_features.npy")
    assert _cosines(features["torch"], features["onnx"]).min() >= 0.9999
