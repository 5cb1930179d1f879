"""The scale-out engine: a Milvus server (or cluster) through pymilvus's MilvusClient.

One collection per model, named `<prefix>_<model id>` (an alias): a full rebuild fills a
new physical collection and then moves the alias onto it, so searches never see a half-built
collection. The category is a scalar field, filtered inside Milvus's search. Every read uses
Strong consistency: Milvus's default staleness would hide a fresh insert from the next search.
A small `<prefix>_meta` collection holds what Milvus cannot (the data folder, the model's
current collection, a change token). Milvus has no multi-statement transactions: a write is
one upsert or delete, and a conditional write (`expected`) checks the change token just
before it, which narrows a race but cannot close it as SQLite does for the embedded engine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlparse

import numpy as np

from ..core.names import category_of
from ..files.filefacts import FileFacts
from .base import (
    CollectionInfo,
    ConcurrentChangeError,
    Derived,
    Hit,
    Item,
    ModelMismatchError,
    Store,
    StoreError,
    StoreUnavailableError,
)
from .milvus_derived import STRONG, TEXT_MAX, UNUSED, MilvusDerived, create_without_vectors
from .vectors import HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M

log = logging.getLogger("imgsim")

T = TypeVar("T")
# Strong reads wait for Milvus's next time tick (about 400 ms a search here, benchmarks);
# Bounded reads with a one-second grace answer in milliseconds and miss only changes younger
# than a second. So reads are Bounded, except for a while after this process wrote (it must
# read its own writes) and wherever a write decides on what it reads.
FRESH = {"consistency_level": "Bounded", "graceful_time": 1}
OWN_WRITES_SECONDS = 1.5
NAME_MAX = 1024  # bytes of a dataset-relative name (Milvus VARCHAR primary key)
CATEGORY_MAX = 512
BATCH = 1000  # rows per insert/upsert call: well under Milvus's message size limit
INFO_TTL = 1.0  # seconds an info/alias lookup is reused: a rebuild is seen within it
QUERY_WINDOW = 16_384  # Milvus's bound on a query's offset + limit
_FACT_FIELDS = ("size", "mtime_ns", "ctime_ns", "inode")


def parse_address(spec: str) -> tuple[str, int, str]:
    """(host, port, collection prefix) of `milvus://HOST:PORT[/PREFIX]`."""
    parsed = urlparse(spec)
    prefix = parsed.path.strip("/") or "imgsim"
    if parsed.scheme != "milvus" or not parsed.hostname or not re.fullmatch(r"\w+", prefix):
        raise StoreError(f"bad Milvus address {spec!r}: use milvus://HOST:PORT[/PREFIX]")
    return parsed.hostname, parsed.port or 19530, prefix


class MilvusStore(Store):
    """The collection of one model on a Milvus server."""

    def __init__(self, spec: str, model_id: str | None = None, timeout: float = 5.0) -> None:
        host, port, self.prefix = parse_address(spec)
        self.address = f"milvus://{host}:{port}/{self.prefix}"
        self._timeout = timeout
        self._wrote = -OWN_WRITES_SECONDS  # monotonic time of this process's last write
        self._client = self._connect(host, port)
        self._meta = f"{self.prefix}_meta"
        self._ensure_meta()
        self._derived = MilvusDerived(self._client, self._call, f"{self.prefix}_derived")
        self.model_id = model_id or self._get_meta("current") or ""
        self._cache: dict[str, tuple[float, Any]] = {}
        self._counts: tuple[int, dict[str, int]] | None = None  # (change token, per category)
        self._lock = threading.Lock()

    # -- plumbing ----------------------------------------------------------------------------
    def _connect(self, host: str, port: int) -> Any:
        from pymilvus import MilvusClient

        # Its query iterator warns on every call against a 2.3 server (client-side timestamps).
        logging.getLogger("pymilvus").setLevel(logging.ERROR)

        try:
            return MilvusClient(uri=f"http://{host}:{port}", timeout=self._timeout)
        except Exception as exc:  # pymilvus raises MilvusException and grpc errors
            raise StoreUnavailableError(
                f"cannot reach Milvus at {host}:{port} ({_short(exc)}): is the server running? "
                "Nothing was changed."
            ) from None

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, timeout=self._timeout, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            text = _short(exc)
            unavailable = any(w in text.lower() for w in ("connect", "unavailable", "deadline"))
            kind = StoreUnavailableError if unavailable else StoreError
            raise kind(f"Milvus at {self.address} failed to {what}: {text}") from None

    def _ensure_meta(self) -> None:
        from pymilvus import DataType, MilvusClient

        if self._call("list collections", self._client.has_collection, self._meta):
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("value", DataType.VARCHAR, max_length=TEXT_MAX)
        create_without_vectors(self._client, self._call, "meta", self._meta, schema)

    def _get_meta(self, key: str, strong: bool = False) -> str | None:
        level = STRONG if strong else self._read()
        rows = self._call(
            "read meta", self._client.get, self._meta, ids=[key], output_fields=["value"],
            **level,
        )  # fmt: skip
        return rows[0]["value"] if rows else None

    def _put_meta(self, values: dict[str, str]) -> None:
        rows = [{"key": k, "value": v, "unused": UNUSED} for k, v in values.items()]
        self._call("write meta", self._client.upsert, self._meta, rows)

    def _cached(self, key: str, load: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < INFO_TTL:
                return hit[1]
        value = load()
        with self._lock:
            self._cache[key] = (now, value)
        return value

    @property
    def collection(self) -> str:
        """The alias that names this model's current collection."""
        return f"{self.prefix}_" + re.sub(r"\W", "_", self.model_id)

    def _exists(self) -> bool:
        if not self.model_id:
            return False
        return self._cached("exists", lambda: self._get_meta(f"info:{self.model_id}") is not None)

    # -- reading -----------------------------------------------------------------------------
    def info(self) -> CollectionInfo | None:
        if not self.model_id:
            return None
        raw = self._cached("info", lambda: self._get_meta(f"info:{self.model_id}"))
        return CollectionInfo(**json.loads(raw)) if raw else None

    def generation(self, strong: bool = True) -> int:
        if not self.model_id:
            return 0
        return int(self._get_meta(f"generation:{self.model_id}", strong) or 0)

    def why_empty(self) -> str:
        latest = self._get_meta("current")
        if latest and latest != self.model_id:
            return (
                f"No embeddings loaded for this model: {self.address} holds the collection of "
                f"model {latest}, not of model {self.model_id or '(none)'} — run imgsim index "
                "with this model (or serve the model that built it)"
            )
        return super().why_empty()

    def count(self) -> int:
        if not self._exists():
            return 0
        rows = self._call(
            "count", self._client.query, self.collection, filter="",
            output_fields=["count(*)"], **self._read(),
        )  # fmt: skip
        return int(rows[0]["count(*)"]) if rows else 0

    def categories(self) -> dict[str, int]:
        # A pass over every row (Milvus cannot group): done once per change token, since
        # filtered searches and browsed pages ask for it every time.
        generation = self.generation(strong=False)
        with self._lock:
            if self._counts is not None and self._counts[0] == generation:
                return dict(self._counts[1])
        counts: dict[str, int] = {}
        for row in self._iterate(["category"], level=self._read()):
            counts[row["category"]] = counts.get(row["category"], 0) + 1
        counts = dict(sorted(counts.items()))
        with self._lock:
            self._counts = (generation, counts)
        return dict(counts)

    def contains(self, name: str, strong: bool = False) -> bool:
        if not self._exists() or len(name.encode()) > NAME_MAX:
            return False
        rows = self._call(
            "look up", self._client.get, self.collection, ids=[name], output_fields=["name"],
            **(STRONG if strong else self._read()),
        )  # fmt: skip
        return bool(rows)

    def search(
        self, queries: np.ndarray, k: int, categories: Sequence[str] | None = None
    ) -> list[list[Hit]]:
        if not self._exists():
            return [[] for _ in range(len(queries))]
        found = self._call(
            "search", self._client.search, self.collection,
            data=np.asarray(queries, dtype=np.float32).tolist(),
            filter=_category_filter(categories), limit=max(1, min(k, 16_384)),
            output_fields=["category"],
            search_params={"metric_type": "L2", "params": {"ef": max(HNSW_EF_SEARCH, k)}},
            **self._read(),
        )  # fmt: skip
        # Milvus's L2 is the squared distance; callers get the Euclidean one.
        return [
            [
                Hit(h["id"], h["entity"]["category"], float(np.sqrt(max(h["distance"], 0.0))))
                for h in hits
            ]
            for hits in found
        ]

    def facts(self) -> dict[str, FileFacts]:
        return {r["name"]: _facts_of(r) for r in self._iterate(["sha256", *_FACT_FIELDS])}

    def vector_with_hash(self, sha256: str) -> np.ndarray | None:
        if not sha256 or not self._exists() or not re.fullmatch(r"[0-9a-f]{64}", sha256):
            return None
        rows = self._call(
            "look up", self._client.query, self.collection, filter=f'sha256 == "{sha256}"',
            output_fields=["vector"], limit=1, **STRONG,
        )  # fmt: skip
        return np.asarray(rows[0]["vector"], dtype=np.float32) if rows else None

    def vectors_of(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        wanted = [n for n in dict.fromkeys(names) if len(n.encode()) <= NAME_MAX]
        if not wanted or not self._exists():
            return {}
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(wanted), BATCH):
            rows = self._call(
                "look up", self._client.get, self.collection, ids=wanted[start : start + BATCH],
                output_fields=["vector"], **self._read(),
            )  # fmt: skip
            found.update((r["name"], np.asarray(r["vector"], dtype=np.float32)) for r in rows)
        return found

    def list_images(
        self, category: str | None = None, offset: int = 0, limit: int = 100
    ) -> list[tuple[str, str]]:
        if not self._exists() or limit <= 0:
            return []
        offset, limit, level = max(0, offset), min(limit, QUERY_WINDOW), self._read()
        where = _category_filter([category] if category is not None else None)
        after = None
        # Milvus refuses offset + limit over 16,384: a deeper page first walks the names in
        # key order (`name > last`, names only) to the one before it; the rows come back
        # sorted by primary key, which is the name.
        while offset + limit > QUERY_WINDOW:
            step = min(offset, QUERY_WINDOW)
            rows = self._page(where, after, 0, step, ["name"], level)
            if len(rows) < step:
                return []
            after, offset = rows[-1]["name"], offset - step
        rows = self._page(where, after, offset, limit, ["category"], level)
        return [(r["name"], r["category"]) for r in rows]

    def _page(
        self, where: str, after: str | None, offset: int, limit: int, fields: list[str], level: dict
    ) -> list[dict]:
        if after is not None:
            keyset = f"name > {json.dumps(after)}"
            where = f"({where}) and {keyset}" if where else keyset
        rows = self._call(
            "list", self._client.query, self.collection, filter=where, output_fields=fields,
            offset=offset, limit=limit, **level,
        )  # fmt: skip
        return sorted(rows, key=lambda r: r["name"])

    def iter_vectors(self, batch: int = 10_000) -> Iterator[tuple[list[str], np.ndarray]]:
        names: list[str] = []
        vectors: list[list[float]] = []
        for row in self._iterate(["vector"], batch=min(batch, 16_384)):
            names.append(row["name"])
            vectors.append(row["vector"])
            if len(names) >= batch:
                yield names, np.asarray(vectors, dtype=np.float32)
                names, vectors = [], []
        if names:
            yield names, np.asarray(vectors, dtype=np.float32)

    def _iterate(
        self,
        fields: list[str],
        batch: int = 5000,
        collection: str | None = None,
        level: dict[str, Any] = STRONG,
    ) -> Iterator[dict]:
        if collection is None and not self._exists():
            return
        iterator = self._call(
            "read", self._client.query_iterator, collection or self.collection,
            batch_size=batch, output_fields=fields, **level,
        )  # fmt: skip
        try:
            while rows := iterator.next():
                yield from rows
        finally:
            iterator.close()

    def derived(
        self, names: Sequence[str] | None = None, thumbs: bool = False
    ) -> dict[str, Derived]:
        return self._derived.read(names, thumbs)

    def put_derived(self, rows: dict[str, Derived]) -> None:
        held: set[str] = set()  # only images the collection holds
        wanted = [n for n in rows if len(n.encode()) <= NAME_MAX] if self._exists() else []
        for start in range(0, len(wanted), BATCH):
            found = self._call(
                "look up", self._client.get, self.collection, ids=wanted[start : start + BATCH],
                output_fields=["name"], **STRONG,
            )  # fmt: skip
            held.update(r["name"] for r in found)
        self._derived.put({n: d for n, d in rows.items() if n in held})

    # -- writing -----------------------------------------------------------------------------
    def remove(self, names: Iterable[str], expected: int | None = None) -> list[str]:
        known = [n for n in dict.fromkeys(names) if self.contains(n, strong=True)]
        if not known:
            return []
        self._check_expected(expected)
        self._call("delete", self._client.delete, self.collection, ids=known)
        self._derived.delete(known)
        self._changed()
        return known

    def apply(
        self,
        add: Sequence[Item],
        remove: Iterable[str],
        touch: dict[str, FileFacts],
        model_id: str,
        expected: int | None = None,
        data_dir: str | None = None,
    ) -> int:
        info = self.info()
        if info is None:
            raise ModelMismatchError(
                f"{self.address} holds no collection for model {model_id or self.model_id}: "
                "build it first (imgsim index)"
            )
        _check_model(info, model_id or self.model_id, add)
        self._check_expected(expected)
        removing = [n for n in dict.fromkeys(remove) if n not in {a.name for a in add}]
        if removing:
            self._call("delete", self._client.delete, self.collection, ids=removing)
            self._derived.delete(removing)
        rows = [_row(a) for a in add] + self._touched(touch)
        for start in range(0, len(rows), BATCH):
            self._call("write", self._client.upsert, self.collection, rows[start : start + BATCH])
        self._derived.put({a.name: a.derived for a in add if a.derived is not None})
        if data_dir is not None and data_dir != info.data_dir:
            self._put_info(CollectionInfo(**{**info.__dict__, "data_dir": data_dir}))
        return self._changed()

    def _touched(self, touch: dict[str, FileFacts]) -> list[dict]:
        if not touch:
            return []
        rows = self._call(
            "read", self._client.get, self.collection, ids=list(touch),
            output_fields=["category", "vector"], **STRONG,
        )  # fmt: skip
        return [
            _row(Item(r["name"], np.asarray(r["vector"], np.float32), touch[r["name"]]))
            for r in rows
        ]

    def replace_all(
        self, items: Sequence[Item], info: CollectionInfo, expected: int | None = None
    ) -> int:
        self.model_id = info.model_id
        self._cache.clear()
        physical = f"{self.collection}_{time.time_ns():x}"
        self._create(physical, info.dim)
        try:
            for start in range(0, len(items), BATCH):
                rows = [_row(a) for a in items[start : start + BATCH]]
                self._call("write", self._client.insert, physical, rows)
            self._check_expected(expected)
        except BaseException:
            self._call("drop", self._client.drop_collection, physical)
            raise
        generation = self._switch(physical, info)
        # Derived data of images kept stays (it is checked against each file's stat).
        self._derived.keep_only(a.name for a in items)
        self._derived.put({a.name: a.derived for a in items if a.derived is not None})
        return generation

    def ensure(self, info: CollectionInfo) -> None:
        """Create the model's collection unless it exists; N machines may race to do it."""
        self.model_id = info.model_id
        self._cache.clear()
        if self.info() is not None:
            return
        physical = f"{self.collection}_0"  # the same name on every machine: one of them wins
        if not self._call("list collections", self._client.has_collection, physical):
            with contextlib.suppress(StoreError):
                self._create(physical, info.dim)
        with contextlib.suppress(StoreError):
            self._call("create an alias", self._client.create_alias, physical, self.collection)
        if self._get_meta(f"physical:{self.model_id}") is None:
            self._put_meta({f"physical:{self.model_id}": physical, "current": self.model_id})
            self._put_info(info)

    def _create(self, physical: str, dim: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("name", DataType.VARCHAR, is_primary=True, max_length=NAME_MAX)
        schema.add_field("category", DataType.VARCHAR, max_length=CATEGORY_MAX)
        schema.add_field("sha256", DataType.VARCHAR, max_length=64)
        for field in _FACT_FIELDS:
            schema.add_field(field, DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index = self._client.prepare_index_params()
        index.add_index(
            field_name="vector", index_type="HNSW", metric_type="L2",
            params={"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION},
        )  # fmt: skip
        self._call(
            "create a collection", self._client.create_collection,
            physical, schema=schema, index_params=index, **STRONG,
        )  # fmt: skip

    def _switch(self, physical: str, info: CollectionInfo) -> int:
        """Point this model's alias at `physical`, drop the previous collection, record it."""
        previous = self._get_meta(f"physical:{self.model_id}", strong=True)
        if previous is None:
            self._call("create an alias", self._client.create_alias, physical, self.collection)
        else:
            self._call("move an alias", self._client.alter_alias, physical, self.collection)
        self._put_meta({f"physical:{self.model_id}": physical, "current": self.model_id})
        self._put_info(info)
        if previous and previous != physical:
            self._call("drop the old collection", self._client.drop_collection, previous)
        return self._changed()

    def _put_info(self, info: CollectionInfo) -> None:
        self._put_meta({f"info:{info.model_id}": json.dumps(info.__dict__)})
        self._cache.clear()

    def _read(self) -> dict[str, Any]:
        """The consistency of a read: Strong just after this process wrote, else Bounded."""
        recent = time.monotonic() - self._wrote < OWN_WRITES_SECONDS
        return STRONG if recent else FRESH

    def _check_expected(self, expected: int | None) -> None:
        if expected is not None and self.generation() != expected:
            raise ConcurrentChangeError(
                f"the collection at {self.address} was changed by another process meanwhile; "
                "nothing was written"
            )

    def _changed(self) -> int:
        self._wrote = time.monotonic()
        token = max(self.generation() + 1, time.time_ns())
        self._put_meta({f"generation:{self.model_id}": str(token)})
        return token

    def set_kind(self, kind: str) -> None:
        """Milvus always uses its HNSW index: the setting is recorded, not applied."""
        info = self.info()
        if info is not None:
            self._put_info(CollectionInfo(**{**info.__dict__, "kind": kind}))

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a dead connection: nothing to release
            self._client.close()


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _category_filter(categories: Sequence[str] | None) -> str:
    if not categories:
        return ""
    # json.dumps quotes and escapes each value as a Milvus string literal.
    return f"category in [{', '.join(json.dumps(c) for c in categories)}]"


def _row(item: Item) -> dict[str, Any]:
    if len(item.name.encode()) > NAME_MAX:
        raise StoreError(f"name longer than {NAME_MAX} bytes: {item.name[:100]!r}…")
    facts = item.facts
    row: dict[str, Any] = {
        "name": item.name,
        "category": (category_of(item.name) or "")[:CATEGORY_MAX],
        "sha256": facts.sha256 or "",
        "vector": np.asarray(item.vector, dtype=np.float32).reshape(-1).tolist(),
    }
    for field in _FACT_FIELDS:
        value = getattr(facts, field)
        row[field] = -1 if value is None else int(value)
    return row


def _facts_of(row: dict) -> FileFacts:
    values = {f: (None if row[f] < 0 else int(row[f])) for f in _FACT_FIELDS}
    return FileFacts(sha256=row["sha256"] or None, **values)


def _check_model(info: CollectionInfo, model_id: str, add: Sequence[Item]) -> None:
    if model_id and info.model_id and model_id != info.model_id:
        raise ModelMismatchError(
            f"These embeddings come from model {model_id} but the collection holds model "
            f"{info.model_id}'s — rebuild it with that model: imgsim index"
        )
    dims = {int(np.asarray(a.vector).size) for a in add}
    if dims - {info.dim}:
        raise ModelMismatchError(
            f"These embeddings have {dims.pop()} dimensions, the collection {info.dim} — "
            "rebuild it: imgsim index"
        )
