"""Query image → most similar indexed images, with similarity percentages (library and CLI)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from PIL import Image

from ..core.config import MODEL_FILE, NEAR_COPY_SIMILARITY, DuplicatesConfig, SearchConfig
from ..core.errors import (
    EmbeddingsNotLoadedError,
    ImgsimError,
    ModelNotLoadedError,
    NotReadyError,
    storage_errors,
)
from ..core.paths import name_path, safe_path
from ..embed.uploads import recover_uploads
from ..explore.collection_map import CollectionMap, MapSettings
from ..explore.duplicates.derived import ImageFacts, derive_or_none, encode
from ..explore.duplicates.kept import KeptDuplicates
from ..explore.kept_document import DocumentState
from ..files.changes import changing
from ..files.staging import Staged, Staging
from ..files.trash import finish, move_to_trash, reserve
from ..images.data import (
    DEFAULT_MAX_PIXELS,
    UnreadableImageError,
    is_image_file,
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
    Item,
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
        self.map = CollectionMap(self.workdir)  # the 2-D map, computed in the background
        # The groups, found in the background; turned copies embedded by this network.
        self.duplicates = KeptDuplicates(self.workdir, self._embed_views)

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

    def require_ready(self) -> None:
        """Raise NotReadyError with the original's advice if a search cannot run."""
        if not self.model_loaded:
            raise NotReadyError(MODEL_MISSING)
        if self.store is None:
            raise NotReadyError(self.problems[-1] if self.problems else EMBEDDINGS_MISSING)
        info = self.store.info()
        if info is None:
            raise NotReadyError(self.store.why_empty())
        if self.store.count() == 0:
            raise NotReadyError(EMBEDDINGS_MISSING)
        assert self.model is not None
        if info.dim != self.model.config.embedding_dim:
            raise NotReadyError(
                f"No embeddings loaded for this model: the index has {info.dim} dimensions, "
                f"the model makes {self.model.config.embedding_dim} — run extraction again "
                "(imgsim extract)"
            )

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
        self.require_ready()
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
        self.require_ready()
        categories = self.check_categories(categories)
        assert self.store is not None
        vector = self.store.vectors_of([name]).get(name)
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
        known = self.collection().categories()
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

    def collection(self) -> Store:
        """The store, once it holds a collection (browsing needs no model); else NotReadyError."""
        if self.store is None:
            raise NotReadyError(self.problems[-1] if self.problems else EMBEDDINGS_MISSING)
        if self.store.info() is None:
            raise NotReadyError(self.store.why_empty())
        return self.store

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

    @property
    def data_dir(self) -> Path | None:
        """The data folder of the collection, or None without one."""
        info = self.store.info() if self.store is not None else None
        return Path(info.data_dir) if info is not None else None

    def staging(self) -> Staging:
        """Where uploads wait until they are indexed (in the workdir, outside the data folder)."""
        data_dir = self.data_dir
        if data_dir is None:
            raise NotReadyError(EMBEDDINGS_MISSING)
        return Staging(self.workdir, data_dir)

    def recover_uploads(self) -> None:
        """Finish or drop the uploads a crash interrupted (called when a server starts)."""
        if self.store is not None:
            recover_uploads(self.workdir, self.store)

    def add_images(self, images: Mapping[str, FileSource]) -> list[str]:
        """Add images, or replace them, under dataset-relative names; returns the names.

        Every image is decoded and embedded first (ImageNameError or UnreadableImageError and
        nothing changes), staged outside the data folder, indexed in one atomic change, then
        moved to its name. A crash at any point leaves file and entry together or neither
        (`Staging.recover`). Writers of every process take turns in the store.
        """
        self._require_store()  # NotReadyError before anything is read or embedded
        names = [dataset_name(n) for n in images]
        staging = self.staging()
        for name in names:
            safe_path(staging.data_dir, name)  # no write through a symlink out of the folder
        data = [_read_bytes(source) for source in images.values()]
        vectors = self.embed(list(data))  # the slow part, before the lock
        # Kept beside the vectors, so `imgsim duplicates` never decodes these files again.
        derived = [derive_or_none(n, blob) for n, blob in zip(names, data, strict=True)]
        # A full disk or a read-only folder: _add_staged takes back what it began.
        with storage_errors("nothing was added"), changing(self.workdir):
            self._add_staged(staging, names, data, vectors, derived)
        return names

    def _add_staged(
        self,
        staging: Staging,
        names: list[str],
        data: list[bytes],
        vectors: np.ndarray,
        derived: list[ImageFacts | None],
    ) -> None:
        """Stage, commit, then move each file to its name; whatever raises, no intent stays."""
        store = self._require_store()
        staged: list[Staged] = []
        committed = False
        try:
            for name, blob in zip(names, data, strict=True):
                staged.append(staging.stage(name, blob))
            # A replaced image goes to the trash, never overwritten; its record is written
            # before the commit, so a full disk stops the add while nothing has changed.
            replaced = {
                s.name: reserve(self.workdir, staging.data_dir, s.name)
                for s in staged
                if s.target.is_file()
            }
            items = [
                Item(s.name, v, s.facts, encode(d, s.facts) if d is not None else None)
                for s, v, d in zip(staged, vectors, derived, strict=True)
            ]
            store.add(items, self.model_info.get("model_id", ""))
            committed = True
            while staged:
                item = replaced.get(staged[0].name)
                trash = (
                    partial(finish, self.workdir, staging.data_dir, item)
                    if item is not None
                    else partial(move_to_trash, self.workdir, staging.data_dir, staged[0].name)
                )
                staging.publish(staged[0], lambda _old, trash=trash: trash())
                staged.pop(0)
        except Exception:
            if committed and staged:  # indexed but not moved in: take the entries back out
                store.remove([s.name for s in staged])
            for s in staged:
                staging.discard(s)
            raise
        except BaseException:
            # The process is going (KeyboardInterrupt, SystemExit): what was committed is
            # left to Staging.recover at the next start, as after a kill.
            for s in staged if not committed else []:
                staging.discard(s)
            raise

    def remove_images(self, names: Iterable[str], trash_files: bool = True) -> list[str]:
        """Remove images from the index and move their files to the trash (never unlinked).

        Returns the names that were indexed. The index change is committed before any file
        moves: a crash in between leaves a file that `imgsim index --update` indexes again,
        never a result without a file. `imgsim trash restore NAME` brings a file back.
        """
        store = self._require_store()
        data_dir = self.data_dir
        # Unknown names (a typo, a probe from a request) change nothing, not even the
        # generation: other workers keep their state.
        known = [n for n in dict.fromkeys(names) if store.contains(n)]
        if not known:
            return []  # nothing written, not even the lock file
        if data_dir is not None:
            for name in known:
                safe_path(data_dir, name)  # UnsafePathError before anything changes
        # Under the change lock: no upload of the same name, and no index update, comes
        # between the commit and the file's move to the trash. The trash's records are
        # written first: a full disk stops the removal before the commit, never after it.
        with storage_errors("nothing was removed"), changing(self.workdir):
            known = [n for n in known if store.contains(n)]  # another request may have won
            moving = known if trash_files and data_dir is not None else []
            files = [n for n in moving if name_path(data_dir, n).is_file()]  # type: ignore[arg-type]
            reserved = {n: reserve(self.workdir, data_dir, n) for n in files}  # type: ignore[arg-type]
            removed = store.remove(known) if known else []  # a 404 if another request won
            for name in removed:
                if name in reserved:
                    finish(self.workdir, data_dir, reserved[name])  # type: ignore[arg-type]
        return removed

    def _require_store(self) -> Store:
        if self.model is None:
            raise NotReadyError(MODEL_MISSING)
        if self.store is None or self.store.info() is None:
            raise NotReadyError(EMBEDDINGS_MISSING)
        return self.store

    def image_path(self, name: str) -> Path | None:
        """The file of an indexed image, or None: names not in the index are never opened."""
        if self.store is None or not self.store.contains(name):
            return None
        data_dir = self.data_dir
        path = name_path(data_dir, name) if data_dir is not None else None
        return path if path is not None and path.is_file() else None

    def collection_map(self, settings: MapSettings) -> DocumentState:
        """The 2-D map of the collection; NotReadyError while there is no collection."""
        if self.store is None:
            raise NotReadyError(self.problems[-1] if self.problems else EMBEDDINGS_MISSING)
        if self.store.info() is None or self.store.count() == 0:
            raise NotReadyError(self.store.why_empty())
        return self.map.current(self.store, settings)

    def _embed_views(self, paths: Sequence[Path], views: Sequence[int]) -> np.ndarray:
        from ..explore.duplicates.views import ViewEmbedder

        if self.embedder is None:
            raise NotReadyError("no model to embed images with")
        return ViewEmbedder(self.embedder)(paths, views)

    def duplicate_groups(self, settings: DuplicatesConfig) -> DocumentState:
        """The collection's duplicate groups for `settings`, found in the background, never
        here; NotReadyError while a search could not run."""
        self.require_ready()
        assert self.store is not None
        return self.duplicates.current(self.store, settings)

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
    "ImageNameError",
    "ImageNotIndexedError",
    "ModelMismatchError",
    "NotReadyError",
    "SearchResult",
    "Searcher",
    "StoreUnavailableError",
    "UnknownCategoryError",
    "UnreadableImageError",
    "dataset_name",
    "results_response",
    "search_image",
]
