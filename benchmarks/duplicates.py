"""Precision and recall of duplicate finding on planted copies of distinct real images.

Copies every PNG of a real colour folder (benchmarks/colour_folder.py --icons: 2,261 clip
art images, photos and icons in 25 categories, made by people, look-alikes included: flags,
road signs, five icon themes' document, device and app icons...) and plants one copy of each,
cycling through TRANSFORMS: the same bytes, the same pixels in another PNG, a JPEG re-save at
quality 30-60, half size, an 8 % crop (4 % off each side), a turn by 90, 180 or 270 degrees, a
mirror image, and a colour change (brightness 0.85-1.15, saturation 0.8-1.2); those after the
first two are saved as JPEG (quality 90). Originals that are one artwork (the same pixels, or
one another's turn or mirror: `same_artwork`) are one picture, so all but one are left out and
named: a copy of one would be a true copy of the others.
Every setting then groups the folder. A planted pair counts as found when original and copy
land in one group; precision is over every pair the groups make. Beside the confirmed method
(the default: hashes of 8 views and embedding neighbours propose; the pretrained network's
embedding in the matching view, the aligned 32-px thumbnails' correlation, their worst 64-px
region and a second look at up to 128 px confirm), the plain pHash at 10 bits, the default
before.

Prints markdown tables; `--write-docs` replaces the "Duplicates" section of
docs/benchmarks.md. Not a test: the figures depend on the images.

    .venv/bin/python benchmarks/colour_folder.py /tmp/colour_dups --per-category 300 --queries 0 \
        --icons
    .venv/bin/python benchmarks/duplicates.py /tmp/colour_dups --write-docs
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import itertools
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imgsim.core.config import DuplicatesConfig  # noqa: E402
from imgsim.core.errors import UnreadableImageError  # noqa: E402
from imgsim.explore.duplicates import (  # noqa: E402
    Collection,
    confirm,
    find_groups,
)
from imgsim.explore.duplicates import views as dup_views  # noqa: E402
from imgsim.explore.duplicates.finder import fingerprint_all  # noqa: E402
from imgsim.explore.duplicates.groups import SAME  # noqa: E402

SECTION = "## Duplicates"
TRANSFORMS = ("exact", "pixels", "jpeg", "half", "crop", "turn", "mirror", "colour")
BASELINE = ("hash", 10, 0.0, 0.0)  # the plain pHash at 10 bits: the default before
HASH_BITS = (12,)  # the confirmed method's proposal: hash bits, any of the 8 views
COSINES = (0.8,)  # its confirmation: cosine at least
PIXELS = (0.97,)  # and aligned thumbnails' correlation at least
# And then (views): their worst region's difference at most, at 64 px; the second look's at
# most (decoded again, up to 128 px); the cosine slack where hashes are close (confirm).
CHECKS = (
    (math.inf, math.inf, confirm.COSINE_SLACK),
    (dup_views.MAX_DETAIL, math.inf, confirm.COSINE_SLACK),
    (dup_views.MAX_DETAIL, dup_views.MAX_LOOK_DETAIL, 0.0),
    (dup_views.MAX_DETAIL, dup_views.MAX_LOOK_DETAIL, confirm.COSINE_SLACK),
)
# Originals that are one artwork (benchmark ground truth, same_artwork): hashes of the 8 views
# within ARTWORK_BITS propose, and at ARTWORK_SIDE² no pixel differs by more than the tolerance.
ARTWORK_BITS = 10
ARTWORK_SIDE = 64
ARTWORK_TOLERANCE = 24


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


def planted(path: Path, transform: str, rng: np.random.Generator) -> tuple[bytes, str]:
    """A copy of the image at `path` made by `transform`, and the file extension it takes."""
    from imgsim.images.data import load_image

    if transform == "exact":
        return path.read_bytes(), "png"
    if transform == "pixels":  # the same pixels, other bytes: another PNG compression
        out = io.BytesIO()
        with Image.open(path) as im:
            im.save(out, "PNG", compress_level=1)
        return out.getvalue(), "png"
    im, quality = load_image(path), 90  # RGB, transparency on white as imgsim sees it
    if transform == "jpeg":
        quality = int(rng.integers(30, 61))
    elif transform == "half":
        im = im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.Resampling.LANCZOS)
    elif transform == "crop":
        dx, dy = round(im.width * 0.04), round(im.height * 0.04)
        im = im.crop((dx, dy, im.width - dx, im.height - dy))
    elif transform == "turn":
        im = im.rotate(int(rng.choice([90, 180, 270])), expand=True)
    elif transform == "mirror":
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    elif transform == "colour":
        im = ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.85, 1.15)))
        im = ImageEnhance.Color(im).enhance(float(rng.uniform(0.8, 1.2)))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return out.getvalue(), "jpg"


def write_folder(source: Path, folder: Path, seed: int = 0) -> set[tuple[str, str, str]]:
    """The originals of `source` and a planted copy of each; (original, copy, transform)."""
    rng = np.random.default_rng(seed)
    from imgsim.images.data import scan_images

    records = scan_images(source / "index")
    prints, skipped = fingerprint_all(records, 0)  # beyond the finder's decode budget: left out
    unreadable = [name for name, _ in skipped]
    same = same_artwork([r for r in records if r.name in prints], prints)
    if same:
        print(
            f"left out {len(same)} originals that are another's artwork, as it is or turned or "
            "mirrored (a planted copy of either would be a copy of both): "
            + ", ".join(f"{a} (= {b})" for a, b in sorted(same.items())),
            file=sys.stderr,
        )
    originals = sorted(r.path for r in records if r.name in prints and r.name not in same)
    truth = set()
    for path in originals:
        name = path.relative_to(source / "index").as_posix()
        transform = TRANSFORMS[(len(truth) + seed) % len(TRANSFORMS)]  # another seed: others
        try:
            data, ext = planted(path, transform, rng)
        except UnreadableImageError:  # imgsim skips it too (e.g. beyond the decode budget)
            unreadable.append(name)
            continue
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / name)
        copy = f"copies/{path.stem}_{transform}.{ext}"
        (folder / copy).parent.mkdir(exist_ok=True)
        (folder / copy).write_bytes(data)
        truth.add((name, copy, transform))
    if unreadable:
        print(
            f"left out {len(unreadable)} originals imgsim cannot read: {unreadable}",
            file=sys.stderr,
        )
    return truth


def artwork_views(path: Path) -> tuple[np.ndarray, float]:
    """The image as imgsim sees it (RGB, transparency on white) in each of the 8 views, turned
    and mirrored before it is reduced to ARTWORK_SIDE² (so the reduction's pixel grid cannot
    tell a mirror from the original), and its width / height."""
    from imgsim.explore.duplicates.views import dihedral_view
    from imgsim.images.data import load_image

    pixels = np.asarray(load_image(path))
    side = (ARTWORK_SIDE, ARTWORK_SIDE)
    views = [
        np.asarray(Image.fromarray(np.ascontiguousarray(dihedral_view(pixels, view))).resize(
            side, Image.Resampling.BOX))
        for view in range(8)
    ]  # fmt: skip
    return np.stack(views), pixels.shape[1] / pixels.shape[0]


def same_artwork(records: list, prints: dict, bits: int = ARTWORK_BITS) -> dict[str, str]:
    """Originals that are another original's artwork: {left out: kept}.

    Proposed by the 8 views' perceptual hashes within `bits`; the same artwork when, in the
    view the hashes matched, the two have the same shape (width / height within 2 %, turned
    where the view turns) and every pixel of every colour channel of the two ARTWORK_SIDE²
    thumbnails is within ARTWORK_TOLERANCE of 255: the same picture, turned or mirrored, not a
    look-alike (an archive box with another label, a face with another mouth differ by far
    more in that small region). Of each set of such originals the first name is kept.
    """
    from imgsim.explore.duplicates.neighbours import view_pairs

    hashes = np.array([prints[r.name].views for r in records], np.uint64).reshape(-1, 8)
    pairs, views, _ = view_pairs(hashes, bits)
    seen: dict[int, tuple[np.ndarray, float]] = {}  # 8 views of 64² RGB: 98 KB each
    parent = list(range(len(records)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for (a, b), view in zip(pairs.tolist(), views.tolist(), strict=True):
        for i in (a, b):
            if i not in seen:
                seen[i] = artwork_views(records[i].path)
        (first, shape), (second, other) = seen[a], seen[b]
        other = 1 / other if view % 2 else other  # turned by a quarter: width and height swap
        if abs(shape / other - 1) > 0.02:
            continue
        difference = np.abs(first[0].astype(np.int16) - second[view]).max()
        if difference <= ARTWORK_TOLERANCE:
            ra, rb = root(a), root(b)
            parent[max(ra, rb)] = min(ra, rb)
    order = sorted(range(len(records)), key=lambda i: records[i].name)
    kept: dict[int, str] = {}
    out = {}
    for i in order:
        r = root(i)
        if r in kept:
            out[records[i].name] = kept[r]
        else:
            kept[r] = records[i].name
    return out


def group_pairs(groups: list) -> set[frozenset[str]]:
    return {
        frozenset(pair)
        for g in groups
        for pair in itertools.combinations([m.name for m in g.members], 2)
    }


def score(groups: list, truth: set[tuple[str, str, str]]) -> dict:
    found = group_pairs(groups)
    planted_pairs = {frozenset((a, b)): t for a, b, t in truth}
    hits = found & set(planted_pairs)
    by_transform = Counter(planted_pairs[p] for p in hits)
    totals = Counter(planted_pairs.values())
    tiers = {frozenset((g.keeper.name, m.name)): m.tier for g in groups for m in g.extras}
    same = Counter(planted_pairs[p] for p in hits if tiers.get(p) == SAME)
    false_groups = [
        [m.name for m in g.members]
        for g in groups
        if any(p not in planted_pairs for p in group_pairs([g]))
    ]
    return {
        "precision": len(hits) / len(found) if found else 1.0,
        "recall": len(hits) / len(planted_pairs) if planted_pairs else 1.0,
        "false_pairs": len(found - set(planted_pairs)),
        "false_groups": len(false_groups),
        "false_examples": false_groups[:5],
        "false_list": false_groups,
        "groups": len(groups),
        **{f"recall_{t}": by_transform[t] / totals[t] if totals[t] else 1.0 for t in TRANSFORMS},
        **{f"same_{t}": same[t] / totals[t] if totals[t] else 0.0 for t in TRANSFORMS},
    }


class CachedViews:
    """A ViewEmbedder that embeds each (path, view) once across the settings compared."""

    def __init__(self, embedder: object) -> None:
        from imgsim.explore.duplicates.views import ViewEmbedder

        self.views = ViewEmbedder(embedder)
        self.known: dict[tuple[Path, int], np.ndarray] = {}

    def __call__(self, paths: list[Path], views: list[int]) -> np.ndarray:
        todo = sorted({(p, v) for p, v in zip(paths, views, strict=True)} - set(self.known))
        if todo:
            found = self.views([p for p, _ in todo], [v for _, v in todo])
            self.known.update(zip(todo, found, strict=True))
        return np.stack([self.known[(p, v)] for p, v in zip(paths, views, strict=True)])


def collection_of(folder: Path, workers: int) -> tuple[Collection, CachedViews, dict]:
    """Fingerprints and pretrained embeddings of every image, and the seconds they took."""
    from imgsim.embed.extract import embed_records
    from imgsim.explore.duplicates.finder import pretrained_embedder
    from imgsim.images.data import scan_images

    records = scan_images(folder)
    started = time.perf_counter()
    prints, skipped = fingerprint_all(records, workers)
    seconds = {"fingerprint": time.perf_counter() - started}
    if skipped:
        raise SystemExit(f"unreadable planted images: {skipped[:3]}")
    started = time.perf_counter()
    embedder = pretrained_embedder()
    vectors, rows = embed_records(embedder, embedder.image_size, records, progress=False)
    seconds["embed"] = time.perf_counter() - started
    if len(rows) != len(records):
        raise SystemExit("some images could not be embedded")
    names = [r.name for r in records]
    collection = Collection(
        names, [r.path for r in records], [prints[n].sha256 for n in names],
        [prints[n].size for n in names], prints, vectors,
    )  # fmt: skip
    return collection, CachedViews(embedder), seconds


def run(args: argparse.Namespace) -> tuple[list[dict], dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        truth = write_folder(args.source, folder, args.seed)
        collection, embedded, seconds = collection_of(folder, args.workers)
        cases = [BASELINE] + [
            ("confirmed", bits, cosine, pixels, *checks)
            for bits, cosine, pixels, checks in itertools.product(
                HASH_BITS, COSINES, PIXELS, CHECKS
            )
        ]
        for method, bits, cosine, pixels, *checks in cases:
            cfg = DuplicatesConfig(method, bits, cosine, pixels)
            started = time.perf_counter()
            with constants(*checks) if checks else contextlib.nullcontext():
                groups = find_groups(dataclasses.replace(collection), cfg, embedded)
            rows.append(
                {
                    "method": method,
                    "threshold": _threshold(method, bits, cosine, pixels, *checks),
                    "group_seconds": time.perf_counter() - started,
                    **score(groups, truth),
                }
            )
        seconds["images"] = len(collection.names)
        seconds["planted"] = len(truth)
    return rows, seconds


@contextlib.contextmanager
def constants(detail: float, look: float, slack: float) -> Iterator[None]:
    """The judge's constants (not settings) set for one row, then put back."""
    kept = dup_views.MAX_DETAIL, dup_views.MAX_LOOK_DETAIL, confirm.COSINE_SLACK
    dup_views.MAX_DETAIL, dup_views.MAX_LOOK_DETAIL, confirm.COSINE_SLACK = detail, look, slack
    try:
        yield
    finally:
        dup_views.MAX_DETAIL, dup_views.MAX_LOOK_DETAIL, confirm.COSINE_SLACK = kept


def _threshold(
    method: str,
    bits: int,
    cosine: float,
    pixels: float,
    detail: float = math.inf,
    look: float = math.inf,
    slack: float = 0.0,
) -> str:
    if method == "hash":
        return f"≤ {bits} bits"
    near = f" ({cosine - slack:g} within {confirm.CLOSE_BITS} bits)" if slack else ""
    region = "" if math.isinf(detail) else f", worst region ≤ {detail:g}"
    second = "" if math.isinf(look) else f", second look ≤ {look:g}"
    return (
        f"≤ {bits} bits (8 views) or neighbours; cos ≥ {cosine}{near}, pixels ≥ {pixels}"
        f"{region}{second}"
    )


def scale(count: int, threshold: int, cosine: float) -> str:
    """Seconds to find the pairs among `count` hashes and vectors, without decoding.

    Hashes: random 64-bit values with a planted near copy of every 10th (a few bits flipped);
    vectors: random 128-d with a near copy of every 10th. Decoding is left out: it is per
    image (the `decode+hash` figure above times count), the comparison is what could grow
    with count squared.
    """
    from imgsim.explore.duplicates.groups import stars
    from imgsim.explore.duplicates.neighbours import centred, pairs_above, pairs_within

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
    from imgsim.explore.duplicates.fingerprint import fingerprint_records
    from imgsim.images.data import ImageRecord, default_workers

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
        "| method | proposed by; confirmed at | precision | false groups | "
        + " | ".join(TRANSFORMS)
        + " |\n|---|---|---:|---:|"
        + "---:|" * len(TRANSFORMS)
        + "\n"
    )
    body = "".join(
        f"| {r['method']} | {r['threshold']} | {r['precision']:.3f} "
        f"| {r['false_groups']} of {r['groups']} | "
        + " | ".join(f"{r['recall_' + t]:.2f}" for t in TRANSFORMS)
        + " |\n"
        for r in rows
    )
    return head + body


def tiers(row: dict) -> str:
    """Of the copies found, the share named "same picture" (the rest: "near duplicate")."""
    return (
        "| " + " | ".join(TRANSFORMS) + " |\n|" + "---:|" * len(TRANSFORMS) + "\n| "
        + " | ".join(f"{row['same_' + t]:.2f}" for t in TRANSFORMS) + " |\n"
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a folder benchmarks/colour_folder.py made")
    parser.add_argument("--seed", type=int, default=0, help="seed of the planted edits (0)")
    parser.add_argument("--workers", type=int, default=0, help="decode processes (0 = cores)")
    parser.add_argument(
        "--scale", type=int, default=100_000, help="hashes and vectors for the timing (100000)"
    )
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument(
        "--false-groups", action="store_true",
        help="print every group the defaults make that joins images not planted as copies",
    )  # fmt: skip
    args = parser.parse_args()
    rows, seconds = run(args)
    text = table(rows)
    print(text)
    default = DuplicatesConfig()
    chosen = next(
        r for r in rows if r["threshold"] == _threshold(
            default.method, default.threshold, default.embedding_threshold,
            default.pixel_threshold, dup_views.MAX_DETAIL, dup_views.MAX_LOOK_DETAIL,
            confirm.COSINE_SLACK)
    )  # fmt: skip
    tier_text = tiers(chosen)
    print(tier_text)
    if args.false_groups:
        print(f"{len(chosen['false_list'])} false groups with the defaults:")
        for members in chosen["false_list"]:
            print("  " + " + ".join(members))
        print()
    timing = scale(args.scale, default.threshold, default.embedding_threshold)
    print(timing)
    decoding = decode_cost(args.scale)
    print(decoding)
    if args.write_docs:
        from docs_section import write_section

        section = (
            f"{SECTION}\n\n`benchmarks/duplicates.py {args.source} --seed {args.seed}` "
            f"({os.cpu_count()} cores, "
            f"{platform.machine()}, shared with other jobs: load average "
            f"{os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M %Z')}): "
            f"{seconds['images'] - seconds['planted']:,} distinct real images and "
            f"{seconds['planted']:,} planted copies; fingerprints {seconds['fingerprint']:.0f} s, "
            f"pretrained embeddings {seconds['embed']:.0f} s. "
            + " ".join(__doc__.split("\n\n")[1].split())
            + " The defaults were chosen on `--seed 0`; another seed plants other transforms on "
            "other images and other qualities, scales and colours: a check on images the choice "
            "did not see."
            + "\n\nRecall per transform, precision over all the pairs the groups make:\n\n"
            + text
            + f"\nWith the defaults ({chosen['threshold']}), the share of the copies found that "
            "are named *same picture* (the others: *near duplicate*):\n\n"
            + tier_text
            + "\nThe groups with the defaults that join images not planted as copies: "
            + "; ".join(" + ".join(f"`{n}`" for n in g) for g in chosen["false_examples"])
            + ".\n"
            + "\nFinding the pairs and groups without decoding (random hashes and vectors, a "
            "near copy of every 10th; `--scale`). Decoding is per image, in one worker "
            "process per core:\n\n" + timing + "\n" + decoding
        )
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
