"""The network's backbone and input size when the settings leave them to the collection."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..core.config import DEFAULT_IMAGE_SIZE, PRETRAINED
from .trainset import Collection

log = logging.getLogger("imgsim")

# Sizes the network is built for: 32 px at least (its stride plan), 64 px for photos — a CPU
# pays ~4× the compute for each doubling of the side.
SIZES = (32, 48, DEFAULT_IMAGE_SIZE)
SAMPLE = 256  # image headers read to learn the collection's size
# The pretrained backbone's input side: quality against extraction speed, docs/benchmarks.md.
PRETRAINED_SIZE = 160
# Small images (a median side under SMALL_SIDE: thumbnails, Fashion-MNIST's 28 px grey images)
# with SCRATCH_FROM images per category or more: the scratch network trained on the folder
# measured better than a head on ImageNet features; with fewer, the features win
# (Fashion-MNIST, docs/benchmarks.md). Photos: the pretrained network.
SMALL_SIDE = 64
SCRATCH_FROM = 200


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


def resolve_image_size(
    requested: int, data: Collection, backbone: str = "scratch", sides: list[int] | None = None
) -> int:
    """`requested`, or with 0 the size chosen from the collection and backbone (and said);
    `sides` are the collection's, when the caller has read them already."""
    if requested:
        return requested
    if backbone == PRETRAINED:
        log.info("Input size %d px for the pretrained network (--image-size N)", PRETRAINED_SIZE)
        return PRETRAINED_SIZE
    sides = collection_sides(data) if sides is None else sides
    size = choose_image_size(sides)
    median = sorted(sides)[len(sides) // 2] if sides else 0
    log.info(
        "Input size %d px: the images' median shorter side is %d px (--image-size N fixes it)",
        size, median,
    )  # fmt: skip
    return size


def resolve_backbone(requested: str, data: Collection, sides: list[int] | None = None) -> str:
    """`requested`, or with auto: scratch for many small images, else the pretrained network."""
    if requested != "auto":
        return requested
    sides = collection_sides(data) if sides is None else sides
    median = sorted(sides)[len(sides) // 2] if sides else SMALL_SIDE
    per_category = len(data) // max(1, len(data.categories))
    small_and_many = median < SMALL_SIDE and per_category >= SCRATCH_FROM
    chosen = "scratch" if small_and_many else PRETRAINED
    log.info(
        "Backbone %s: %d images per category, median shorter side %d px (--backbone chooses)",
        chosen, per_category, median,
    )  # fmt: skip
    return chosen
