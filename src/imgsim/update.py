"""Keeping the index in step with the image folder: embed only new and changed files."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import ExtractConfig
from .data import ImageRecord, scan_images
from .errors import DatasetError
from .extract import (
    _extract_with,
    check_device,
    embed_records,
    extract_embedder,
    extract_workers,
    ray_embed,
    thumbnail_dir,
)
from .filefacts import FileFacts, collect_facts, stat_facts
from .model import EmbeddingNet, load_model
from .scale import ShardError, in_shard, parse_shard
from .staging import recover_uploads, wait_for_uploads
from .store import CollectionInfo, ConcurrentChangeError, Item, Store, open_store
from .store.exports import write_exports
from .vectors import resolve_kind

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
    model, info = load_model(config.model_path)
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
    finally:
        store.close()
    if result is None:
        if reason != "full":
            log.warning("%s", reason)
        embedder = extract_embedder(model, info["model_id"], config)
        done = _extract_with(embedder, info["model_id"], config, progress, kind=kind)
        result = UpdateResult(done.count, done.count, skipped=done.skipped, full=True)
        result.reason, result.kind = ("" if reason == "full" else reason), done.kind
    result.seconds = time.perf_counter() - start
    return result


def _new_info(
    config: ExtractConfig, model_id: str, model: EmbeddingNet, kind: str | None
) -> CollectionInfo:
    return CollectionInfo(
        model_id, model.config.embedding_dim, str(Path(config.data_dir).resolve()),
        kind or "auto", time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )  # fmt: skip


def _full_reason(store: Store, config: ExtractConfig, model_id: str, model: EmbeddingNet) -> str:
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


def _update(
    store: Store, model: EmbeddingNet, config: ExtractConfig, progress: bool, model_id: str
) -> UpdateResult:
    embedded: dict[str, np.ndarray] = {}  # by content: a second plan reuses them
    for _ in range(UPDATE_ATTEMPTS):
        expected = store.generation()
        wait_for_uploads(config.output_dir)
        shard = parse_shard(config.shard)
        records = [r for r in scan_images(config.data_dir) if in_shard(r.name, shard)]
        if not records and shard is None:
            raise DatasetError(f"No images found in {config.data_dir}")
        plan = _plan(store, records, extract_workers(config.workers) + 1, embedded, shard)
        failed = _embed_plan(plan, model, model_id, config, progress, embedded)
        known = store.facts()
        plan.remove += [n for n in failed if n in known]
        try:
            data_dir = str(Path(config.data_dir).resolve())
            store.apply(plan.add, plan.remove, plan.touch, model_id, expected, data_dir)
            break
        except ConcurrentChangeError:
            log.warning("The index changed meanwhile (another process); planning again")
    else:
        raise ConcurrentChangeError(
            f"The index kept changing during the update ({UPDATE_ATTEMPTS} tries); nothing was "
            "changed — run imgsim index --update again"
        )
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
        kind=resolve_kind(collection.kind if collection else "auto", total),
    )  # fmt: skip


def _embed_plan(
    plan: _Plan,
    model: EmbeddingNet,
    model_id: str,
    config: ExtractConfig,
    progress: bool,
    embedded: dict[str, np.ndarray],
) -> set[str]:
    """Embed what the plan lists, into `plan.add`; returns the names that did not decode."""
    todo = [r for r, _ in plan.embed]
    if config.engine == "ray":
        features, rows = ray_embed(config, model.config.image_size, todo)
    else:
        embedder = extract_embedder(model, model_id, config)
        features, rows = embed_records(
            embedder, model.config.image_size, todo, config.batch_size, config.workers,
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
    records: list[ImageRecord],
    workers: int,
    embedded: dict[str, np.ndarray],
    shard: tuple[int, int] | None = None,
) -> _Plan:
    """What to embed, reuse, drop and re-stat; only files whose stat moved are read."""
    known = {n: f for n, f in store.facts().items() if in_shard(n, shard)}
    plan = _Plan(remove=sorted(set(known) - {r.name for r in records}))
    candidates = []
    for record in records:
        old = known.get(record.name)
        try:
            same = old is not None and old.same_stat(stat_facts(record.path))
        except OSError:  # vanished since the scan: the next update drops it
            continue
        if same:
            plan.unchanged += 1
        else:
            candidates.append(record)
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
