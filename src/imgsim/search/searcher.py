"""Query image → most similar indexed images, with similarity percentages (library and CLI).

The Searcher answers queries only; changes to the collection go through
imgsim.search.editor.CollectionEditor, and the map and the duplicate groups belong to their
views (imgsim.web.map_view, imgsim.web.duplicates).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from PIL import Image

from ..core.config import MODEL_FILE, NEAR_COPY_SIMILARITY, SearchConfig
from ..core.errors import (
    EmbeddingsNotLoadedError,
    ImgsimError,
    ModelNotLoadedError,
    NotReadyError,
)
from ..images.data import (
    DEFAULT_MAX_PIXELS,
    UnreadableImageError,
    load_image,
    to_array,
)
from ..model.calibration import Calibration, confidence_percent, cosine_percent, tuned_threshold
from ..model.device import inference_device
from ..model.embedder import BatchingEmbedder, Embedder, search_embedder
from ..model.model_handle import ModelFile
from ..model.modelfile import model_type
from ..store import (
    ConcurrentChangeError,
    Hit,
    ModelMismatchError,
    Store,
    StoreError,
    StoreUnavailableError,
    open_store,
)
from ..store.base import EMBEDDINGS_MISSING

if TYPE_CHECKING:
    from ..model.network import EmbeddingNet

log = logging.getLogger("imgsim")

SIMILARITY_METRIC = "Euclidean Distance"
MODEL_MISSING = "Model not loaded — run training first (imgsim train)"

ImageSource = str | Path | bytes | BinaryIO | Image.Image


class ImageNotIndexedError(ImgsimError, LookupError):
    """A name the collection does not hold (the web app answers 404)."""


class UnknownCategoryError(ImgsimError, ValueError):
    """A category filter naming a category the collection does not hold."""


# How many known categories an unknown-category message lists before it says "and N more".
CATEGORIES_LISTED = 20


@dataclass
class SearchResult:
    """One hit: the original's keys plus the category and the calibrated confidence."""

    filename: str
    similarity: float  # percent of the cosine: how alike (calibration.cosine_percent)
    embedding_distance: float
    category: str
    confidence: float | None = None  # percent: how likely the same category; None: uncalibrated

    def to_dict(self) -> dict[str, Any]:
        # Spelled out: dataclasses.asdict deep-copies every field, a cost on every search.
        return {
            "filename": self.filename,
            "similarity": self.similarity,
            "embedding_distance": self.embedding_distance,
            "category": self.category,
            "confidence": self.confidence,
        }


class Results(list[SearchResult]):
    """The results a threshold kept, nearest first, and how many of the top k it hid."""

    def __init__(self, kept: Iterable[SearchResult] = (), hidden: int = 0, threshold: float = 0):
        super().__init__(kept)
        self.hidden = hidden
        self.threshold = threshold


def results_response(results: list[SearchResult]) -> dict[str, Any]:
    """The original's /search response shape, plus the threshold and what it hid."""
    return {
        "results": [r.to_dict() for r in results],
        "total_results": len(results),
        "threshold": getattr(results, "threshold", 0.0),
        "hidden": getattr(results, "hidden", 0),
    }


class Searcher:
    """One model and one store, answering queries; safe to share across threads.

    The store is the truth for every process: a change made by another server worker or by
    the CLI is seen by the next search here.
    """

    def __init__(
        self,
        model: ModelFile | EmbeddingNet | None,
        store: Store | None,
        model_info: dict[str, Any] | None = None,
        problems: list[str] | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        workdir: str | Path = ".",
        embedder: Embedder | BatchingEmbedder | None = None,
        threshold: float = -1.0,
    ) -> None:
        self.model = model
        self.threshold = threshold  # the settings' cutoff in %; below 0: the model's own
        self.store = store
        self.model_info = model_info or {}
        self.problems = problems or []
        self.max_pixels = max_pixels
        self.workdir = Path(workdir)
        # Runs the network (one pass at a time; batched across threads when configured).
        if embedder is None and model is not None:
            embedder = (
                Embedder.from_file(model, "torch")
                if isinstance(model, ModelFile)
                else Embedder.from_model(model)
            )
        self.embedder = embedder

    @classmethod
    def from_workdir(
        cls,
        workdir: str | Path = ".",
        model_path: str | Path | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        store: str | None = None,
        config: SearchConfig | None = None,
        warn: bool = True,
    ) -> Searcher:
        """Load the model file from `workdir` and open the store; problems are recorded, not raised.

        `store` is a store address (see `imgsim.store.store_spec`; default: IMGSIM_STORE, else
        the embedded store in `workdir`); `config` chooses the runtime and micro-batching
        (SearchConfig's defaults without it). `warn`: log the problems (a server that starts
        anyway); a one-shot caller raises them instead, so each is said once.
        """
        workdir = Path(workdir)
        model, info, opened, problems, embedder = None, {}, None, [], None
        model_file = Path(model_path) if model_path else workdir / MODEL_FILE
        settings = config or SearchConfig()
        try:
            model = ModelFile(model_file)
            info = model.info
            device = inference_device(settings.device, settings.runtime)
            embedder = search_embedder(model, settings, device=device)
        except ModelNotLoadedError as exc:
            problems.append(str(exc))
        try:
            opened = open_store(workdir, store, info.get("model_id"))
            collection = opened.info()
            if collection is None:
                problems.append(opened.why_empty())
            elif model is not None:
                _check_same_model(model, info, collection.dim, collection.model_id, problems)
        except (StoreError, EmbeddingsNotLoadedError) as exc:
            problems.append(str(exc))
        for problem in problems if warn else []:
            log.warning("%s", problem)
        return cls(model, opened, info, problems, max_pixels, workdir, embedder, settings.threshold)

    @property
    def model_loaded(self) -> bool:
        return self.model is not None

    @property
    def embeddings_loaded(self) -> bool:
        try:
            return self.store is not None and self.store.count() > 0
        except StoreUnavailableError:
            return False

    @property
    def calibration(self) -> Calibration | None:
        """How distances become the scores shown (None: the cosine similarity)."""
        return Calibration.from_dict(self.model_info.get("calibration"))

    @property
    def default_threshold(self) -> float:
        """The settings' cutoff, else the model's tuned one, or 0 when it has none.

        The tuned cutoff is a distance, shown on the similarity scale; it never rises above
        a near copy's similarity, so a near copy of the query always shows.
        """
        if self.threshold >= 0:
            return float(self.threshold)
        distance = (self.model_info.get("threshold_info") or {}).get("distance")
        if distance is not None:  # what tuning stored as "threshold", for files of every age
            return tuned_threshold(distance)
        # No distance kept: a bare threshold, already on the similarity scale.
        return min(NEAR_COPY_SIMILARITY, float(self.model_info.get("threshold") or 0.0))

    def ready(self, *, model: bool = True, vectors: bool = True) -> Store:
        """The store, once the caller can run; else NotReadyError saying what to run first.

        The one readiness check of every use. `model`: the caller embeds images (a search,
        an upload, a removal); `vectors`: it reads the collection's vectors (a search, the
        map, the duplicates), so the collection must hold some, of the model's dimension.
        Browsing needs neither: only a collection.
        """
        if model and not self.model_loaded:
            raise NotReadyError(MODEL_MISSING)
        if self.store is None:
            raise NotReadyError(self.problems[-1] if self.problems else EMBEDDINGS_MISSING)
        info = self.store.info()
        if info is None:
            raise NotReadyError(self.store.why_empty())
        if not vectors:
            return self.store
        if self.store.count() == 0:
            raise NotReadyError(EMBEDDINGS_MISSING)
        if model:
            assert self.model is not None
            if info.dim != self.model.config.embedding_dim:
                raise NotReadyError(
                    f"No embeddings loaded for this model: the index has {info.dim} "
                    f"dimensions, the model makes {self.model.config.embedding_dim} — run "
                    "extraction again (imgsim extract)"
                )
        return self.store

    def embed(self, images: list[ImageSource]) -> np.ndarray:
        """Embeddings (N×D float32) of query images; UnreadableImageError for a bad one."""
        if self.embedder is None:
            raise NotReadyError(MODEL_MISSING)
        size = self.embedder.image_size
        # Decoding runs here, in the caller's thread, in parallel with other requests; the
        # embedder then runs the network, in one pass with concurrent requests when batching.
        with self.embedder.pending():
            arrays = [to_array(self._decode(img, size), size) for img in images]
            return self.embedder.embed(np.stack(arrays))

    def _decode(self, image: ImageSource, size: int) -> Image.Image:
        if isinstance(image, Image.Image):
            return image if image.mode == "RGB" else image.convert("RGB")
        return load_image(image, self.max_pixels, draft_size=size)

    def search(
        self,
        image: ImageSource,
        top_k: int = 10,
        threshold: float | None = None,
        categories: Sequence[str] | None = None,
    ) -> list[SearchResult]:
        """Top-k most similar indexed images, nearest first, without those below `threshold` %."""
        return self.search_batch([image], top_k, threshold, categories)[0]

    def search_batch(
        self,
        images: list[ImageSource],
        top_k: int = 10,
        threshold: float | None = None,
        categories: Sequence[str] | None = None,
    ) -> list[list[SearchResult]]:
        """One result list per query image, in order; `categories` keeps only those.

        The filter runs inside the store's search (k results of those categories, not k
        results cut down); a category the collection does not hold is UnknownCategoryError.
        """
        self.ready()
        categories = self.check_categories(categories)
        return self._search_vectors(self.embed(images), top_k, threshold, categories)

    def similar(
        self,
        name: str,
        top_k: int = 10,
        threshold: float | None = None,
        categories: Sequence[str] | None = None,
    ) -> list[SearchResult]:
        """ "More like this": the images nearest to the indexed image `name`, itself included.

        Its stored vector is the query: nothing is read or decoded. ImageNotIndexedError for
        a name the collection does not hold.
        """
        store = self.ready()
        categories = self.check_categories(categories)
        vector = store.vectors_of([name]).get(name)
        if vector is None:
            raise ImageNotIndexedError(f"no indexed image named {name[:200]!r}")
        return self._search_vectors(vector[None, :], top_k, threshold, categories)[0]

    def _search_vectors(
        self,
        queries: np.ndarray,
        top_k: int,
        threshold: float | None,
        categories: Sequence[str] | None,
    ) -> list[Results]:
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        cutoff = self.default_threshold if threshold is None else float(threshold)
        assert self.store is not None
        hits = self.store.search(queries, top_k, categories)
        return [self._results(found, cutoff) for found in hits]

    def check_categories(self, categories: Sequence[str] | None) -> list[str] | None:
        """`categories` without repeats (None for no filter); UnknownCategoryError for a
        category the collection does not hold, naming the ones it does."""
        if not categories:
            return None
        wanted = list(dict.fromkeys(categories))
        known = self.ready(model=False, vectors=False).categories()
        unknown = [c for c in wanted if c not in known]
        if unknown:
            names = [repr(c) for c in known if c][:CATEGORIES_LISTED]
            more = len([c for c in known if c]) - len(names)
            listed = ", ".join(names) + (f" and {more} more" if more > 0 else "")
            raise UnknownCategoryError(
                f"unknown category {unknown[0][:100]!r}: the collection has "
                + (listed or "no categories")
            )
        return wanted

    def _results(self, hits: list[Hit], cutoff: float) -> Results:
        out, calibration = Results(threshold=cutoff), self.calibration
        for hit in hits:
            sim = round(cosine_percent(hit.distance), 2)
            if sim < cutoff:
                out.hidden += 1
                continue
            confidence = confidence_percent(hit.distance, calibration)
            confidence = None if confidence is None else round(confidence, 2)
            out.append(
                SearchResult(hit.name, sim, round(hit.distance, 4), hit.category, confidence)
            )
        return out

    def stats(self) -> dict[str, Any]:
        """The original's /stats keys plus categories with counts and the tuned threshold."""
        info = self.store.info() if self.store is not None else None
        counts = self.store.categories() if info is not None and self.store is not None else {}
        model_dim = self.model.config.embedding_dim if self.model else 0
        return {
            "model_loaded": self.model_loaded,
            "embeddings_loaded": self.embeddings_loaded,
            "total_images": sum(counts.values()),
            "embedding_dimension": info.dim if info is not None else model_dim,
            "model_type": model_type(self.model_info),  # named after its loss
            "similarity_metric": SIMILARITY_METRIC,
            "categories": counts,
            "default_threshold": self.default_threshold,
            "problems": list(self.problems),
        }


def _check_same_model(
    model: ModelFile | EmbeddingNet,
    info: dict[str, Any],
    dim: int,
    model_id: str,
    problems: list[str],
) -> None:
    if dim != model.config.embedding_dim:
        problems.append(
            f"The embeddings have {dim} dimensions but the model makes "
            f"{model.config.embedding_dim} — run extraction again (imgsim extract)"
        )
    elif model_id and model_id != info.get("model_id"):
        log.warning(
            "The embeddings were made by another model file than %s; results may be poor — "
            "run extraction again (imgsim extract)",
            MODEL_FILE,
        )


def search_image(
    image: str | Path,
    config: SearchConfig | None = None,
    top_k: int | None = None,
    threshold: float | None = None,
    categories: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Library entry for `imgsim search`: the original's response shape for one image file."""
    config = config or SearchConfig()
    searcher = Searcher.from_workdir(
        config.workdir,
        max_pixels=config.max_image_pixels,
        store=config.store or None,
        config=config,
        warn=False,
    )
    try:
        results = searcher.search(image, top_k or config.top_k, threshold, categories)
    except NotReadyError:
        if searcher.problems:  # the first is the cause (a missing model before an empty index)
            raise NotReadyError(searcher.problems[0]) from None
        raise
    finally:
        if searcher.store is not None:
            searcher.store.close()
    return results_response(results)


__all__ = [
    "EMBEDDINGS_MISSING",
    "MODEL_MISSING",
    "ConcurrentChangeError",
    "ImageNotIndexedError",
    "ModelMismatchError",
    "NotReadyError",
    "SearchResult",
    "Searcher",
    "StoreUnavailableError",
    "UnknownCategoryError",
    "UnreadableImageError",
    "results_response",
    "search_image",
]
