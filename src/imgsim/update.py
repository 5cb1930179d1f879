"""Keeping the index in step with the image folder: embed only new and changed files."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import MANIFEST_FILE, ExtractConfig
from .data import ImageRecord, scan_images
from .errors import DatasetError, EmbeddingsNotLoadedError
from .extract import _extract_with, embed_records, extract_workers
from .index import EmbeddingIndex, NewImage, load_index
from .manifest import FileFacts, collect_facts, stat_facts
from .model import EmbeddingNet, load_model

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

    add: list[NewImage] = field(default_factory=list)  # reused vectors, known before embedding
    embed: list[tuple[ImageRecord, FileFacts]] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    touch: dict[str, FileFacts] = field(default_factory=dict)  # same content, new stat
    unchanged: int = 0


def update_index(
    config: ExtractConfig, update: bool = True, kind: str | None = None, progress: bool = True
) -> UpdateResult:
    """Bring the index in `config.output_dir` in step with `config.data_dir`.

    With `update`, only new and changed files are embedded, deleted ones dropped, the rest
    kept; a different model (or no usable index) embeds everything, saying why. Without it,
    everything is embedded (as `imgsim extract`). `kind` (auto, flat, hnsw) switches the
    FAISS structure; by default the previous choice stays.
    """
    start = time.perf_counter()
    model, info = load_model(config.model_path)
    index, reason = _open(config, info["model_id"], model) if update else (None, "")
    if index is None:
        if reason:
            log.warning("%s", reason)
        done = _extract_with(model, info["model_id"], config, progress, kind=kind)
        result = UpdateResult(done.count, done.count, skipped=done.skipped, full=True)
        result.reason, result.kind = reason, done.kind
    else:
        try:
            result = _update(index, model, config, kind, progress)
        finally:
            index.close()
    result.seconds = time.perf_counter() - start
    return result


def _open(
    config: ExtractConfig, model_id: str, model: EmbeddingNet
) -> tuple[EmbeddingIndex | None, str]:
    """The index to update, or None and why everything must be embedded."""
    workdir = Path(config.output_dir)
    if not (workdir / MANIFEST_FILE).is_file():
        return None, f"No manifest in {workdir} yet: embedding every image once"
    try:
        index = load_index(workdir)
    except EmbeddingsNotLoadedError as exc:
        return None, f"{exc}; embedding every image again"
    if index.meta.model_id != model_id or index.dim != model.config.embedding_dim:
        index.close()
        return None, (
            f"The index was embedded with model {index.meta.model_id or 'unknown'}, but "
            f"{config.model_path} is model {model_id}: re-embedding all images"
        )
    return index, ""


def _update(
    index: EmbeddingIndex,
    model: EmbeddingNet,
    config: ExtractConfig,
    kind: str | None,
    progress: bool,
) -> UpdateResult:
    records = scan_images(config.data_dir)
    if not records:
        raise DatasetError(f"No images found in {config.data_dir}")
    plan = _plan(index, records, extract_workers(config.workers) + 1)
    todo = [r for r, _ in plan.embed]
    features, rows = embed_records(
        model, model.config.image_size, todo, config.batch_size, config.workers, progress
    )
    plan.add += [NewImage(todo[i].name, features[j], plan.embed[i][1]) for j, i in enumerate(rows)]
    # A changed file that no longer decodes must not keep its old vector.
    failed = {todo[i].name for i in set(range(len(todo))) - set(rows)}
    plan.remove += [n for n in failed if n in index]
    index.meta.data_dir = str(Path(config.data_dir).resolve())
    index.apply_changes(plan.add, plan.remove, plan.touch, model_id=index.meta.model_id)
    if kind is not None and kind != index.requested_kind:
        index.rebuild(kind)
    index.checkpoint()
    index.write_exports()
    reused = len(plan.add) - len(rows)
    log.info(
        "Index updated: %d embedded, %d reused, %d removed, %d unchanged; %d images",
        len(rows), reused, len(plan.remove), plan.unchanged, len(index),
    )  # fmt: skip
    return UpdateResult(
        len(index), len(rows), reused, len(plan.remove), plan.unchanged, len(failed),
        kind=index.kind,
    )  # fmt: skip


def _plan(index: EmbeddingIndex, records: list[ImageRecord], workers: int) -> _Plan:
    """What to embed, reuse, drop and re-stat; only files whose size or time moved are read."""
    known = index.file_facts()
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
        elif (vector := index.vector_with_hash(fact.sha256 or "")) is not None:
            plan.add.append(NewImage(record.name, vector, fact))
        else:
            plan.embed.append((record, fact))
    return plan
