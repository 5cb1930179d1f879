"""Keeping the index in step with the image folder: embed only new and changed files."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.config import ExtractConfig
from ..core.errors import DatasetError, storage_errors
from ..core.paths import unescape_name
from ..files.changes import changing
from ..files.filefacts import FileFacts, collect_facts, stat_facts
from ..images.data import ImageRecord, record_of, scan_names
from ..model.embedder import Embedder
from ..model.model_handle import ModelFile
from ..store import CollectionInfo, ConcurrentChangeError, Item, Store, open_store
from ..store.exports import exports_current, write_exports
from ..store.vectors import resolve_kind
from .extract import (
    _extract_with,
    check_device,
    embed_records,
    extract_embedder,
    extract_workers,
    keep_duplicate_data,
    ray_embed,
    thumbnail_dir,
)
from .scale import ShardError, in_shard, parse_shard
from .uploads import recover_uploads

log = logging.getLogger("imgsim")


@dataclass
class UpdateResult:
    """What `imgsim index` did."""

    total: int  # images in the index afterwards
    embedded: int  # images run through the model
    reused: int = 0  # new names whose content was already indexed (moved or copied files)
    removed: int = 0  # deleted files, and changed files that no longer decode
    unchanged: int = 0
    skipped: int = 0  # unreadable files left out
    full: bool = False  # everything was (re-)embedded
    reason: str = ""  # why everything was
    seconds: float = 0.0
    kind: str = "flat"
    failed: list[str] = field(default_factory=list)  # the unreadable files, by name
    late: int = 0  # files that appeared or changed while it ran: the next update's
    added: list[str] = field(default_factory=list)  # the names it added, by name


@dataclass
class _Plan:
    """The folder compared with the manifest."""

    add: list[Item] = field(default_factory=list)  # reused vectors, known before embedding
    embed: list[tuple[ImageRecord, FileFacts]] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    touch: dict[str, FileFacts] = field(default_factory=dict)  # same content, new stat
    unchanged: int = 0
    embedded: int = 0  # how many of `add` went through the model


# An update whose plan meets a change by another process (an upload, a delete) plans again,
# reusing what it embedded, this many times before it gives up.
UPDATE_ATTEMPTS = 4


def update_index(
    config: ExtractConfig, update: bool = True, kind: str | None = None, progress: bool = True
) -> UpdateResult:
    """Bring the collection in step with `config.data_dir`.

    With `update`, only new and changed files are embedded, deleted ones dropped, the rest
    kept; a different model (or no collection yet) embeds everything, saying why. Without it,
    everything is embedded (as `imgsim extract`). `kind` (auto, flat, hnsw) switches the
    FAISS structure; by default the previous choice stays. With `config.shard` ("K/N") only
    that share of the images is embedded and added or dropped, into a collection shared with
    the other shards' runs (created empty by whichever comes first).
    """
    start = time.perf_counter()
    model = ModelFile(config.model_path)  # the header: the network loads only to embed
    info = model.info
    check_device(config)  # before the store is touched
    shard = parse_shard(config.shard)
    store = open_store(config.output_dir, config.store or None, info["model_id"])
    try:
        recover_uploads(config.output_dir, store)
        if shard is not None:
            store.ensure(_new_info(config, info["model_id"], model, kind))
        reason = _full_reason(store, config, info["model_id"], model) if update else "full"
        if shard is not None and reason:
            raise ShardError(
                f"--shard adds to one model's collection; {reason.split(':')[0]} — build "
                "the collection with this model first (imgsim index, without --shard)"
            )
        if kind is not None and not reason:
            store.set_kind(kind)
        result = None if reason else _update(store, model, config, progress, info["model_id"])
        if result is not None and result.late:
            # The watcher's own next batch takes them, so only this command gives the advice.
            log.warning(
                "%d files appeared or changed while the update ran; the next "
                "`imgsim index --update` embeds them",
                result.late,
            )
    finally:
        store.close()
    if result is None:
        if reason != "full":
            log.warning("%s", reason)
        embedder = extract_embedder(model, config)
        done = _extract_with(embedder, info["model_id"], config, progress, kind=kind)
        result = UpdateResult(done.count, done.count, skipped=done.skipped, full=True)
        result.reason, result.kind = ("" if reason == "full" else reason), done.kind
    result.seconds = time.perf_counter() - start
    return result


def _new_info(
    config: ExtractConfig, model_id: str, model: ModelFile, kind: str | None
) -> CollectionInfo:
    return CollectionInfo(
        model_id, model.config.embedding_dim, str(Path(config.data_dir).resolve()),
        kind or "auto", time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )  # fmt: skip


def _full_reason(store: Store, config: ExtractConfig, model_id: str, model: ModelFile) -> str:
    """Why everything must be embedded ('' when an update will do)."""
    collection = store.info()
    if collection is None:
        return f"No index in {store.address} yet: embedding every image once"
    if collection.model_id != model_id or collection.dim != model.config.embedding_dim:
        return (
            f"The index was embedded with model {collection.model_id or 'unknown'}, but "
            f"{config.model_path} is model {model_id}: re-embedding all images"
        )
    return ""


def update_pass(
    store: Store,
    model: ModelFile,
    config: ExtractConfig,
    skip: AbstractSet[str] = frozenset(),
    embedder: Callable[[], Embedder] | None = None,
    duplicate_data: bool = True,
) -> UpdateResult:
    """One incremental update of an open store, as `index --update` makes (the watcher's).

    Names in `skip` (files still being written, known-bad ones) are left as they are: not
    read, not added, not removed. `embedder` gives the runtime to embed with, so a
    long-running caller builds it once. Without `duplicate_data`, the added images' duplicate
    data is left to the caller (the result's `added`; extract.keep_duplicate_data).
    """
    return _update(store, model, config, False, model.model_id, skip, embedder, duplicate_data)


def _update(
    store: Store,
    model: ModelFile,
    config: ExtractConfig,
    progress: bool,
    model_id: str,
    skip: AbstractSet[str] = frozenset(),
    embedder: Callable[[], Embedder] | None = None,
    duplicate_data: bool = True,
) -> UpdateResult:
    start = time.perf_counter()
    embedded: dict[str, np.ndarray] = {}  # by content: the locked plan reuses them
    failed: set[str] = set()  # names that did not decode
    for _ in range(UPDATE_ATTEMPTS):
        # The slow part (embedding) runs while uploads and deletes go on; then, under the
        # workdir's change lock, the folder is read again and what is known is committed at
        # once, so steady uploads cannot keep the update from finishing.
        seen = store.generation()
        first = _plan_now(store, config, embedded, skip)
        data_dir = str(Path(config.data_dir).resolve())
        if _no_change(first) and _same_folder(store, data_dir):
            # Folder and index agreed at one look: nothing to commit, so no lock and no
            # second scan (what changes from now on is the next update's, as when it is late).
            plan, late = first, 0
            break
        failed |= _embed_plan(first, model, model_id, config, progress, embedded, embedder)
        # One transaction: a full disk or a read-only folder leaves the index as it was.
        with storage_errors("the index was not changed"), changing(config.output_dir):
            expected = store.generation()
            if expected == seen and not first.embed:
                # Nothing was embedded (only removals, moves, touches) and no writer came
                # between: the first look still holds, and a second scan would double the
                # time a watched folder takes to forget a deleted file.
                plan = first
            else:
                plan = _plan_now(store, config, embedded, skip)
            late = _drop_unembedded(plan, failed, store.facts())
            if not (plan.add or plan.remove or plan.touch) and _same_folder(store, data_dir):
                break  # nothing to change: no write, so other processes' readers keep theirs
            try:
                store.apply(plan.add, plan.remove, plan.touch, model_id, expected, data_dir)
                break
            except ConcurrentChangeError:  # a writer that does not take the lock (Milvus)
                log.warning("The index changed meanwhile (another process); planning again")
    else:
        raise ConcurrentChangeError(
            f"The index kept changing during the update ({UPDATE_ATTEMPTS} tries); nothing was "
            "changed — run imgsim index --update again"
        )
    plan.embedded = sum(1 for item in plan.add if (item.facts.sha256 or "") in embedded)
    names = [item.name for item in plan.add]
    if duplicate_data:
        keep_duplicate_data(store, config, names, "the index was updated")
    result = _finish(store, config, plan, failed, start)
    result.late, result.added = late, names
    return result


def _drop_unembedded(plan: _Plan, failed: set[str], known: Mapping[str, FileFacts]) -> int:
    """Leave out what the locked plan would still have to embed; returns how many are late.

    Files that did not decode are dropped from the index if they were in it (as before);
    files that appeared or changed after the embedding are left for the next update rather
    than embedded while uploads wait.
    """
    late = 0
    for record, _ in plan.embed:
        if record.name in failed:
            if record.name in known:
                plan.remove.append(record.name)
        else:
            late += 1
    plan.embed = []
    return late


def _finish(
    store: Store, config: ExtractConfig, plan: _Plan, failed: set[str], start: float
) -> UpdateResult:
    # Committed already: only the export files (each written whole or not at all) can miss.
    with storage_errors("the index was updated, but its export files were not rewritten"):
        if not exports_current(store, config.output_dir):
            store.flush()
            write_exports(store, config.output_dir)
    total, reused = store.count(), len(plan.add) - plan.embedded
    collection = store.info()
    log.debug(  # the caller sums up (imgsim index: "Updated the index …"), once
        "Index updated: %d embedded, %d reused, %d removed, %d unchanged; %d images",
        plan.embedded, reused, len(plan.remove), plan.unchanged, total,
    )  # fmt: skip
    return UpdateResult(
        total, plan.embedded, reused, len(plan.remove), plan.unchanged, len(failed),
        seconds=time.perf_counter() - start,
        kind=resolve_kind(collection.kind if collection else "auto", total),
        failed=sorted(failed),
    )  # fmt: skip


def _plan_now(
    store: Store, config: ExtractConfig, embedded: dict[str, np.ndarray], skip: AbstractSet[str]
) -> _Plan:
    """The folder as it is now compared with the store (vectors in `embedded` are reused)."""
    shard = parse_shard(config.shard)
    names = [n for n in scan_names(config.data_dir) if in_shard(n, shard)]
    if not names and shard is None:
        raise DatasetError(f"No images found in {config.data_dir}")
    names = [n for n in names if n not in skip]
    workers = extract_workers(config.workers) + 1
    return _plan(store, Path(config.data_dir), names, workers, embedded, shard, skip)


def _no_change(plan: _Plan) -> bool:
    return not (plan.add or plan.embed or plan.remove or plan.touch)


def _same_folder(store: Store, data_dir: str) -> bool:
    info = store.info()
    return info is not None and info.data_dir == data_dir


def _embed_plan(
    plan: _Plan,
    model: ModelFile,
    model_id: str,
    config: ExtractConfig,
    progress: bool,
    embedded: dict[str, np.ndarray],
    embedder: Callable[[], Embedder] | None = None,
) -> set[str]:
    """Embed what the plan lists, into `plan.add`; returns the names that did not decode."""
    todo = [r for r, _ in plan.embed]
    if not todo:  # nothing new: no runtime to start (and no torch to import)
        return set()
    if config.engine == "ray":
        features, rows = ray_embed(config, model.config.image_size, todo)
    else:
        runtime = embedder() if embedder is not None else extract_embedder(model, config)
        features, rows = embed_records(
            runtime, model.config.image_size, todo, config.batch_size, config.workers,
            progress, thumbnail_cache=thumbnail_dir(config),
        )  # fmt: skip
    for j, i in enumerate(rows):
        facts = plan.embed[i][1]
        embedded[facts.sha256 or ""] = features[j]
        plan.add.append(Item(todo[i].name, features[j], facts))
    plan.embedded = len(rows)
    return {todo[i].name for i in set(range(len(todo))) - set(rows)}


def _plan(
    store: Store,
    root: Path,
    names: list[str],
    workers: int,
    embedded: dict[str, np.ndarray],
    shard: tuple[int, int] | None = None,
    skip: AbstractSet[str] = frozenset(),
) -> _Plan:
    """What to embed, reuse, drop and re-stat; only files whose stat moved are read."""
    known = {n: f for n, f in store.facts().items() if in_shard(n, shard)}
    plan = _Plan(remove=sorted(set(known) - set(names) - skip))
    candidates, folder = [], os.fspath(root)
    for name in names:  # the hot loop of every update and watched batch: no Path per file
        old = known.get(name)
        try:
            same = old is not None and old.same_stat(
                stat_facts(os.path.join(folder, unescape_name(name)))
            )
        except OSError:  # vanished since the scan: the next update drops it
            continue
        if same:
            plan.unchanged += 1
        else:
            candidates.append(record_of(root, name))
    facts = collect_facts([r.path for r in candidates], workers)
    for record, fact in zip(candidates, facts, strict=True):
        old = known.get(record.name)
        if fact is None:
            continue
        if old is not None and old.sha256 == fact.sha256:
            plan.touch[record.name] = fact
            plan.unchanged += 1
        elif (vector := _known_vector(store, embedded, fact.sha256 or "")) is not None:
            plan.add.append(Item(record.name, vector, fact))
        else:
            plan.embed.append((record, fact))
    return plan


def _known_vector(store: Store, embedded: dict[str, np.ndarray], sha256: str) -> np.ndarray | None:
    """A vector for this content: embedded by this run, or already in the store."""
    return embedded.get(sha256) if sha256 in embedded else store.vector_with_hash(sha256)
