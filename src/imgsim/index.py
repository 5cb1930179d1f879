"""The searchable collection: vectors in a FAISS index, their images in the SQLite manifest.

On disk a workdir holds the FAISS file (`triplet_index.faiss`), the manifest
(`triplet_manifest.sqlite`: one row per image, with its vector) and the original's exports
(`triplet_features.npy`, `triplet_images.npy`, `triplet_index.json`).

The manifest is the truth; the FAISS file is a checkpoint of it. The manifest names the CRC-32 of
every FAISS file it accepts. Loading trusts a FAISS file only if its CRC is named there, adds the
vectors committed since that checkpoint, and rebuilds it from the manifest's vectors when it is
not (a crash between the two writes). So a crash at any moment leaves a loadable index, and a
change is persisted by one SQLite commit: adding one image does not rewrite the FAISS file.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from . import vectors as vx
from .config import FAISS_INDEX_FILE, FEATURES_FILE, IMAGES_FILE, INDEX_META_FILE, MANIFEST_FILE
from .data import category_of
from .errors import EmbeddingsNotLoadedError, ImgsimError
from .fileio import atomic_path, write_text_atomic
from .manifest import Entry, FileFacts, Manifest, collect_facts

log = logging.getLogger("imgsim")

# Removed images leave dead ids that searches skip; past this share the index is rebuilt.
COMPACT_FRACTION = 0.25
# Vectors committed to the manifest but not yet in the FAISS file are re-added at load;
# the file is rewritten once they pass this many (or 1 % of the index), not on every add.
CHECKPOINT_MIN = 1000


@dataclass
class IndexMeta:
    """What the index was built from; also written beside the arrays as triplet_index.json."""

    data_dir: str
    model_id: str
    embedding_dim: int
    count: int
    created: str
    kind: str = "flat"  # the FAISS structure in use: flat (exact) or hnsw
    generation: int = 0  # counts the manifest's changes


@dataclass(frozen=True)
class NewImage:
    """An image to add: its dataset-relative name, its embedding and its file facts."""

    name: str
    vector: np.ndarray
    facts: FileFacts = field(default_factory=FileFacts)


class ModelMismatchError(ImgsimError, ValueError):
    """Vectors from another model than the index's cannot be mixed into it."""


class EmbeddingIndex:
    """Nearest-neighbour search over L2-normalised embeddings, with adds and removals.

    Every image has a vector id, its row in the FAISS index; `search` returns vector ids, which
    `name_of` and `category_of` turn into images. Removing an image marks its id dead (searches
    skip it); ids are renumbered when a quarter are dead. Searches may run in many threads while
    one writer at a time changes the index.
    """

    def __init__(
        self,
        index: faiss.Index,
        names_by_id: list[str | None],
        meta: IndexMeta,
        requested_kind: str = "auto",
    ) -> None:
        if index.ntotal != len(names_by_id):
            raise ValueError("one name (or None for a removed image) per vector id")
        self._faiss = index
        self._names = names_by_id
        self._categories = [(category_of(n) or "") if n else "" for n in names_by_id]
        self._ids = {n: i for i, n in enumerate(names_by_id) if n is not None}
        self._live = np.fromiter((n is not None for n in names_by_id), bool, len(names_by_id))
        self._bitmap: np.ndarray | None = None
        self.meta = meta
        self.meta.count, self.meta.kind = len(self._ids), vx.kind_of(index)
        self.requested_kind = requested_kind
        self.directory: Path | None = None  # set when the index lives in a workdir
        self._manifest: Manifest | None = None
        self._saved: tuple[int, int] | None = None  # (CRC, count) of the trusted FAISS file
        self._lock = threading.RLock()  # guards the in-memory state: searches vs a change
        self._write_lock = threading.Lock()  # one writer at a time
        self._refresh_mask()

    @classmethod
    def from_vectors(
        cls, features: np.ndarray, names: Sequence[str], meta: IndexMeta, kind: str = "auto"
    ) -> EmbeddingIndex:
        """An in-memory index of N×D `features`, one name per row."""
        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[0] != len(names):
            raise ValueError("features must be N×D with one name per row")
        built = vx.build(features, vx.resolve_kind(kind, len(names)))
        return cls(built, list(names), meta, kind)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, name: str) -> bool:
        return name in self._ids

    @property
    def dim(self) -> int:
        return int(self._faiss.d)

    @property
    def kind(self) -> str:
        """The FAISS structure in use: `flat` or `hnsw`."""
        return vx.kind_of(self._faiss)

    @property
    def names(self) -> list[str]:
        """The indexed images' names, by vector id."""
        with self._lock:
            return [n for n in self._names if n is not None]

    @property
    def categories(self) -> list[str]:
        """Their categories ('' for none), in the same order."""
        with self._lock:
            return [c for n, c in zip(self._names, self._categories, strict=True) if n]

    def name_of(self, vector_id: int) -> str:
        """The image of a vector id that `search` returned."""
        return self._names[vector_id] or ""

    def category_of(self, vector_id: int) -> str:
        """The category of a vector id that `search` returned ('' for none)."""
        return self._categories[vector_id]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Euclidean distances (N×k, ascending) and vector ids (N×k, -1 where fewer)."""
        with self._lock:
            k = max(1, min(k, len(self)))
            squared, ids = vx.search(self._faiss, queries, k, self._bitmap)
        # FAISS's L2 indexes return squared distances; callers get true Euclidean ones.
        return np.sqrt(np.maximum(squared, 0.0)), ids

    def search_hits(self, queries: np.ndarray, k: int) -> list[list[tuple[str, str, float]]]:
        """Per query, the nearest images as (name, category, Euclidean distance), nearest first.

        Ids are turned into names under the same lock as the search, so a change that
        renumbers the index meanwhile cannot mislabel a hit.
        """
        with self._lock:
            distances, ids = self.search(queries, k)
            return [
                [
                    (self._names[i] or "", self._categories[i], float(d))
                    for d, i in zip(ds, row, strict=True)
                    if i >= 0
                ]
                for ds, row in zip(distances, ids, strict=True)
            ]

    def vectors(self) -> tuple[list[str], np.ndarray]:
        """The names and embeddings (N×D float32) of the indexed images, by vector id."""
        with self._lock:
            live = [i for i, n in enumerate(self._names) if n is not None]
            data = self._faiss.reconstruct_n(0, self._faiss.ntotal) if live else None
            vectors = data[live] if data is not None else np.empty((0, self.dim), np.float32)
            return [self._names[i] or "" for i in live], vectors

    def file_facts(self) -> dict[str, FileFacts]:
        """The recorded size, time and hash of every image's file (empty without a manifest)."""
        return self._manifest.facts() if self._manifest is not None else {}

    def vector_with_hash(self, sha256: str) -> np.ndarray | None:
        """The embedding of an indexed file with this content hash, if there is one."""
        if self._manifest is None or not sha256:
            return None
        return self._manifest.vector_with_hash(sha256, self.dim)

    def add_images(
        self,
        names: Sequence[str],
        vectors: np.ndarray,
        facts: Sequence[FileFacts] | None = None,
        model_id: str | None = None,
    ) -> None:
        """Add images (an existing name is replaced) and persist before returning."""
        facts = facts or [FileFacts()] * len(names)
        rows = zip(names, vectors, facts, strict=True)
        self.apply_changes([NewImage(n, v, f) for n, v, f in rows], model_id=model_id)

    def remove_images(self, names: Iterable[str]) -> list[str]:
        """Remove images by name and persist; returns the names that were indexed."""
        return self.apply_changes(remove=names)

    def apply_changes(
        self,
        add: Sequence[NewImage] = (),
        remove: Iterable[str] = (),
        touch: Mapping[str, FileFacts] | None = None,
        model_id: str | None = None,
    ) -> list[str]:
        """Add (or replace), remove and re-stat images in one manifest transaction.

        Returns the removed names that were indexed. Only one writer runs at a time; searches
        go on meanwhile and see the change all at once.
        """
        with self._write_lock:
            self._check_new(add, model_id)
            persisted = self._ensure_manifest()  # may renumber: ids are looked up after it
            removed = list(dict.fromkeys(n for n in remove if n in self._ids))
            dead = [self._ids[n] for n in {*removed, *(a.name for a in add if a.name in self)}]
            vectors = np.array([a.vector for a in add], dtype=np.float32).reshape(-1, self.dim)
            start = self._faiss.ntotal
            if persisted:
                entries = [_entry(a, start + i, self.meta.model_id) for i, a in enumerate(add)]
                paths = [self._names[i] or "" for i in dead]
                values = self._meta_values(self.meta.generation + 1, start + len(add))
                self._manifest.apply(  # type: ignore[union-attr]
                    entries, vectors, paths, touch or {}, values, self.meta.generation
                )
            with self._lock:
                self._mutate(add, vectors, dead)
            self.meta.generation += 1
            self._maintain()
            return removed

    def _check_new(self, add: Sequence[NewImage], model_id: str | None) -> None:
        if model_id and self.meta.model_id and model_id != self.meta.model_id:
            raise ModelMismatchError(
                f"These embeddings come from model {model_id} but the index holds model "
                f"{self.meta.model_id}'s — rebuild it with that model: imgsim index"
            )
        if len({a.name for a in add}) != len(add):
            raise ValueError("each image may be added once per change")

    def _mutate(self, add: Sequence[NewImage], vectors: np.ndarray, dead: list[int]) -> None:
        for i in dead:
            del self._ids[self._names[i] or ""]
            self._names[i] = None
        vx.add_vectors(self._faiss, vectors)
        for a in add:
            self._ids[a.name] = len(self._names)
            self._names.append(a.name)
            self._categories.append(category_of(a.name) or "")
        self._live[dead] = False
        self._live = np.concatenate([self._live, np.ones(len(add), dtype=bool)])
        self.meta.count = len(self._ids)
        self._refresh_mask()

    def _refresh_mask(self) -> None:
        # No dead ids: search without a selector (FAISS's fastest path).
        self._bitmap = None if self._live.all() else vx.live_bitmap(self._live)

    def _adopt(self, built: faiss.Index, names: list[str]) -> None:
        """Switch to a renumbered index of `names` (ids 0..N-1), all at once for searches."""
        by_id: list[str | None] = list(names)
        with self._lock:
            self._faiss, self._names = built, by_id
            self._categories = [category_of(n) or "" for n in names]
            self._ids = {n: i for i, n in enumerate(names)}
            self._live = np.ones(len(names), dtype=bool)
            self.meta.kind = vx.kind_of(built)
            self._refresh_mask()

    def _maintain(self) -> None:
        """After a change: renumber, switch structure or checkpoint the FAISS file if due."""
        total, kind = self._faiss.ntotal, self._wanted_kind()
        if total - len(self) > COMPACT_FRACTION * total or kind != self.kind:
            self._rebuild(kind)
        elif self._saved is None or total - self._saved[1] >= max(CHECKPOINT_MIN, total // 100):
            self._checkpoint()

    def _wanted_kind(self) -> str:
        if self.requested_kind != "auto":
            return self.requested_kind
        # Halfway back down before returning to flat, so a size near the line never flip-flops.
        if self.kind == "hnsw" and len(self) >= vx.HNSW_MIN_VECTORS // 2:
            return "hnsw"
        return vx.resolve_kind("auto", len(self))

    def checkpoint(self) -> None:
        """Write the FAISS file now if it lags behind the manifest (the CLI does, at its end)."""
        with self._write_lock:
            self._checkpoint()

    def _checkpoint(self) -> None:
        if self._manifest is None or self.directory is None:
            return
        if self._saved is not None and self._saved[1] == self._faiss.ntotal:
            return
        data, crc = vx.serialize(self._faiss)
        # Accept the old and the new file while the new one is renamed into place: a crash
        # in between leaves either on disk, and either loads without a rebuild.
        accepted = {str(crc): self._faiss.ntotal}
        if self._saved is not None:
            accepted[str(self._saved[0])] = self._saved[1]
        generation = self.meta.generation
        self._manifest.set_meta({"checkpoints": accepted}, generation)
        vx.write_file(self.directory / FAISS_INDEX_FILE, data)
        self._manifest.set_meta({"checkpoints": {str(crc): self._faiss.ntotal}}, generation)
        self._saved = (crc, self._faiss.ntotal)

    def rebuild(self, requested_kind: str | None = None) -> None:
        """Renumber the images 0..N-1 in a new FAISS structure; optionally change the kind."""
        with self._write_lock:
            if requested_kind is not None:
                vx.resolve_kind(requested_kind, 0)  # checks the name
                self.requested_kind = requested_kind
            self._rebuild(vx.resolve_kind(self.requested_kind, len(self)))

    def _rebuild(self, kind: str) -> None:
        names, vectors = self.vectors()
        built = vx.build(vectors, kind)
        if self._manifest is not None and self.directory is not None:
            facts = self._manifest.facts()
            rows = [(n, facts.get(n, FileFacts())) for n in names]
            expected, self.meta.generation = self.meta.generation, self.meta.generation + 1
            self._saved = _commit_full(
                self.directory, self._manifest, built, rows, vectors, self.meta,
                self.requested_kind, expected,
            )  # fmt: skip
        self._adopt(built, names)
        log.info("Rebuilt the %s index of %d images", kind, len(names))

    def _ensure_manifest(self) -> bool:
        """Whether changes are persisted; an index loaded from the original's files gets one."""
        if self._manifest is not None or self.directory is None:
            return self._manifest is not None
        names, vectors = self.vectors()
        facts = _facts_under(self.meta.data_dir, names)
        self._manifest = Manifest(self.directory / MANIFEST_FILE)
        built = vx.build(vectors, self.kind)
        rows = list(zip(names, facts, strict=True))
        self._saved = _commit_full(
            self.directory, self._manifest, built, rows, vectors, self.meta, self.requested_kind
        )
        self._adopt(built, names)
        return True

    def _meta_values(self, generation: int, next_id: int) -> dict[str, Any]:
        return {
            "data_dir": self.meta.data_dir,
            "model_id": self.meta.model_id,
            "dim": self.dim,
            "kind": self.requested_kind,
            "created": self.meta.created,
            "generation": generation,
            "next_vector_id": next_id,
        }

    def write_exports(self) -> None:
        """Rewrite the original's arrays and triplet_index.json from the current index."""
        if self.directory is not None:
            names, vectors = self.vectors()
            _write_arrays(self.directory, vectors, names)
            _write_meta_json(self.directory, self.meta)

    def close(self) -> None:
        """Release the manifest's connection."""
        if self._manifest is not None:
            self._manifest.close()


def _entry(image: NewImage, vector_id: int, model_id: str) -> Entry:
    return Entry(image.name, category_of(image.name) or "", image.facts, vector_id, model_id)


def _commit_full(
    directory: Path,
    manifest: Manifest,
    built: faiss.Index,
    rows: Sequence[tuple[str, FileFacts]],
    vectors: np.ndarray,
    meta: IndexMeta,
    requested: str,
    expected_generation: int | None = None,
) -> tuple[int, int]:
    """Write a renumbered FAISS file, then the manifest that names it; returns (CRC, count).

    A crash between the two leaves the previous manifest with a file it does not name, which
    the next load rebuilds from the manifest's own vectors: the previous index, intact.
    """
    if expected_generation is not None:  # before the file: never overwrite a newer index's
        manifest.check_generation(expected_generation)
    data, crc = vx.serialize(built)
    vx.write_file(directory / FAISS_INDEX_FILE, data)
    entries = [Entry(n, category_of(n) or "", f, i, meta.model_id) for i, (n, f) in enumerate(rows)]
    values = {
        "data_dir": meta.data_dir,
        "model_id": meta.model_id,
        "dim": int(built.d),
        "kind": requested,
        "created": meta.created,
        "generation": meta.generation,
        "next_vector_id": len(rows),
        "checkpoints": {str(crc): len(rows)},
    }
    manifest.replace_all(entries, vectors, values, expected_generation)
    return crc, len(rows)


def _facts_under(data_dir: str, names: Sequence[str]) -> list[FileFacts]:
    """The facts of the named files where they exist (unknown facts otherwise)."""
    found = collect_facts([Path(data_dir) / n for n in names])
    return [f or FileFacts() for f in found]


def save_index(
    directory: str | Path,
    features: np.ndarray,
    names: list[str],
    data_dir: str,
    model_id: str,
    facts: Sequence[FileFacts] | None = None,
    kind: str | None = None,
) -> IndexMeta:
    """Write a whole new index: the original's arrays, the FAISS file, the manifest, the JSON.

    `facts` are the files' facts taken before they were embedded (read from the files under
    `data_dir` when not given); `kind` defaults to the workdir's previous choice, else auto.
    """
    directory = Path(directory)
    features = np.ascontiguousarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] != len(names):
        raise ValueError("features must be N×D with one name per row")
    manifest, previous = _open_for_rewrite(directory / MANIFEST_FILE)
    requested = kind or previous.get("kind", "auto")
    meta = IndexMeta(
        data_dir=str(Path(data_dir).resolve()),
        model_id=model_id,
        embedding_dim=int(features.shape[1]),
        count=len(names),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        kind=vx.resolve_kind(requested, len(names)),
        generation=int(previous.get("generation", 0)) + 1,
    )
    facts = list(facts) if facts is not None else _facts_under(meta.data_dir, names)
    # The original's files first: a failure there leaves every other file as it was.
    _write_arrays(directory, features, names)
    built = vx.build(features, meta.kind)
    try:
        rows = list(zip(names, facts, strict=True))
        _commit_full(directory, manifest, built, rows, features, meta, requested)
    finally:
        manifest.close()
    _write_meta_json(directory, meta)
    return meta


def _open_for_rewrite(path: Path) -> tuple[Manifest, dict[str, Any]]:
    """The manifest to rewrite and its previous settings; a damaged one is deleted first."""
    manifest = Manifest(path)
    if not path.is_file():
        return manifest, {}
    try:
        return manifest, manifest.meta()
    except Exception:  # sqlite3.DatabaseError and friends: not a manifest we can use
        manifest.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return Manifest(path), {}


def _write_arrays(directory: Path, features: np.ndarray, names: Sequence[str]) -> None:
    with atomic_path(directory / FEATURES_FILE) as tmp, open(tmp, "wb") as fh:
        np.save(fh, features)
    with atomic_path(directory / IMAGES_FILE) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.array(names, dtype=str))


def _write_meta_json(directory: Path, meta: IndexMeta) -> None:
    write_text_atomic(directory / INDEX_META_FILE, json.dumps(asdict(meta), indent=2) + "\n")


def load_index(directory: str | Path) -> EmbeddingIndex:
    """Load the index of a workdir: from its manifest, else from the original's two .npy files."""
    directory = Path(directory)
    if (directory / MANIFEST_FILE).is_file():
        index = _load_manifest(directory)
    else:
        index = _load_arrays(directory)
    index.directory = directory
    return index


def _load_manifest(directory: Path) -> EmbeddingIndex:
    manifest = Manifest(directory / MANIFEST_FILE)
    try:
        values, entries = manifest.meta(), manifest.entries()
        dim, next_id = int(values["dim"]), int(values["next_vector_id"])
        built, saved = _trusted_faiss(directory, values, dim)
        ids, vectors = manifest.vectors(dim, built.ntotal)
    except Exception as exc:  # sqlite3 errors, missing keys: the manifest is unusable
        manifest.close()
        raise EmbeddingsNotLoadedError(
            f"No embeddings loaded: cannot read {manifest.path.name} ({exc}) — run extraction "
            "again (imgsim extract)"
        ) from None
    # Ids committed after the checkpoint go in now; removed ones hold a zero vector, never shown.
    block = np.zeros((next_id - built.ntotal, dim), dtype=np.float32)
    block[ids - built.ntotal] = vectors
    vx.add_vectors(built, block)
    names: list[str | None] = [None] * next_id
    for path, _category, vector_id in entries:
        names[vector_id] = path
    meta = IndexMeta(
        str(values.get("data_dir", "")), str(values.get("model_id", "")), dim, len(entries),
        str(values.get("created", "")), vx.kind_of(built), int(values.get("generation", 0)),
    )  # fmt: skip
    index = EmbeddingIndex(built, names, meta, str(values.get("kind", "auto")))
    index._manifest, index._saved = manifest, saved
    return index


def _trusted_faiss(
    directory: Path, values: Mapping[str, Any], dim: int
) -> tuple[faiss.Index, tuple[int, int] | None]:
    """The FAISS file if the manifest names it, else an empty index to rebuild into."""
    found = vx.read_file(directory / FAISS_INDEX_FILE)
    accepted = values.get("checkpoints", {})
    if found is not None:
        index, crc = found
        trusted = accepted.get(str(crc)) == index.ntotal <= int(values["next_vector_id"])
        if trusted and index.d == dim:
            return index, (crc, index.ntotal)
    kind = vx.resolve_kind(str(values.get("kind", "auto")), int(values["next_vector_id"]))
    log.warning(
        "%s does not match the manifest (a save was interrupted): rebuilding it from the "
        "manifest's vectors; the next change or `imgsim index --update` rewrites it",
        FAISS_INDEX_FILE,
    )
    return vx.new_index(dim, kind), None


def _load_arrays(directory: Path) -> EmbeddingIndex:
    """The original's files: triplet_features.npy and triplet_images.npy (+ our JSON)."""
    features_path, images_path = directory / FEATURES_FILE, directory / IMAGES_FILE
    if not features_path.is_file() or not images_path.is_file():
        raise EmbeddingsNotLoadedError(
            f"No embeddings loaded: {features_path.name} / {images_path.name} not found in "
            f"{directory} — run extraction first (imgsim extract)"
        )
    try:
        features = np.load(features_path, allow_pickle=False)
        names = [str(n) for n in np.load(images_path, allow_pickle=False)]
    except (OSError, ValueError) as exc:
        raise EmbeddingsNotLoadedError(f"No embeddings loaded: cannot read them: {exc}") from None
    meta_path = directory / INDEX_META_FILE
    if meta_path.is_file():
        meta = IndexMeta(**json.loads(meta_path.read_text(encoding="utf-8")))
    else:
        meta = IndexMeta("static/dataset", "", int(features.shape[-1]), len(names), "")
    if features.ndim != 2 or len(features) != len(names) or len(names) != meta.count:
        raise EmbeddingsNotLoadedError(
            "No embeddings loaded: the feature and name files do not match — run extraction again"
        )
    return EmbeddingIndex.from_vectors(features, names, meta)
