"""Browse benchmark: GET /browse pages (first, middle, last; all images and one category) on
an N-image collection, through the Flask app, with each store.

    python benchmarks/browse_speed.py                          # 100,000 images, embedded store
    python benchmarks/browse_speed.py --n 2000 --repeat 3      # a quick try
    python benchmarks/browse_speed.py --milvus 127.0.0.1:19530 # and a running Milvus server

Prints a markdown table (median milliseconds per request) for docs/benchmarks.md. The first
request of each store is timed apart: it counts the categories (cached until the next change).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from imgsim.core.config import SearchConfig
from imgsim.search.searcher import Searcher
from imgsim.store import Item, Store, open_store
from imgsim.store.exports import build_collection
from imgsim.web import create_app

DIM, CATEGORIES, PER_PAGE = 128, 20, 60
CHUNK = 50_000  # vectors made and stored at a time


def fill(store: Store, n: int) -> None:
    rng = np.random.default_rng(0)
    names = [f"cat{i % CATEGORIES:02d}_{i:07d}.jpg" for i in range(n)]
    for start in range(0, n, CHUNK):  # bounded memory for the vectors
        x = rng.normal(size=(min(CHUNK, n - start), DIM)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        if start == 0:
            build_collection(store, x, names[: len(x)], "/data", "bench")
        else:
            items = [Item(m, v) for m, v in zip(names[start : start + len(x)], x, strict=True)]
            store.add(items, "bench")


def timed(client, url: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url)
        times.append(1000 * (time.perf_counter() - start))
        assert response.status_code == 200, response.get_json()
    return statistics.median(times)


def run(label: str, store: Store, n: int, repeat: int, workdir: Path) -> list[str]:
    app = create_app(SearchConfig(workdir=str(workdir)), searcher=Searcher(None, store))
    client = app.test_client()
    first = timed(client, f"/browse?per_page={PER_PAGE}", 1)
    last_all = max(1, -(-n // PER_PAGE))
    last_one = max(1, -(-(n // CATEGORIES) // PER_PAGE))
    cases = {
        "all, page 1": f"/browse?per_page={PER_PAGE}",
        f"all, page {last_all // 2}": f"/browse?per_page={PER_PAGE}&page={last_all // 2}",
        f"all, page {last_all} (last)": f"/browse?per_page={PER_PAGE}&page={last_all}",
        "one category, page 1": f"/browse?category=cat07&per_page={PER_PAGE}",
        f"one category, page {last_one} (last)": (
            f"/browse?category=cat07&per_page={PER_PAGE}&page={last_one}"
        ),
    }
    rows = [f"| {label} | {n:,} | first request (counts the categories) | {first:.1f} |"]
    for case, url in cases.items():
        rows.append(f"| {label} | {n:,} | {case} | {timed(client, url, repeat):.1f} |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="images (100,000)")
    parser.add_argument("--repeat", type=int, default=20, help="requests per case (20)")
    parser.add_argument("--milvus", help="HOST:PORT of a running Milvus server, to time it too")
    args = parser.parse_args(argv)
    rows = ["| Store | Images | Request | Median ms |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with open_store(workdir, "faiss") as store:
            fill(store, args.n)
            rows += run("embedded (SQLite + FAISS)", store, args.n, args.repeat, workdir)
        if args.milvus:
            prefix = f"browse_{uuid.uuid4().hex[:8]}"
            spec = f"milvus://{args.milvus}/{prefix}"
            store = open_store(workdir, spec, "bench")
            try:
                fill(store, args.n)
                rows += run("Milvus", store, args.n, args.repeat, workdir)
            finally:
                _drop(args.milvus, prefix)
                store.close()
    print("\n".join(rows))
    sys.stdout.flush()


def _drop(address: str, prefix: str) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=f"http://{address}")
    for name in client.list_collections():
        if name.startswith(prefix):
            for alias in client.list_aliases(name).get("aliases", []):
                client.drop_alias(alias)
            client.drop_collection(name)
    client.close()


if __name__ == "__main__":
    main()
