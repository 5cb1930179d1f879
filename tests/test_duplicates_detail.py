"""The confirmed method's pixel check: look-alikes that differ in one small region are told
apart from copies (re-saved, resized, cropped, turned, mirrored, recoloured)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgsim.core.config import DuplicatesConfig
from imgsim.explore.duplicates import Collection, find_groups
from imgsim.explore.duplicates.confirm import COSINE_SLACK, _close_enough
from imgsim.explore.duplicates.finder import fingerprint_all
from imgsim.explore.duplicates.views import (
    MAX_DETAIL,
    MAX_LOOK_DETAIL,
    aligned_measures,
    best_alignment,
    cropped,
    detail_difference,
    dihedral_view,
    second_look,
    thumbnail,
)

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
        view = max(range(8), key=lambda v: aligned_measures(a, b, v)[0])
        _, i, j = best_alignment(cropped(a), cropped(dihedral_view(b, view)))
        seen = second_look(original, copy, view, (i, j))
        assert seen is not None and seen <= MAX_LOOK_DETAIL, (transform, seed, seen)


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
    from imgsim.images.data import ImageRecord

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


def archive_box(label: str) -> Image.Image:
    """A 128-px archive icon: a box with a small label, as icon themes draw one per format."""
    im = Image.new("RGB", (128, 128), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    draw.rectangle((16, 24, 112, 112), fill=(170, 120, 60), outline=(90, 60, 20), width=3)
    draw.rectangle((30, 70, 98, 96), fill=(245, 245, 235))
    draw.text((40, 76), label, fill=(0, 0, 0))
    return im


@pytest.mark.parametrize("label", ["zip", "7z"])
def test_the_second_look_reads_a_label_the_thumbnails_blur(tmp_path: Path, label: str) -> None:
    archive_box("tar").save(tmp_path / "tar.png")
    archive_box(label).save(tmp_path / "other.png")
    a, b = thumbnail(tmp_path / "tar.png"), thumbnail(tmp_path / "other.png")
    correlation, detail = aligned_measures(a, b, 0)
    assert correlation >= DuplicatesConfig().pixel_threshold and detail <= MAX_DETAIL
    seen = second_look(tmp_path / "tar.png", tmp_path / "other.png", 0, (0, 0))
    assert seen is not None and seen > MAX_LOOK_DETAIL


def test_the_second_look_compares_a_halved_copy_at_its_own_size(tmp_path: Path) -> None:
    archive_box("zip").save(tmp_path / "zip.png")
    small = archive_box("zip").resize((24, 24), Image.Resampling.LANCZOS)
    small.save(tmp_path / "small.jpg", quality=90)
    seen = second_look(tmp_path / "zip.png", tmp_path / "small.jpg", 0, (0, 0))
    assert seen is not None and seen <= MAX_LOOK_DETAIL / 1.5
    # At 64 px, the copy blurred against its sharp original, it differs twice as much.
    _, blurred = aligned_measures(
        thumbnail(tmp_path / "zip.png"), thumbnail(tmp_path / "small.jpg"), 0
    )
    assert blurred > 1.8 * seen
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    assert second_look(tmp_path / "zip.png", tmp_path / "broken.jpg", 0, (0, 0)) is None


def test_close_hashes_need_a_lower_cosine_and_far_ones_do_not() -> None:
    config = DuplicatesConfig()
    least = config.embedding_threshold
    assert _close_enough((0, 20, least), config)  # the cosine alone
    assert _close_enough((0, 2, least - COSINE_SLACK + 0.01), config)  # a halved icon's
    assert not _close_enough((0, 2, least - COSINE_SLACK - 0.01), config)
    assert not _close_enough((0, 10, least - 0.01), config)
    assert not _close_enough((0, None, least - 0.01), config)  # proposed by the embeddings
