"""Query image → most similar indexed images, with similarity percentages (library and CLI)."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from .config import MODEL_FILE, SearchConfig
from .data import DEFAULT_MAX_PIXELS, UnreadableImageError, is_image_file, load_image, to_array
from .errors import ImgsimError, NotReadyError
from .index import EmbeddingIndex, EmbeddingsNotLoadedError, ModelMismatchError, load_index
from .manifest import FileFacts, StaleIndexError
from .model import EmbeddingNet, ModelNotLoadedError, load_model, model_type

log = logging.getLogger("imgsim")

SIMILARITY_METRIC = "Euclidean Distance"
MODEL_MISSING = "Model not loaded — run training first (imgsim train)"
EMBEDDINGS_MISSING = "No embeddings loaded — run extraction first (imgsim extract)"

ImageSource = str | Path | bytes | BinaryIO | Image.Image
FileSource = str | Path | bytes | BinaryIO


class ImageNameError(ImgsimError, ValueError):
    """A name that cannot be an image of the dataset (absolute, '..', hidden, not an image)."""


def dataset_name(name: str) -> str:
    """`name` if it is a safe dataset-relative image name (`shirt_001.jpg`, `shirt/a.jpg`).

    Raises ImageNameError otherwise, so a name from a request can never reach outside the
    data folder or hide from the folder scan.
    """
    parts = name.split("/")
    bad_part = any(not p or p.startswith(".") or p.strip() != p for p in parts)
    if bad_part or "\\" in name or not name.isprintable() or not is_image_file(Path(name)):
        raise ImageNameError(
            f"not a usable image name: {name[:200]!r} (a relative path such as shirt_001.jpg "
            "or shirt/a.jpg, no '..' or hidden parts, with an image extension)"
        )
    return name


def similarity_from_distance(distance: float) -> float:
    """Similarity in percent: 100·(1 − d/2), clipped to 0–100.

    Embeddings are L2-normalised, so their Euclidean distance d lies in [0, 2]: identical
    images score 100 %, opposite embeddings 0 %, and the score falls linearly with distance.
    """
    return float(min(100.0, max(0.0, 100.0 * (1.0 - distance / 2.0))))


@dataclass
class SearchResult:
    """One hit: the original's keys plus the category."""

    filename: str
    similarity: float
    embedding_distance: float
    category: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def results_response(results: list[SearchResult]) -> dict[str, Any]:
    """The original's /search response shape."""
    return {"results": [r.to_dict() for r in results], "total_results": len(results)}


class Searcher:
    """Holds one model and one index in memory and answers queries; safe to share across threads."""

    def __init__(
        self,
        model: EmbeddingNet | None,
        index: EmbeddingIndex | None,
        model_info: dict[str, Any] | None = None,
        problems: list[str] | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.model = model
        self.index = index
        self.model_info = model_info or {}
        self.problems = problems or []
        self.max_pixels = max_pixels
        # BatchNorm in eval mode is stateless, but torch ops on one module from many threads
        # oversubscribe the two cores; one forward at a time is faster under load.
        self._lock = threading.Lock()
        # One writer at a time: file, embedding and index change stay together.
        self._write_lock = threading.Lock()

    @classmethod
    def from_workdir(
        cls,
        workdir: str | Path = ".",
        model_path: str | Path | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> Searcher:
        """Load the model file and index from `workdir`; missing parts are recorded, not raised."""
        workdir = Path(workdir)
        model, info, index, problems = None, {}, None, []
        try:
            model, info = load_model(Path(model_path) if model_path else workdir / MODEL_FILE)
        except ModelNotLoadedError as exc:
            problems.append(str(exc))
        try:
            index = load_index(workdir)
        except EmbeddingsNotLoadedError as exc:
            problems.append(str(exc))
        if model is not None and index is not None:
            _check_same_model(model, info, index, problems)
        for problem in problems:
            log.warning("%s", problem)
        return cls(model, index, info, problems, max_pixels)

    @property
    def model_loaded(self) -> bool:
        return self.model is not None

    @property
    def embeddings_loaded(self) -> bool:
        return self.index is not None and len(self.index) > 0

    @property
    def default_threshold(self) -> float:
        """The model's tuned similarity cutoff, or 0 when it has none."""
        return float(self.model_info.get("threshold") or 0.0)

    def require_ready(self) -> None:
        """Raise NotReadyError with the original's advice if a search cannot run."""
        if not self.model_loaded:
            raise NotReadyError(MODEL_MISSING)
        if not self.embeddings_loaded:
            raise NotReadyError(EMBEDDINGS_MISSING)
        assert self.model is not None and self.index is not None
        if self.index.dim != self.model.config.embedding_dim:
            raise NotReadyError(
                f"No embeddings loaded for this model: the index has {self.index.dim} dimensions, "
                f"the model makes {self.model.config.embedding_dim} — run extraction again "
                "(imgsim extract)"
            )

    def embed(self, images: list[ImageSource]) -> np.ndarray:
        """Embeddings (N×D float32) of query images; UnreadableImageError for a bad one."""
        import torch

        if self.model is None:
            raise NotReadyError(MODEL_MISSING)
        size = self.model.config.image_size
        arrays = [to_array(self._decode(img, size), size) for img in images]
        batch = torch.from_numpy(np.stack(arrays))
        with self._lock, torch.inference_mode():
            return self.model(batch).numpy().astype(np.float32)

    def _decode(self, image: ImageSource, size: int) -> Image.Image:
        if isinstance(image, Image.Image):
            return image if image.mode == "RGB" else image.convert("RGB")
        return load_image(image, self.max_pixels, draft_size=size)

    def search(
        self, image: ImageSource, top_k: int = 10, threshold: float | None = None
    ) -> list[SearchResult]:
        """Top-k most similar indexed images, nearest first, without those below `threshold` %."""
        return self.search_batch([image], top_k, threshold)[0]

    def search_batch(
        self, images: list[ImageSource], top_k: int = 10, threshold: float | None = None
    ) -> list[list[SearchResult]]:
        """One result list per query image, in order."""
        self.require_ready()
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        cutoff = self.default_threshold if threshold is None else float(threshold)
        queries = self.embed(images)
        assert self.index is not None
        hits = self.index.search_hits(queries, top_k)
        return [self._results(found, cutoff) for found in hits]

    def _results(self, hits: list[tuple[str, str, float]], cutoff: float) -> list[SearchResult]:
        out = []
        for name, category, dist in hits:
            sim = round(similarity_from_distance(dist), 2)
            if sim >= cutoff:
                out.append(SearchResult(name, sim, round(dist, 4), category))
        return out

    def add_images(self, images: Mapping[str, FileSource]) -> list[str]:
        """Add images, or replace them, under dataset-relative names; returns the names.

        Every image is decoded and embedded first (ImageNameError or UnreadableImageError and
        nothing changes), then saved into the data folder and indexed in one persisted change.
        Searches go on meanwhile; writers take turns. A crash after the files are saved leaves
        them for `imgsim index --update` to pick up.
        """
        index = self._require_index()
        names = [dataset_name(n) for n in images]
        with self._write_lock:
            data = [_read_bytes(source) for source in images.values()]
            vectors = self.embed(list(data))
            staged = [self._stage_file(n, d) for n, d in zip(names, data, strict=True)]
            try:
                index.add_images(
                    names, vectors, [f for _, f in staged], self.model_info.get("model_id")
                )
            except BaseException:
                for tmp, _ in staged:
                    tmp.unlink(missing_ok=True)
                raise
            # Files take their names only once the index holds them: a refused change (another
            # model, an index changed on disk) never replaces one of the user's images.
            for name, (tmp, _) in zip(names, staged, strict=True):
                os.replace(tmp, Path(index.meta.data_dir) / name)
        return names

    def remove_images(self, names: Iterable[str], delete_files: bool = True) -> list[str]:
        """Remove images from the index (and their files); returns the names that were indexed.

        The index change is persisted before any file is deleted: a crash in between leaves
        a file that `imgsim index --update` indexes again, never a result without a file.
        """
        index = self._require_index()
        with self._write_lock:
            # Unknown names (a typo, a probe from a request) change nothing, not even the
            # manifest: the index would otherwise persist an empty change.
            known = [n for n in names if n in index]
            removed = index.remove_images(known) if known else []
            for name in removed if delete_files else []:
                (Path(index.meta.data_dir) / name).unlink(missing_ok=True)
        return removed

    def _require_index(self) -> EmbeddingIndex:
        if self.model is None:
            raise NotReadyError(MODEL_MISSING)
        if self.index is None:
            raise NotReadyError(EMBEDDINGS_MISSING)
        return self.index

    def _stage_file(self, name: str, data: bytes) -> tuple[Path, FileFacts]:
        """Write an upload, fsynced, under a hidden name beside its target (scans skip it)."""
        assert self.index is not None
        target = Path(self.index.meta.data_dir) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".upload", dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        mtime = Path(tmp).stat().st_mtime_ns  # a rename keeps it: the manifest's facts hold
        return Path(tmp), FileFacts(len(data), mtime, hashlib.sha256(data).hexdigest())

    def image_path(self, name: str) -> Path | None:
        """The file of an indexed image, or None: names not in the index are never opened."""
        if self.index is None or name not in self.index:
            return None
        path = Path(self.index.meta.data_dir) / name
        return path if path.is_file() else None

    def stats(self) -> dict[str, Any]:
        """The original's /stats keys plus categories with counts and the tuned threshold."""
        counts: dict[str, int] = {}
        for category in self.index.categories if self.index else []:
            counts[category] = counts.get(category, 0) + 1
        return {
            "model_loaded": self.model_loaded,
            "embeddings_loaded": self.embeddings_loaded,
            "total_images": len(self.index) if self.index else 0,
            "embedding_dimension": self.index.dim
            if self.index
            else (self.model.config.embedding_dim if self.model else 0),
            "model_type": model_type(self.model_info),  # named after its loss
            "similarity_metric": SIMILARITY_METRIC,
            "categories": dict(sorted(counts.items())),
            "default_threshold": self.default_threshold,
            "problems": list(self.problems),
        }


def _check_same_model(
    model: EmbeddingNet, info: dict[str, Any], index: EmbeddingIndex, problems: list[str]
) -> None:
    if index.dim != model.config.embedding_dim:
        problems.append(
            f"The embeddings have {index.dim} dimensions but the model makes "
            f"{model.config.embedding_dim} — run extraction again (imgsim extract)"
        )
    elif index.meta.model_id and index.meta.model_id != info.get("model_id"):
        log.warning(
            "The embeddings were made by another model file than %s; results may be poor — "
            "run extraction again (imgsim extract)",
            MODEL_FILE,
        )


def _read_bytes(source: FileSource) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, str | Path):
        return Path(source).read_bytes()
    return source.read()


def search_image(
    image: str | Path,
    config: SearchConfig | None = None,
    top_k: int | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Library entry for `imgsim search`: the original's response shape for one image file."""
    config = config or SearchConfig()
    searcher = Searcher.from_workdir(config.workdir, max_pixels=config.max_image_pixels)
    results = searcher.search(image, top_k or config.top_k, threshold)
    return results_response(results)


__all__ = [
    "EMBEDDINGS_MISSING",
    "MODEL_MISSING",
    "ImageNameError",
    "ModelMismatchError",
    "NotReadyError",
    "SearchResult",
    "Searcher",
    "StaleIndexError",
    "UnreadableImageError",
    "dataset_name",
    "results_response",
    "search_image",
    "similarity_from_distance",
]
