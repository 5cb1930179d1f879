"""Map projection benchmark: seconds t-SNE and PCA take for N clustered 128-d embeddings.

    OMP_NUM_THREADS=1 python benchmarks/map_projection.py              # 5,000 and 20,000
    OMP_NUM_THREADS=1 python benchmarks/map_projection.py --n 1000 2000

Run with one thread (OMP_NUM_THREADS=1) to measure one core, as a busy server process has.
Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from imgsim.projection import project

DIM, CATEGORIES = 128, 20


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CATEGORIES, DIM)).astype(np.float32)
    x = centres[np.arange(n) % CATEGORIES] + 0.5 * rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--methods", nargs="+", default=["pca", "tsne"])
    args = parser.parse_args()
    print("| points | method | seconds |\n|---:|---|---:|")
    for n in args.n:
        x = clustered(n)
        for method in args.methods:
            start = time.perf_counter()
            project(x, method)
            print(f"| {n:,} | {method} | {time.perf_counter() - start:.1f} |", flush=True)


if __name__ == "__main__":
    main()
