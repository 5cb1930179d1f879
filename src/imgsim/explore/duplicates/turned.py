"""Embeddings of images turned and mirrored, kept in the store beside the rest of their
duplicate data: a second run confirms turned copies without decoding them again."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...store.base import Store
from .confirm import ViewEmbed


class KeptViews:
    """A ViewEmbed (views.ViewEmbedder) that asks `embed` only for views the store lacks.

    Kept per image in its derived row, with the model that embedded them (`model_id`, the
    collection's): a row derived again, or another model, embeds them afresh.
    """

    def __init__(
        self, embed: ViewEmbed, store: Store, names: dict[Path, str], model_id: str, kept: set[str]
    ) -> None:
        self.embed = embed
        self.store = store
        self.names = names  # each indexed file's image name
        self.model_id = model_id
        self.kept = kept  # names whose stored row is current (duplicates.stored)

    def __call__(self, paths: Sequence[Path], views: Sequence[int]) -> np.ndarray:
        names = [self.names.get(Path(p)) for p in paths]
        rows = self.store.derived(sorted({n for n in names if n in self.kept}), thumbs=True)
        known = {n: _vectors(r.views, self.model_id) for n, r in rows.items()}
        wanted = [
            j for j, (n, v) in enumerate(zip(names, views, strict=True))
            if v not in known.get(n or "", {})
        ]  # fmt: skip
        fresh = self.embed([paths[j] for j in wanted], [views[j] for j in wanted]) if wanted else []
        found: dict[int, np.ndarray] = dict(zip(wanted, fresh, strict=True))
        changed: set[str] = set()
        for j, vector in found.items():
            name = names[j]
            if name in rows and np.any(vector):  # a zero vector: unreadable now, not kept
                known[name][views[j]] = vector
                changed.add(name)
        if changed:
            self.store.put_derived(
                {n: replace(rows[n], views=_encoded(known[n], self.model_id)) for n in changed}
            )
        out = [found[j] if j in found else known[names[j] or ""][v] for j, v in enumerate(views)]
        return np.stack(out).astype(np.float32) if out else np.empty((0, 0), np.float32)


def _vectors(data: bytes, model_id: str) -> dict[int, np.ndarray]:
    """The kept views of one image by view number, if `model_id` embedded them."""
    if not data:
        return {}
    head, _, body = data.partition(b"\n")
    meta = json.loads(head)
    if meta["model"] != model_id:
        return {}
    vectors = np.frombuffer(body, np.float32).reshape(len(meta["views"]), -1)
    return {int(v): vectors[i].copy() for i, v in enumerate(meta["views"])}


def _encoded(vectors: dict[int, np.ndarray], model_id: str) -> bytes:
    views = sorted(vectors)
    head = json.dumps({"model": model_id, "views": views}).encode()
    body = np.stack([np.asarray(vectors[v], np.float32) for v in views]).tobytes()
    return head + b"\n" + body
