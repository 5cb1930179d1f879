"""Duplicates at scale: `imgsim duplicates` over an indexed collection of N images, run twice.

Generates N small pictures under --dir/data (distinct seeds; every 10th is a planted copy of an
earlier one: re-saved, half size, turned or mirrored), indexes them with the bundled
ImageNet-pretrained network (`imgsim index --pretrained`), then times `imgsim duplicates` (the
confirmed method) over the collection: the first run after `imgsim index`, the second, and one
with the kept duplicate data cleared (every file read again: as every run was before it was
kept). Each step runs in its own process: its wall time and peak RSS (getrusage of the child).

Prints a markdown table; `--write-docs` replaces the "Duplicates at scale" section of
docs/benchmarks.md. Goal: the second run within 10 s at 100,000 images.

    .venv/bin/python benchmarks/duplicates_scale.py --dir /tmp/dups_scale --write-docs
    .venv/bin/python benchmarks/duplicates_scale.py --n 2000 --dir /tmp/dups_2k
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import resource
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from imgsim.core.config import VERDICTS_FILE

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Duplicates at scale"
GOAL_SECONDS = 10.0  # the second run at 100,000 images
COPY_EVERY = 10  # every 10th picture is a planted copy of an earlier one
SIDE = (96, 72)  # small pictures: generating and indexing 100,000 stays minutes
CHANGED = 10  # pictures replaced by new ones before the "files changed" run


def picture(seed: int) -> Image.Image:
    """A small picture unlike other seeds', also to a pretrained network: a background of one
    of several kinds (gradient, waves, stripes, checks, blotches, noise) and 2-9 shapes of
    several kinds (ellipses, boxes, polygons, lines, arcs, pie slices) in a palette of its own.
    Simple gradients with discs (the earlier pictures) all look alike to the network, which
    made every image a candidate of ~14 others: not a library's count."""
    rng = np.random.default_rng(seed)
    palette = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(5)]
    im = Image.fromarray(_background(rng, palette), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(2, 10))):
        _shape(draw, rng, palette[int(rng.integers(0, 5))])
    return im


def _background(rng: np.random.Generator, palette: list[tuple[int, ...]]) -> np.ndarray:
    """SIDE pixels of one of six kinds, blended between two of the palette's colours."""
    w, h = SIDE
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    angle, scale = rng.uniform(0, np.pi), rng.uniform(3, 30)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    kind = int(rng.integers(0, 6))
    if kind == 0:  # gradient
        t = (u - u.min()) / max(float(np.ptp(u)), 1.0)
    elif kind == 1:  # waves, two directions
        t = 0.5 + 0.25 * (np.sin(u / scale * 2) + np.sin(v / rng.uniform(3, 30) * 2))
    elif kind == 2:  # stripes
        t = ((u // scale) % 2).astype(np.float32)
    elif kind == 3:  # checks
        t = (((u // scale) + (v // scale)) % 2).astype(np.float32)
    elif kind == 4:  # blotches: coarse noise, enlarged
        coarse = rng.random((int(rng.integers(2, 8)), int(rng.integers(2, 8))))
        small = Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
        t = np.asarray(small, np.float32) / 255
    else:  # fine noise
        t = rng.random((h, w)).astype(np.float32)
    first, second = (np.array(palette[i], np.float32) for i in rng.choice(5, 2, replace=False))
    pixels = first * (1 - t[..., None]) + second * t[..., None]
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, colour: tuple[int, ...]) -> None:
    """One shape of six kinds, anywhere, of any size, filled or outlined."""
    w, h = SIDE
    x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
    r = int(rng.integers(4, w // 2))
    box = (x - r, y - int(r * rng.uniform(0.3, 1.5)), x + r, y + r)
    box = (box[0], min(box[1], box[3]), box[2], max(box[1], box[3]))
    width = int(rng.integers(1, 6))
    kind = int(rng.integers(0, 6))
    outline = bool(rng.integers(0, 3) == 0)  # a third only outlined
    fill = None if outline else colour
    if kind == 0:
        draw.ellipse(box, fill=fill, outline=colour, width=width)
    elif kind == 1:
        draw.rectangle(box, fill=fill, outline=colour, width=width)
    elif kind == 2:
        corners = rng.integers(-r, r, (int(rng.integers(3, 8)), 2)) + np.array([x, y])
        draw.polygon([tuple(int(c) for c in p) for p in corners], fill=fill, outline=colour)
    elif kind == 3:
        points = rng.integers(0, (w, h), (int(rng.integers(2, 5)), 2))
        draw.line([tuple(int(c) for c in p) for p in points], fill=colour, width=width + 2)
    elif kind == 4:
        start = int(rng.integers(0, 360))
        draw.arc(box, start, start + int(rng.integers(60, 300)), fill=colour, width=width + 1)
    else:
        start = int(rng.integers(0, 360))
        draw.pieslice(box, start, start + int(rng.integers(40, 320)), fill=colour)


def write_picture(args: tuple[Path, int]) -> None:
    """Picture i: a planted copy of an earlier one every COPY_EVERY, else its own seed."""
    folder, i = args
    path = folder / f"{i // 1000:03d}" / f"img_{i:07d}.jpg"
    if path.exists():
        return
    if i % COPY_EVERY == COPY_EVERY - 1:
        im = picture(i - 1 - (i // COPY_EVERY) % 5)
        how = (i // COPY_EVERY) % 4
        if how == 1:
            im = im.resize((SIDE[0] // 2, SIDE[1] // 2))
        elif how == 2:
            im = im.transpose(Image.Transpose.ROTATE_90)
        elif how == 3:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        im.save(path, "JPEG", quality=70)
    else:
        picture(i).save(path, "JPEG", quality=90)


def generate(folder: Path, n: int) -> tuple[float, int]:
    """Write the N pictures (those already there are kept); the seconds it took, how many new."""
    start = time.perf_counter()
    before = sum(1 for _ in folder.rglob("*.jpg")) if folder.exists() else 0
    for part in range((n + 999) // 1000):
        (folder / f"{part:03d}").mkdir(parents=True, exist_ok=True)
    with multiprocessing.Pool() as pool:
        pool.map(write_picture, [(folder, i) for i in range(n)], chunksize=500)
    return time.perf_counter() - start, n - before


def measured(args: list[str]) -> dict:
    """Run `imgsim ARGS` in a child of a fresh child: its wall time and peak RSS."""
    cmd = [sys.executable, __file__, "--child", json.dumps(args)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(args: list[str]) -> dict:
    # RUSAGE_CHILDREN's maxrss is the largest child's: this wrapper has only this one.
    start = time.perf_counter()
    code = f"import sys; from imgsim.cli.commands import main; sys.exit(main({args!r}))"
    done = subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=True)  # fmt: skip
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    # The confirmed method logs its candidate pairs (confirm.confirmed_links).
    pairs = re.search(r"(\d+) candidate pairs \(([\d.]+) per image\): (\d+) verdicts kept, "
                      r"(\d+) judged", done.stderr)  # fmt: skip
    found = {"seconds": seconds, "peak_mb": peak_mb}
    if pairs:
        found.update(pairs=int(pairs[1]), per_image=float(pairs[2]), judged=int(pairs[4]))
    return found


def clear_kept(workdir: Path) -> None:
    """Forget the duplicate data and verdicts kept: every file is read, every pair judged."""
    with sqlite3.connect(workdir / "triplet_manifest.sqlite") as conn:
        conn.execute("DELETE FROM derived")
    (workdir / VERDICTS_FILE).unlink(missing_ok=True)


def forget_judged(workdir: Path) -> None:
    """Forget what only `imgsim duplicates` keeps (verdicts, images' turned embeddings), as
    after `imgsim index`: the first run judges every pair."""
    with sqlite3.connect(workdir / "triplet_manifest.sqlite") as conn:
        conn.execute("UPDATE derived SET views = X''")
    (workdir / VERDICTS_FILE).unlink(missing_ok=True)


def change_some(folder: Path, n: int) -> None:
    """Replace CHANGED of the pictures (not planted copies) by new ones: a few files changed.
    Seeded by the clock, so that a second benchmark over the same folder changes them too."""
    step = max(n // CHANGED, 1)
    seed = time.time_ns() % 10**12
    for i in range(0, n, step)[:CHANGED]:
        path = folder / f"{i // 1000:03d}" / f"img_{i:07d}.jpg"
        picture(seed + i).save(path, "JPEG", quality=90)


def run(root: Path, n: int) -> list[tuple[str, dict]]:
    data, work = root / "data", root / "work"
    made, new = generate(data, n)
    work.mkdir(parents=True, exist_ok=True)
    rows = [(f"generate the images ({new:,} new)", {"seconds": made, "peak_mb": float("nan")})]
    index = ["index", "--pretrained", "--data", str(data), "--workdir", str(work)]
    if (work / "triplet_manifest.sqlite").exists():  # indexed before: brought up to date
        rows.append(("`imgsim index --update` (indexed before)", measured([*index, "--update"])))
    else:
        rows.append(("`imgsim index --pretrained`", measured(index)))
    forget_judged(work)  # the first run as after `imgsim index`, also over an old folder
    duplicates = ["duplicates", "--workdir", str(work)]
    rows.append(("`imgsim duplicates`, first run", measured(duplicates)))
    rows.append(("`imgsim duplicates`, second run", measured(duplicates)))
    change_some(data, n)
    rows.append((f"`imgsim index --update`, {CHANGED} files changed",
                 measured([*index, "--update"])))  # fmt: skip
    rows.append((f"`imgsim duplicates`, {CHANGED} files changed", measured(duplicates)))
    clear_kept(work)
    rows.append(("`imgsim duplicates`, nothing kept (as before)", measured(duplicates)))
    return rows


def table(rows: list[tuple[str, dict]], n: int) -> str:
    lines = [f"| Step ({n:,} images) | Wall time | Peak RSS | Candidate pairs (per image) "
             "| Judged |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for what, r in rows:
        peak = "–" if r["peak_mb"] != r["peak_mb"] else f"{r['peak_mb']:.0f} MB"
        pairs = f"{r['pairs']:,} ({r['per_image']:.2f})" if "pairs" in r else "–"
        judged = f"{r['judged']:,}" if "judged" in r else "–"
        lines.append(f"| {what} | {r['seconds']:.1f} s | {peak} | {pairs} | {judged} |")
    second = dict(rows)["`imgsim duplicates`, second run"]["seconds"]
    verdict = "met" if second <= GOAL_SECONDS else "not met"
    lines.append(f"\nGoal: the second run within {GOAL_SECONDS:.0f} s at 100,000 images; "
                 f"here {second:.1f} s at {n:,} ({verdict} at this size).")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="images (100,000)")
    parser.add_argument("--dir", type=Path, required=False, help="where images and index go")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    root = args.dir or Path(f"/tmp/imgsim_duplicates_scale_{args.n}")
    load = os.getloadavg()[0]
    text = table(run(root, args.n), args.n)
    print(text)
    if args.write_docs:
        from docs_section import write_section

        when = datetime.now(UTC).strftime("%Y-%m-%d")
        section = (
            f"{SECTION}\n\n`python benchmarks/duplicates_scale.py --n {args.n} --write-docs` on "
            f"{when}, {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
            f"Python {platform.python_version()}, load average {load:.1f} at the start. "
            f"{args.n:,} generated {SIDE[0]}×{SIDE[1]} JPEGs (backgrounds and shapes of "
            f"several kinds), every {COPY_EVERY}th a copy of an earlier one (re-saved, half "
            "size, turned or mirrored), indexed with the pretrained network; `imgsim "
            "duplicates` uses the confirmed method and keeps its verdicts. Each step is its "
            "own process: wall time, peak RSS, candidate pairs and pairs judged.\n\n"
            f"{text}\n"
        )
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
