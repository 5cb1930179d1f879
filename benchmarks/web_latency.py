"""Latency of POST /search through gunicorn on loopback, against a 10,000-image index.

Builds a throw-away workdir (an untrained model with widths 32,64,128,256 and 10,000 random
unit vectors named like cat3_00042.jpg), starts gunicorn on 127.0.0.1, sends a 224×224 JPEG
over one keep-alive connection, and prints p50/p95. `--write-docs` also replaces the
"Web search latency" section of docs/benchmarks.md. Not a test: figures depend on the machine.

    .venv/bin/python benchmarks/web_latency.py --write-docs
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from docs_section import write_section
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Web search latency"


def build_workdir(
    directory: Path, images: int, categories: int, image_size: int, seed: int = 0
) -> str:
    """An untrained model and `images` random unit embeddings; returns the model id."""
    import torch

    from imgsim.core.config import MODEL_FILE, ModelConfig
    from imgsim.model.network import EmbeddingNet, save_model
    from imgsim.store import open_store
    from imgsim.store.exports import build_collection

    torch.manual_seed(seed)
    # The network these figures were measured with (the default widths until the quality work).
    model = EmbeddingNet(ModelConfig(image_size=image_size, widths=(32, 64, 128, 256))).eval()
    names_of = [f"cat{c}" for c in range(categories)]
    model_id = save_model(directory / MODEL_FILE, model, names_of)
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((images, model.config.embedding_dim)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    names = [f"cat{i % categories}_{i // categories:05d}.jpg" for i in range(images)]
    with open_store(directory) as store:
        build_collection(store, features, names, directory / "dataset", model_id)
    return model_id


def query_jpeg(size: int = 224, seed: int = 1) -> bytes:
    """A photo-like 224×224 JPEG: a smooth gradient with noise, so it compresses like a photo."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    x, y = np.meshgrid(ramp, ramp)
    arr = np.stack([x, y, np.full_like(x, 128.0)], axis=-1)
    arr = arr + rng.normal(0, 20, (size, size, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def multipart(image: bytes, top_k: int) -> tuple[bytes, str]:
    """A multipart/form-data body with the image and top_k, and its Content-Type."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="top_k"\r\n\r\n{top_k}\r\n'.encode(),
        f"--{boundary}\r\nContent-Disposition: form-data; "
        f'name="image"; filename="query.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode(),
        image,
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(
    workdir: Path, port: int, workers: int, threads: int, env: dict[str, str] | None = None
) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "gunicorn", "-w", str(workers), "--threads", str(threads),
        "-b", f"127.0.0.1:{port}", "--log-level", "warning", "imgsim.web:create_app()",
    ]  # fmt: skip
    env = {**os.environ, "IMGSIM_WORKDIR": str(workdir), **(env or {})}
    return subprocess.Popen(command, env=env, cwd=workdir)


def wait_ready(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            body = json.loads(conn.getresponse().read())
            conn.close()
            if body.get("ready"):
                return
            raise SystemExit(f"server started but is not ready: {body.get('problems')}")
        except (ConnectionError, OSError):
            time.sleep(0.2)
    raise SystemExit("gunicorn did not answer within the timeout")


def timed_requests(port: int, body: bytes, content_type: str, count: int) -> list[float]:
    """Seconds per POST /search, one keep-alive connection, requests one after another."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        conn.request("POST", "/search", body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        payload = response.read()
        times.append(time.perf_counter() - start)
        if response.status != 200:
            raise SystemExit(f"HTTP {response.status}: {payload[:200]!r}")
    conn.close()
    return times


def concurrent_requests(
    port: int, body: bytes, content_type: str, clients: int, each: int
) -> tuple[list[float], float]:
    """Latencies with `clients` connections at once, and the requests per second overall."""
    results: list[list[float]] = [[] for _ in range(clients)]

    def run(i: int) -> None:
        results[i] = timed_requests(port, body, content_type, each)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return [t for r in results for t in r], clients * each / elapsed


def in_process(workdir: Path, image: bytes, top_k: int, count: int) -> list[float]:
    """Seconds per Searcher.search in this process: the part of the latency that is not HTTP."""
    from imgsim.search.searcher import Searcher

    searcher = Searcher.from_workdir(workdir)
    for _ in range(10):
        searcher.search(image, top_k)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        searcher.search(image, top_k)
        times.append(time.perf_counter() - start)
    return times


def percentile(times: list[float], q: float) -> float:
    """The q-th percentile in milliseconds."""
    return float(np.percentile(np.array(times) * 1000.0, q))


def machine() -> str:
    import torch

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    gpu = "GPU" if torch.cuda.is_available() else "no GPU"
    cores = len(os.sched_getaffinity(0))
    return (
        f"{cores} CPU cores, {memory:.0f} GiB RAM, {gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10_000, help="index size (10000)")
    p.add_argument("--categories", type=int, default=10)
    p.add_argument("--requests", type=int, default=300, help="timed requests (300)")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument(
        "--image-size", type=int, default=64, help="model input side (64, the default model)"
    )
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    p.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (4)")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients, 0 to skip (4)")
    p.add_argument("--write-docs", action="store_true", help=f"update {DOCS.relative_to(ROOT)}")
    return p.parse_args(argv)


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    """Run every measurement against a fresh gunicorn; returns the figures."""
    image = query_jpeg()
    body, content_type = multipart(image, args.top_k)
    port = free_port()
    server = start_gunicorn(workdir, port, args.workers, args.threads)
    try:
        wait_ready(port)
        timed_requests(port, body, content_type, args.warmup)
        load = os.getloadavg()[0]
        sequential = timed_requests(port, body, content_type, args.requests)
        parallel, rate = (
            concurrent_requests(port, body, content_type, args.clients, args.requests // 2)
            if args.clients
            else ([], 0.0)
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    local = in_process(workdir, image, args.top_k, args.requests)
    return {
        "jpeg_kb": len(image) / 1024,
        "load": load,
        "sequential": sequential,
        "parallel": parallel,
        "rate": rate,
        "in_process": local,
    }


def report(args: argparse.Namespace, figures: dict, argv: list[str] | None) -> str:
    """The markdown section: command, machine, date, set-up and the figures."""
    seq, par, local = figures["sequential"], figures["parallel"], figures["in_process"]
    p50 = percentile(seq, 50)
    date = subprocess.run(["date"], capture_output=True, text=True).stdout.strip()
    rows = [
        f"| sequential, 1 client, keep-alive | {len(seq)} | {p50:.1f} ms | "
        f"{percentile(seq, 95):.1f} ms | {len(seq) / sum(seq):.0f} |",
    ]
    if par:
        rows.append(
            f"| {args.clients} concurrent clients | {len(par)} | {percentile(par, 50):.1f} ms | "
            f"{percentile(par, 95):.1f} ms | {figures['rate']:.0f} |"
        )
    rows.append(
        f"| in-process `Searcher.search` (no HTTP) | {len(local)} | "
        f"{percentile(local, 50):.1f} ms | {percentile(local, 95):.1f} ms | "
        f"{len(local) / sum(local):.0f} |"
    )
    verdict = "met" if p50 <= 30 else "NOT met"
    command = " ".join(["benchmarks/web_latency.py", *(argv or [])])
    return f"""{SECTION}

- Command: `.venv/bin/python {command}`
- Machine: {machine()}
- Date: {date}; load average (1 min) when timing began: {figures["load"]:.2f}
- Set-up: gunicorn `-w {args.workers} --threads {args.threads}` on 127.0.0.1, client on the
  same machine, one keep-alive connection per client; index of {args.images:,} random unit
  vectors (128-d, FAISS flat L2, names like `cat3_00042.jpg`); an untrained model with the
  `ModelConfig(widths=(32, 64, 128, 256))` with `image_size={args.image_size}`;
  query: one 224×224 JPEG
  ({figures["jpeg_kb"]:.0f} KB), `top_k={args.top_k}`; {args.warmup} warm-up requests first.
  Latency = request sent → whole JSON answer read.

| Run | Requests | p50 | p95 | Requests/s |
|---|---:|---:|---:|---:|
{chr(10).join(rows)}

Goal p50 ≤ 30 ms on 2 cores: **{verdict}** (sequential p50 {p50:.1f} ms).
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="imgsim-bench-") as tmp:
        workdir = Path(tmp)
        build_workdir(workdir, args.images, args.categories, args.image_size)
        figures = measure(args, workdir)
    section = report(args, figures, argv)
    print(section)
    if args.write_docs:
        write_section(SECTION, section)
        print(f"written to {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
