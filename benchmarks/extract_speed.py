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


def pipeline_rate(model: EmbeddingNet, data: Path, batch: int, workers: int) -> float:
    """Images/s of extract.embed_records over the folder (decode workers + forward)."""
    records = scan_images(data)
    size = model.config.image_size
    seconds = median_time(
        lambda: embed_records(model, size, records, batch, workers, progress=False), 3
    )
    return len(records) / seconds


def add_one_ms(model: EmbeddingNet, jpegs: list[bytes], collection: int) -> dict[str, float]:
    """Median ms of Searcher.add_images for one image into a `collection`-image index,
    and of Searcher.embed for the same image (decode + forward)."""
    from imgsim.index import load_index, save_index
    from imgsim.search import Searcher

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((collection, model.config.embedding_dim))
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        names = [f"cat{i % 10}_{i:06d}.jpg" for i in range(collection)]
        save_index(work, vectors, names, str(work / "dataset"), "bench")
        searcher = Searcher(model, load_index(work), {"model_id": "bench"})
        searcher.embed([jpegs[0]])
        embed, add = [], []
        for i, data in enumerate(jpegs):
            start = time.perf_counter()
            searcher.embed([data])
            embed.append(time.perf_counter() - start)
            start = time.perf_counter()
            searcher.add_images({f"new_{i:05d}.jpg": data})
            add.append(time.perf_counter() - start)
        kind = searcher.index.kind if searcher.index else "?"
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
    model = EmbeddingNet(ModelConfig()).eval()
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

    pipeline = {}
    for workers in (1, 2):
        for batch in (32, 64, 128):
            rate = pipeline_rate(model, data, batch, workers)
            pipeline[(workers, batch)] = rate
            print(f"pipeline workers={workers} batch={batch:3d}: {rate:7.0f} images/s", flush=True)

    jpegs = [buf for buf in _query_jpegs(paths, 20)]
    add = add_one_ms(model, jpegs, 10_000)
    print(f"one image into a 10,000-image collection ({add['kind']}): add_images "
          f"{add['add']:.1f} ms, embed alone {add['embed']:.1f} ms")  # fmt: skip

    # The pipeline default: one decode worker, one forward thread (on 2 cores), batch 64.
    default = pipeline[(1, 64)]
    forward_same = forward[(1, True, 64)]
    forward_best = max(forward.values())
    summary = {
        "started": started, "load": load, "forward": forward, "decode": decode,
        "drafted": drafted, "pipeline": pipeline, "add": add, "default": default,
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
        write_docs(render(summary))
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
        f"| {w} | {max(1, 2 - w)} | "
        + " | ".join(f"{pipe[(w, b)]:.0f}" for b in (32, 64, 128))
        + " |"
        for w in (1, 2)
    )
    share = s["default"] / s["forward_same"]
    return f"""{SECTION}

- Command: `.venv/bin/python benchmarks/extract_speed.py --write-docs`
- Machine: 2 CPU cores, 24 GiB RAM, no GPU, **shared with other jobs** (figures vary by
  ±30 % from run to run); Python {platform.python_version()}, torch {torch.__version__}
- Date: {s["started"]}; load average (1 min) when it began: {s["load"]:.2f}
- Data: {s["count"]} generated photo-like JPEGs, 800×600, quality 90 (blurred ellipses plus
  noise); model: default `ModelConfig` (64 px input, 128-d), untrained weights. Medians of
  3 or more repeats after a warm-up.

Pure forward pass on ready uint8 tensors (images/s, by batch size):

| torch threads | layout | 16 | 32 | 64 | 128 |
|---:|---|---:|---:|---:|---:|
{rows}

Decoding one JPEG and resizing it to 64×64: {s["decode"][True]:.2f} ms with Pillow's
`draft()` (it decodes the 800×600 file at {s["drafted"][0]}×{s["drafted"][1]}, 1/8 scale),
{s["decode"][False]:.2f} ms without, so `data.load_image(draft_size=…)` is effective.

Pipeline `extract.embed_records` (decode workers + channels-last forward; images/s):

| decode workers | forward threads | batch 32 | batch 64 | batch 128 |
|---:|---:|---:|---:|---:|
{pipe_rows}

With the defaults (1 decode worker and 1 forward thread on 2 cores, batch 64) extraction runs
at **{s["default"]:.0f} images/s**: {share:.0%} of the forward pass alone with the same
thread (goal ≥ 80 %: {"met" if share >= GOAL_SHARE else "not met"}), and
{s["default"] / GOAL_IMAGES_PER_S * 7:.0f}× the original's ~7 images/s (1,000 in 2–3 minutes;
goal ≥ 70 images/s: {"met" if s["default"] >= GOAL_IMAGES_PER_S else "not met"}).

Adding one image to a 10,000-image collection (`Searcher.add_images`: decode, embed, save
the file, one SQLite commit, FAISS {s["add"]["kind"]} add; median of 20):
**{s["add"]["add"]:.1f} ms**, against {s["add"]["embed"]:.1f} ms to embed the same image.
ONNX Runtime was not tried: the forward pass already dominates only at batch sizes the
pipeline keeps up with, and it would add a dependency.
"""


def write_docs(section: str) -> None:
    """Replace (or append) this benchmark's section of docs/benchmarks.md."""
    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Benchmarks\n"
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    DOCS.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
