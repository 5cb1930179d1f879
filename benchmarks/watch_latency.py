"""How soon a watched folder's changes are searchable through `imgsim serve --watch` (issue 26).

Builds (once) in --root a folder of --images generated 64 px pictures, a scratch model file and
its index (benchmarks/start_speed.py's `build`), then starts `imgsim serve --watch` with
--workers gunicorn workers and measures over HTTP, as a user sees it:

  (a) one new JPEG copied into the folder → returned by POST /search: --runs times, median and
      worst (goal: median ≤ 2 s);
  (b) --batch new JPEGs copied at once → all searchable (GET /stats counts them, then a search
      for a few of them finds each), against the wall time of `imgsim index` extracting the same
      files into an empty workdir (goal: extraction + 2 s);
  (c) --deletes files moved out of the folder → no search, from any worker, returns one (which
      worker answered is read from /proc: benchmarks/worker_probe.py).

At the end the copies are deleted and the moved files put back, so the folder is as built.
Not a test: figures depend on the machine; run it alone.

    .venv/bin/python benchmarks/watch_latency.py --images 10000
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from start_speed import build
from web_latency import free_port, multipart, wait_ready
from worker_probe import connection_owner, worker_pids

from imgsim.core.config import MODEL_FILE, ONNX_FILE

SRC = Path(__file__).resolve().parents[1] / "src"
SHAPES = ("circle", "square", "triangle", "stripes")  # start_speed's categories
POLL = 0.02  # seconds between two checks of whether a change is searchable yet
GIVE_UP = 300.0  # seconds: a change not searchable by then is reported as a failure


@dataclass
class Server:
    """The running `imgsim serve --watch`: its port and its gunicorn workers' pids."""

    port: int
    workers: list[int] = field(default_factory=list)

    def search(self, image: bytes, top_k: int) -> tuple[list[str], int | None]:
        """POST /search on a new connection: the names found, and the worker that answered."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            body, content_type = multipart(image, top_k)
            conn.request("POST", "/search", body, {"Content-Type": content_type})
            response = conn.getresponse()
            data = json.loads(response.read())
            if response.status != 200:
                raise SystemExit(f"/search answered {response.status}: {data}")
            return [r["filename"] for r in data["results"]], connection_owner(conn, self.workers)
        finally:
            conn.close()

    def indexed(self) -> int:
        """GET /stats's image count (what one worker's index holds now)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", "/stats")
            return int(json.loads(conn.getresponse().read())["total_images"])
        finally:
            conn.close()


def _until(done: Callable[[], bool], what: str) -> None:
    """Poll `done()` every POLL seconds; give up (SystemExit) after GIVE_UP."""
    deadline = time.monotonic() + GIVE_UP
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"not within {GIVE_UP:.0f} s: {what}")
        time.sleep(POLL)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC)}


def new_jpegs(folder: Path, count: int, seed: int, tag: str) -> list[Path]:
    """`count` new pictures as JPEGs named like the folder's (circle_<tag>00001.jpg): new
    content, so each is embedded, not found again by its hash."""
    from imgsim.images.sample import generate_shapes

    made = folder / f"made-{tag}"
    if not made.exists():
        per_class = math.ceil(count / len(SHAPES))
        generate_shapes(made, per_class=per_class, size=64, seed=seed, shapes=SHAPES)
    paths = sorted(made.iterdir())[:count]
    out = folder / tag
    out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        target = out / path.name.replace("_", f"_{tag}", 1).replace(".png", ".jpg")
        if not target.exists():
            from PIL import Image

            Image.open(path).convert("RGB").save(target, "JPEG", quality=95)
    return sorted(out.iterdir())


def one_copy(server: Server, data: Path, sources: list[Path]) -> list[float]:
    """(a): each source copied into the folder; seconds until /search returns it."""
    seconds = []
    for source in sources:
        image = source.read_bytes()
        start = time.monotonic()
        shutil.copy(source, data / source.name)  # as cp does: a new file, written now
        name = source.name
        _until(lambda n=name, i=image: n in server.search(i, 5)[0], f"{name} searchable")
        seconds.append(time.monotonic() - start)
        time.sleep(0.3)  # the next copy is a batch of its own
    return seconds


def extraction_seconds(root: Path, sources: list[Path]) -> float:
    """Wall seconds of `imgsim index` embedding `sources` into an empty workdir."""
    folder, work = root / "extract-data", root / "extract-work"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    folder.mkdir()
    work.mkdir()
    for path in sources:
        os.link(path, folder / path.name)
    for kept in (MODEL_FILE, ONNX_FILE):  # the model and its kept export: no export timed
        if (root / "work" / kept).exists():
            shutil.copy(root / "work" / kept, work / kept)
    command = [sys.executable, "-m", "imgsim.cli", "-q", "index", "--data", str(folder),
               "--workdir", str(work)]  # fmt: skip
    start = time.monotonic()
    subprocess.run(command, check=True, env=_env())
    return time.monotonic() - start


def batch_copy(server: Server, data: Path, sources: list[Path], before: int) -> float:
    """(b): all sources copied at once; seconds until every one is searchable."""
    start = time.monotonic()
    for source in sources:
        shutil.copy(source, data / source.name)
    _until(lambda: server.indexed() >= before + len(sources), "the batch searchable")
    elapsed = time.monotonic() - start
    for source in sources[:: max(1, len(sources) // 10)]:  # the count agrees with searches
        if source.name not in server.search(source.read_bytes(), 5)[0]:
            raise SystemExit(f"{source.name} is counted but /search does not return it")
    return elapsed


def deletes(server: Server, data: Path, held: Path, count: int) -> tuple[float, float, int]:
    """(c): `count` files moved out; (seconds until every worker answered without one, the
    time of the last answer that still named one, searches made)."""
    built = sorted(p.name for p in data.iterdir() if p.suffix == ".png")
    if count > len(built):
        raise SystemExit(f"--deletes {count}: the folder has only {len(built)} images")
    names = built[:: len(built) // count][:count]  # spread over the categories
    queries = [(data / n).read_bytes() for n in names]  # a stale entry would come first
    held.mkdir(exist_ok=True)
    start = time.monotonic()
    for name in names:
        (data / name).rename(held / name)
    gone, clean, last_stale, made = set(names), {}, 0.0, 0

    def all_clean() -> bool:
        nonlocal last_stale, made
        found, worker = server.search(queries[made % len(queries)], 100)
        made += 1
        now = time.monotonic() - start
        if gone & set(found):
            last_stale = now
            clean.pop(worker, None)
        elif worker is not None:
            clean.setdefault(worker, now)  # a worker once clean stays so: changes are atomic
        return len(clean) == len(server.workers)

    _until(all_clean, "every worker without the moved files")
    return max(clean.values()), last_stale, made


def restore(server: Server, data: Path, held: Path, copies: list[Path], expected: int) -> None:
    """The folder as built: this benchmark's copies deleted, the moved files back."""
    for path in copies:
        (data / path.name).unlink(missing_ok=True)
    for path in held.iterdir():
        path.rename(data / path.name)
    _until(lambda: server.indexed() == expected, "the folder back as built")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--root", type=Path, default=None, help="default /tmp/watch_latency_N")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--deletes", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    opts = parser.parse_args()
    root = opts.root or Path(f"/tmp/watch_latency_{opts.images}")
    build(root, opts.images)
    data, work, incoming = root / "data", root / "work", root / "incoming"
    singles = new_jpegs(incoming, opts.runs, seed=11, tag="w")
    batch = new_jpegs(incoming, opts.batch, seed=12, tag="b")
    extract = extraction_seconds(root, batch)  # before the server: nothing else runs
    server = Server(free_port())
    process = subprocess.Popen(
        [sys.executable, "-m", "imgsim.cli", "-q", "serve", "--watch", "--workdir", str(work),
         "--workers", str(opts.workers), "--port", str(server.port)], env=_env(),
    )  # fmt: skip
    try:
        wait_ready(server.port)
        _until(lambda: len(worker_pids(process.pid)) == opts.workers, "the workers started")
        server.workers = worker_pids(process.pid)
        before = server.indexed()
        copy_times = one_copy(server, data, singles)
        batch_time = batch_copy(server, data, batch, before + len(singles))
        clean, stale, made = deletes(server, data, root / "held", opts.deletes)
        restore(server, data, root / "held", singles + batch, before)
    finally:
        process.terminate()
        process.wait(timeout=60)
    report(opts, before, copy_times, batch_time, extract, (clean, stale, made))


def report(opts: argparse.Namespace, images: int, copy_times: list[float], batch_time: float,
           extract: float, cleared: tuple[float, float, int]) -> None:  # fmt: skip
    clean, stale, made = cleared
    print(f"images in the folder: {images:,}; serve --watch, {opts.workers} workers; "
          f"load average (1 min): {os.getloadavg()[0]:.2f}")  # fmt: skip
    print("| case | figure | goal |")
    print("|---|---:|---|")
    print(
        f"| (a) 1 JPEG copied → /search returns it, median of {len(copy_times)} | "
        f"{statistics.median(copy_times):.2f} s (worst {max(copy_times):.2f} s) | ≤ 2 s |"
    )
    print(
        f"| (b) {opts.batch:,} JPEGs copied at once → all searchable | {batch_time:.2f} s | "
        f"≤ {extract:.2f} + 2 s (`imgsim index` of the same files: {extract:.2f} s) |"
    )
    print(
        f"| (c) {opts.deletes} files moved out → no worker returns one | {clean:.2f} s "
        f"(last stale answer {stale:.2f} s; {made} searches) | ≤ 2 s |"
    )


if __name__ == "__main__":
    main()
