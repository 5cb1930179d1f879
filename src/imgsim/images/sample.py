"""Sample datasets for the demo and tests: Fashion-MNIST exported as files, or generated shapes."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "tshirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
)  # fmt: skip
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SHAPES = ("circle", "square", "triangle", "cross", "stripes", "ring")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}(.gz) not found in {directory} "
        "(apt-get install dataset-fashion-mnist, or pass --data with the four idx files)"
    )


def fashion_mnist_available(directory: str | Path = FASHION_MNIST_DIR) -> bool:
    """Whether the four Fashion-MNIST idx files are present."""
    try:
        for stems in _FILES.values():
            for stem in stems:
                _find(Path(directory), stem)
    except FileNotFoundError:
        return False
    return True


def load_fashion_mnist(
    directory: str | Path = FASHION_MNIST_DIR, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N×28×28 uint8) and labels (N) of one Fashion-MNIST split."""
    images_stem, labels_stem = _FILES[split]
    images = read_idx(_find(Path(directory), images_stem))
    labels = read_idx(_find(Path(directory), labels_stem))
    if len(images) != len(labels):
        raise ValueError("Fashion-MNIST images and labels differ in length")
    return images, labels


def export_fashion_mnist(
    out_dir: str | Path,
    per_class: int = 100,
    split: str = "train",
    seed: int = 0,
    directory: str | Path = FASHION_MNIST_DIR,
) -> int:
    """Write `per_class` images of each class as tshirt_00001.png, trouser_00001.png, …"""
    images, labels = load_fashion_mnist(directory, split)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = 0
    for label, name in enumerate(FASHION_MNIST_CLASSES):
        rows = np.flatnonzero(labels == label)
        chosen = np.sort(rng.choice(rows, min(per_class, len(rows)), replace=False))
        for i, row in enumerate(chosen, start=1):
            Image.fromarray(images[row], "L").save(out / f"{name}_{i:05d}.png")
            written += 1
    return written


def draw_shape(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One generated picture: a shape of random colour, size and place on a random background."""
    bg = tuple(int(v) for v in rng.integers(150, 256, 3))
    fg = tuple(int(v) for v in rng.integers(0, 120, 3))
    im = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(im)
    r = size * rng.uniform(0.25, 0.4)
    cx, cy = size / 2 + rng.uniform(-0.1, 0.1, 2) * size
    box = (cx - r, cy - r, cx + r, cy + r)
    width = max(2, size // 10)
    if shape == "circle":
        draw.ellipse(box, fill=fg)
    elif shape == "square":
        draw.rectangle(box, fill=fg)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    elif shape == "cross":
        draw.line((cx - r, cy - r, cx + r, cy + r), fill=fg, width=width)
        draw.line((cx - r, cy + r, cx + r, cy - r), fill=fg, width=width)
    elif shape == "stripes":
        for x in np.arange(cx - r, cx + r, 2.5 * width):
            draw.rectangle((x, cy - r, x + width, cy + r), fill=fg)
    elif shape == "ring":
        draw.ellipse(box, outline=fg, width=width)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    noise = rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(im) + noise, 0, 255).astype(np.uint8))


def generate_shapes(
    out_dir: str | Path,
    per_class: int = 40,
    size: int = 64,
    seed: int = 0,
    shapes: tuple[str, ...] = SHAPES,
    ext: str = "png",
) -> int:
    """Write a procedurally generated set: circle_00001.png, square_00001.png, …"""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for shape in shapes:
        for i in range(1, per_class + 1):
            draw_shape(shape, size, rng).save(out / f"{shape}_{i:05d}.{ext}")
    return per_class * len(shapes)


def build_sample_dataset(out_dir: str | Path, per_class: int = 100, seed: int = 0) -> str:
    """Fill `out_dir` with Fashion-MNIST when installed, else generated shapes; returns which."""
    if fashion_mnist_available():
        export_fashion_mnist(out_dir, per_class, seed=seed)
        return "fashion-mnist"
    generate_shapes(out_dir, per_class, seed=seed)
    return "generated shapes"
