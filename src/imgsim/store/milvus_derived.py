"""Derived data (store/base.py, Derived) on a Milvus server: one `<prefix>_derived` collection.

Milvus has no blob field, so the summary, thumbnail and turned embeddings are base64 in
VARCHAR fields (a thumbnail is 12 KB, well under the 64 KB limit; turned embeddings that do not
fit are not kept, and are embedded again when needed); the collection has the one vector field
Milvus requires, unused. Keyed by image name, as the vectors are; every read is Strong, since
the duplicate finder decides from it what to read again.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .base import Derived

STRONG = {"consistency_level": "Strong"}
TEXT_MAX = 65535  # Milvus's longest VARCHAR
BATCH = 1000  # rows per call, as the vectors are written
UNUSED = [0.0, 0.0]  # the vector of a row in a collection that holds no vectors


def create_without_vectors(client: Any, call: Callable[..., Any], what: str, name: str,
                           schema: Any) -> None:  # fmt: skip
    """Create collection `name` of `schema` plus the one vector field Milvus requires, unused
    (rows give it UNUSED); `what` names it in an error."""
    from pymilvus import DataType

    schema.add_field("unused", DataType.FLOAT_VECTOR, dim=len(UNUSED))
    index = client.prepare_index_params()
    index.add_index(field_name="unused", index_type="FLAT", metric_type="L2")
    call(
        f"create its {what} collection", client.create_collection,
        name, schema=schema, index_params=index, **STRONG,
    )  # fmt: skip


class MilvusDerived:
    """The derived collection; `call` is the store's error-translating MilvusClient caller."""

    def __init__(self, client: Any, call: Callable[..., Any], name: str) -> None:
        self._client = client
        self._call = call
        self.name = name
        self._ready = False

    def _ensure(self) -> None:
        from pymilvus import DataType, MilvusClient

        if self._ready or self._call("list collections", self._client.has_collection, self.name):
            self._ready = True
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("name", DataType.VARCHAR, is_primary=True, max_length=1024)
        schema.add_field("version", DataType.INT64)
        schema.add_field("sha256", DataType.VARCHAR, max_length=64)
        schema.add_field("size", DataType.INT64)
        schema.add_field("mtime_ns", DataType.INT64)
        schema.add_field("summary", DataType.VARCHAR, max_length=TEXT_MAX)
        schema.add_field("thumb", DataType.VARCHAR, max_length=TEXT_MAX)
        schema.add_field("views", DataType.VARCHAR, max_length=TEXT_MAX)
        create_without_vectors(self._client, self._call, "derived", self.name, schema)
        self._ready = True

    def read(self, names: Sequence[str] | None, thumbs: bool) -> dict[str, Derived]:
        """Rows by name (of `names`, else all); thumbnails only when asked."""
        self._ensure()
        fields = ["version", "sha256", "size", "mtime_ns", "summary"] + (
            ["thumb", "views"] * thumbs
        )
        if names is None:
            rows: list[dict] = []
            iterator = self._call(
                "read derived data", self._client.query_iterator, self.name,
                batch_size=5000, output_fields=fields, **STRONG,
            )  # fmt: skip
            try:
                while batch := iterator.next():
                    rows.extend(batch)
            finally:
                iterator.close()
        else:
            wanted = [n for n in dict.fromkeys(names) if len(n.encode()) <= 1024]
            rows = []
            for start in range(0, len(wanted), BATCH):
                rows += self._call(
                    "read derived data", self._client.get, self.name,
                    ids=wanted[start : start + BATCH], output_fields=fields, **STRONG,
                )  # fmt: skip
        return {r["name"]: _derived_of(r) for r in rows}

    def put(self, rows: dict[str, Derived]) -> None:
        self._ensure()
        items = [_row(n, d) for n, d in rows.items()]
        for start in range(0, len(items), BATCH):
            self._call("write derived data", self._client.upsert, self.name,
                       items[start : start + BATCH])  # fmt: skip

    def delete(self, names: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return
        self._ensure()
        for start in range(0, len(wanted), BATCH):
            self._call("delete derived data", self._client.delete, self.name,
                       ids=wanted[start : start + BATCH])  # fmt: skip

    def keep_only(self, names: Iterable[str]) -> None:
        """Delete the rows of every image not in `names` (after a rebuild)."""
        kept = set(names)
        self.delete([n for n in self.read(None, False) if n not in kept])


def _row(name: str, derived: Derived) -> dict[str, Any]:
    return {
        "name": name,
        "version": derived.version,
        "sha256": derived.sha256,
        "size": -1 if derived.size is None else int(derived.size),
        "mtime_ns": -1 if derived.mtime_ns is None else int(derived.mtime_ns),
        "summary": base64.b64encode(derived.summary).decode(),
        "thumb": base64.b64encode(derived.thumb).decode(),
        "views": views
        if len(views := base64.b64encode(derived.views).decode()) <= TEXT_MAX
        else "",
        "unused": UNUSED,
    }


def _derived_of(row: dict) -> Derived:
    return Derived(
        int(row["version"]),
        row["sha256"],
        None if row["size"] < 0 else int(row["size"]),
        None if row["mtime_ns"] < 0 else int(row["mtime_ns"]),
        base64.b64decode(row["summary"]),
        base64.b64decode(row["thumb"]) if "thumb" in row else b"",
        base64.b64decode(row["views"]) if "views" in row else b"",
    )
