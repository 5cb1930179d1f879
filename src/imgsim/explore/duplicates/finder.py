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

from ...core.config import DUPLICATE_METHODS, VERDICTS_FILE, DuplicatesConfig
from ...core.errors import ConfigError
from ...core.paths import name_path
from ...images.data import DECODE_FORMATS, ImageRecord, default_workers, scan_images
from . import confirm
from .captured import capture_time
from .confirm import ViewEmbed, confirmed_links
from .fingerprint import Fingerprint, iter_fingerprints
from .groups import NEAR, SAME, Group, Link, Member, keeper_first, stars
from .neighbours import INVERSE_VIEW, centred, pairs_above, pairs_within
from .stored import StoredImages, load_stored, stored_thumbnails
from .turned import KeptViews
from .verdicts import Verdicts, settings_key
from .views import VIEW_NAMES, thumbnail

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
    pixel_threshold: float
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
            "pixel_threshold": self.pixel_threshold,
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
    thumbnails: dict[int, np.ndarray | None] = field(default_factory=dict)  # decoded as needed
    dismissed: set[frozenset[str]] = field(default_factory=set)  # pairs "not duplicates"
    # Kept in the store (duplicates.stored): each image's facts and its file's mtime, so a
    # member's header and dates need no file; and thumbnails by position, read when needed.
    stored: StoredImages | None = None
    load_thumbnails: Callable[[list[int]], dict[int, np.ndarray | None]] | None = None
    # Candidate pairs judged by earlier runs (duplicates.verdicts); None: judge every pair.
    verdicts: Verdicts | None = None

    def fill_thumbnails(self, rows: Sequence[int]) -> None:
        """Thumbnails of these positions into `thumbnails`: kept ones, else decoded."""
        missing = [i for i in rows if i not in self.thumbnails]
        if self.load_thumbnails is not None and missing:
            self.thumbnails.update(self.load_thumbnails(missing))
        for i in missing:
            if i not in self.thumbnails:
                self.thumbnails[i] = thumbnail(self.paths[i])


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
    if not -1.0 <= config.pixel_threshold <= 1.0:
        raise ConfigError("pixel_threshold is a correlation, -1..1")


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


def pretrained_embedder() -> Any:
    """An Embedder of the ImageNet-pretrained network, which needs no training: it confirms
    near duplicates in a folder (docs/benchmarks.md, "Duplicates")."""
    from ...model.embedder import Embedder
    from ...model.network import pretrained_model
    from ...train.autosize import PRETRAINED_SIZE

    return Embedder.from_model(pretrained_model(PRETRAINED_SIZE))


def find_in_folder(
    folder: str | Path,
    config: DuplicatesConfig,
    embed: Callable[[list[ImageRecord]], tuple[np.ndarray, list[int]]] | None = None,
    views: ViewEmbed | None = None,
    dismissed: set[frozenset[str]] | None = None,
) -> DuplicateReport:
    """Duplicates among a folder's images; `embed` (records -> vectors, rows embedded) is
    needed by every method but hash, `views` (views.ViewEmbedder) to confirm turned copies;
    `dismissed` pairs of names are never paired (dismissed.load_dismissed)."""
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
        fingerprints,
        vectors,
        dismissed=dismissed or set(),
    )
    groups = find_groups(collection, config, views)
    return _report(groups, len(collection.names), config, skipped, started)


def find_groups(
    collection: Collection, config: DuplicatesConfig, views: ViewEmbed | None = None
) -> list[Group]:
    """The duplicate groups of a collection, by the config's method, largest first.

    Each group is a kept image and the images paired with it directly (never a chain of
    pairs), so every member is a duplicate of the image kept. `views` embeds images turned
    or mirrored: without it the confirmed method finds no turned or mirrored copy.
    """
    links = _candidate_links(collection, config, views)
    touched = {i for pair in links for i in pair}
    touched.update(i for key in (collection.sha256, _pixels(collection)) for i in _shared(key))
    members = {i: _member(collection, i) for i in sorted(touched)}
    order = [position for position, _ in keeper_first(list(members.items()))]
    for key in (_pixels(collection), collection.sha256):  # same bytes last: it wins
        links.update(_same_links(key, order, collection.sha256))
    names = collection.names
    for pair in [p for p in links if frozenset(names[i] for i in p) in collection.dismissed]:
        del links[pair]  # a person said these are not duplicates
    pairs = np.array(sorted(links), np.int64).reshape(-1, 2)
    return [_group(items, members, links) for items in stars(order, [pairs])]


def _candidate_links(
    collection: Collection, config: DuplicatesConfig, views: ViewEmbed | None
) -> dict[tuple[int, int], Link]:
    """Near pairs by the method: proposed by hashes or embeddings, confirmed if it says so."""
    index = {name: i for i, name in enumerate(collection.names)}
    rows = np.array([index[n] for n in collection.fingerprints if n in index], np.int64)
    prints = [collection.fingerprints[collection.names[i]] for i in rows]
    links: dict[tuple[int, int], Link] = {}
    if config.method in ("hash", "both") and len(rows):
        found, distance = pairs_within(np.array([f.phash for f in prints], np.uint64),
                                       config.threshold)  # fmt: skip
        for (a, b), d in zip(rows[found].tolist(), distance.tolist(), strict=True):
            links[(a, b)] = Link(NEAR, distance=d)
    if config.method in ("embedding", "both") and collection.vectors is not None:
        found, cosine = pairs_above(centred(collection.vectors), config.embedding_threshold)
        for (a, b), c in zip(found.tolist(), cosine.tolist(), strict=True):
            links[(a, b)] = Link(NEAR, similarity=round(float(c), 4))
    if config.method == "confirmed":
        links.update(confirmed_links(collection, rows, prints, config, views))
    return links


def _pixels(collection: Collection) -> list[str | None]:
    prints = collection.fingerprints
    return [prints[n].pixels or None if n in prints else None for n in collection.names]


def _shared(keys: Sequence[str | None]) -> list[int]:
    counts = Counter(k for k in keys if k)
    return [i for i, k in enumerate(keys) if k and counts[k] > 1]


def _same_links(
    keys: Sequence[str | None], order: Sequence[int], sha256: Sequence[str | None]
) -> dict[tuple[int, int], Link]:
    # The same bytes or pixels are the same picture whichever copy is kept: every copy is
    # paired with the best-placed one (`order`), so the copies land in one group around it.
    first: dict[str, int] = {}
    links = {}
    for i in order:
        key = keys[i]
        if key and key in first:
            pair = (min(first[key], i), max(first[key], i))
            links[pair] = Link(SAME, distance=0, similarity=1.0, exact=keys is sha256)
        elif key:
            first[key] = i
    return links


def _group(items: list[int], members_of: dict[int, Member], links: dict) -> Group:
    keep_i = items[0]
    members = [members_of[i] for i in items]
    members[0].keep = True
    for i, member in zip(items[1:], members[1:], strict=True):
        link = links[(min(i, keep_i), max(i, keep_i))]
        member.tier = link.tier
        member.exact = link.exact
        member.hash_distance, member.similarity = link.distance, link.similarity
        # The link names the view of its second image that looks like the first.
        view = INVERSE_VIEW[link.view] if i > keep_i else link.view
        member.view = VIEW_NAMES[view]
    return Group(members)


def _member(collection: Collection, i: int) -> Member:
    name = collection.names[i]
    stored = collection.stored
    if stored is not None and name in stored.facts:  # no file read: all was kept
        facts, modified = stored.facts[name], stored.modified.get(name)
        taken, taken_from = (facts.taken, "exif") if facts.taken is not None else (
            (modified, "file") if modified is not None else (None, "")
        )  # fmt: skip
        dates = {"modified": modified, "captured": taken, "captured_from": taken_from}
        f = facts.fingerprint
        return Member(name, f.size, f.width, f.height, f.format, **dates)
    path = collection.paths[i]
    try:
        stat = path.stat()
    except OSError:
        stat = None
    modified = stat.st_mtime if stat is not None else None
    taken, taken_from = capture_time(path, modified)  # the grouped images' headers only
    dates = {"modified": modified, "captured": taken, "captured_from": taken_from}
    found = collection.fingerprints.get(name)
    if found is not None:
        return Member(name, found.size, found.width, found.height, found.format, **dates)
    width, height, kind = _header(path)
    size = collection.sizes[i]
    if size is None:
        size = stat.st_size if stat is not None else 0
    return Member(name, size, width, height, kind, **dates)


def _header(path: Path) -> tuple[int, int, str]:
    # The header alone: the keeper is chosen by resolution and format without decoding.
    try:
        with Image.open(path, formats=DECODE_FORMATS) as im:
            return im.size[0], im.size[1], im.format or ""
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return 0, 0, ""


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
        config.pixel_threshold,
        skipped,
        time.monotonic() - started,
    )


class StoreFinder:
    """Duplicates of the indexed collection, from the duplicate data kept in the store.

    Each image's fingerprint, thumbnail and capture date are kept beside its vector
    (duplicates.stored): only a file whose stat changed since (or without any kept) is read,
    and what it gives is written back, so a second run over the same files decodes none.
    """

    def __init__(self, views: ViewEmbed | None = None, workdir: str | Path | None = None) -> None:
        self.views = views  # embeds images turned: the confirmed method's turned copies
        # Verdicts on candidate pairs are kept there (VERDICTS_FILE); None: every pair judged.
        self.verdicts_path = Path(workdir) / VERDICTS_FILE if workdir is not None else None
        self._lock = threading.Lock()  # one reading-and-writing-back at a time

    def find(
        self, store: Any, config: DuplicatesConfig, dismissed: set[frozenset[str]] | None = None
    ) -> DuplicateReport:
        """Duplicates among the images of `store` (an imgsim.store.Store), never pairing the
        `dismissed` pairs of names."""
        check_method(config)
        started = time.monotonic()
        info = store.info()
        data_dir = Path(info.data_dir) if info is not None else Path(".")
        facts = store.facts()
        names = sorted(facts)
        vectors = None
        if config.method != "hash":
            vectors, names = _store_vectors(store)
        paths = [name_path(data_dir, n) for n in names]
        collection = Collection(
            names,
            paths,
            [facts[n].sha256 if n in facts else None for n in names],
            [facts[n].size if n in facts else None for n in names],
            vectors=vectors,
            dismissed=dismissed or set(),
        )
        with self._lock:
            stored = load_stored(store, names, paths, facts, config.workers)
        collection.stored = stored
        collection.load_thumbnails = _thumbnail_loader(store, collection, stored.kept)
        views = self.views
        if views is not None and info is not None:  # turned embeddings kept in the store too
            views = KeptViews(views, store, dict(zip(paths, names, strict=True)),
                              info.model_id, stored.kept)  # fmt: skip
        skipped: list[tuple[str, str]] = []
        if config.method != "embedding":
            collection.fingerprints = {n: f.fingerprint for n, f in stored.facts.items()}
            skipped = stored.skipped
        if self.verdicts_path is not None and info is not None and config.method == "confirmed":
            turned = self.views is not None
            judge = (confirm.CONFIRM_VERSION, confirm.CLOSE_BITS, confirm.COSINE_SLACK)
            settings = settings_key(config, info.model_id, turned, judge)
            collection.verdicts = Verdicts.load(self.verdicts_path, settings)
        groups = find_groups(collection, config, views)
        if collection.verdicts is not None:
            collection.verdicts.keep()
        return _report(groups, len(names), config, skipped, started)


def _thumbnail_loader(
    store: Any, collection: Collection, kept: set[str]
) -> Callable[[list[int]], dict[int, np.ndarray | None]]:
    def load(rows: list[int]) -> dict[int, np.ndarray | None]:
        found = stored_thumbnails(store, [collection.names[i] for i in rows], kept)
        return {i: found[collection.names[i]] for i in rows if collection.names[i] in found}

    return load


def _store_vectors(store: Any) -> tuple[np.ndarray, list[str]]:
    names: list[str] = []
    parts: list[np.ndarray] = []
    for batch_names, batch in store.iter_vectors():
        names.extend(batch_names)
        parts.append(np.asarray(batch, np.float32))
    if not parts:
        return np.empty((0, 0), np.float32), []
    return np.concatenate(parts), names
