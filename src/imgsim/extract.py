"""Embedding extraction: every dataset image through the model, in batches, into the index files."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import EMBEDDING_PLOT, ExtractConfig
from .data import DatasetError, default_workers, iter_decoded, scan_images
from .index import save_index
from .model import EmbeddingNet, load_model

log = logging.getLogger("imgsim")


@dataclass
class ExtractResult:
    """What an extraction wrote and how fast it went."""

    count: int
    skipped: int
    embedding_dim: int
    seconds: float
    output_dir: Path

    @property
    def images_per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


@torch.inference_mode()
def embed_folder(
    model: torch.nn.Module,
    image_size: int,
    data_dir: str | Path,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, list[str], int]:
    """Embed every readable image under `data_dir`: (features N×D float32, names, skipped)."""
    from tqdm import tqdm

    records = scan_images(data_dir)
    if not records:
        raise DatasetError(f"No images found in {data_dir}")
    model.eval()
    feats, names = [], []
    with tqdm(total=len(records), desc="extracting", unit="img", disable=not progress) as bar:
        for rows, arr in iter_decoded(
            records, image_size, batch_size, workers or default_workers()
        ):
            feats.append(model(torch.from_numpy(arr)).float().numpy())
            names.extend(records[i].name for i in rows)
            bar.update(len(rows))
    skipped = len(records) - len(names)
    if skipped:
        log.warning("%d unreadable image(s) were skipped (named above)", skipped)
    if not names:
        raise DatasetError(f"None of the {len(records)} images in {data_dir} could be read")
    return np.concatenate(feats).astype(np.float32), names, skipped


def extract(config: ExtractConfig, progress: bool = True) -> ExtractResult:
    """Embed the dataset with the trained model and write the index files (and the t-SNE plot)."""
    model, info = load_model(config.model_path)
    return _extract_with(model, info["model_id"], config, progress)


def _extract_with(
    model: EmbeddingNet | torch.nn.Module,
    model_id: str,
    config: ExtractConfig,
    progress: bool,
    image_size: int | None = None,
) -> ExtractResult:
    size = image_size or model.config.image_size  # type: ignore[union-attr]
    start = time.perf_counter()
    features, names, skipped = embed_folder(
        model, size, config.data_dir, config.batch_size, config.workers, progress
    )
    seconds = time.perf_counter() - start
    save_index(config.output_dir, features, names, config.data_dir, model_id)
    log.info(
        "Embedded %d images (%d dims) in %.1fs, %.0f images/s; wrote the index in %s",
        len(names),
        features.shape[1],
        seconds,
        len(names) / seconds,
        config.output_dir,
    )
    if config.plot:
        from .data import category_of
        from .plots import plot_embeddings

        plot_path = Path(config.output_dir) / EMBEDDING_PLOT
        plot_embeddings(features, [category_of(n) or "?" for n in names], plot_path)
        log.info("Saved %s", plot_path)
    return ExtractResult(len(names), skipped, features.shape[1], seconds, Path(config.output_dir))


REFERENCE_HELP = (
    "A reference extractor needs pretrained weights, and none can be downloaded here. "
    "Pass a local TorchScript file that maps a float N×3×H×W batch (ImageNet-normalised RGB) "
    "to N×D features, e.g. MobileNetV2 exported elsewhere with torch.jit.script(model)."
)


class _ReferenceModel(torch.nn.Module):
    """Wraps a TorchScript extractor: uint8 in, ImageNet normalisation, L2-normalised out."""

    def __init__(self, scripted: torch.nn.Module) -> None:
        super().__init__()
        self.scripted = scripted
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.scripted((x.float() / 255.0 - self.mean) / self.std)
        return torch.nn.functional.normalize(out.flatten(1), dim=1)


def extract_reference(
    config: ExtractConfig, weights: str | Path, image_size: int = 224, progress: bool = True
) -> ExtractResult:
    """Embed the dataset with a pretrained extractor not trained on the user's data.

    Writes the index files into `output_dir`/reference so they never replace the trained
    model's; `imgsim search --workdir` cannot use them (no imgsim model), they are for
    comparison with tools such as the t-SNE plot and the quality benchmark.
    """
    from .errors import ModelNotLoadedError

    path = Path(weights)
    if not path.is_file():
        raise ModelNotLoadedError(f"Reference weights not found: {path}. {REFERENCE_HELP}")
    try:
        scripted = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch.jit raises RuntimeError and others for foreign files
        raise ModelNotLoadedError(
            f"Cannot load {path} as TorchScript: {exc}. {REFERENCE_HELP}"
        ) from None
    out_dir = Path(config.output_dir) / "reference"
    ref_config = ExtractConfig(**{**config.__dict__, "output_dir": str(out_dir)})
    model_id = "reference:" + path.name
    return _extract_with(_ReferenceModel(scripted), model_id, ref_config, progress, image_size)
