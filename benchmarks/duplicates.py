"""Recall and precision of duplicate finding on planted duplicates among distinct images.

Writes N distinct images (generated: random shapes on random gradients, 320-640 px, as
photos of different things would be; or Fashion-MNIST with --source fmnist), then plants a
duplicate of every k-th one, cycling through four edits: an exact copy, a JPEG re-save at
quality 30-60, a resize to 50-75 %, a crop of 2-5 % per side (re-saved at quality 90). Every
method then groups the folder; a pair counts as found when both images land in one group.
Precision: found pairs that are planted / all found pairs. Recall: planted pairs found.

The embedding method uses --model (a trained imgsim model file) or, without one, an
untrained network of the default shape (seed 0): random convolutional features.
Prints a markdown table; `--write-docs` replaces the "Duplicates" section of
docs/benchmarks.md. Not a test: the figures depend on the images.

    .venv/bin/python benchmarks/duplicates.py --images 2000 --write-docs
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imgsim.config import DuplicatesConfig  # noqa: E402
from imgsim.duplicates import Collection, find_groups  # noqa: E402
from imgsim.duplicates.finder import fingerprint_all  # noqa: E402

SECTION = "## Duplicates"
ABOUT = (
    "Distinct images are generated (random shapes on random gradients, 320-640 px), and a "
    "duplicate of every k-th is planted, cycling through an exact copy, a JPEG re-save at "
    "quality 30-60, a resize to 50-75 % and a crop of 2-5 % per side. A pair counts as found "
    "when the duplicate and its original land in one group; precision is over all the pairs "
    "the groups make.\n\nWhy generated images and not Fashion-MNIST: its 28-pixel grey "
    'silhouettes on black are so alike that "distinct" is not true. On 1,000 of them '
    "(`--source fmnist`, 2026-11-26) the hash method at 10 bits made 38,088 pairs that were "
    "not planted (precision 0.005), the embedding method at cosine 0.9 half a million: many "
    "are real near-copies, so precision cannot be measured there."
)
EDITS = ("exact", "jpeg", "resize", "crop")
HASH_THRESHOLDS = (4, 6, 8, 10, 12)
EMBEDDING_THRESHOLDS = (0.9, 0.93, 0.95, 0.97)


def distinct_image(seed: int) -> Image.Image:
    """A picture unlike any other seed's: a gradient and a dozen random shapes and colours."""
    rng = np.random.default_rng(seed)
    width, height = int(rng.integers(320, 641)), int(rng.integers(240, 481))
    ramp = np.linspace(0, 1, width)[None, :, None] * rng.integers(0, 256, 3)
    ramp = ramp + np.linspace(0, 1, height)[:, None, None] * rng.integers(0, 256, 3)
    im = Image.fromarray(np.clip(ramp / 2, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(20, width // 2)), int(rng.integers(20, height // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = (x0 - w // 2, y0 - h // 2, x0 + w // 2, y0 + h // 2)
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse(box, fill=colour)
        elif kind == 1:
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(box[0], box[3]), (x0, box[1]), (box[2], box[3])], fill=colour)
    return im


def fmnist_image(images: np.ndarray, i: int) -> Image.Image:
    return Image.fromarray(images[i], "L").convert("RGB")


def planted(original: bytes, edit: str, rng: np.random.Generator) -> tuple[bytes, str]:
    """A duplicate of `original` made by `edit`, and the file extension it takes."""
    if edit == "exact":
        return original, "jpg"
    im = Image.open(io.BytesIO(original)).convert("RGB")
    quality = 90
    if edit == "jpeg":
        quality = int(rng.integers(30, 61))
    elif edit == "resize":
        scale = float(rng.uniform(0.5, 0.75))
        im = im.resize((max(8, round(im.width * scale)), max(8, round(im.height * scale))))
    elif edit == "crop":
        dx, dy = (max(1, round(side * rng.uniform(0.02, 0.05))) for side in im.size)
        im = im.crop((dx, dy, im.width - dx, im.height - dy))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return out.getvalue(), "jpg"


def write_folder(
    folder: Path, count: int, every: int, source: str, seed: int = 0
) -> set[tuple[str, str, str]]:
    """N distinct images and the planted duplicates; returns (original, duplicate, edit)."""
    rng = np.random.default_rng(seed)
    fmnist = None
    if source == "fmnist":
        from imgsim.sample import load_fashion_mnist

        fmnist = load_fashion_mnist()[0]
    truth = set()
    edits = itertools.cycle(EDITS)
    for i in range(count):
        im = distinct_image(seed * 1_000_003 + i) if fmnist is None else fmnist_image(fmnist, i)
        buffer = io.BytesIO()
        im.save(buffer, "JPEG", quality=95)
        name = f"img_{i:06d}.jpg"
        (folder / name).write_bytes(buffer.getvalue())
        if i % every == 0:
            edit = next(edits)
            data, ext = planted(buffer.getvalue(), edit, rng)
            copy = f"dup_{i:06d}_{edit}.{ext}"
            (folder / copy).write_bytes(data)
            truth.add((name, copy, edit))
    return truth


def group_pairs(groups: list) -> set[frozenset[str]]:
    return {
        frozenset(pair)
        for g in groups
        for pair in itertools.combinations([m.name for m in g.members], 2)
    }


def score(groups: list, truth: set[tuple[str, str, str]]) -> dict:
    found = group_pairs(groups)
    planted_pairs = {frozenset((a, b)): edit for a, b, edit in truth}
    hits = found & set(planted_pairs)
    by_edit = Counter(planted_pairs[p] for p in hits)
    totals = Counter(planted_pairs.values())
    return {
        "precision": len(hits) / len(found) if found else 1.0,
        "recall": len(hits) / len(planted_pairs) if planted_pairs else 1.0,
        "false_pairs": len(found - set(planted_pairs)),
        **{f"recall_{e}": by_edit[e] / totals[e] if totals[e] else 1.0 for e in EDITS},
    }


def embed_folder(folder: Path, names: list[str], model_path: str | None) -> np.ndarray:
    import torch

    from imgsim.config import DEFAULT_IMAGE_SIZE, ModelConfig
    from imgsim.data import ImageRecord
    from imgsim.embedder import Embedder
    from imgsim.extract import embed_records
    from imgsim.model import EmbeddingNet, load_model

    if model_path:
        model, _ = load_model(model_path)
    else:
        torch.manual_seed(0)
        model = EmbeddingNet(ModelConfig(image_size=DEFAULT_IMAGE_SIZE)).eval()
    embedder = Embedder.from_model(model, "torch", image_size=model.config.image_size)
    records = [ImageRecord(n, None, folder / n) for n in names]
    vectors, rows = embed_records(embedder, embedder.image_size, records, progress=False)
    if len(rows) != len(names):
        raise SystemExit("some images could not be embedded")
    return vectors


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        truth = write_folder(folder, args.images, args.every, args.source)
        started = time.perf_counter()
        prints, skipped = fingerprint_all(_records(folder), args.workers)
        hash_seconds = time.perf_counter() - started
        if skipped:
            raise SystemExit(f"unreadable planted images: {skipped[:3]}")
        names = sorted(prints)
        started = time.perf_counter()
        vectors = embed_folder(folder, names, args.model)
        embed_seconds = time.perf_counter() - started
        base = Collection(
            names,
            [folder / n for n in names],
            [prints[n].sha256 for n in names],
            [prints[n].size for n in names],
            prints,
            vectors,
        )
        cases = [("hash", t, 0.0) for t in HASH_THRESHOLDS]
        cases += [("embedding", 0, e) for e in EMBEDDING_THRESHOLDS]
        cases += [("both", args.both_bits, e) for e in EMBEDDING_THRESHOLDS]
        for method, bits, cosine in cases:
            cfg = DuplicatesConfig(method=method, threshold=bits, embedding_threshold=cosine)
            started = time.perf_counter()
            groups = find_groups(dataclasses.replace(base), cfg)
            rows.append(
                {
                    "method": method,
                    "threshold": _threshold(method, bits, cosine),
                    "group_seconds": time.perf_counter() - started,
                    **score(groups, truth),
                }
            )
    print(
        f"{args.images} distinct {args.source} images, {len(truth)} planted duplicates; "
        f"decode+hash {hash_seconds:.1f}s, embed {embed_seconds:.1f}s",
        file=sys.stderr,
    )
    return rows


def _records(folder: Path) -> list:
    from imgsim.data import scan_images

    return scan_images(folder)


def _threshold(method: str, bits: int, cosine: float) -> str:
    if method == "hash":
        return f"≤ {bits} bits"
    if method == "embedding":
        return f"cos ≥ {cosine}"
    return f"≤ {bits} bits or cos ≥ {cosine}"


def scale(count: int, threshold: int, cosine: float) -> str:
    """Seconds to find the pairs among `count` hashes and vectors, without decoding.

    Hashes: random 64-bit values with a planted near copy of every 10th (a few bits flipped);
    vectors: random 128-d with a near copy of every 10th. Decoding is left out: it is per
    image (the `decode+hash` figure above times count), the comparison is what could grow
    with count squared.
    """
    from imgsim.duplicates.groups import stars
    from imgsim.duplicates.neighbours import centred, pairs_above, pairs_within

    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**64, count, dtype=np.uint64, endpoint=False)
    flips = rng.integers(0, 64, (count // 10, 3))
    noise = np.bitwise_or.reduce(np.left_shift(np.uint64(1), flips.astype(np.uint64)), axis=1)
    hashes[1::10][: len(noise)] = hashes[0::10][: len(noise)] ^ noise
    started = time.perf_counter()
    pairs, _ = pairs_within(hashes, threshold)
    groups = stars(range(count), [pairs])
    hash_seconds = time.perf_counter() - started
    vectors = rng.normal(size=(count, 128)).astype(np.float32)
    vectors[1::10] = vectors[0::10][: len(vectors[1::10])] + 0.05 * rng.normal(
        size=vectors[1::10].shape
    )
    started = time.perf_counter()
    found, _ = pairs_above(centred(vectors), cosine)
    vector_groups = stars(range(count), [found])
    vector_seconds = time.perf_counter() - started
    head = (
        f"| items | hash pairs ≤ {threshold} bits + groups | groups "
        f"| vector pairs cos ≥ {cosine} + groups | groups |\n|---:|---:|---:|---:|---:|\n"
    )
    return head + (
        f"| {count:,} | {hash_seconds:.1f} s | {len(groups):,} | {vector_seconds:.1f} s "
        f"| {len(vector_groups):,} |\n"
    )


def camera_like(seed: int, rng: np.random.Generator) -> Image.Image:
    """A 4000x3000 picture with sensor-like noise: as a camera's JPEG, about 4 MB."""
    pixels = np.asarray(distinct_image(seed).resize((4000, 3000)), dtype=np.float32)
    pixels += rng.normal(0, 12, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def decode_cost(count: int, small: int = 200, large: int = 10) -> str:
    """CPU time per image to read, decode (reduced) and fingerprint, and `count` images' time.

    Measured in this process (CPU time, so a busy machine changes it little) on the generated
    320-640 px JPEGs and on 12-megapixel camera-like ones; decoding is per image, so `count`
    images take count times as long, shared among the default worker processes.
    """
    from imgsim.data import ImageRecord, default_workers
    from imgsim.duplicates.fingerprint import fingerprint_records

    workers, rng, rows = default_workers(), np.random.default_rng(0), []
    with tempfile.TemporaryDirectory() as tmp:
        for label, n, make in (
            ("generated, 320-640 px", small, distinct_image),
            ("camera-like, 4000x3000", large, lambda i: camera_like(i, rng)),
        ):
            records = []
            for i in range(n):
                path = Path(tmp) / f"{n}_{i}.jpg"
                make(i).save(path, "JPEG", quality=90)
                records.append(ImageRecord(path.name, None, path))
            fingerprint_records(records[:2])  # imports and first-call costs out of the timing
            started = time.process_time()
            done, _ = fingerprint_records(records)
            ms = 1000 * (time.process_time() - started) / max(1, len(done))
            size = sum(r.path.stat().st_size for r in records) / n / 1e6
            minutes = count * ms / 1000 / 60 / workers
            rows.append(f"| {label} | {size:.2f} MB | {ms:.1f} | {minutes:.1f} min |\n")
    return (
        f"Decoding ({time.strftime('%Y-%m-%d %H:%M %Z')}, load average "
        f"{os.getloadavg()[0]:.2f}): CPU time per image to read, decode reduced and "
        f"fingerprint it in one process, and what {count:,} such images take on {workers} "
        "worker processes (the default: one per core, at most 8), before the seconds of the "
        "pairs above:\n\n"
        f"| JPEG | file | ms CPU per image | {count:,} images |\n|---|---:|---:|---:|\n"
        + "".join(rows)
    )


def table(rows: list[dict]) -> str:
    head = (
        "| method | threshold | precision | recall | exact | JPEG re-save | resize | crop "
        "| false pairs |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['method']} | {r['threshold']} | {r['precision']:.3f} | {r['recall']:.3f} "
        f"| {r['recall_exact']:.2f} | {r['recall_jpeg']:.2f} | {r['recall_resize']:.2f} "
        f"| {r['recall_crop']:.2f} | {r['false_pairs']} |\n"
        for r in rows
    )
    return head + body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="distinct images (2000)")
    parser.add_argument("--every", type=int, default=5, help="plant a duplicate of every k-th")
    parser.add_argument("--source", choices=("generated", "fmnist"), default="generated")
    parser.add_argument("--model", help="trained imgsim model for the embedding method")
    parser.add_argument("--both-bits", type=int, default=10, help="hash bits of method both")
    parser.add_argument("--workers", type=int, default=0, help="decode processes (0 = cores)")
    parser.add_argument(
        "--scale", type=int, default=100_000, help="hashes and vectors for the timing (100000)"
    )
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    rows = run(args)
    text = table(rows)
    print(text)
    timing = scale(args.scale, DuplicatesConfig.threshold, DuplicatesConfig.embedding_threshold)
    print(timing)
    decoding = decode_cost(args.scale)
    print(decoding)
    if args.write_docs:
        from docs_section import write_section

        model = f"`{args.model}`" if args.model else "an untrained network (seed 0)"
        section = (
            f"{SECTION}\n\n`benchmarks/duplicates.py --images {args.images} --every "
            f"{args.every} --source {args.source}` ({os.cpu_count()} cores, {platform.machine()}, "
            f"load average {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M %Z')}); "
            f"embeddings from {model}. {ABOUT}\n\n"
            + text
            + "\nFinding the pairs and groups without decoding (random hashes and vectors, a "
            "near copy of every 10th; `--scale`). Decoding is per image (the `decode+hash` "
            "time the script prints), in one worker process per core:\n\n"
            + timing
            + "\n"
            + decoding
        )
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
