"""Tests for imgsim.images.sample: IDX reading, Fashion-MNIST export from a fake copy, shapes."""

from __future__ import annotations

import functools
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsim.images import sample
from imgsim.images.data import parse_category, scan_images
from imgsim.images.sample import (
    FASHION_MNIST_CLASSES,
    SHAPES,
    build_sample_dataset,
    draw_shape,
    export_fashion_mnist,
    fashion_mnist_available,
    generate_shapes,
    load_fashion_mnist,
    read_idx,
)

IMAGES_PER_CLASS = 3  # in the fake Fashion-MNIST train split


def idx_bytes(arr: np.ndarray, dtype_code: int = 0x08) -> bytes:
    header = struct.pack(">HBB", 0, dtype_code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def fake_images(n: int) -> np.ndarray:
    # Image i is filled with the value i, so an exported file tells which row it came from.
    return np.repeat(np.arange(n, dtype=np.uint8), 28 * 28).reshape(n, 28, 28)


@pytest.fixture
def fake_fashion_mnist(tmp_path: Path) -> Path:
    """A Fashion-MNIST directory with 3 train images per class (rows interleaved) and 10 test."""
    directory = tmp_path / "fashion-mnist"
    directory.mkdir()
    n = IMAGES_PER_CLASS * len(FASHION_MNIST_CLASSES)
    labels = np.arange(n, dtype=np.uint8) % len(FASHION_MNIST_CLASSES)  # 0 1 … 9 0 1 … 9 …
    write_idx(directory / "train-images-idx3-ubyte", fake_images(n), gz=True)
    write_idx(directory / "train-labels-idx1-ubyte", labels, gz=True)
    write_idx(directory / "t10k-images-idx3-ubyte", fake_images(10))
    write_idx(directory / "t10k-labels-idx1-ubyte", np.arange(10, dtype=np.uint8))
    return directory


# --- read_idx ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx(tmp_path: Path, gz: bool) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "x-idx3-ubyte", arr, gz=gz)
    out = read_idx(path)
    assert out.dtype == np.uint8
    assert out.shape == (2, 3, 4)
    assert (out == arr).all()


def test_read_idx_one_dimensional(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "labels-idx1-ubyte", np.array([9, 0, 3], dtype=np.uint8))
    assert read_idx(path).tolist() == [9, 0, 3]


@pytest.mark.parametrize(
    "header",
    [
        struct.pack(">HBB", 0, 0x0D, 1),  # float data
        struct.pack(">HBB", 1, 0x08, 1),  # first two bytes must be zero
    ],
)
def test_read_idx_rejects_other_files(tmp_path: Path, header: bytes) -> None:
    path = tmp_path / "bad"
    path.write_bytes(header + struct.pack(">I", 2) + b"\x00\x01")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        read_idx(path)


# --- Fashion-MNIST -----------------------------------------------------------------------------


def test_fashion_mnist_available(fake_fashion_mnist: Path, tmp_path: Path) -> None:
    assert fashion_mnist_available(fake_fashion_mnist)
    assert fashion_mnist_available(str(fake_fashion_mnist))
    assert not fashion_mnist_available(tmp_path / "nowhere")
    (fake_fashion_mnist / "t10k-labels-idx1-ubyte").unlink()
    assert not fashion_mnist_available(fake_fashion_mnist)


def test_load_fashion_mnist(fake_fashion_mnist: Path) -> None:
    images, labels = load_fashion_mnist(fake_fashion_mnist, "train")
    assert images.shape == (30, 28, 28)
    assert labels.tolist() == list(range(10)) * 3
    images, labels = load_fashion_mnist(fake_fashion_mnist, "test")
    assert images.shape == (10, 28, 28)


def test_load_fashion_mnist_missing_file_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)


def test_load_fashion_mnist_length_mismatch(fake_fashion_mnist: Path) -> None:
    write_idx(fake_fashion_mnist / "t10k-labels-idx1-ubyte", np.arange(9, dtype=np.uint8))
    with pytest.raises(ValueError, match="differ in length"):
        load_fashion_mnist(fake_fashion_mnist, "test")


def test_export_fashion_mnist(fake_fashion_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "dataset"  # created, parents too
    written = export_fashion_mnist(out, per_class=2, directory=fake_fashion_mnist)
    assert written == 20
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{c}_{i:05d}.png" for c in FASHION_MNIST_CLASSES for i in (1, 2))
    assert "tshirt_00001.png" in names
    assert "ankle_boot_00002.png" in names

    for label, name in enumerate(FASHION_MNIST_CLASSES):
        rows = []
        for i in (1, 2):
            with Image.open(out / f"{name}_{i:05d}.png") as im:
                assert im.mode == "L"
                assert im.size == (28, 28)
                pixels = np.asarray(im)
            row = int(pixels[0, 0])
            assert (pixels == row).all()
            assert row % 10 == label  # the image really is of this class
            rows.append(row)
        assert rows[0] < rows[1]  # numbered in dataset order, no repeats

    records = scan_images(out)
    assert {r.category for r in records} == set(FASHION_MNIST_CLASSES)


def test_export_fashion_mnist_is_repeatable_and_capped(
    fake_fashion_mnist: Path, tmp_path: Path
) -> None:
    def exported(out: Path, **kwargs) -> dict[str, bytes]:
        export_fashion_mnist(out, directory=fake_fashion_mnist, **kwargs)
        return {p.name: p.read_bytes() for p in out.iterdir()}

    assert exported(tmp_path / "a", per_class=1, seed=3) == exported(
        tmp_path / "b", per_class=1, seed=3
    )
    # Asking for more than a class holds exports all of it.
    assert len(exported(tmp_path / "c", per_class=50)) == IMAGES_PER_CLASS * 10


def test_export_fashion_mnist_test_split(fake_fashion_mnist: Path, tmp_path: Path) -> None:
    written = export_fashion_mnist(
        tmp_path / "out", per_class=5, split="test", directory=fake_fashion_mnist
    )
    assert written == 10  # one test image per class in the fake copy


# --- generated shapes --------------------------------------------------------------------------


def test_generate_shapes(tmp_path: Path) -> None:
    written = generate_shapes(tmp_path, per_class=2, size=16)
    assert written == 2 * len(SHAPES)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"{s}_{i:05d}.png" for s in SHAPES for i in (1, 2))
    assert {parse_category(n) for n in names} == set(SHAPES)
    for name in names:
        with Image.open(tmp_path / name) as im:
            assert im.mode == "RGB"
            assert im.size == (16, 16)


def test_generate_shapes_options(tmp_path: Path) -> None:
    written = generate_shapes(tmp_path, per_class=3, size=20, shapes=("ring", "cross"), ext="jpg")
    assert written == 6
    records = scan_images(tmp_path)
    assert [r.name for r in records] == [
        "cross_00001.jpg",
        "cross_00002.jpg",
        "cross_00003.jpg",
        "ring_00001.jpg",
        "ring_00002.jpg",
        "ring_00003.jpg",
    ]
    assert [r.category for r in records] == ["cross"] * 3 + ["ring"] * 3


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_generate_shapes_is_repeatable(tmp_path: Path) -> None:
    def arrays(out: Path, seed: int) -> list[np.ndarray]:
        generate_shapes(out, per_class=2, size=16, seed=seed, shapes=("circle", "square"))
        return [read_rgb(p) for p in sorted(out.iterdir())]

    first, again, other = (
        arrays(tmp_path / "a", 0),
        arrays(tmp_path / "b", 0),
        arrays(tmp_path / "c", 1),
    )
    assert all((x == y).all() for x, y in zip(first, again, strict=True))
    assert not all((x == y).all() for x, y in zip(first, other, strict=True))


@pytest.mark.parametrize("shape", SHAPES)
def test_draw_shape_draws_something(shape: str) -> None:
    im = draw_shape(shape, 32, np.random.default_rng(0))
    assert im.mode == "RGB"
    assert im.size == (32, 32)
    arr = np.asarray(im, dtype=float).mean(axis=2)
    # Dark shape (channels < 120 + noise) on a light background (≥ 150 − noise).
    assert (arr < 130).sum() > 10
    assert (arr > 140).sum() > 10


def test_draw_shape_unknown() -> None:
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        draw_shape("hexagon", 16, np.random.default_rng(0))


# --- build_sample_dataset ----------------------------------------------------------------------


def test_build_sample_dataset_falls_back_to_shapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sample, "fashion_mnist_available", lambda *a, **k: False)
    assert build_sample_dataset(tmp_path, per_class=2) == "generated shapes"
    records = scan_images(tmp_path)
    assert len(records) == 2 * len(SHAPES)
    assert {r.category for r in records} == set(SHAPES)


def test_build_sample_dataset_uses_fashion_mnist_when_present(
    tmp_path: Path, fake_fashion_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sample, "fashion_mnist_available", lambda *a, **k: True)
    monkeypatch.setattr(
        sample,
        "export_fashion_mnist",
        functools.partial(export_fashion_mnist, directory=fake_fashion_mnist),
    )
    out = tmp_path / "dataset"
    assert build_sample_dataset(out, per_class=2) == "fashion-mnist"
    records = scan_images(out)
    assert len(records) == 20
    assert {r.category for r in records} == set(FASHION_MNIST_CLASSES)
