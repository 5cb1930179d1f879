"""The confirmed method's pixel check: look-alikes that differ in one small region are told
apart from copies (re-saved, resized, cropped, turned, mirrored, recoloured)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgsim.config import DuplicatesConfig
from imgsim.duplicates import Collection, find_groups
from imgsim.duplicates.finder import fingerprint_all
from imgsim.duplicates.views import MAX_DETAIL, aligned_measures, detail_difference, thumbnail

from .benchmark_import import load_benchmark

bench = load_benchmark("duplicates")


def face(seed: int, mouth: str) -> Image.Image:
    """An emote face on a busy background; only the mouth (about 4 % of it) differs."""
    im = bench.distinct_image(seed).resize((256, 256))
    draw = ImageDraw.Draw(im)
    draw.ellipse((40, 40, 216, 216), fill=(250, 200, 40), outline=(90, 60, 0), width=4)
    draw.ellipse((85, 90, 110, 125), fill=(40, 30, 20))
    draw.ellipse((146, 90, 171, 125), fill=(40, 30, 20))
    if mouth == "smile":
        draw.arc((80, 120, 176, 185), 20, 160, fill=(90, 30, 10), width=7)
    else:
        draw.line((90, 165, 166, 165), fill=(90, 30, 10), width=7)
    return im


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_lookalike_that_differs_in_one_small_region_is_rejected_though_it_correlates(
    tmp_path: Path, seed: int
) -> None:
    face(seed, "plain").save(tmp_path / "plain.png")
    face(seed, "smile").save(tmp_path / "smile.png")
    correlation, detail = aligned_measures(
        thumbnail(tmp_path / "plain.png"), thumbnail(tmp_path / "smile.png"), 0
    )
    assert correlation >= DuplicatesConfig().pixel_threshold  # the old check alone let it by
    assert detail > 1.5 * MAX_DETAIL


@pytest.mark.parametrize("transform", bench.TRANSFORMS)
def test_every_planted_transform_is_still_confirmed(tmp_path: Path, transform: str) -> None:
    rng = np.random.default_rng(0)
    for seed in range(4):
        original = tmp_path / f"face_{seed}.png"
        face(seed, "plain").save(original)
        data, ext = bench.planted(original, transform, rng)
        copy = tmp_path / f"copy_{seed}.{ext}"
        copy.write_bytes(data)
        a, b = thumbnail(original), thumbnail(copy)
        correlation, detail = max(aligned_measures(a, b, view) for view in range(8))
        assert correlation >= DuplicatesConfig().pixel_threshold, (transform, seed)
        assert detail <= MAX_DETAIL, (transform, seed, detail)


def test_detail_difference_ignores_brightness_and_one_pixel_shifts() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (64, 64, 3)).astype(np.float32)
    pixels = np.kron(pixels[::8, ::8], np.ones((8, 8, 1)))  # 8-px blocks: sharp edges
    assert detail_difference(pixels, pixels) == 0.0
    assert detail_difference(pixels, pixels * 0.8 + 20) < 1.0
    shifted = np.concatenate([pixels[:, :1], pixels[:, :-1]], axis=1)  # one pixel right
    assert detail_difference(pixels, shifted) < MAX_DETAIL / 2
    spot = pixels.copy()
    spot[30:36, 30:36] = 255 - spot[30:36, 30:36]  # a 6-px region changed
    assert detail_difference(pixels, spot) > MAX_DETAIL


def test_the_finder_groups_the_copies_and_not_the_lookalike(tmp_path: Path) -> None:
    """Through the confirmed method (embeddings stubbed as all alike, so the pixels decide)."""
    face(0, "plain").save(tmp_path / "a_plain.png")
    face(0, "smile").save(tmp_path / "b_smile.png")
    rng = np.random.default_rng(1)
    for transform in ("jpeg", "crop", "mirror", "colour"):
        data, ext = bench.planted(tmp_path / "a_plain.png", transform, rng)
        (tmp_path / f"c_{transform}.{ext}").write_bytes(data)
    paths = sorted(tmp_path.iterdir())
    names = [p.name for p in paths]
    from imgsim.data import ImageRecord

    prints, skipped = fingerprint_all([ImageRecord(p.name, None, p) for p in paths], 1)
    assert not skipped
    collection = Collection(
        names, paths, [prints[n].sha256 for n in names], [prints[n].size for n in names],
        prints, np.ones((len(names), 8), np.float32),
    )  # fmt: skip

    def views(paths: list, views: list) -> np.ndarray:
        return np.ones((len(paths), 8), np.float32)

    groups = find_groups(collection, DuplicatesConfig(workers=1), views)
    assert [sorted(m.name for m in g.members) for g in groups] == [
        ["a_plain.png", "c_colour.jpg", "c_crop.jpg", "c_jpeg.jpg", "c_mirror.jpg"]
    ]
