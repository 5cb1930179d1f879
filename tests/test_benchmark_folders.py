"""The benchmark folders' builders: camera JPEGs with EXIF turns, icon themes for duplicates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from .benchmark_import import load_benchmark


@pytest.fixture
def camera(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """benchmarks/camera_jpegs.py at 320×240, its builder given two small source images."""
    module = load_benchmark("camera_jpegs")
    monkeypatch.setattr(module, "SIZE", (320, 240))
    sources = []
    for i, colour in enumerate(["red", "blue"]):
        path = tmp_path / f"source_{i}.png"
        Image.new("RGBA", (60, 40), colour).save(path)
        sources.append(path)
    module._init_worker(sources)
    return module


@pytest.mark.parametrize("seed, orientation", [(0, 6), (4, 8), (8, 3), (1, None)])
def test_camera_photos_store_turned_pixels_that_their_exif_tag_turns_upright(
    camera, tmp_path: Path, seed: int, orientation: int | None
) -> None:
    upright, tag = camera.photo(seed)
    assert tag == orientation
    path = tmp_path / "IMG.jpg"
    assert camera.write_photo(path, seed) == path.stat().st_size
    assert not list(tmp_path.glob("*.part"))
    with Image.open(path) as stored:
        assert stored.getexif().get(camera.ORIENTATION_TAG) == orientation
        turned = stored.size != upright.size
        assert turned == (orientation in (6, 8))
        shown = np.asarray(ImageOps.exif_transpose(stored), dtype=np.int16)
    # JPEG at quality 90 on noisy pixels: close to the upright picture, far from a wrong turn.
    assert np.abs(shown - np.asarray(upright, dtype=np.int16)).mean() < 6


def test_an_existing_camera_photo_is_not_written_again(camera, tmp_path: Path) -> None:
    path = tmp_path / "IMG.jpg"
    path.write_bytes(b"kept")
    assert camera.write_photo(path, 0) == 4 and path.read_bytes() == b"kept"


def _icon(path: Path, side: int, colour: str = "green") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (side, side), colour).save(path)
    return path


def test_each_icon_once_at_the_largest_size_in_either_layout(tmp_path: Path) -> None:
    colour_folder = load_benchmark("colour_folder")
    theme = tmp_path / "theme"
    _icon(theme / "48x48/devices/printer.png", 48)
    big = _icon(theme / "256x256/devices/printer.png", 256)
    _icon(theme / "scalable/devices/printer.png", 8)  # not a size folder
    (theme / "256x256/devices/printer-alias.png").symlink_to(big)  # the same icon again
    other = tmp_path / "other"  # CONTEXT/SIZE, as elementary-xfce lays its icons out
    _icon(other / "devices/64/scanner.png", 64)
    wide = _icon(other / "devices/128/scanner.png", 128)
    assert colour_folder.largest_icons(theme, "devices") == [big]
    assert colour_folder.largest_icons(other, "devices") == [wide]


def test_two_themes_icons_of_one_name_are_both_kept_under_their_own_names(tmp_path: Path) -> None:
    colour_folder = load_benchmark("colour_folder")
    themes = [name for name, _ in colour_folder.ICON_PACKAGES.values()][:2]
    icons = [
        (_icon(tmp_path / theme / "printer.png", 96, colour), theme)
        for theme, colour in zip(themes, ["red", "blue"], strict=True)
    ]
    clip_art = [
        (_icon(tmp_path / f"clip{i}" / "printer.png", 96, colour), "openclipart-png")
        for i, colour in enumerate(["red", "blue"])
    ]
    assert len(colour_folder.deduplicate({"office": clip_art})["office"]) == 1  # one per stem
    kept = colour_folder.deduplicate({"icons": icons})
    assert [c.package for c in kept["icons"]] == themes  # one per stem and theme
    rows = colour_folder.copy_out(tmp_path / "out", {"icons": ([], kept["icons"])})
    names = sorted(p.name for p in (tmp_path / "out/index/icons").iterdir())
    assert len(rows) == 2 and names == ["gn_printer.png", "ox_printer.png"]
