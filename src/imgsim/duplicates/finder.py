"""Find duplicate images in a folder or in the indexed collection: fingerprints, pairs, groups."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..config import DUPLICATE_METHODS, DuplicatesConfig
from ..data import DECODE_FORMATS, ImageRecord, category_of, default_workers, scan_images
from ..errors import ConfigError
from .fingerprint import Fingerprint, iter_fingerprints
from .groups import Group, Member, keeper_first, stars
from .neighbours import centred, pairs_above, pairs_within

log = logging.getLogger("imgsim")

# Distinct pictures' hashes differ in about 32 bits; at 12 the first false pairs appeared
# (docs/benchmarks.md), and the band search's work grows steeply past 16.
MAX_THRESHOLD = 16


@dataclass
class DuplicateReport:
    """The groups found, how many images were compared, and the files that could not be read."""

    groups: list[Group]
    images: int
    method: str
    threshold: int
    embedding_threshold: float
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    seconds: float = 0.0

    @property
    def extras(self) -> int:
        return sum(len(g.extras) for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "method": self.method,
            "threshold": self.threshold,
            "embedding_threshold": self.embedding_threshold,
            "extras": self.extras,
            "groups": [g.to_dict() for g in self.groups],
            "skipped": [{"name": n, "error": e} for n, e in self.skipped],
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Collection:
    """What the pairs are found in: names, their files, and what is known of each."""

    names: list[str]
    paths: list[Path]
    sha256: list[str | None]
    sizes: list[int | None]
    fingerprints: dict[str, Fingerprint] = field(default_factory=dict)
    vectors: np.ndarray | None = None  # embeddings, aligned with names


def check_method(config: DuplicatesConfig) -> None:
    """ConfigError for a method or threshold the finder cannot use."""
    if config.method not in DUPLICATE_METHODS:
        raise ConfigError(f"method must be one of {', '.join(DUPLICATE_METHODS)}")
    if not 0 <= config.threshold <= MAX_THRESHOLD:
        raise ConfigError(
            f"threshold must be 0..{MAX_THRESHOLD} bits of the 64-bit perceptual hash "
            "(more would pair unrelated images, and slowly)"
        )
    if not -1.0 <= config.embedding_threshold <= 1.0:
        raise ConfigError("embedding_threshold is a cosine similarity, -1..1")


def fingerprint_all(
    records: Sequence[ImageRecord], workers: int = 0
) -> tuple[dict[str, Fingerprint], list[tuple[str, str]]]:
    """Fingerprints by name, decoded in worker processes; unreadable files named and skipped."""
    found: dict[str, Fingerprint] = {}
    skipped: list[tuple[str, str]] = []
    for done, failed in iter_fingerprints(records, workers or default_workers()):
        found.update((f.name, f) for f in done)
        for name, why in failed:
            log.warning("Skipping unreadable image %s: %s", name, why)
        skipped.extend(failed)
    return found, skipped


def find_in_folder(
    folder: str | Path,
    config: DuplicatesConfig,
    embed: Callable[[list[ImageRecord]], tuple[np.ndarray, list[int]]] | None = None,
) -> DuplicateReport:
    """Duplicates among a folder's images; `embed` (records -> vectors, rows embedded) is
    needed by the embedding and both methods."""
    check_method(config)
    started = time.monotonic()
    records = scan_images(folder)
    fingerprints, skipped = fingerprint_all(records, config.workers)
    readable = [r for r in records if r.name in fingerprints]
    vectors = None
    if config.method != "hash":
        if embed is None:
            raise ConfigError(f"the {config.method} method needs a model to embed the images")
        vectors, rows = embed(readable)
        readable = [readable[i] for i in rows]
    prints = [fingerprints[r.name] for r in readable]
    collection = Collection(
        [r.name for r in readable],
        [r.path for r in readable],
        [f.sha256 for f in prints],
        [f.size for f in prints],
        fingerprints if config.method != "embedding" else {},
        vectors,
    )
    groups = find_groups(collection, config)
    return _report(groups, len(collection.names), config, skipped, started)


def find_groups(collection: Collection, config: DuplicatesConfig) -> list[Group]:
    """The duplicate groups of a collection, by the config's method, largest first.

    Each group is a kept image and the images paired with it directly (never a chain of
    pairs), so every member is a duplicate of the image kept.
    """
    index = {name: i for i, name in enumerate(collection.names)}
    pairs = []
    if config.method != "embedding" and collection.fingerprints:
        rows = np.array([index[n] for n in collection.fingerprints if n in index], np.int64)
        hashes = np.array(
            [collection.fingerprints[collection.names[i]].phash for i in rows], np.uint64
        )
        found, _ = pairs_within(hashes, config.threshold)
        pairs.append(rows[found] if len(found) else found)
    vectors = None
    if config.method != "hash" and collection.vectors is not None:
        vectors = centred(collection.vectors)
        pairs.append(pairs_above(vectors, config.embedding_threshold)[0])
    touched = np.unique(np.concatenate([p.ravel() for p in pairs] + [_same_bytes(collection)]))
    members = {i: _member(collection, i) for i in touched.astype(np.int64).tolist()}
    order = [position for position, _ in keeper_first(list(members.items()))]
    pairs.append(_exact_pairs(collection.sha256, order))
    return [_group(collection, items, members, config, vectors) for items in stars(order, pairs)]


def _same_bytes(collection: Collection) -> np.ndarray:
    counts = Counter(d for d in collection.sha256 if d)
    return np.array([i for i, d in enumerate(collection.sha256) if counts.get(d, 0) > 1], np.int64)


def _exact_pairs(sha256: Sequence[str | None], order: Sequence[int]) -> np.ndarray:
    # Same bytes is the same picture whichever copy is kept: every copy is paired with the
    # best-placed one (`order`), so the copies land in one group around it.
    first: dict[str, int] = {}
    chains = []
    for i in order:
        digest = sha256[i]
        if digest:
            if digest in first:
                chains.append((first[digest], i))
            else:
                first[digest] = i
    return np.array(chains, np.int64).reshape(-1, 2)


def _group(
    collection: Collection,
    items: list[int],
    members_of: dict[int, Member],
    config: DuplicatesConfig,
    vectors: np.ndarray | None,
) -> Group:
    keep_i = items[0]
    members = [members_of[i] for i in items]
    members[0].keep = True
    keep_print = collection.fingerprints.get(members[0].name)
    for i, member in zip(items, members, strict=True):
        member.exact = (
            bool(collection.sha256[i]) and collection.sha256[i] == (collection.sha256[keep_i])
        )
        fingerprint = collection.fingerprints.get(member.name)
        if fingerprint is not None and keep_print is not None and config.method != "embedding":
            member.hash_distance = (fingerprint.phash ^ keep_print.phash).bit_count()
        if vectors is not None:
            cosine = float(vectors[i] @ vectors[keep_i])
            member.similarity = round(min(cosine, 1.0), 4)
    return Group(members)


def _member(collection: Collection, i: int) -> Member:
    name = collection.names[i]
    found = collection.fingerprints.get(name)
    if found is not None:
        return Member(name, found.size, found.width, found.height)
    width, height = _pixel_size(collection.paths[i])
    size = collection.sizes[i]
    if size is None:
        try:
            size = collection.paths[i].stat().st_size
        except OSError:
            size = 0
    return Member(name, size, width, height)


def _pixel_size(path: Path) -> tuple[int, int]:
    # The header alone: the keeper is chosen by resolution without decoding anything.
    try:
        with Image.open(path, formats=DECODE_FORMATS) as im:
            return im.size
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return 0, 0


def _report(
    groups: list[Group],
    images: int,
    config: DuplicatesConfig,
    skipped: list[tuple[str, str]],
    started: float,
) -> DuplicateReport:
    return DuplicateReport(
        groups,
        images,
        config.method,
        config.threshold,
        config.embedding_threshold,
        skipped,
        time.monotonic() - started,
    )


class StoreFinder:
    """Duplicates of the indexed collection; fingerprints are kept between calls, by content.

    A file whose recorded SHA-256 is unchanged is not decoded again, so after an upload only
    the new image is hashed.
    """

    def __init__(self) -> None:
        self._prints: dict[tuple[str, str | None], Fingerprint] = {}
        self._lock = threading.Lock()

    def find(self, store: Any, config: DuplicatesConfig) -> DuplicateReport:
        """Duplicates among the images of `store` (an imgsim.store.Store)."""
        check_method(config)
        started = time.monotonic()
        info = store.info()
        data_dir = Path(info.data_dir) if info is not None else Path(".")
        facts = store.facts()
        names = sorted(facts)
        vectors = None
        if config.method != "hash":
            vectors, names = _store_vectors(store)
        collection = Collection(
            names,
            [data_dir / n for n in names],
            [facts[n].sha256 if n in facts else None for n in names],
            [facts[n].size if n in facts else None for n in names],
            vectors=vectors,
        )
        skipped: list[tuple[str, str]] = []
        if config.method != "embedding":
            with self._lock:
                collection.fingerprints, skipped = self._fingerprints(collection, config)
        groups = find_groups(collection, config)
        return _report(groups, len(names), config, skipped, started)

    def _fingerprints(
        self, collection: Collection, config: DuplicatesConfig
    ) -> tuple[dict[str, Fingerprint], list[tuple[str, str]]]:
        keys = list(zip(collection.names, collection.sha256, strict=True))
        todo = [
            ImageRecord(name, category_of(name), path)
            for (name, digest), path in zip(keys, collection.paths, strict=True)
            if digest is None or (name, digest) not in self._prints
        ]
        fresh, skipped = fingerprint_all(todo, config.workers)
        known = {(n, d): self._prints[(n, d)] for n, d in keys if (n, d) in self._prints}
        for name, digest in keys:
            if name in fresh:
                known[(name, digest)] = fresh[name]
        self._prints = known  # forget images that left the collection
        return {name: f for (name, _), f in known.items()}, skipped


def _store_vectors(store: Any) -> tuple[np.ndarray, list[str]]:
    names: list[str] = []
    parts: list[np.ndarray] = []
    for batch_names, batch in store.iter_vectors():
        names.extend(batch_names)
        parts.append(np.asarray(batch, np.float32))
    if not parts:
        return np.empty((0, 0), np.float32), []
    return np.concatenate(parts), names
