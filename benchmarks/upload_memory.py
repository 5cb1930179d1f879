"""Peak memory growth of one server process while N worst-case uploads decode at once.

Each case runs in a fresh process: it loads the model (an untrained EmbeddingNet of the default
shape) and starts N threads, as a server's; each decodes and embeds a small image to warm up.
Then it resets the kernel's peak-RSS mark (/proc/self/clear_refs) and the N threads send the
case's image at once through the path every search and upload takes (imgsim.images.data.load_image
with the model's input size, to_array, one forward pass under the model lock); the figure is
VmHWM after minus VmRSS before.
Linux only (/proc). Prints a markdown table; `--write-docs` also replaces the "Upload memory"
section of docs/benchmarks.md. Not a test: figures depend on the machine.

    .venv/bin/python benchmarks/upload_memory.py --write-docs
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import struct
import subprocess
import sys
import threading
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Upload memory"
# name: (description, bit depth, PNG colour type, bytes per pixel of the raw rows)
CASES = {
    "grey16": ("16-bit grey PNG", 16, 0, 2),
    "rgb16": ("16-bit RGB PNG", 16, 2, 6),
    "rgb8": ("8-bit RGB PNG", 8, 2, 3),
}
# The image (6300x6300 16-bit grey, 77 KB), also with one decode per upload; RGB at
# the default budget (5000x5000, 4 bytes a pixel in Pillow: 95 MB), and over it.
DEFAULT_CASES = "grey16:6300,grey16:6300:8,rgb16:5000,rgb8:5000,rgb8:6300"


def worst_png(side: int, depth: int, colour_type: int, pixel_bytes: int) -> bytes:
    """A square PNG of zeros: tiny on the wire (~77 KB at 6300x6300), large decoded."""
    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes(side * pixel_bytes)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(case: str, side: int, threads: int, concurrent: int) -> dict:
    """Measure one case in this (fresh) process; returns its figures."""
    import io

    import numpy as np
    import torch
    from PIL import Image

    from imgsim.core.config import DEFAULT_IMAGE_SIZE, ModelConfig, SearchConfig
    from imgsim.core.errors import UnreadableImageError
    from imgsim.images.data import load_image, set_decode_limits, to_array
    from imgsim.model.network import EmbeddingNet

    torch.set_num_threads(1)
    config = SearchConfig()
    set_decode_limits(config.max_decode_mb * 2**20, concurrent)
    model = EmbeddingNet(ModelConfig(image_size=DEFAULT_IMAGE_SIZE)).eval()
    size = model.config.image_size
    lock = threading.Lock()
    payload = worst_png(side, *CASES[case][1:])
    outcomes: list[str] = []

    def upload(data: bytes) -> None:
        try:
            im = load_image(data, config.max_image_pixels, draft_size=size)
        except UnreadableImageError as exc:
            outcomes.append(f"refused: {exc}")
            return
        batch = torch.from_numpy(np.stack([to_array(im, size)]))
        with lock, torch.inference_mode():
            model(batch)
        outcomes.append("ok")

    warm = io.BytesIO()
    Image.new("RGB", (300, 200), (9, 9, 9)).save(warm, "PNG")
    # Long-lived threads, as a server's: each embeds once before the measurement, since
    # torch's first forward pass in a thread sets up per-thread state (tens of MB) that is
    # paid once per server thread, not per upload.
    warmed, go = threading.Barrier(threads + 1), threading.Barrier(threads + 1)

    def serve_one() -> None:
        upload(warm.getvalue())
        warmed.wait()
        go.wait()
        upload(payload)

    workers = [threading.Thread(target=serve_one) for _ in range(threads)]
    for w in workers:
        w.start()
    warmed.wait()
    outcomes.clear()
    before = _status_kb("VmRSS")
    # Resets VmHWM to the current RSS; where it cannot, VmHWM may include the start-up and
    # the figure is an upper bound.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    go.wait()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - start
    return {
        "case": case,
        "side": side,
        "payload_kb": len(payload) / 1024,
        "threads": threads,
        "concurrent": concurrent,
        "growth_mb": (_status_kb("VmHWM") - before) / 1024,
        "seconds": seconds,
        "outcome": ", ".join(sorted(set(outcomes))),
    }


def run_case(case: str, side: int, threads: int, concurrent: int) -> dict:
    cmd = [sys.executable, __file__, "--child", case, "--side", str(side)]
    cmd += ["--threads", str(threads), "--concurrent", str(concurrent)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = [
        "| Image | File | Uploads at once | Decodes at once | Peak RSS growth | Time | Result |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {CASES[r['case']][0]} {r['side']}×{r['side']} | {r['payload_kb']:.0f} KB "
            f"| {r['threads']} | {r['concurrent']} | {max(0.0, r['growth_mb']):.0f} MB "
            f"| {r['seconds']:.1f} s | {r['outcome'][:60]} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=6300, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=8, help="uploads at once (8)")
    parser.add_argument(
        "--cases",
        default=DEFAULT_CASES,
        help=f"IMAGE:SIDE[:DECODES], IMAGE one of {', '.join(CASES)}; DECODES default: the "
        f"setting (default {DEFAULT_CASES})",
    )
    parser.add_argument("--concurrent", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.side, args.threads, args.concurrent)))
        return
    sys.path.insert(0, str(ROOT / "src"))
    from imgsim.core.config import SearchConfig

    load = os.getloadavg()[0]
    default = SearchConfig().max_concurrent_decodes
    rows = []
    for spec in args.cases.split(","):
        case, side, *level = spec.split(":")
        rows.append(run_case(case, int(side), args.threads, int(level[0]) if level else default))
    text = table(rows)
    print(text)
    if args.write_docs:
        from docs_section import write_section

        when = datetime.now(UTC).strftime("%Y-%m-%d")
        section = (
            f"{SECTION}\n\n`python benchmarks/upload_memory.py --write-docs` on {when}, "
            f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
            f"Python {platform.python_version()}, load average {load:.1f} at the start. "
            "Peak RSS growth of one process while "
            f"{args.threads} uploads of the same image decode and embed at once; the budget "
            f"is `max_decode_mb` = {SearchConfig().max_decode_mb}, decodes at once "
            f"`max_concurrent_decodes` = {default} unless the row says otherwise.\n\n"
            f"{text}\n"
        )
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
