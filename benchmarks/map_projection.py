"""Map projection benchmark: seconds t-SNE and PCA take for N clustered 128-d embeddings.

    OMP_NUM_THREADS=1 python benchmarks/map_projection.py              # 5,000 and 20,000
    OMP_NUM_THREADS=1 python benchmarks/map_projection.py --n 1000 2000
    OMP_NUM_THREADS=1 python benchmarks/map_projection.py --write-docs

Run with one thread (OMP_NUM_THREADS=1) to measure one core, as the server's background
thread should be counted. Prints a markdown table; `--write-docs` replaces the "Map
projection" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import sklearn
from docs_section import write_section

from imgsim.explore.projection import project

DIM, CATEGORIES = 128, 20
SECTION = "## Map projection"


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CATEGORIES, DIM)).astype(np.float32)
    x = centres[np.arange(n) % CATEGORIES] + 0.5 * rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def measure(sizes: list[int], methods: list[str]) -> list[tuple[int, str, float]]:
    project(clustered(50), "pca")  # imports and first-call costs out of the table
    rows = []
    for n in sizes:
        x = clustered(n)
        for method in methods:
            start = time.perf_counter()
            project(x, method)
            rows.append((n, method, time.perf_counter() - start))
            print(f"| {n:,} | {method} | {rows[-1][2]:.1f} |", flush=True)
    return rows


def render(rows: list[tuple[int, str, float]]) -> str:
    names = {"tsne": "t-SNE", "pca": "PCA"}
    table = "\n".join(f"| {n:,} | {names[m]} | {s:.1f} |" for n, m, s in rows)
    return f"""{SECTION}

`OMP_NUM_THREADS=1 python benchmarks/map_projection.py --write-docs`: seconds to lay out N
clustered {DIM}-d embeddings ({CATEGORIES} categories) in 2-D with one thread, scikit-learn
{sklearn.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores,
nothing else running; {time.strftime("%Y-%m-%d %H:%M %Z")}.

| points | method | seconds |
|---:|---|---:|
{table}

The map page computes this once per change of the collection, in a background thread, never
in a request; `map_points` (5,000) bounds it, `map_method = "pca"` makes it instant.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--methods", nargs="+", default=["pca", "tsne"])
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    print("| points | method | seconds |\n|---:|---|---:|")
    rows = measure(args.n, args.methods)
    if args.write_docs:
        write_section(SECTION, render(rows))


if __name__ == "__main__":
    main()
