"""Build a real, labelled colour image folder from Debian's clip-art and stamp packages.

For a retrieval-quality benchmark on images made by people rather than generated ones: the
PNGs of two Debian packages, openclipart-png (public-domain clip art from openclipart.org,
sorted into topic folders) and tuxpaint-stamps-default (Tux Paint's stamps: photographs and
drawings of animals, food, vehicles, buildings...), are pooled into the categories of
CATEGORIES below, de-duplicated, filtered, and a seeded sample is copied (never linked,
never changed) into

    OUT_DIR/index/<category>/<file>     the images to index (at most --per-category each)
    OUT_DIR/queries/<category>/<file>   held-out query images (--queries each)
    OUT_DIR/SOURCES.md                  packages, versions, licences, and every file's origin

What is kept: PNG rasters only (the packages' SVGs are not rendered); colour images only (at
least 5 % of the opaque pixels of a 64 px thumbnail visibly coloured); 64 px or more on the
long side and at most imgsim's decode limit (imgsim.images.data.DEFAULT_MAX_PIXELS, 40 MP); one
file per byte content, per file stem and per series (the stem less colour words and trailing
numbers, so that people_juliane_krug_01a ... _09c and balloon-red-aj, balloon-blue-aj count
once); no near copy of an image already taken (same pHash within 6 bits and about the same
colours: one drawing saved twice under two names); Tux Paint's pre-mirrored `*_mirror` copies
dropped; and an image whose bytes or stem turn up in two categories is dropped from both.
No rendering, no network: only files the packages installed.

`--icons` adds the categories of ICON_CATEGORIES from five icon themes: oxygen-icon-theme (KDE's
Oxygen, LGPL-3+), gnome-icon-theme (GNOME 2's, GPL-2+ / GPL-3+), lxde-icon-theme (nuoveXT 2,
LGPL-3+ / GPL-3+), mate-icon-theme (LGPL-3+ or CC-BY-SA) and elementary-xfce-icon-theme (GPL-2+,
CC-BY-SA-2.0): each icon once, at the largest size the theme ships as PNG, through the same
filters. Icons are look-alikes by design (a document page with another badge, a drive of
another kind), for the duplicates benchmark, which needs 2,000 originals or more. The folder
pretrained_quality.py reads is built without it.

    apt-get install -y --no-install-recommends openclipart-png tuxpaint-stamps-default
    .venv/bin/python benchmarks/colour_folder.py /tmp/colour
    .venv/bin/python benchmarks/colour_folder.py /tmp/colour --per-category 60 --queries 10 --seed 1
    apt-get install -y --no-install-recommends oxygen-icon-theme gnome-icon-theme \
        lxde-icon-theme mate-icon-theme elementary-xfce-icon-theme
    .venv/bin/python benchmarks/colour_folder.py /tmp/colour_dups --per-category 200 --queries 0 \
        --icons
"""

# Needs Debian's packages (about 290 MB of downloads, 370 MB installed):
#   apt-get install -y --no-install-recommends openclipart-png tuxpaint-stamps-default

from __future__ import annotations

import argparse
import hashlib
import random
import re
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgsim.explore.duplicates.fingerprint import perceptual_hash
from imgsim.images.data import DEFAULT_MAX_PIXELS

Image.MAX_IMAGE_PIXELS = None  # headers of the few huge clip-art files are read, never decoded

# Short name -> (Debian package, folder its images are installed under).
PACKAGES: dict[str, tuple[str, Path]] = {
    "oc": ("openclipart-png", Path("/usr/share/openclipart/png")),
    "tp": ("tuxpaint-stamps-default", Path("/usr/share/tuxpaint/stamps")),
}
# Icon themes for --icons: (package, theme folder holding SIZE/CONTEXT/NAME.png or
# CONTEXT/SIZE/NAME.png, SIZE as 128x128 or 128).
ICON_PACKAGES: dict[str, tuple[str, Path]] = {
    "ox": ("oxygen-icon-theme", Path("/usr/share/icons/oxygen/base")),
    "gn": ("gnome-icon-theme", Path("/usr/share/icons/gnome")),
    "nx": ("lxde-icon-theme", Path("/usr/share/icons/nuoveXT2")),
    "ma": ("mate-icon-theme", Path("/usr/share/icons/mate")),
    "ex": ("elementary-xfce-icon-theme", Path("/usr/share/icons/elementary-xfce")),
}
ALL_PACKAGES = {**PACKAGES, **ICON_PACKAGES}
# Icon theme package -> short name, which prefixes its files' names: five themes' printer.png
# go into one folder.
ICON_PREFIX = {name: short for short, (name, _) in ICON_PACKAGES.items()}


def install_line(packages: dict[str, tuple[str, Path]]) -> str:
    """The apt-get command that installs `packages`."""
    return "apt-get install -y --no-install-recommends " + " ".join(n for n, _ in packages.values())


# Category -> source folders as "package:folder" (the folder and all below it), or
# "package:folder/*" (only the files directly in it). Left out on purpose: icon themes
# (computer/icons), single-glyph series (shapes/stars, signs_and_symbols/led, flags/semaphore,
# transportation/aiga-symbols, map_symbols), the four near-identical playing-card decks,
# generated gradients and patterns, Tux Paint's alphabets, and the "unsorted" folder; fish,
# astronomy and clothing have too few distinct colour images left (about 20, 15 and 29).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "mammals": ("oc:animals/mammals", "tp:animals/mammals", "tp:animals/marsupials"),
    "birds": ("oc:animals/birds", "tp:animals/birds"),
    "insects": ("oc:animals/bugs", "tp:animals/insects"),
    "fruit": ("oc:food/fruit", "tp:food/fruit"),
    "food_and_drink": (
        "oc:food/*",
        "oc:food/beverages",
        "oc:food/breads_and_carbs",
        "oc:food/dairy",
        "oc:food/desserts",
        "oc:food/meats_and_eggs",
        "oc:food/vegetables",
        "tp:food/dessert",
        "tp:food/nuts",
        "tp:food/spices",
        "tp:food/vegetables",
    ),
    "plants": ("oc:plants", "tp:plants"),
    "flags": (
        "oc:signs_and_symbols/flags/*",
        "oc:signs_and_symbols/flags/africa",
        "oc:signs_and_symbols/flags/america",
        "oc:signs_and_symbols/flags/asia",
        "oc:signs_and_symbols/flags/europe",
        "oc:signs_and_symbols/flags/historic",
        "oc:signs_and_symbols/flags/miscellany",
        "oc:signs_and_symbols/flags/oceania",
        "tp:town/flags",
    ),
    "road_signs": ("oc:transportation/roadsigns", "tp:town/roadsigns"),
    "vehicles": (
        "oc:transportation/*",
        "oc:transportation/vehicles",
        "oc:transportation/boating",
        "tp:vehicles",
        "tp:military/vehicles",
    ),
    "buildings": ("oc:buildings/*", "oc:buildings/homes", "tp:town/houses", "tp:town/monuments"),
    "people": ("oc:people/*", "tp:people"),
    "office": ("oc:office",),
    "tools": ("oc:tools/*", "tp:household/tools"),
    "music": ("oc:recreation/music", "tp:hobbies/music"),
    "holidays": ("oc:recreation/holiday", "oc:recreation/party", "tp:seasonal"),
    "sports_and_toys": ("oc:recreation/sports", "oc:recreation/toys", "tp:sports"),
    "maps": ("oc:geography/*",),
}

# Category -> "package:*/context": every icon of that context once, the largest size shipped.
# Contexts with few distinct colour icons are pooled (status with emblems, apps with applets).
# mate-icon-theme forked gnome-icon-theme: its unchanged icons go as near copies (below).
_THEMES = ("ox", "gn", "nx", "ma", "ex")
ICON_CATEGORIES: dict[str, tuple[str, ...]] = {
    "icons_documents": (*(f"{t}:*/mimetypes" for t in _THEMES), "ex:*/mimes"),
    "icons_apps": ("ox:*/applets", *(f"{t}:*/apps" for t in _THEMES)),
    "icons_actions": tuple(f"{t}:*/actions" for t in _THEMES),
    "icons_devices": tuple(f"{t}:*/devices" for t in _THEMES),
    "icons_places": (*(f"{t}:*/places" for t in _THEMES), "nx:*/filesystems"),
    "icons_status": tuple(f"{t}:*/{c}" for t in _THEMES for c in ("status", "emblems")),
    "icons_categories": tuple(f"{t}:*/categories" for t in _THEMES),
    "icons_emotes": tuple(f"{t}:*/emotes" for t in _THEMES),
}
_ICON_SIZE = re.compile(r"(\d+)(?:x\d+)?")

MIN_SIDE = 64  # px on the long side; smaller files are bullets and specks
MIN_INDEX = 20  # a category needs this many index images besides its queries, or is dropped
THUMB = 64  # px: the colour test looks at a thumbnail this size
CHROMA = 48  # max(R,G,B) - min(R,G,B) from which a pixel counts as coloured
COLOURED_SHARE = 0.05  # of the opaque pixels, for an image to count as a colour image
# Near copies: pHash (imgsim duplicates' 64-bit DCT hash) this close and 8x8 colour tiles this
# close (mean absolute difference, 0-255) - so that flags with the same stripes in other
# colours are not taken for copies, while one drawing saved twice is.
PHASH_DISTANCE = 6
TILE_DIFFERENCE = 24
# Colour words left out of a stem before its series is taken: balloon-red-aj, balloon-blue-aj
# and pin_-_green_... are one drawing each, recoloured. ("orange" stays: it is also a fruit.)
_COLOUR_WORDS = re.compile(
    r"(?<![a-z])(red|green|blue|yellow|purple|pink|black|white|grey|gray|brown|violet)(?![a-z])"
)
_SEPARATOR_RUN = re.compile(r"[_\-\s]+")
_SERIES_TAIL = re.compile(r"[_\-\s]*\d+[a-z]?$")


@dataclass(frozen=True)
class Candidate:
    """One source image: where it lies, which package installed it, and its header size."""

    path: Path
    package: str
    width: int
    height: int


def missing_packages(packages: dict[str, tuple[str, Path]]) -> list[str]:
    """The `packages` that dpkg does not list as installed (or whose folder is gone)."""
    missing = []
    for name, root in packages.values():
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Status}", name],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if status != "installed" or not root.is_dir():
            missing.append(name)
    return missing


def spec_files(spec: str) -> tuple[str, list[Path]]:
    """The package name and the PNG files (sorted) of one "package:folder[/*]" source."""
    short, _, folder = spec.partition(":")
    name, root = ALL_PACKAGES[short]
    if folder.startswith("*/"):
        return name, largest_icons(root, folder[2:])
    if folder.endswith("/*"):
        files = (root / folder[:-2]).glob("*.png")
    else:
        files = (root / folder).rglob("*.png")
    return name, sorted(p for p in files if p.is_file() and not p.stem.endswith("_mirror"))


def largest_icons(theme: Path, context: str) -> list[Path]:
    """Each icon of a theme's context once: the file in the largest size folder (sorted)."""
    best: dict[str, tuple[int, Path]] = {}
    found = [*theme.glob(f"*/{context}/*.png"), *theme.glob(f"{context}/*/*.png")]
    for path in found:
        size_folder = path.parent if path.parent.name != context else path.parent.parent
        side = _ICON_SIZE.fullmatch(size_folder.name)
        if side is None or path.is_symlink() or not path.is_file():
            continue  # "scalable", "symbolic"; links: the same icon under another name
        if path.stem not in best or best[path.stem][0] < int(side.group(1)):
            best[path.stem] = (int(side.group(1)), path)
    return sorted(path for _, path in best.values())


def series(stem: str) -> str:
    """A stem less colour words and trailing numbers: `balloon-red-aj_01` -> `balloon_aj`."""
    stem = stem.lower()
    base = _SEPARATOR_RUN.sub("_", _COLOUR_WORDS.sub("", stem)).strip("_") or stem
    while (shorter := _SERIES_TAIL.sub("", base)) != base and shorter:
        base = shorter
    return base


def gather(categories: dict[str, tuple[str, ...]]) -> dict[str, list[tuple[Path, str]]]:
    """Every category's source files as (path, package), in `categories` order, each file once."""
    pools: dict[str, list[tuple[Path, str]]] = {}
    for category, specs in categories.items():
        seen: set[Path] = set()
        pools[category] = []
        for spec in specs:
            package, files = spec_files(spec)
            pools[category] += [(p, package) for p in files if p not in seen]
            seen.update(files)
    return pools


def digests(pools: dict[str, list[tuple[Path, str]]]) -> dict[Path, str]:
    """SHA-256 of every source file's bytes."""
    return {
        path: hashlib.sha256(path.read_bytes()).hexdigest()
        for files in pools.values()
        for path, _ in files
    }


def shared_keys(
    pools: dict[str, list[tuple[Path, str]]], digest: dict[Path, str]
) -> tuple[set[str], set[str]]:
    """Byte digests and file stems found in more than one category: labels that would clash."""
    digest_cats: dict[str, set[str]] = defaultdict(set)
    stem_cats: dict[str, set[str]] = defaultdict(set)
    for category, files in pools.items():
        for path, _ in files:
            digest_cats[digest[path]].add(category)
            stem_cats[path.stem.lower()].add(category)
    return (
        {d for d, cats in digest_cats.items() if len(cats) > 1},
        {s for s, cats in stem_cats.items() if len(cats) > 1},
    )


def header_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the file's header (nothing decoded); None if Pillow can't read it."""
    try:
        with Image.open(path) as im:
            return im.size
    except OSError:
        return None


def deduplicate(pools: dict[str, list[tuple[Path, str]]]) -> dict[str, list[Candidate]]:
    """Each category's usable files: sized within bounds, one per digest, stem and series."""
    digest = digests(pools)
    shared_digests, shared_stems = shared_keys(pools, digest)
    kept: dict[str, list[Candidate]] = {}
    for category, files in pools.items():
        seen: set[str] = set()
        kept[category] = []
        for path, package in files:
            stem = path.stem.lower()
            # One icon name per theme, not per category: five themes' "printer" are five
            # artists' drawings, look-alikes the duplicates benchmark wants (near copies among
            # them, as mate's of gnome's, still go by their fingerprints in pick()).
            own = f"{package}/" if package in ICON_PREFIX else ""
            keys = {"d:" + digest[path], "s:" + own + stem, "b:" + own + series(stem)}
            if digest[path] in shared_digests or stem in shared_stems or keys & seen:
                continue
            size = header_size(path)
            if size is None or max(size) < MIN_SIDE or size[0] * size[1] > DEFAULT_MAX_PIXELS:
                continue
            seen |= keys
            kept[category].append(Candidate(path, package, *size))
    return kept


class Seen:
    """Fingerprints of the images kept so far: pHash and an 8x8 colour tile of each."""

    def __init__(self) -> None:
        self.hashes: list[int] = []
        self.tiles: list[np.ndarray] = []

    def add(self, fingerprint: tuple[int, np.ndarray]) -> None:
        """Remember one more kept image."""
        self.hashes.append(fingerprint[0])
        self.tiles.append(fingerprint[1])

    def extend(self, other: Seen) -> None:
        """Remember all of another set's images."""
        self.hashes += other.hashes
        self.tiles += other.tiles

    def near(self, fingerprint: tuple[int, np.ndarray]) -> bool:
        """Whether a kept image has about the same pHash and about the same colours."""
        if not self.hashes:
            return False
        xor = np.array(self.hashes, dtype=np.uint64) ^ np.uint64(fingerprint[0])
        close = np.flatnonzero(np.bitwise_count(xor) <= PHASH_DISTANCE)
        return any(np.abs(self.tiles[i] - fingerprint[1]).mean() <= TILE_DIFFERENCE for i in close)


def look(path: Path) -> tuple[int, np.ndarray] | None:
    """The image's fingerprint if it is a colour image (enough opaque pixels coloured), else None.

    Looks at a THUMB px thumbnail: the colour share over its opaque pixels, then pHash and an
    8x8 tile of it flattened onto white, as imgsim flattens transparent images.
    """
    with Image.open(path) as im:
        if im.mode in {"1", "L", "LA", "I", "I;16", "F"}:
            return None
        thumb = im.convert("RGBA")
    thumb.thumbnail((THUMB, THUMB))
    pixels = np.asarray(thumb, dtype=np.int16).reshape(-1, 4)
    opaque = pixels[pixels[:, 3] >= 128, :3]
    chroma = opaque.max(axis=1) - opaque.min(axis=1) if len(opaque) >= 16 else np.zeros(1)
    if float((chroma >= CHROMA).mean()) < COLOURED_SHARE:
        return None
    flat = Image.new("RGBA", thumb.size, "white")
    flat.alpha_composite(thumb)
    rgb = flat.convert("RGB")
    tile = np.asarray(rgb.resize((8, 8), Image.Resampling.BOX), dtype=np.int16)
    return perceptual_hash(rgb), tile


def pick(
    pool: list[Candidate], category: str, sizes: tuple[int, int], seed: int, seen: Seen
) -> tuple[list[Candidate], list[Candidate], Seen]:
    """Queries and index images of one category (sizes: how many of each) and their prints.

    A seeded shuffle of the pool, walked until both are full: an image is taken if it is a
    colour image and no near copy of one taken already, here or in an earlier category.
    """
    queries, per_category = sizes
    order = list(pool)
    random.Random(f"{seed}:{category}").shuffle(order)
    chosen: list[Candidate] = []
    mine = Seen()
    for cand in order:
        if len(chosen) == queries + per_category:
            break
        fingerprint = look(cand.path)
        if fingerprint is None or seen.near(fingerprint) or mine.near(fingerprint):
            continue
        chosen.append(cand)
        mine.add(fingerprint)
    return chosen[:queries], chosen[queries:], mine


def sample(
    pools: dict[str, list[Candidate]], per_category: int, queries: int, seed: int
) -> dict[str, tuple[list[Candidate], list[Candidate]]]:
    """Every category's (queries, index); those too small for MIN_INDEX are left out."""
    picks = {}
    seen = Seen()
    for category, pool in pools.items():
        held_out, index, mine = pick(pool, category, (queries, per_category), seed, seen)
        if len(held_out) < queries or len(index) < min(MIN_INDEX, per_category):
            print(f"skipped {category}: only {len(held_out) + len(index)} images", file=sys.stderr)
            continue
        picks[category] = (held_out, index)
        seen.extend(mine)
    return picks


def copy_out(out: Path, picks: dict[str, tuple[list[Candidate], list[Candidate]]]) -> list[str]:
    """Copy every picked file into out/queries/... and out/index/...; the Markdown rows."""
    rows = []
    for category, (held_out, index) in picks.items():
        for split, cands in (("queries", held_out), ("index", index)):
            folder = out / split / category
            folder.mkdir(parents=True, exist_ok=True)
            for cand in cands:
                prefix = f"{ICON_PREFIX[cand.package]}_" if cand.package in ICON_PREFIX else ""
                target = folder / (prefix + cand.path.name)
                shutil.copyfile(cand.path, target)
                rel = target.relative_to(out).as_posix()
                rows.append(
                    f"| {rel} | {cand.width}x{cand.height} | {cand.package} | {cand.path} |"
                )
    return rows


def package_version(name: str) -> str:
    """The installed version of a Debian package, as dpkg-query reports it."""
    return subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True, check=True
    ).stdout.strip()


def package_licence(name: str) -> str:
    """The licence(s) named in /usr/share/doc/PKG/copyright (machine-readable or free text)."""
    text = Path(f"/usr/share/doc/{name}/copyright").read_text(errors="replace")
    if text.startswith("Format:"):
        found = re.findall(r"^License: *(\S.*)$", text, flags=re.MULTILINE)
        return ", ".join(dict.fromkeys(found)) or "see the copyright file"
    after = re.search(r"^(?:Copyright|License):\s*\n?\s*(\S.*)$", text, flags=re.MULTILINE)
    return after.group(1).strip() if after else "see the copyright file"


def write_sources(
    out: Path, rows: list[str], argv: list[str], packages: dict[str, tuple[str, Path]]
) -> None:
    """OUT_DIR/SOURCES.md: how it was made, the packages with versions and licences, the files."""
    lines = [
        "# Sources of this image folder",
        "",
        f"Made by `benchmarks/colour_folder.py {' '.join(argv)}` from these Debian packages",
        f"(`{install_line(packages)}`); files copied unchanged.",
        "",
        "| package | version | licence (from /usr/share/doc/PKG/copyright) |",
        "| --- | --- | --- |",
    ]
    for name, _ in packages.values():
        lines.append(f"| {name} | {package_version(name)} | {package_licence(name)} |")
    lines += [
        "",
        "## Files",
        "",
        "| file | size (px) | package | copied from |",
        "| --- | --- | --- | --- |",
    ]
    (out / "SOURCES.md").write_text("\n".join([*lines, *rows]) + "\n")


def summary(out: Path, picks: dict[str, tuple[list[Candidate], list[Candidate]]]) -> str:
    """One line: how many images, categories, and the size range in pixels."""
    cands = [c for held_out, index in picks.values() for c in (*held_out, *index)]
    n_queries = sum(len(held_out) for held_out, _ in picks.values())
    smallest = min(cands, key=lambda c: c.width * c.height)
    largest = max(cands, key=lambda c: c.width * c.height)
    median = statistics.median(max(c.width, c.height) for c in cands)
    return (
        f"{len(cands)} images ({len(cands) - n_queries} index + {n_queries} queries) in "
        f"{len(picks)} categories, {smallest.width}x{smallest.height} to "
        f"{largest.width}x{largest.height} px (median long side {median:.0f} px) -> {out}"
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to create (must be empty or absent)")
    parser.add_argument("--per-category", type=int, default=100, help="index images (at most)")
    parser.add_argument("--queries", type=int, default=10, help="held-out queries per category")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument(
        "--icons", action="store_true",
        help="add the icon themes' categories (for the duplicates benchmark)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.per_category < 1 or args.queries < 0:
        parser.error("--per-category must be at least 1 and --queries at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Build the folder; 2 when the packages are missing, 1 when OUT_DIR is not empty."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    packages = ALL_PACKAGES if args.icons else PACKAGES
    categories = {**CATEGORIES, **ICON_CATEGORIES} if args.icons else CATEGORIES
    missing = missing_packages(packages)
    if missing:
        print(f"Missing Debian packages ({', '.join(missing)}); install them with:")
        print(install_line(packages))
        return 2
    out: Path = args.out_dir
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(
            f"{out} exists and is not an empty folder; remove it or pick another", file=sys.stderr
        )
        return 1
    picks = sample(deduplicate(gather(categories)), args.per_category, args.queries, args.seed)
    if not picks:
        print("no category has enough images", file=sys.stderr)
        return 1
    rows = copy_out(out, picks)
    write_sources(out, rows, argv, packages)
    print(summary(out, picks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
