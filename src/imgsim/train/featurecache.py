"""A frozen backbone's features of a training collection: each image decoded once, views cached."""

# A pretrained backbone that does not learn gives the same features every epoch, so training
# computes them once — for the image, its mirror and, where the folder is augmented, a few
# random crops — and the head trains on the cache: minutes on a CPU instead of hours of
# decoding full-size files and running the backbone again every epoch.

from __future__ import annotations

import dataclasses
import logging

import torch

from .augment import augment_batch
from .trainset import Collection, ImageLoader

log = logging.getLogger("imgsim")

AUGMENTED_VIEWS = 8  # the image, its mirror and six random crops with colour jitter
BATCH = 64


def view_count(augment: bool) -> int:
    """Views cached per image: all of them are what the head trains on at random."""
    # The mirror is cached even when not trained on: validation's test-time flip reads it.
    return AUGMENTED_VIEWS if augment else 2


def cache_features(
    backbone: torch.nn.Module,
    image_size: int,
    data: Collection,
    views: int,
    device: torch.device,
    workers: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Collection, torch.Tensor]:
    """(the collection with its features as in-memory "images" N×V×F, usable-row mask).

    Each image is decoded once at the network's input size; unreadable ones are named once
    and their rows come back False in the mask.
    """
    from tqdm import tqdm

    n = len(data)
    backbone = backbone.eval().to(device, memory_format=torch.channels_last)
    out = torch.empty(0)
    ok = torch.zeros(n, dtype=torch.bool)
    gen = torch.Generator().manual_seed(seed)
    loader = ImageLoader(data.dataset(image_size), data.workers(workers))
    plan = (list(range(i, min(i + BATCH, n))) for i in range(0, n, BATCH))
    with (
        tqdm(total=n, desc="backbone features", unit="img", disable=not progress) as bar,
        torch.inference_mode(),
    ):
        for indices, images in loader.batches(plan):
            feats = _views(backbone, images.to(device), views, gen).half().cpu()
            if not out.numel():  # half precision: the cache is what grows with the folder
                out = torch.zeros(n, views, feats.shape[-1], dtype=torch.float16)
            out[indices] = feats
            ok[indices] = True
            bar.update(len(indices))
    log.info(
        "Cached %d views of the backbone's %d features for %d images (%.0f MB in memory)",
        views, out.shape[-1] if out.numel() else 0, int(ok.sum()), out.numel() * 2 / 2**20,
    )  # fmt: skip
    return dataclasses.replace(data, images=out), ok


def _views(
    backbone: torch.nn.Module, images: torch.Tensor, views: int, gen: torch.Generator
) -> torch.Tensor:
    """N×V×F: the image, its mirror, then random augmentations; one view a pass, as one batch
    of all views at 160 px held gigabytes of activations and ran 4× slower."""
    x = images.float()
    out = []
    for view in range(views):
        batch = x if view == 0 else x.flip(-1) if view == 1 else augment_batch(images, gen)
        out.append(backbone(batch.contiguous(memory_format=torch.channels_last)))
    return torch.stack(out, 1)
