"""Embedding extraction: every dataset image through the model, in batches, into the index files."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.config import EMBEDDING_PLOT, THUMBNAIL_CACHE_DIR, ExtractConfig
from ..core.errors import ConfigError, storage_errors
from ..files.filefacts import FileFacts, collect_facts
from ..files.staging import wait_for_uploads
from ..images.data import (
    DatasetError,
    ImageRecord,
    category_of,
    default_workers,
    record_of,
    scan_images,
)
from ..model.embedder import Embedder, check_runtime
from ..model.model_handle import ModelFile
from ..store import ConcurrentChangeError, Store, open_store
from ..store.exports import build_collection, write_exports
from .embed_pool import iter_embedded

if TYPE_CHECKING:
    import torch

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
    """Worker processes for extraction: as asked, else one per core.

    Each worker decodes and embeds its own chunks with a one-thread runtime, so the cores
    are shared out by processes and never by threads that wait for each other.
    """
    return requested or default_workers()


def embed_records(
    model: torch.nn.Module | Embedder,
    image_size: int,
    records: list[ImageRecord],
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = True,
    *,
    thumbnail_cache: str | Path | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Embed images: (features N×D float32, indices into `records` of the readable ones).

    `model` is an Embedder (any runtime) or a torch module (run with PyTorch). Worker
    processes each decode (JPEGs shrink while they decode, see data.decode_file) and embed
    whole chunks; the results come back here in order. Unreadable files are named in a
    warning and left out. `thumbnail_cache` keeps the decoded inputs in that folder.
    """
    from tqdm import tqdm

    embedder = model
    if not isinstance(embedder, Embedder):
        embedder = Embedder.from_model(model, "torch", image_size=image_size)
    feats, done = [], []
    chunks = iter_embedded(embedder, records, batch_size, extract_workers(workers), thumbnail_cache)
    with tqdm(total=len(records), desc="extracting", unit="img", disable=not progress) as bar:
        for chunk in chunks:
            for i, error in chunk.failed:
                log.warning("Skipping unreadable image %s: %s", records[i].name, error)
            if chunk.rows:
                feats.append(chunk.features)
                done.extend(chunk.rows)
            bar.update(len(chunk.rows) + len(chunk.failed))
    if not feats:
        return np.empty((0, 0), dtype=np.float32), []
    return np.concatenate(feats).astype(np.float32), done


def _check_embedded(found: int, embedded: int, data_dir: str | Path) -> None:
    if found > embedded:
        log.warning("%d unreadable image(s) were skipped (named above)", found - embedded)
    if not embedded:
        raise DatasetError(f"None of the {found} images in {data_dir} could be read")


def extract(config: ExtractConfig, progress: bool = True, kind: str | None = None) -> ExtractResult:
    """Embed the dataset with the trained model and write the index files (and the t-SNE plot).

    A full rebuild; `kind` (auto, flat, hnsw) defaults to the workdir's previous choice.
    """
    check_device(config)
    model = ModelFile(config.model_path)
    embedder = extract_embedder(model, config)
    return _extract_with(embedder, model.model_id, config, progress, kind=kind)


def check_device(config: ExtractConfig) -> None:
    """Name a missing GPU before anything is written; refuse a GPU that --engine ray ignores."""
    from ..model.device import resolve_device

    if (config.device or "cpu").strip().lower() == "cpu":  # the default: no torch needed
        return
    if resolve_device(config.device).type != "cpu" and config.engine == "ray":
        raise ConfigError(
            f"--device {config.device}: --engine ray embeds on the Ray actors' CPUs and would "
            "ignore it; --engine local (the default) embeds on the GPU"
        )


def extract_embedder(model: ModelFile, config: ExtractConfig) -> Embedder:
    """The Embedder extraction uses: `config.runtime`; for onnx the export kept beside the
    model file (made and kept there the first time)."""
    from ..model.device import inference_device

    device = inference_device(config.device, config.runtime)
    return Embedder.from_file(model, check_runtime(config.runtime), device)


def thumbnail_dir(config: ExtractConfig) -> Path | None:
    """Where decoded inputs are kept when `config.thumbnail_cache` is on, else None."""
    return Path(config.output_dir) / THUMBNAIL_CACHE_DIR if config.thumbnail_cache else None


def _extract_with(
    model: torch.nn.Module | Embedder,
    model_id: str,
    config: ExtractConfig,
    progress: bool,
    image_size: int | None = None,
    kind: str | None = None,
) -> ExtractResult:
    if isinstance(model, Embedder):
        size = model.image_size
    else:
        size = image_size or model.config.image_size  # type: ignore[union-attr]
    start = time.perf_counter()
    store = open_store(config.output_dir, config.store or None, model_id)
    try:
        embedded = _embed_all(store, model, model_id, size, config, progress, kind)
        keep_duplicate_data(store, config, embedded[1], "the index was built")
        store.flush()
        write_exports(store, config.output_dir)
        kind_built = _kind_built(store)
    finally:
        store.close()
    features, names, skipped = embedded
    seconds = time.perf_counter() - start
    log.debug(  # the caller sums up (imgsim extract: "Embedded …"); said once, not twice
        "Embedded %d images (%d dims) in %.1fs, %.0f images/s; wrote the index in %s",
        len(names), features.shape[1], seconds, len(names) / seconds, config.output_dir,
    )  # fmt: skip
    if config.plot:
        from ..explore.embedding_plot import plot_embeddings

        plot_path = Path(config.output_dir) / EMBEDDING_PLOT
        plot_embeddings(features, [category_of(n) or "?" for n in names], plot_path)
        log.info("Saved %s", plot_path)
    out = Path(config.output_dir)
    return ExtractResult(len(names), skipped, features.shape[1], seconds, out, kind_built)


def keep_duplicate_data(store: Store, config: ExtractConfig, names: list[str], done: str) -> None:
    """Keep these indexed images' duplicate data beside their vectors (duplicates.stored), so
    that `imgsim duplicates` reads no file that has not changed since; `done` says what was
    committed already, should the store refuse the write."""
    if not names:  # a no-op update: no decoder to import
        return
    from ..explore.duplicates.stored import derive_into

    records = [record_of(Path(config.data_dir), n) for n in names]
    with storage_errors(f"{done}, but not its duplicate data"):
        derive_into(store, records, extract_workers(config.workers))


# A full rebuild that meets a change by another process (an upload, a delete) scans the folder
# again and embeds only what is new, this many times, before it gives up.
REBUILD_ATTEMPTS = 4


def _embed_all(
    store: Store,
    model: torch.nn.Module | Embedder,
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
                progress, thumbnail_cache=thumbnail_dir(config),
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
    from ..store.vectors import resolve_kind

    info = store.info()
    return resolve_kind(info.kind if info else "auto", store.count())


REFERENCE_HELP = (
    "A reference extractor needs pretrained weights, and none can be downloaded here. "
    "Pass a local TorchScript file that maps a float N×3×H×W batch (ImageNet-normalised RGB) "
    "to N×D features, e.g. MobileNetV2 exported elsewhere with torch.jit.script(model)."
)


def extract_reference(
    config: ExtractConfig, weights: str | Path, image_size: int = 224, progress: bool = True
) -> ExtractResult:
    """Embed the dataset with a pretrained extractor not trained on the user's data.

    Writes the index files into `output_dir`/reference so they never replace the trained
    model's; `imgsim search --workdir` cannot use them (no imgsim model), they are for
    comparison with tools such as the t-SNE plot and the quality benchmark.
    """
    import torch

    from ..core.errors import ModelNotLoadedError
    from ..model.device import inference_device
    from ..model.reference_model import ReferenceModel

    check_device(config)
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
    embedder = Embedder.from_model(
        ReferenceModel(scripted), "torch", image_size=image_size,
        device=inference_device(config.device, "torch"),
    )  # fmt: skip
    return _extract_with(embedder, model_id, ref_config, progress)
