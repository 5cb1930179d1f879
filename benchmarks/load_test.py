"""Load test: 32 concurrent clients for 60 s against gunicorn on loopback; errors, latency, memory.

Builds the same throw-away workdir as web_latency.py (an untrained default-size model, 10,000
random unit vectors), starts gunicorn on 127.0.0.1 and runs `--clients` clients, each on its
own keep-alive connection, for `--seconds` (one thread drives them all: http_load.py). Each
request is drawn from a fixed mix: searches with one of a few JPEGs (most), batch searches of
two images, /stats, /health, an indexed image, and a deliberately bad upload that must get its
400. Anything else (another status, a refused or dropped connection, a timeout) is an error.
Meanwhile the RSS of every gunicorn process is sampled from /proc every `--sample-every`
seconds. Traffic goes to 127.0.0.1 only, and the run stops by itself. `--write-docs` replaces
the "Load test" section of docs/benchmarks.md. Both modes also report CPU time per request,
the server's and the client's: unlike rates, valid on a machine that other jobs share.

    .venv/bin/python benchmarks/load_test.py --write-docs
    .venv/bin/python benchmarks/load_test.py --curve --compare-unbatched --threads 4 --write-docs
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cputime import children, own_cpu, tree_cpu
from docs_section import write_section
from http_load import Call, Tally, drive
from web_latency import (
    DOCS,
    build_workdir,
    free_port,
    machine,
    multipart,
    percentile,
    query_jpeg,
    start_gunicorn,
    wait_ready,
)

SECTION = "## Load test"
CLIENT_NOTE = """Client: `benchmarks/http_load.py`, one Python thread driving all connections
  through `selectors` (non-blocking keep-alive sockets, TCP_NODELAY); each request is encoded once
  before the run (request line, headers and multipart body in one buffer) and an answer is
  read only as far as its status line and Content-Length, so the client takes as little of
  the cores it shares with the server as Python allows."""
CURVE_SECTION = "## Throughput against concurrent clients (micro-batching)"


def request_mix(top_k: int) -> list[tuple[Call, int]]:
    """(call, weight): mostly single searches, as the page sends them."""
    queries = [query_jpeg(seed=s) for s in range(4)]
    calls = [(Call("search", "POST", "/search", *multipart(q, top_k)), 15) for q in queries]
    body, content_type = batch_body(queries[:2], top_k)
    calls += [
        (Call("batch", "POST", "/search/batch", body, content_type), 6),
        (Call("stats", "GET", "/stats"), 6),
        (Call("health", "GET", "/health"), 4),
        (Call("image", "GET", "/images/cat3_00042.jpg", expect=404), 4),  # no file on disk
        (Call("bad-upload", "POST", "/search", *multipart(b"not an image", top_k), 400), 4),
    ]
    return calls


def batch_body(images: list[bytes], top_k: int) -> tuple[bytes, str]:
    boundary = "load-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="top_k"\r\n\r\n{top_k}\r\n']
    body = "".join(parts).encode()
    for i, image in enumerate(images):
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="images"; '
                f'filename="q{i}.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            + image
            + b"\r\n"
        )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB (VmRSS), 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def sample_memory(master: int, every: float, stop: threading.Event, out: list[dict]) -> None:
    """Every `every` seconds: seconds since start and the RSS of the master and each worker."""
    start = time.monotonic()
    while not stop.is_set():
        workers = {pid: rss_mb(pid) for pid in children(master)}
        out.append({"t": time.monotonic() - start, "master": rss_mb(master), "workers": workers})
        stop.wait(every)


def measured_run(
    port: int,
    master: int,
    mix: list[tuple[Call, int]],
    clients: int,
    warmup: float,
    seconds: float,
) -> tuple[Tally, dict[str, float]]:
    """`warmup` s unmeasured, then `seconds` s measured; the tally (warm-up errors included)
    and CPU time per request answered: the server's (gunicorn's master and workers, from
    /proc) and this client's own, both in ms."""
    warm = drive(port, mix, clients, warmup, seed=1)
    server, client, start = tree_cpu(master), own_cpu(), time.perf_counter()
    tally = drive(port, mix, clients, seconds, seed=2)
    wall = time.perf_counter() - start
    answered = max(1, sum(len(times) for times in tally.latencies.values()))
    tally.errors[:0] = warm.errors
    return tally, {
        "server_ms": (tree_cpu(master) - server) / answered * 1000,
        "client_ms": (own_cpu() - client) / answered * 1000,
        "wall": wall,
    }  # fmt: skip


def run_load(
    args: argparse.Namespace, port: int, master: int
) -> tuple[Tally, list[dict], dict[str, float]]:
    """All clients for `args.warmup` s, then `args.seconds` s measured while memory is sampled.

    The warm-up runs at full concurrency, so every worker thread has made its first
    allocations before the first memory sample: growth after that would be a leak.
    """
    mix = request_mix(args.top_k)
    warm = drive(port, mix, args.clients, args.warmup, seed=1)
    samples: list[dict] = []
    stop = threading.Event()
    sampler = threading.Thread(
        target=sample_memory, args=(master, args.sample_every, stop, samples)
    )
    sampler.start()
    try:
        tally, cpu = measured_run(port, master, mix, args.clients, 0, args.seconds)
    finally:
        stop.set()
        sampler.join()
    tally.errors[:0] = warm.errors
    return tally, samples, cpu


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    p.add_argument("--seconds", type=float, default=60, help="measured time (60)")
    p.add_argument("--warmup", type=float, default=10, help="unmeasured time first (10)")
    p.add_argument("--images", type=int, default=10_000, help="index size (10000)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    p.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (4)")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--sample-every", type=float, default=5, help="RSS sampling period (5 s)")
    p.add_argument("--runtime", choices=("torch", "onnx"), help="IMGSIM_RUNTIME of the server")
    p.add_argument(
        "--curve",
        action="store_true",
        help="instead: searches/s, p50, p99 for each client count in --curve-clients, "
        "with micro-batching and (--compare-unbatched) without, one server each",
    )
    p.add_argument("--curve-clients", default="1,2,4,8,16,32", help="(1,2,4,8,16,32)")
    p.add_argument("--curve-seconds", type=float, default=15, help="measured per step (15)")
    p.add_argument("--curve-warmup", type=float, default=3, help="unmeasured per step (3)")
    p.add_argument("--runtime-threads", type=int, help="search.runtime_threads of the server")
    p.add_argument("--compare-unbatched", action="store_true", help="also batch_max_size = 1")
    p.add_argument("--write-docs", action="store_true", help=f"update {DOCS.name}")
    return p.parse_args(argv)


def total_rss(sample: dict) -> float:
    return sample["master"] + sum(sample["workers"].values())


def latency_rows(tally: Tally, seconds: float) -> list[str]:
    rows = []
    for name, times in sorted(tally.latencies.items(), key=lambda kv: -len(kv[1])):
        statuses = ", ".join(
            f"{status}×{n}" for (call, status), n in sorted(tally.statuses.items()) if call == name
        )
        rows.append(
            f"| {name} | {len(times)} | {statuses} | {percentile(times, 50):.0f} ms | "
            f"{percentile(times, 99):.0f} ms | {len(times) / seconds:.1f} |"
        )
    return rows


def memory_rows(samples: list[dict]) -> list[str]:
    first, last = samples[0], samples[-1]
    peak = max(samples, key=total_rss)
    rows = [
        f"| {label} (t = {s['t']:.0f} s) | {s['master']:.0f} | "
        f"{' / '.join(f'{v:.0f}' for v in s['workers'].values())} | {total_rss(s):.0f} |"
        for label, s in (("first sample", first), ("last sample", last), ("peak", peak))
    ]
    return rows


def report(
    args: argparse.Namespace, tally: Tally, samples: list[dict], load: float, cpu: dict
) -> str:
    """The markdown section: command, machine, set-up, errors, latency, memory."""
    searches = [t for name in ("search", "batch") for t in tally.latencies.get(name, [])]
    count = sum(len(times) for times in tally.latencies.values())
    first, last = total_rss(samples[0]), total_rss(samples[-1])
    date = subprocess.run(["date"], capture_output=True, text=True).stdout.strip()
    errors = "".join(f"\n  - `{e}`" for e in tally.errors[:10])
    command = " ".join(["benchmarks/load_test.py", *sys.argv[1:]])
    rate = count / args.seconds
    threads = args.workers * args.threads
    return f"""{SECTION}

- Command: `.venv/bin/python {command}`
- Machine: {machine()}; a shared machine: other jobs ran meanwhile (load average
  {load:.2f} when the run began)
- Date: {date}
- Set-up: gunicorn `-w {args.workers} --threads {args.threads}` on 127.0.0.1; {args.clients} clients
  on the same machine, each on its own keep-alive connection, sending requests back
  to back: {args.warmup:g} s of warm-up, then {args.seconds:g} s measured. Index of
  {args.images:,} random unit vectors and an untrained default model, as in "Web search
  latency". Mix: single searches with 4 different 224×224 JPEGs (60 %), batch searches of
  2 images (12 %), /stats (12 %), /health (8 %), an image that is indexed but not on disk
  (8 %, must be 404), an upload that is not an image (8 %, must be 400).
- An error is any other status than the expected one, a refused or dropped connection, or
  a timeout (60 s).
- {CLIENT_NOTE}

CPU time per request answered (all kinds): server {cpu["server_ms"]:.2f} ms (gunicorn's
master and workers, from /proc), client {cpu["client_ms"]:.2f} ms (this process).

**Errors: {len(tally.errors)}**{errors} — in {count:,} measured requests ({rate:.0f}/s).
Searches (single and batch): **p50 {percentile(searches, 50):.0f} ms, p99
{percentile(searches, 99):.0f} ms**.

| Request | Count | Statuses | p50 | p99 | Per second |
|---|---:|---|---:|---:|---:|
{chr(10).join(latency_rows(tally, args.seconds))}

{args.clients} clients share {threads} request threads ({args.workers} workers × {args.threads}),
and each worker runs one forward pass at a time: the server is saturated, and
most of a request's time is spent waiting for a thread. Once it has one, a cheap request
(stats, health, the 404 and the 400) takes a few ms, so its p50 depends on how long the queue
was; the latency of one request at a time is in "Web search latency".

Memory: RSS of the gunicorn processes, sampled every {args.sample_every:g} s ({len(samples)}
samples). **First sample {first:.0f} MB, last {last:.0f} MB ({last - first:+.0f} MB).**

| Sample | Master (MB) | Workers (MB) | Total (MB) |
|---|---:|---:|---:|
{chr(10).join(memory_rows(samples))}
"""


def curve_step(port: int, master: int, mix: list, clients: int, args: argparse.Namespace) -> dict:
    """One point of the curve: `clients` back-to-back searchers for warm-up + measured time."""
    tally, cpu = measured_run(port, master, mix, clients, args.curve_warmup, args.curve_seconds)
    times = tally.latencies.get("search", [])
    return {
        "clients": clients, "rate": len(times) / cpu["wall"], "errors": len(tally.errors),
        "p50": percentile(times, 50) if times else 0.0,
        "p99": percentile(times, 99) if times else 0.0,
        "server_ms": cpu["server_ms"], "client_ms": cpu["client_ms"],
    }  # fmt: skip


def run_curve(args: argparse.Namespace, workdir: Path, batch_max_size: int | None) -> list[dict]:
    """The curve against one gunicorn; `batch_max_size` overrides the server's setting."""
    env = {"IMGSIM_RUNTIME": args.runtime} if args.runtime else {}
    settings = {"batch_max_size": batch_max_size, "runtime_threads": args.runtime_threads}
    lines = [f"{key} = {value}" for key, value in settings.items() if value is not None]
    if lines:
        config = workdir / f"curve{batch_max_size}.toml"
        config.write_text("[search]\n" + "\n".join(lines) + "\n")
        env["IMGSIM_CONFIG"] = str(config)
    mix = [(call, 1) for call, _ in request_mix(args.top_k) if call.name == "search"]
    port = free_port()
    server = start_gunicorn(workdir, port, args.workers, args.threads, env)
    try:
        wait_ready(port)
        points = []
        for clients in (int(c) for c in args.curve_clients.split(",")):
            points.append(curve_step(port, server.pid, mix, clients, args))
            p = points[-1]
            print(f"batch_max_size={batch_max_size or 'default'} clients={clients}: "
                  f"{p['rate']:.0f}/s p50 {p['p50']:.0f} ms p99 {p['p99']:.0f} ms "
                  f"errors {p['errors']}; CPU per request: server {p['server_ms']:.2f} ms, "
                  f"client {p['client_ms']:.2f} ms", flush=True)  # fmt: skip
        return points
    finally:
        server.terminate()
        server.wait(timeout=30)


def curve_report(args: argparse.Namespace, curves: dict[str, list[dict]], load: float) -> str:
    """The markdown section of the curve: one row per client count, one column group per run."""
    names = list(curves)
    header = "| clients | " + " | ".join(
        f"{n}: searches/s | p50 | p99 | server CPU/req | client CPU/req" for n in names
    ) + " |"  # fmt: skip
    align = "|---:|" + "---:|---:|---:|---:|---:|" * len(names)
    rows = []
    for i, point in enumerate(curves[names[0]]):
        cells = [
            f"{c[i]['rate']:.0f} | {c[i]['p50']:.0f} ms | {c[i]['p99']:.0f} ms | "
            f"{c[i]['server_ms']:.2f} ms | {c[i]['client_ms']:.2f} ms"
            for c in curves.values()
        ]
        rows.append(f"| {point['clients']} | " + " | ".join(cells) + " |")
    batched = {p["clients"]: p["rate"] for p in curves[names[0]]}
    errors = sum(p["errors"] for c in curves.values() for p in c)
    goal = ""
    if 1 in batched and 16 in batched:
        gain = batched[16] / batched[1] if batched[1] else 0.0
        verdict = "met" if gain >= 3 and errors == 0 else "not met"
        goal = (
            f"16 clients against 1, batched: **{gain:.1f}×** (goal ≥ 3× with 0 errors: {verdict})."
        )
    from imgsim.core.config import SearchConfig

    date = subprocess.run(["date"], capture_output=True, text=True).stdout.strip()
    command = " ".join(["benchmarks/load_test.py", *sys.argv[1:]])
    threads_shown = args.runtime_threads if args.runtime_threads is not None else "as set (1)"
    return f"""{CURVE_SECTION}

- Command: `.venv/bin/python {command}`
- Machine: {machine()}; load average {load:.2f} when the run began
- Date: {date}
- Set-up: gunicorn `-w {args.workers} --threads {args.threads}` on 127.0.0.1, runtime
  {args.runtime or f"as configured ({SearchConfig().runtime})"}, runtime threads per worker
  {threads_shown}; index of {args.images:,} random unit vectors and
  an untrained default model, as in "Web search latency". Each client sends single /search
  requests (one of 4 different 224×224 JPEGs) back to back on its own keep-alive
  connection: {args.curve_warmup:g} s of warm-up, then {args.curve_seconds:g} s measured per
  client count. One server per column, started afresh.
- {CLIENT_NOTE}
- CPU/req: CPU seconds (user + system) over the measured time divided by the searches
  answered; the server's summed over gunicorn's master and workers (/proc), the client's
  is this process's own (getrusage). On 2 cores, 16 clients can reach at most about
  2 cores ÷ (server + client CPU/req) searches/s, whatever else the machine runs.

{header}
{align}
{chr(10).join(rows)}

{(goal + " ") if goal else ""}Errors: {errors}.
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.curve:
        return main_curve(args)
    with tempfile.TemporaryDirectory(prefix="imgsim-load-") as tmp:
        workdir = Path(tmp)
        build_workdir(workdir, args.images, 10, image_size=64)
        port = free_port()
        server = start_gunicorn(workdir, port, args.workers, args.threads)
        try:
            wait_ready(port)
            load = os.getloadavg()[0]
            tally, samples, cpu = run_load(args, port, server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    section = report(args, tally, samples, load, cpu)
    print(section)
    if args.write_docs:
        write_section(SECTION, section)
        print(f"written to {DOCS}")
    return 1 if tally.errors else 0


def main_curve(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="imgsim-load-") as tmp:
        workdir = Path(tmp)
        build_workdir(workdir, args.images, 10, image_size=64)
        load = os.getloadavg()[0]
        curves = {"batched": run_curve(args, workdir, None)}
        if args.compare_unbatched:
            curves["unbatched"] = run_curve(args, workdir, 1)
    section = curve_report(args, curves, load)
    print(section)
    if args.write_docs:
        write_section(CURVE_SECTION, section)
        print(f"written to {DOCS}")
    return 1 if any(p["errors"] for c in curves.values() for p in c) else 0


if __name__ == "__main__":
    raise SystemExit(main())
