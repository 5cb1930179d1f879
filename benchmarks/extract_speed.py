"""Extraction speed: decode + embed pipeline against the model's pure forward throughput.

Generates 2,000 photo-like 800×600 JPEGs (cached in --dir), then measures with the default
ModelConfig (untrained weights: speed does not depend on them):

1. pure forward throughput on ready uint8 tensors, per batch size, thread count and layout;
2. JPEG decoding per image with and without Pillow's draft() (data.load_image's draft_size);
3. the pipeline (`extract.embed_records`: worker decoding, channels-last forward) per setting;
4. adding one image to a 10,000-image collection (`Searcher.add_images`) against embedding it.

`--write-docs` replaces the "Extraction speed" section of docs/benchmarks.md. Not a test.

    .venv/bin/python benchmarks/extract_speed.py --write-docs
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imgsim.config import ModelConfig  # noqa: E402

# The network these figures were measured with (the default widths until the quality work).
WIDTHS = (32, 64, 128, 256)
from docs_section import write_section  # noqa: E402

from imgsim.data import load_image, scan_images, to_array  # noqa: E402
from imgsim.extract import embed_records  # noqa: E402
from imgsim.model import EmbeddingNet  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Extraction speed"
GOAL_IMAGES_PER_S = 70.0  # 10× the original's 1,000 images in 2–3 minutes (~7/s)
GOAL_SHARE = 0.8  # the pipeline should reach 80 % of pure forward throughput


def photo(seed: int, width: int = 800, height: int = 600) -> Image.Image:
    """A photo-like picture: coloured blurred ellipses on a background, with sensor noise."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x, y = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(40, width // 2, 2)
        draw.ellipse([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    im = im.filter(ImageFilter.GaussianBlur(2))
    noisy = np.asarray(im).astype(np.int16) + rng.normal(0, 6, (height, width, 3)).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _write_photo(args: tuple[Path, int]) -> None:
    path, seed = args
    if not path.exists():
        photo(seed).save(path, "JPEG", quality=90)


def make_photos(directory: Path, count: int) -> list[Path]:
    """`count` JPEGs named like cat3_00042.jpg (10 categories), generated once."""
    directory.mkdir(parents=True, exist_ok=True)
    jobs = [(directory / f"cat{i % 10}_{i:05d}.jpg", i) for i in range(count)]
    with Pool(os.cpu_count() or 2) as pool:
        pool.map(_write_photo, jobs, chunksize=32)
    return [p for p, _ in jobs]


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN builds its kernels for a shape on first use
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def forward_rate(model: EmbeddingNet, batch: int, threads: int, channels_last: bool) -> float:
    """Images/s of the forward pass alone on a ready uint8 batch."""
    torch.set_num_threads(threads)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    size = model.config.image_size
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    x = x.contiguous(memory_format=fmt)
    repeats = max(5, 512 // batch)
    return batch / median_time(lambda: model(x), repeats)


def decode_ms(paths: list[Path], size: int, draft: bool) -> float:
    """Milliseconds to decode and resize one JPEG to size×size in one process."""
    sample = paths[:200]

    def run() -> None:
        for p in sample:
            to_array(load_image(p, draft_size=size if draft else None), size)

    return 1000 * median_time(run, 3) / len(sample)


PIPELINES = ((1, 32), (1, 64), (2, 32), (2, 64))  # (decode workers, batch size)


def pipeline_rates(model: EmbeddingNet, data: Path, settings=PIPELINES, rounds: int = 3) -> dict:
    """Images/s of extract.embed_records (decode workers + forward) per setting, and of the
    forward pass alone on as many ready images (1 thread, channels-last, batch 64).

    Settings take turns round by round, so each sees the same load from the machine's other
    users; the medians over rounds are reported.
    """
    records = scan_images(data)
    size = model.config.image_size
    ready = torch.randint(0, 256, (64, 3, size, size), dtype=torch.uint8)
    ready = ready.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward_only() -> None:
        torch.set_num_threads(1)
        for _ in range(len(records) // 64):
            model(ready)

    jobs = {("forward", 64): forward_only}
    for workers, batch in settings:
        jobs[(workers, batch)] = lambda w=workers, b=batch: embed_records(
            model, size, records, b, w, progress=False
        )
    times: dict = {key: [] for key in jobs}
    for _ in range(rounds):
        for key, job in jobs.items():
            start = time.perf_counter()
            job()
            times[key].append(time.perf_counter() - start)
    images = {key: len(records) // 64 * 64 if key[0] == "forward" else len(records) for key in jobs}
    return {key: images[key] / statistics.median(t) for key, t in times.items()}


def add_one_ms(model: EmbeddingNet, jpegs: list[bytes], collection: int) -> dict[str, float]:
    """Median ms of Searcher.add_images for one image into a `collection`-image index,
    and of Searcher.embed for the same image (decode + forward)."""
    from imgsim.search import Searcher
    from imgsim.store import open_store
    from imgsim.store.exports import build_collection

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((collection, model.config.embedding_dim))
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        names = [f"cat{i % 10}_{i:06d}.jpg" for i in range(collection)]
        store = open_store(work)
        build_collection(store, vectors, names, work / "dataset", "bench")
        searcher = Searcher(model, store, {"model_id": "bench"}, workdir=work)
        searcher.embed([jpegs[0]])
        embed, add = [], []
        for i, data in enumerate(jpegs):
            start = time.perf_counter()
            searcher.embed([data])
            embed.append(time.perf_counter() - start)
            start = time.perf_counter()
            searcher.add_images({f"new_{i:05d}.jpg": data})
            add.append(time.perf_counter() - start)
        info = store.info()
        kind = info.kind if info else "?"
        store.close()
    return {"embed": 1000 * statistics.median(embed), "add": 1000 * statistics.median(add),
            "kind": kind}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "imgsim-photos")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()

    load = os.getloadavg()[0]
    started = subprocess.run(["date"], capture_output=True, text=True).stdout.strip()
    paths = make_photos(args.dir / f"n{args.images}", args.images)
    data = paths[0].parent
    torch.manual_seed(0)
    model = EmbeddingNet(ModelConfig(widths=WIDTHS)).eval()
    size = model.config.image_size
    print(f"{len(paths)} JPEGs {Image.open(paths[0]).size} in {data}; input {size} px")

    forward = {}
    for threads in (1, 2):
        for layout in (False, True):
            for batch in (16, 32, 64, 128):
                rate = forward_rate(model, batch, threads, layout)
                forward[(threads, layout, batch)] = rate
                print(f"forward  threads={threads} channels_last={layout!s:5} "
                      f"batch={batch:3d}: {rate:7.0f} images/s", flush=True)  # fmt: skip
    torch.set_num_threads(2)

    decode = {d: decode_ms(paths, size, d) for d in (True, False)}
    print(f"decode+resize per JPEG: {decode[True]:.2f} ms with draft(), "
          f"{decode[False]:.2f} ms without")  # fmt: skip
    with Image.open(paths[0]) as im:
        im.draft("RGB", (size, size))
        drafted = im.size
    print(f"draft() decodes 800×600 at {drafted[0]}×{drafted[1]}")

    embed_records(model, size, scan_images(data)[:128], 64, 1, progress=False)  # warm-up
    pipeline = pipeline_rates(model, data)
    for key, rate in pipeline.items():
        print(f"pipeline {key}: {rate:7.0f} images/s")
    # At a larger input the forward pass outweighs decoding: the share the pipeline reaches.
    big = EmbeddingNet(ModelConfig(image_size=128, widths=WIDTHS)).eval()
    embed_records(big, 128, scan_images(data)[:64], 32, 1, progress=False)  # warm-up
    big_rates = pipeline_rates(big, data, settings=((1, 32),))
    print(f"128 px: pipeline {big_rates[(1, 32)]:.0f}, forward {big_rates[('forward', 64)]:.0f}")

    jpegs = _query_jpegs(paths, 20)
    torch.set_num_threads(1)  # one query image: a second thread only adds contention here
    add = add_one_ms(model, jpegs, 10_000)
    torch.set_num_threads(2)
    print(f"one image into a 10,000-image collection ({add['kind']}): add_images "
          f"{add['add']:.1f} ms, embed alone {add['embed']:.1f} ms")  # fmt: skip

    # The pipeline default: one decode worker, one forward thread (on 2 cores), batch 64.
    default = pipeline[(1, 64)]
    forward_same = pipeline[("forward", 64)]
    forward_best = max(forward.values())
    summary = {
        "started": started, "load": load, "forward": forward, "decode": decode,
        "drafted": drafted, "pipeline": pipeline, "add": add, "default": default, "big": big_rates,
        "forward_same": forward_same, "forward_best": forward_best,
        "count": len(paths),
    }  # fmt: skip
    print(
        f"pipeline (defaults) {default:.0f} images/s = {default / forward_same:.0%} of the "
        f"forward pass with the same thread (goal ≥ {GOAL_SHARE:.0%}), "
        f"{default / forward_best:.0%} of the best forward setting; goal ≥ "
        f"{GOAL_IMAGES_PER_S:.0f} images/s: {'met' if default >= GOAL_IMAGES_PER_S else 'NOT met'}"
    )
    if args.write_docs:
        write_section(SECTION, render(summary))
        print(f"wrote the '{SECTION}' section of {DOCS}")
    return 0


def _query_jpegs(paths: list[Path], count: int) -> list[bytes]:
    return [paths[-1 - i].read_bytes() for i in range(count)]


def render(s: dict) -> str:
    fwd, pipe = s["forward"], s["pipeline"]
    rows = "\n".join(
        f"| {t} | {'channels-last' if cl else 'contiguous'} | "
        + " | ".join(f"{fwd[(t, cl, b)]:.0f}" for b in (16, 32, 64, 128))
        + " |"
        for t in (1, 2)
        for cl in (False, True)
    )
    pipe_rows = "\n".join(
        f"| {w} | 1 | " + " | ".join(f"{pipe[(w, b)]:.0f}" for b in (32, 64)) + " |" for w in (1, 2)
    )
    share = s["default"] / s["forward_same"]
    return f"""{SECTION}

- Command: `.venv/bin/python benchmarks/extract_speed.py --write-docs`
- Machine: 2 CPU cores, 24 GiB RAM, no GPU, **shared with other jobs** (figures vary by
  ±30 % from run to run); Python {platform.python_version()}, torch {torch.__version__}
- Date: {s["started"]}; load average (1 min) when it began: {s["load"]:.2f}
- Data: {s["count"]} generated photo-like JPEGs, 800×600, quality 90 (blurred ellipses plus
  noise); model: `ModelConfig(widths=(32, 64, 128, 256))` (64 px input, 128-d), untrained
  weights. Medians of 3 or more repeats after a warm-up.

Pure forward pass on ready uint8 tensors (images/s, by batch size):

| torch threads | layout | 16 | 32 | 64 | 128 |
|---:|---|---:|---:|---:|---:|
{rows}

Two threads lose to one whenever another job holds a core (OpenMP threads wait for each
other), which is why extraction gives the forward pass one thread beside one decode worker.

Decoding one JPEG and resizing it to 64×64: {s["decode"][True]:.2f} ms with Pillow's
`draft()` (it decodes the 800×600 file at {s["drafted"][0]}×{s["drafted"][1]}, 1/8 scale),
{s["decode"][False]:.2f} ms without, so `data.load_image(draft_size=…)` is effective.

Pipeline `extract.embed_records` (decode workers + channels-last forward; images/s):

| decode workers | forward threads | batch 32 | batch 64 |
|---:|---:|---:|---:|
{pipe_rows}
| forward pass alone, ready tensors | 1 | | {pipe[("forward", 64)]:.0f} |

(The settings took turns over 3 rounds, so each saw the same load; medians.)

With the defaults (1 decode worker and 1 forward thread on 2 cores, batch 64) extraction runs
at **{s["default"]:.0f} images/s**: {share:.0%} of the forward pass alone with the same
thread (goal ≥ 80 %: {"met" if share >= GOAL_SHARE else "not met"}), and
{s["default"] / 7:.0f}× the original's ~7 images/s (1,000 in 2–3 minutes; goal ≥ 70 images/s:
{"met" if s["default"] >= GOAL_IMAGES_PER_S else "not met"}).

Why the share stays under 80 % at 64 px: the model needs only
{1000 / s["forward_same"]:.2f} ms per image on one core, and decoding an 800×600 JPEG takes
{s["decode"][True]:.2f} ms even at 1/8 scale (the entropy decoding of the whole file remains).
Decoding and the forward pass each need about a core, and this machine has two, shared with
other jobs during the run; the pipeline's ceiling is the slower of the two on a core of its
own. With a larger input the forward pass dominates and the pipeline keeps up: at
`image_size=128` (same rounds, 1 decode worker, batch 32) it ran at
{s["big"][(1, 32)]:.0f} images/s against {s["big"][("forward", 64)]:.0f} for the forward pass
alone ({s["big"][(1, 32)] / s["big"][("forward", 64)]:.0%}). Batch size: {batch_note(pipe)}

Adding one image to a 10,000-image collection (`Searcher.add_images`: decode, embed, save
the file with fsync, one SQLite commit, FAISS {s["add"]["kind"]} add; one torch thread; median
of 20): **{s["add"]["add"]:.1f} ms**, against {s["add"]["embed"]:.1f} ms to embed the same
image (the two alternate, so they saw the same load). An add is that embedding plus two
fsyncs (image file, SQLite commit); the FAISS file is rewritten only every 1,000 adds (or 1 %
of the index), so the cost does not grow with the collection.
"""


def batch_note(pipe: dict) -> str:
    """Which batch size the pipeline preferred, against the default of 64."""
    b32, b64 = pipe[(1, 32)], pipe[(1, 64)]
    if b32 > 1.1 * b64:
        return f"32 ran {b32 / b64 - 1:.0%} faster than the default 64 (`--batch-size 32`)."
    return "32 and 64 ran within 10 % of each other; the default stays 64."


if __name__ == "__main__":
    raise SystemExit(main())
