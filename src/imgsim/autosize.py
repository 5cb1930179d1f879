"""The network's input size when the settings leave it to the collection (image_size 0)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .config import DEFAULT_IMAGE_SIZE
from .trainset import Collection

log = logging.getLogger("imgsim")

# Sizes the network is built for: 32 px at least (its stride plan), 64 px for photos — a CPU
# pays ~4× the compute for each doubling of the side.
SIZES = (32, 48, DEFAULT_IMAGE_SIZE)
SAMPLE = 256  # image headers read to learn the collection's size


def choose_image_size(sides: Sequence[int]) -> int:
    """The smallest input size at least as large as the images' median shorter side.

    Upsampling a 28 px image to 64 px adds no detail and costs 4× the compute per image:
    time better spent on more epochs. Photos (hundreds of pixels) get the full 64 px.
    """
    if not sides:
        return DEFAULT_IMAGE_SIZE
    median = sorted(sides)[len(sides) // 2]
    return next((size for size in SIZES if size >= median), SIZES[-1])


def collection_sides(data: Collection, sample: int = SAMPLE) -> list[int]:
    """Shorter sides of up to `sample` of the collection's images, evenly spread (headers only)."""
    if data.images is not None:
        return [int(data.images.shape[-1])]
    from PIL import Image

    step = max(1, len(data) // sample)
    sides = []
    for row in range(0, len(data), step):
        try:
            with Image.open(f"{data.root}/{data.name(row)}") as image:
                sides.append(min(image.size))
        except Exception:  # unreadable files are named by the scan, not here
            continue
    return sides


def resolve_image_size(requested: int, data: Collection) -> int:
    """`requested`, or with 0 the size chosen from the collection (and said)."""
    if requested:
        return requested
    sides = collection_sides(data)
    size = choose_image_size(sides)
    median = sorted(sides)[len(sides) // 2] if sides else 0
    log.info(
        "Input size %d px: the images' median shorter side is %d px (--image-size N fixes it)",
        size, median,
    )  # fmt: skip
    return size
