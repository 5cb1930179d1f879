"""Store benchmark: each engine at N vectors — ingestion, search latency and throughput,
filtered search, and the time a change takes to reach another process.

    python benchmarks/store_speed.py                       # 100,000 × 128-d, both engines
    python benchmarks/store_speed.py --n 20000 --engines faiss
    python benchmarks/store_speed.py --milvus 127.0.0.1:19530   # a running server

Without --milvus it starts PyPI's standalone Milvus (the `milvus` package) for the run.
Prints a markdown table (medians) for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from imgsim.store import Item, Store, open_store
from imgsim.store.exports import build_collection

DIM, CATEGORIES = 128, 20


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CATEGORIES, DIM)).astype(np.float32)
    labels = np.arange(n) % CATEGORIES
    x = centres[labels] + 0.5 * rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def names_for(n: int) -> list[str]:
    return [f"cat{i % CATEGORIES:02d}_{i:07d}.jpg" for i in range(n)]


def latency_ms(
    store: Store, queries: np.ndarray, categories: list[str] | None = None
) -> list[float]:
    times = []
    for q in queries:
        start = time.perf_counter()
        store.search(q[None], 10, categories)
        times.append(1000 * (time.perf_counter() - start))
    return times


def throughput(store: Store, queries: np.ndarray, threads: int, seconds: float = 5.0) -> float:
    done = [0] * threads
    stop = time.monotonic() + seconds

    def run(t: int) -> None:
        i = t
        while time.monotonic() < stop:
            store.search(queries[i % len(queries)][None], 10)
            done[t] += 1
            i += threads

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(done) / seconds


def _watch(workdir: str, spec: str, model_id: str, name: str, ready, seen) -> None:
    store = open_store(workdir, spec, model_id)
    store.count()  # loaded and caught up
    ready.set()
    while not store.contains(name):
        pass
    seen.value = time.time()
    store.close()


def propagation_ms(workdir: Path, spec: str, store: Store, trials: int = 5) -> list[float]:
    """Milliseconds from an add() in this process to another process seeing the image."""
    ctx = mp.get_context("spawn")
    out = []
    for t in range(trials):
        name = f"prop_{t:03d}_{time.time_ns()}.jpg"
        ready, seen = ctx.Event(), ctx.Value("d", 0.0)
        proc = ctx.Process(target=_watch, args=(str(workdir), spec, "bench", name, ready, seen))
        proc.start()
        ready.wait(120)
        time.sleep(0.2)
        start = time.time()
        store.add([Item(name, clustered(1, seed=t + 7)[0])], "bench")
        proc.join(60)
        out.append(1000 * (seen.value - start))  # from the call to add() to the other's answer
    return out


def bench(engine: str, spec: str, n: int, workdir: Path) -> dict[str, str]:
    x, queries = clustered(n), clustered(200, seed=1)
    store = open_store(workdir, spec, "bench")
    start = time.perf_counter()
    build_collection(store, x, names_for(n), workdir / "data", "bench")
    if hasattr(store, "wait"):
        store.wait()  # the embedded engine builds HNSW in the background
    store.search(queries[:1], 10)
    ingest = time.perf_counter() - start
    single = latency_ms(store, queries)
    filtered = latency_ms(store, queries, ["cat03"])
    row = {
        "engine": engine,
        "vectors": f"{store.count():,}",
        "ingest (vectors/s)": f"{n / ingest:,.0f}",
        "search p50 / p99 (ms)": (
            f"{statistics.median(single):.2f} / {np.percentile(single, 99):.2f}"
        ),
        "1-category p50 (ms)": f"{statistics.median(filtered):.2f}",
        "searches/s, 1 thread": f"{throughput(store, queries, 1):,.0f}",
        "searches/s, 4 threads": f"{throughput(store, queries, 4):,.0f}",
    }
    prop = propagation_ms(workdir, spec, store)
    row["change seen by another process (ms, median)"] = f"{statistics.median(prop):.1f}"
    store.close()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--engines", default="faiss,milvus")
    parser.add_argument("--milvus", help="HOST:PORT of a running server (default: start one)")
    args = parser.parse_args()
    rows, server = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            spec = "faiss"
            if engine == "milvus":
                address = args.milvus
                if address is None:
                    from milvus import default_server

                    server = default_server
                    server.set_base_dir(str(Path(tmp) / "milvus-server"))
                    server.start()
                    address = f"127.0.0.1:{server.listen_port}"
                spec = f"milvus://{address}/bench{time.time_ns() % 10**6}"
            work = Path(tmp) / engine
            work.mkdir()
            rows.append(bench(engine, spec, args.n, work))
            print(rows[-1], file=sys.stderr, flush=True)
        if server is not None:
            server.stop()
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(row[k] for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
