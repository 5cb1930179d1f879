"""Memory of `imgsim serve` with its default workers on the demo's 2,000 images, idle and after
50 searches: PSS and RSS of the whole process tree (gunicorn's master and every worker).

Builds (once, in --root) the demo's image folder (imgsim.cli.demo.prepare_data: 200 Fashion-MNIST
images per category when the dataset is installed, else generated shapes), a model file of the
demo's shape (32 px, scratch backbone; untrained: memory does not depend on what it learnt),
its kept ONNX export and the index. Then starts `imgsim serve` as a user would (no --workers:
one per core), waits until it answers and every worker is up, reads /proc/PID/smaps_rollup of
each process, sends --searches POST /search from 4 client threads (so every worker answers
some) and reads them again. PSS shares each page among the processes that map it, so the
tree's PSS is what the server costs the machine; RSS counts shared libraries once per process.
Also says whether any process mapped libtorch. Linux only (/proc). Not a test: figures depend
on the machine. `--write-docs` replaces the "Server memory" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/serve_memory.py --root /tmp/serve_memory --write-docs
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from cputime import children
from docs_section import write_section
from web_latency import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Server memory (issue 28)"
GOAL_MB = 600  # issue 28: all of `imgsim serve`'s processes on the demo's 2,000 images
CLIENTS = 4


def build(root: Path, per_class: int) -> Path:
    """The demo's folder, a model file of the demo's shape and its index; returns the workdir."""
    work = root / "work"
    if (work / "triplet_manifest.sqlite").exists():
        return work
    import torch

    from imgsim.cli.demo import prepare_data
    from imgsim.core.config import MODEL_FILE, ExtractConfig, ModelConfig
    from imgsim.embed.extract import extract
    from imgsim.images.data import scan_images
    from imgsim.model.network import EmbeddingNet, save_model

    data = prepare_data(root, per_class)  # root/dataset, as `imgsim demo --dir root`
    torch.manual_seed(0)
    work.mkdir(parents=True, exist_ok=True)
    model = EmbeddingNet(ModelConfig(image_size=32, backbone="scratch")).eval()
    categories = sorted({r.category for r in scan_images(data) if r.category})
    save_model(work / MODEL_FILE, model, categories)
    config = ExtractConfig(
        data_dir=str(data), output_dir=str(work), model_path=str(work / MODEL_FILE)
    )
    extract(config, progress=False)  # also keeps the ONNX export beside the model file
    return work


def tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children(pid))
    return found


def memory_kb(pid: int) -> dict[str, int]:
    """Pss and Rss of one process in kB, from /proc/PID/smaps_rollup (zeros if it ended)."""
    figures = {"Pss": 0, "Rss": 0}
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return figures
    for line in lines:
        key = line.split(":", 1)[0]
        if key in figures:
            figures[key] = int(line.split()[1])
    return figures


def loads_torch(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def snapshot(master: int) -> dict[str, object]:
    """Per-process and total PSS/RSS in MB of the server's tree, and whether torch is mapped."""
    pids = tree(master)
    each = {pid: memory_kb(pid) for pid in pids}
    return {
        "processes": len(pids),
        "pss": sum(m["Pss"] for m in each.values()) / 1024,
        "rss": sum(m["Rss"] for m in each.values()) / 1024,
        "largest_pss": max(m["Pss"] for m in each.values()) / 1024,
        "torch": any(loads_torch(pid) for pid in pids),
    }


def search_body(image: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
        f'filename="{image.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    body = head.encode() + image.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def searches(port: int, images: list[Path], count: int) -> None:
    """`count` POST /search over CLIENTS keep-alive connections; stops on any non-200."""
    bodies = [search_body(images[i % len(images)]) for i in range(count)]
    errors: list[str] = []

    def client(share: list[tuple[bytes, str]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for body, ctype in share:
            conn.request("POST", "/search", body, {"Content-Type": ctype})
            answer = conn.getresponse()
            text = answer.read()
            if answer.status != 200:
                errors.append(f"{answer.status}: {text[:200]!r}")
                return
        conn.close()

    threads = [threading.Thread(target=client, args=(bodies[i::CLIENTS],)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"a search failed: {errors[0]}")


def wait_for_workers(master: int, workers: int, timeout: float = 120.0) -> None:
    """Until `workers` workers run and each has its runtime loaded (onnxruntime mapped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = children(master)
        if len(pids) >= workers and all(_has_runtime(pid) for pid in pids):
            return
        time.sleep(0.2)
    raise SystemExit(f"{workers} workers with a loaded runtime did not appear within {timeout}s")


def _has_runtime(pid: int) -> bool:
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return "onnxruntime" in maps or "libtorch" in maps


def measure(work: Path, count: int, settle: float, src: Path) -> dict[str, object]:
    data = work.parent / "dataset"
    images = sorted(p for p in data.iterdir() if p.is_file())[:: max(1, 2000 // count)]
    port = free_port()
    workers = len(os.sched_getaffinity(0))  # what `imgsim serve` starts without --workers
    command = [sys.executable, "-m", "imgsim.cli", "-q", "serve", "--workdir", str(work),
               "--port", str(port)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(src)}  # the imgsim measured
    server = subprocess.Popen(command, env=env)
    try:
        wait_ready(port)
        wait_for_workers(server.pid, workers)
        time.sleep(settle)
        idle = snapshot(server.pid)
        searches(port, images, count)
        time.sleep(settle)
        busy = snapshot(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"workers": workers, "idle": idle, "after": busy, "images": len(list(data.iterdir()))}


def report(figures: dict[str, object], count: int, argv: list[str]) -> str:
    import onnxruntime

    rows = []
    for label, key in (("idle", "idle"), (f"after {count} searches", "after")):
        snap = figures[key]
        assert isinstance(snap, dict)
        rows.append(
            f"| {label} | {snap['processes']} | {snap['pss']:.0f} | {snap['rss']:.0f} | "
            f"{snap['largest_pss']:.0f} | {'yes' if snap['torch'] else 'no'} |"
        )
    cores = len(os.sched_getaffinity(0))
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return "\n".join([
        SECTION, "",
        f"- Command: `.venv/bin/python benchmarks/serve_memory.py {' '.join(argv)}`".rstrip(),
        f"- Machine: {cores} CPU cores, {ram:.0f} GiB RAM; Python {platform.python_version()}, "
        f"onnxruntime {onnxruntime.__version__}; load average (1 min) {os.getloadavg()[0]:.1f}",
        f"- Date: {datetime.now(UTC):%Y-%m-%d}",
        f"- `imgsim serve` with its default workers ({figures['workers']}, one per core) and the "
        f"onnx runtime, over the demo's {figures['images']:,} images (32 px scratch model). "
        f"Goal (issue 28): all processes together ≤ {GOAL_MB} MB.",
        "",
        "| state | processes | PSS total MB | RSS total MB | largest PSS MB | torch loaded |",
        "|---|---:|---:|---:|---:|---|",
        *rows, "",
        "PSS divides each shared page among the processes that map it, so the total is what the "
        "server takes from the machine; RSS counts the shared libraries once per process.", "",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/serve_memory"))
    parser.add_argument("--per-class", type=int, default=200, help="the demo's default (200)")
    parser.add_argument("--searches", type=int, default=50)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before each reading")
    parser.add_argument(
        "--src", type=Path, default=ROOT / "src", help="the imgsim to serve (another tree: before)"
    )
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    work = build(args.root, args.per_class)
    figures = measure(work, args.searches, args.settle, args.src)
    shown = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--write-docs"]
    text = report(figures, args.searches, shown)
    print(text)
    if args.write_docs:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
