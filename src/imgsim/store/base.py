"""The Store interface: one collection of image vectors, whatever engine holds it."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import ImgsimError
from ..files.filefacts import FileFacts

# The original's words, kept for its users (and its API's 503 answer).
EMBEDDINGS_MISSING = "No embeddings loaded — run extraction first (imgsim extract)"


class StoreError(ImgsimError, RuntimeError):
    """The store cannot be used; the message names it and says what to do."""


class StoreUnavailableError(StoreError):
    """The store's server cannot be reached (the web app answers 503)."""


class ConcurrentChangeError(StoreError):
    """Another process changed the collection while this one prepared a change based on it."""


class ModelMismatchError(StoreError, ValueError):
    """Vectors of one model (or dimension) cannot go into another model's collection."""


@dataclass(frozen=True)
class Derived:
    """What was derived from an image's file besides its vector (the duplicate finder's
    fingerprints), opaque to the store: kept beside the vector under the same name.

    `size` and `mtime_ns` are the file's when it was read: another stat means it is stale;
    `version` is the deriving code's, so a new algorithm derives again. `summary` is read for
    every image, `thumb` and `views` (larger: a thumbnail, embeddings of the image turned) only
    for the images asked for.
    """

    version: int
    sha256: str
    size: int | None
    mtime_ns: int | None
    summary: bytes
    thumb: bytes = b""
    views: bytes = b""


@dataclass(frozen=True)
class Item:
    """An image to add: its dataset-relative name, its embedding and its file facts, and
    optionally what was derived from the same file (written in the same change)."""

    name: str
    vector: np.ndarray
    facts: FileFacts = field(default_factory=FileFacts)
    derived: Derived | None = None


@dataclass(frozen=True)
class Hit:
    """One search result: the image, its category ('' for none) and the Euclidean distance."""

    name: str
    category: str
    distance: float


@dataclass(frozen=True)
class CollectionInfo:
    """What the collection was built from."""

    model_id: str
    dim: int
    data_dir: str
    kind: str = "auto"  # the search structure asked for: auto, flat or hnsw
    created: str = ""


class Store(abc.ABC):
    """One collection of L2-normalised image embeddings with their names and file facts.

    Every method sees every change committed before it was called, by this process or any
    other. Writes are atomic; `generation` grows with each one.
    """

    address: str = ""  # where the store lives, for messages

    @abc.abstractmethod
    def info(self) -> CollectionInfo | None:
        """The collection's model, dimension and data folder; None before the first build."""

    @abc.abstractmethod
    def generation(self) -> int:
        """A number that changes whenever the collection does."""

    @abc.abstractmethod
    def count(self) -> int:
        """How many images the collection holds."""

    @abc.abstractmethod
    def categories(self) -> dict[str, int]:
        """Images per category ('' for those without one), sorted by category."""

    @abc.abstractmethod
    def contains(self, name: str) -> bool:
        """Whether an image of this name is in the collection."""

    @abc.abstractmethod
    def search(
        self, queries: np.ndarray, k: int, categories: Sequence[str] | None = None
    ) -> list[list[Hit]]:
        """Per query, the k nearest images (only of `categories` when given), nearest first."""

    def add(self, items: Sequence[Item], model_id: str, expected: int | None = None) -> int:
        """Add (or replace by name) images in one atomic change; returns the new generation.

        With `expected`, the change is refused (ConcurrentChangeError) unless the collection
        is still at that generation.
        """
        return self.apply(items, (), {}, model_id, expected)

    @abc.abstractmethod
    def remove(self, names: Iterable[str], expected: int | None = None) -> list[str]:
        """Remove images by name in one atomic change; returns those that were there."""

    @abc.abstractmethod
    def apply(
        self,
        add: Sequence[Item],
        remove: Iterable[str],
        touch: dict[str, FileFacts],
        model_id: str,
        expected: int | None = None,
        data_dir: str | None = None,
    ) -> int:
        """Add, remove and re-stat images in one atomic change; returns the new generation.

        `data_dir` records a new data folder for the collection in the same change.
        """

    @abc.abstractmethod
    def replace_all(
        self, items: Sequence[Item], info: CollectionInfo, expected: int | None = None
    ) -> int:
        """Make the collection hold exactly `items`, built by `info.model_id`, atomically."""

    @abc.abstractmethod
    def facts(self) -> dict[str, FileFacts]:
        """The recorded file facts of every image, by name."""

    @abc.abstractmethod
    def vector_with_hash(self, sha256: str) -> np.ndarray | None:
        """The embedding of an image whose file had this content hash, if any."""

    @abc.abstractmethod
    def vectors_of(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The embeddings of those of `names` the collection holds, by name."""

    @abc.abstractmethod
    def list_images(
        self, category: str | None = None, offset: int = 0, limit: int = 100
    ) -> list[tuple[str, str]]:
        """(name, category) of the images (of `category` when given), by name, from `offset`.

        Names sort by their UTF-8 bytes (code points), the same order in every engine.
        """

    @abc.abstractmethod
    def iter_vectors(self, batch: int = 10_000) -> Iterator[tuple[list[str], np.ndarray]]:
        """All names and vectors (N×D float32), in batches, in a stable order."""

    def derived(
        self, names: Sequence[str] | None = None, thumbs: bool = False
    ) -> dict[str, Derived]:
        """What was derived from the images (of `names`, else all), by name; `thumb` and `views`
        are empty unless `thumbs`. An engine that keeps none answers {}: callers derive again."""
        return {}

    def put_derived(self, rows: dict[str, Derived]) -> None:  # noqa: B027 - may keep none
        """Keep derived data of images the collection holds (others are ignored); it is a
        cache of the files, so writing it is no change of the collection (no new generation)."""

    def ensure(self, info: CollectionInfo) -> None:
        """Create an empty collection described by `info` unless one exists (races are safe)."""
        if self.info() is None:
            # ConcurrentChangeError: another process created it meanwhile; that one stands.
            with contextlib.suppress(ConcurrentChangeError):
                self.replace_all([], info, expected=self.generation())

    def why_empty(self) -> str:
        """Why `info()` is None, for the user: what to run."""
        return EMBEDDINGS_MISSING

    def set_kind(self, kind: str) -> None:  # noqa: B027 - engines without a choice ignore it
        """Ask for a search structure (auto, flat, hnsw) where the engine has a choice."""

    def flush(self) -> None:  # noqa: B027 - engines with nothing to flush ignore it
        """Bring derived caches up to date on disk (the CLI calls it when it ends)."""

    def close(self) -> None:  # noqa: B027
        """Release connections and threads."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
