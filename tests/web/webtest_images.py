"""Tiny generated images for the web tests (a module, not conftest, so tests can import it)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

COLOURS = {"red": (200, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 210)}
# Names a careless page would break on: a space, and markup that must stay text.
ODD_NAMES = ["green stripes_004.jpg", "blue_<img src=x onerror=alert(1)>_004.png"]


def make_image(colour: tuple[int, int, int], seed: int, size: int = 48) -> Image.Image:
    """A colour field with a seeded pattern, so images differ within a category."""
    rng = np.random.default_rng(seed)
    arr = np.empty((size, size, 3), dtype=np.uint8)
    arr[:] = colour
    arr[rng.integers(0, size, 40), rng.integers(0, size, 40)] = rng.integers(0, 256, (40, 3))
    return Image.fromarray(arr)


def image_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()
