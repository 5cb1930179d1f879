"""Extraction speed: the decode-and-embed workers against all cores only decoding, same run.

Generates 2,000 photo-like 800×600 JPEGs (cached in --dir), then measures with untrained
weights (speed does not depend on them):

1. pure forward throughput on ready uint8 tensors, per batch size, thread count and layout;
2. JPEG decoding per image with and without Pillow's draft() (data.load_image's draft_size);
3. the goal of issue 13: `extract.embed_records` (identical worker processes, one per core,
   that each decode and embed with a one-thread runtime) with the torch and the onnx runtime,
   against the same number of processes only decoding the same JPEGs to the model's size
   (the rate the machine can decode), taking turns round by round; goal ≥ 80 % at 64 px;
4. adding one image to a 10,000-image collection (`CollectionEditor.add_images`) against
   embedding it.

`--keep-up-only` runs step 3 alone (quick). `--pretrained` runs step 3 alone with the bundled
ImageNet network (EfficientNet-Lite0, as `extract --pretrained` writes it) at its input size
(autosize.PRETRAINED_SIZE, 160 px), in a section of its own. `--write-docs` replaces the
"Extraction speed" section of docs/benchmarks.md. Run it alone on the machine. Not a test.

    .venv/bin/python benchmarks/extract_speed.py --write-docs
    .venv/bin/python benchmarks/extract_speed.py --pretrained --write-docs
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

from imgsim.core.config import DEFAULT_IMAGE_SIZE, ModelConfig  # noqa: E402
from imgsim.train.autosize import PRETRAINED_SIZE  # noqa: E402

# The network these figures were measured with (the default widths until the quality work).
WIDTHS = (32, 64, 128, 256)
from cputime import family_cpu  # noqa: E402
from docs_section import write_section  # noqa: E402

from imgsim.images.data import default_workers, load_image, scan_images, to_array  # noqa: E402
from imgsim.model.network import EmbeddingNet  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Extraction speed"
PRETRAINED_SECTION = "## Extraction speed of the pretrained network (torch against onnx)"


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


GOAL_KEEP_UP = 0.8  # extraction should run at ≥ 80 % of the all-cores decode rate


def _decode_chunk(records: list, size: int) -> int:
    """Decode a chunk to size×size arrays, as a worker does, without embedding; the count."""
    from imgsim.images.data import decode_records

    return len(decode_records(records, size)[0])


def keep_up_rates(
    data: Path, image_size: int, workers: int, batch: int = 64, rounds: int = 3,
    pretrained: bool = False,
) -> dict[str, float]:  # fmt: skip
    """Images/s of `workers` processes only decoding, and of the extraction workers per runtime.

    The decode-only processes are started (and warmed) before timing: the rate the machine
    can decode. Extraction (`embed_pool.iter_embedded`, what `embed_records` runs) is timed
    whole, its workers' start-up included ("runtime"), and from its first chunk on
    ("runtime, running"). The settings take turns over `rounds`; medians.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from imgsim.embed.embed_pool import iter_embedded
    from imgsim.model.embedder import Embedder
    from imgsim.model.network import pretrained_model

    records = scan_images(data)
    chunks = [records[i : i + batch] for i in range(0, len(records), batch)]
    torch.manual_seed(0)
    if pretrained:
        model = pretrained_model(image_size)
    else:
        model = EmbeddingNet(ModelConfig(image_size=image_size)).eval()
    embedders = {rt: Embedder.from_model(model, rt) for rt in ("torch", "onnx")}
    spawn = multiprocessing.get_context("spawn")
    times: dict[str, list[float]] = {}
    with ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        list(pool.map(_decode_chunk, chunks[:workers], [image_size] * workers))  # warm-up
        for _ in range(rounds):
            start, cpu = time.perf_counter(), family_cpu()
            decoded = sum(pool.map(_decode_chunk, chunks, [image_size] * len(chunks)))
            times.setdefault("decode only", []).append(len(records) / (time.perf_counter() - start))
            times.setdefault("cpu ms, decode only", []).append(cpu_ms(cpu, len(records)))
            assert decoded == len(records)
            for runtime, embedder in embedders.items():
                start, cpu = time.perf_counter(), family_cpu()
                first, done = None, 0
                for chunk in iter_embedded(embedder, records, batch, workers):
                    if first is None:
                        first, done = time.perf_counter(), -len(chunk.rows)
                    done += len(chunk.rows)
                end = time.perf_counter()
                times.setdefault(runtime, []).append(len(records) / (end - start))
                times.setdefault(f"{runtime}, running", []).append(done / (end - first))
                times.setdefault(f"cpu ms, {runtime}", []).append(cpu_ms(cpu, len(records)))
    return {key: statistics.median(rates) for key, rates in times.items()}


def cpu_ms(since: float, images: int) -> float:
    """CPU ms per image of this process and its workers since `since` (a family_cpu reading):
    the start-up of workers started meanwhile included."""
    return (family_cpu() - since) / images * 1000


KEEP_UP_CHILD = """
import json, sys
sys.path[:0] = [{bench!r}, {src!r}]
import extract_speed
from pathlib import Path
print(json.dumps(extract_speed.keep_up_rates(
    Path({data!r}), {size}, {workers}, {batch}, {rounds}, {pretrained!r})))
"""


def keep_up_in_child(
    data: Path, size: int, workers: int, batch: int, rounds: int, pretrained: bool = False
) -> dict:
    """keep_up_rates in a `python -c` process, whose workers start as the `imgsim` command's do.

    A worker started with "spawn" imports its parent's main script again; this script's
    imports (torch, …) would slow every worker's start-up, the `imgsim` command's do not.
    """
    import json

    code = KEEP_UP_CHILD.format(
        bench=str(Path(__file__).resolve().parent), src=str(ROOT / "src"), data=str(data),
        size=size, workers=workers, batch=batch, rounds=rounds, pretrained=pretrained,
    )  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def add_one_ms(model: EmbeddingNet, jpegs: list[bytes], collection: int) -> dict[str, float]:
    """Median ms of CollectionEditor.add_images for one image into a `collection`-image index,
    and of Searcher.embed for the same image (decode + forward)."""
    from imgsim.search.editor import CollectionEditor
    from imgsim.search.searcher import Searcher
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
        editor = CollectionEditor(searcher)
        searcher.embed([jpegs[0]])
        embed, add = [], []
        for i, data in enumerate(jpegs):
            start = time.perf_counter()
            searcher.embed([data])
            embed.append(time.perf_counter() - start)
            start = time.perf_counter()
            editor.add_images({f"new_{i:05d}.jpg": data})
            add.append(time.perf_counter() - start)
        info = store.info()
        kind = info.kind if info else "?"
        store.close()
    return {"embed": 1000 * statistics.median(embed), "add": 1000 * statistics.median(add),
            "kind": kind}  # fmt: skip


def keep_up_table(rates: dict[str, float], workers: int, size: int, goal: bool = True) -> str:
    """The markdown table of the issue-13 goal: extraction per runtime against decoding alone.

    Beside the rates, CPU ms per image summed over all processes (workers' start-up included):
    unlike rates, valid when other jobs share the machine. Decoding's CPU over extraction's
    is the share the rates would show on cores of their own.
    """
    base, base_cpu = rates["decode only"], rates["cpu ms, decode only"]
    rows = [
        f"| {workers} processes only decoding to {size}×{size} | {base:.0f} | 100 % | "
        f"{base_cpu:.2f} | 100 % |"
    ]
    for runtime in ("torch", "onnx"):
        cpu = rates[f"cpu ms, {runtime}"]
        for key, when in ((runtime, "whole run"), (f"{runtime}, running", "from 1st chunk")):
            share = rates[key] / base
            verdict = "met" if share >= GOAL_KEEP_UP else "not met"
            # The 80 % goal is issue 13's, for the scratch network at 64 px only.
            verdict = f" (goal ≥ {GOAL_KEEP_UP:.0%}: {verdict})" if goal else ""
            by_cpu = f"{cpu:.2f} | {base_cpu / cpu:.0%}" if when == "whole run" else " | "
            rows.append(
                f"| extraction, {workers} workers decoding and embedding, {runtime}, {when} | "
                f"{rates[key]:.0f} | {share:.0%}{verdict} | "
                f"{by_cpu} |"
            )
    header = (
        "| setting | images/s | share of decoding alone | CPU ms/image (all processes) | "
        "decoding's CPU share |\n|---|---:|---:|---:|---:|\n"
    )
    return header + "\n".join(rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "imgsim-photos")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=0, help="processes (0: one per core)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument("--keep-up-only", action="store_true", help="only the issue-13 table")
    parser.add_argument(
        "--pretrained", action="store_true",
        help="only that table, with the bundled ImageNet network at its input size",
    )  # fmt: skip
    parser.add_argument("--write-docs", action="store_true")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    load = os.getloadavg()[0]
    started = subprocess.run(["date"], capture_output=True, text=True).stdout.strip()
    paths = make_photos(args.dir / f"n{args.images}", args.images)
    data = paths[0].parent
    workers = args.workers or default_workers()
    size = PRETRAINED_SIZE if args.pretrained else DEFAULT_IMAGE_SIZE
    print(f"{len(paths)} JPEGs {Image.open(paths[0]).size} in {data}; input {size} px")
    keep_up = keep_up_in_child(data, size, workers, 64, args.rounds, args.pretrained)
    print(keep_up_table(keep_up, workers, size, not args.pretrained), flush=True)
    if args.pretrained:
        if args.write_docs:
            section = pretrained_section(keep_up, workers, size, len(paths), (started, load))
            write_section(PRETRAINED_SECTION, section)
            print(f"wrote the '{PRETRAINED_SECTION}' section of {DOCS}")
        return 0
    if args.keep_up_only:
        return 0

    torch.manual_seed(0)
    model = EmbeddingNet(ModelConfig(image_size=DEFAULT_IMAGE_SIZE, widths=WIDTHS)).eval()
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

    jpegs = _query_jpegs(paths, 20)
    torch.set_num_threads(1)  # one query image: a second thread only adds contention here
    add = add_one_ms(model, jpegs, 10_000)
    torch.set_num_threads(2)
    print(f"one image into a 10,000-image collection ({add['kind']}): add_images "
          f"{add['add']:.1f} ms, embed alone {add['embed']:.1f} ms")  # fmt: skip
    summary = {
        "started": started, "load": load, "forward": forward, "decode": decode,
        "drafted": drafted, "add": add, "count": len(paths), "keep_up": keep_up,
        "workers": workers, "size": size, "rounds": args.rounds,
    }  # fmt: skip
    if args.write_docs:
        write_section(SECTION, render(summary))
        print(f"wrote the '{SECTION}' section of {DOCS}")
    return 0


def pretrained_section(
    rates: dict[str, float], workers: int, size: int, count: int, when: tuple[str, float]
) -> str:
    """The docs section of `--pretrained`: the keep-up table with the bundled network."""
    started, load = when
    command = " ".join(["benchmarks/extract_speed.py", *sys.argv[1:]])
    return f"""{PRETRAINED_SECTION}

- Command: `.venv/bin/python {command}`
- Machine: {os.cpu_count()} CPU cores, {platform.machine()}; load average (1 min) when it began:
  {load:.2f}; date: {started}
- {count:,} photo-like 800×600 JPEGs; the bundled ImageNet network (EfficientNet-Lite0, as
  `imgsim extract --pretrained` writes it) at {size} px; `extract.embed_records`'s {workers}
  worker processes, each decoding and embedding with a one-thread runtime, against as many
  processes only decoding; the settings take turns, medians.

{keep_up_table(rates, workers, size, goal=False)}
"""


def _query_jpegs(paths: list[Path], count: int) -> list[bytes]:
    return [paths[-1 - i].read_bytes() for i in range(count)]


def render(s: dict) -> str:
    fwd = s["forward"]
    rows = "\n".join(
        f"| {t} | {'channels-last' if cl else 'contiguous'} | "
        + " | ".join(f"{fwd[(t, cl, b)]:.0f}" for b in (16, 32, 64, 128))
        + " |"
        for t in (1, 2)
        for cl in (False, True)
    )
    command = " ".join(["benchmarks/extract_speed.py", *sys.argv[1:]])
    return f"""{SECTION}

- Command: `.venv/bin/python {command}`
- Machine: {os.cpu_count()} CPU cores, no GPU; Python {platform.python_version()},
  torch {torch.__version__}
- Date: {s["started"]}; load average (1 min) when it began: {s["load"]:.2f}
- Data: {s["count"]} generated photo-like JPEGs, 800×600, quality 90 (blurred ellipses plus
  noise); untrained weights.

Extraction against decoding alone (issue 13), {s["size"]} px, the default `ModelConfig`,
batch 64; the settings took turns over {s["rounds"]} rounds (medians). Decoding alone runs
in processes started before timing; extraction (`embed_pool.iter_embedded`, what
`extract.embed_records` runs) is timed whole, its workers' start-up included, and from its
first chunk on. It runs in a `python -c` child, so its workers start as the `imgsim`
command's do:

{keep_up_table(s["keep_up"], s["workers"], s["size"])}

Each worker decodes its chunk straight to {s["size"]}×{s["size"]} (JPEG DCT scaling: the
800×600 file is decoded at {s["drafted"][0]}×{s["drafted"][1]}) and embeds it with a
one-thread runtime; the parent only collects the chunks in order.

Pure forward pass on ready uint8 tensors, `ModelConfig(widths=(32, 64, 128, 256))` (images/s,
by batch size):

| torch threads | layout | 16 | 32 | 64 | 128 |
|---:|---|---:|---:|---:|---:|
{rows}

Decoding one JPEG and resizing it to {s["size"]}×{s["size"]}: {s["decode"][True]:.2f} ms with
Pillow's `draft()`, {s["decode"][False]:.2f} ms without.

Adding one image to a 10,000-image collection (`CollectionEditor.add_images`: decode, embed, save
the file with fsync, one SQLite commit, FAISS {s["add"]["kind"]} add; one torch thread; median
of 20): **{s["add"]["add"]:.1f} ms**, against {s["add"]["embed"]:.1f} ms to embed the same
image (the two alternate, so they saw the same load).
"""


if __name__ == "__main__":
    raise SystemExit(main())
