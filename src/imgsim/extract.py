"""Embedding extraction: every dataset image through the model, in batches, into the index files."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import EMBEDDING_PLOT, ExtractConfig
from .data import DatasetError, ImageRecord, default_workers, iter_decoded, scan_images
from .filefacts import FileFacts, collect_facts
from .model import EmbeddingNet, load_model
from .staging import wait_for_uploads
from .store import ConcurrentChangeError, Store, open_store
from .store.exports import build_collection, write_exports

log = logging.getLogger("imgsim")


@dataclass
class ExtractResult:
    """What an extraction wrote and how fast it went."""

    count: int
    skipped: int
    embedding_dim: int
    seconds: float
    output_dir: Path
    kind: str = "flat"  # the FAISS structure written: flat (exact) or hnsw

    @property
    def images_per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


def extract_workers(requested: int = 0) -> int:
    """Decode processes for extraction: as asked, else half the cores (the rest run the model).

    Measured on 2 cores (docs/benchmarks.md): one decoder beside a one-thread forward pass beats
    two decoders or two forward threads, which only fight over the same cores.
    """
    return requested or max(1, default_workers() // 2)


@contextlib.contextmanager
def forward_threads(workers: int) -> Iterator[None]:
    """Give the forward pass the cores the decode workers leave free, for the duration."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, default_workers() - workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.inference_mode()
def embed_records(
    model: torch.nn.Module,
    image_size: int,
    records: list[ImageRecord],
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, list[int]]:
    """Embed images: (features N×D float32, indices into `records` of the readable ones).

    Decoding runs in worker processes (JPEGs shrink while they decode, see data.load_image);
    the model runs channels-last, which oneDNN's CPU convolutions prefer.
    """
    from tqdm import tqdm

    model.eval().to(memory_format=torch.channels_last)
    workers = extract_workers(workers)
    feats, done = [], []
    with (
        forward_threads(workers),
        tqdm(total=len(records), desc="extracting", unit="img", disable=not progress) as bar,
    ):
        for rows, arr in iter_decoded(records, image_size, batch_size, workers):
            batch = torch.from_numpy(arr).contiguous(memory_format=torch.channels_last)
            feats.append(model(batch).float().numpy())
            done.extend(rows)
            bar.update(len(rows))
    if not feats:
        return np.empty((0, 0), dtype=np.float32), []
    return np.concatenate(feats).astype(np.float32), done


def embed_folder(
    model: torch.nn.Module,
    image_size: int,
    data_dir: str | Path,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, list[str], int]:
    """Embed every readable image under `data_dir`: (features N×D float32, names, skipped)."""
    records = scan_images(data_dir)
    if not records:
        raise DatasetError(f"No images found in {data_dir}")
    features, rows = embed_records(model, image_size, records, batch_size, workers, progress)
    _check_embedded(len(records), len(rows), data_dir)
    return features, [records[i].name for i in rows], len(records) - len(rows)


def _check_embedded(found: int, embedded: int, data_dir: str | Path) -> None:
    if found > embedded:
        log.warning("%d unreadable image(s) were skipped (named above)", found - embedded)
    if not embedded:
        raise DatasetError(f"None of the {found} images in {data_dir} could be read")


def extract(config: ExtractConfig, progress: bool = True, kind: str | None = None) -> ExtractResult:
    """Embed the dataset with the trained model and write the index files (and the t-SNE plot).

    A full rebuild; `kind` (auto, flat, hnsw) defaults to the workdir's previous choice.
    """
    model, info = load_model(config.model_path)
    return _extract_with(model, info["model_id"], config, progress, kind=kind)


def _extract_with(
    model: EmbeddingNet | torch.nn.Module,
    model_id: str,
    config: ExtractConfig,
    progress: bool,
    image_size: int | None = None,
    kind: str | None = None,
) -> ExtractResult:
    size = image_size or model.config.image_size  # type: ignore[union-attr]
    start = time.perf_counter()
    store = open_store(config.output_dir, config.store or None, model_id)
    try:
        embedded = _embed_all(store, model, model_id, size, config, progress, kind)
        store.flush()
        write_exports(store, config.output_dir)
        kind_built = _kind_built(store)
    finally:
        store.close()
    features, names, skipped = embedded
    seconds = time.perf_counter() - start
    log.info(
        "Embedded %d images (%d dims) in %.1fs, %.0f images/s; wrote the index in %s",
        len(names), features.shape[1], seconds, len(names) / seconds, config.output_dir,
    )  # fmt: skip
    if config.plot:
        from .data import category_of
        from .plots import plot_embeddings

        plot_path = Path(config.output_dir) / EMBEDDING_PLOT
        plot_embeddings(features, [category_of(n) or "?" for n in names], plot_path)
        log.info("Saved %s", plot_path)
    out = Path(config.output_dir)
    return ExtractResult(len(names), skipped, features.shape[1], seconds, out, kind_built)


# A full rebuild that meets a change by another process (an upload, a delete) scans the folder
# again and embeds only what is new, this many times, before it gives up.
REBUILD_ATTEMPTS = 4


def _embed_all(
    store: Store,
    model: torch.nn.Module,
    model_id: str,
    size: int,
    config: ExtractConfig,
    progress: bool,
    kind: str | None,
) -> tuple[np.ndarray, list[str], int]:
    """Embed every image and replace the collection, retrying on a concurrent change."""
    by_hash: dict[str, np.ndarray] = {}  # this run's vectors, by content: a retry reuses them
    excluded: set[str] = set()  # removed by another process while this one ran
    for _ in range(REBUILD_ATTEMPTS):
        expected = store.generation()
        wait_for_uploads(config.output_dir)
        before = set(store.facts())
        records = [r for r in scan_images(config.data_dir) if r.name not in excluded]
        if not records:
            raise DatasetError(f"No images found in {config.data_dir}")
        # Taken before decoding: a file changed meanwhile shows a new stat at the next update.
        facts = collect_facts([r.path for r in records], extract_workers(config.workers) + 1)
        todo = [i for i, f in enumerate(facts) if f is not None and f.sha256 not in by_hash]
        if config.engine == "ray":
            features, rows = ray_embed(config, size, [records[i] for i in todo])
        else:
            features, rows = embed_records(
                model, size, [records[i] for i in todo], config.batch_size, config.workers,
                progress,
            )  # fmt: skip
        for j, row in enumerate(rows):
            by_hash[facts[todo[row]].sha256 or ""] = features[j]  # type: ignore[union-attr]
        kept = [i for i, f in enumerate(facts) if f is not None and f.sha256 in by_hash]
        _check_embedded(len(records), len(kept), config.data_dir)
        names = [records[i].name for i in kept]
        vectors = np.stack([by_hash[facts[i].sha256] for i in kept])  # type: ignore[union-attr,index]
        try:
            build_collection(
                store, vectors, names, config.data_dir, model_id,
                [facts[i] or FileFacts() for i in kept], kind, expected,
            )  # fmt: skip
            return vectors, names, len(records) - len(kept)
        except ConcurrentChangeError:
            removed = before - set(store.facts())
            excluded |= removed
            log.warning(
                "The index changed while it was rebuilt (an upload or a delete by another "
                "process); scanning the folder again%s",
                f" ({len(removed)} removed meanwhile)" if removed else "",
            )
    raise ConcurrentChangeError(
        f"The index kept changing while it was rebuilt ({REBUILD_ATTEMPTS} tries); nothing was "
        "replaced — run imgsim index again when the server is quieter, or imgsim index --update"
    )


def ray_embed(
    config: ExtractConfig, size: int, records: list[ImageRecord]
) -> tuple[np.ndarray, list[int]]:
    """`embed_records` on Ray Data actors (`--engine ray`), from the model file itself."""
    from .scale import ray_embed_records

    return ray_embed_records(
        config.model_path, size, records, config.batch_size, config.engine_concurrency
    )


def _kind_built(store: Store) -> str:
    """The search structure the collection's size and setting call for."""
    from .vectors import resolve_kind

    info = store.info()
    return resolve_kind(info.kind if info else "auto", store.count())


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
