"""Tests for extraction: outputs, corrupt files, the t-SNE plot and the reference extractor."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from imgsim.config import ExtractConfig
from imgsim.errors import ModelNotLoadedError
from imgsim.extract import extract, extract_reference


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
