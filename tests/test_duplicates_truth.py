"""The duplicates benchmark's ground truth: originals that are one artwork count once."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from imgsim.data import scan_images
from imgsim.duplicates.finder import fingerprint_all

from .benchmark_import import load_benchmark


def test_originals_that_are_one_artwork_turned_or_mirrored_are_left_out_not_lookalikes(
    tmp_path: Path,
) -> None:
    bench = load_benchmark("duplicates")
    face = bench.distinct_image(7).resize((200, 200))
    face.save(tmp_path / "a_face.png")
    face.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "b_mirrored.png")
    face.rotate(90, expand=True).save(tmp_path / "c_turned.png")
    face.save(tmp_path / "d_same_pixels.png", compress_level=1)
    other_mouth = face.copy()  # a look-alike: another mouth, a small region (an emote face)
    ImageDraw.Draw(other_mouth).rectangle((80, 140, 120, 160), fill=(20, 20, 20))
    other_mouth.save(tmp_path / "e_other_mouth.png")
    bench.distinct_image(8).save(tmp_path / "f_other.png")
    records = scan_images(tmp_path)
    prints, _ = fingerprint_all(records, 1)
    assert bench.same_artwork(records, prints) == {
        "b_mirrored.png": "a_face.png",
        "c_turned.png": "a_face.png",
        "d_same_pixels.png": "a_face.png",
    }


def test_the_planted_folder_holds_one_original_of_each_artwork(tmp_path: Path) -> None:
    bench = load_benchmark("duplicates")
    source = tmp_path / "source"
    (source / "index" / "icons").mkdir(parents=True)
    for i in range(4):
        bench.distinct_image(i).save(source / "index" / "icons" / f"icon_{i}.png")
    art = Image.open(source / "index" / "icons" / "icon_1.png")
    art.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(source / "index" / "icons" / "icon_9.png")
    out = tmp_path / "out"
    out.mkdir()
    truth = bench.write_folder(source, out, seed=0)
    assert sorted(original for original, _, _ in truth) == [f"icons/icon_{i}.png" for i in range(4)]
    assert not (out / "icons" / "icon_9.png").exists()
