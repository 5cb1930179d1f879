"""Batch augmentation for training photos: random crop/scale, horizontal flip, colour jitter."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment_batch(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    offset: int = 0,
    total: int | None = None,
) -> torch.Tensor:
    """Randomly transform a uint8 N×3×H×W batch; returns float32 in the same 0–255 range.

    Done on whole batches with one grid_sample rather than per image with PIL: on a 2-core CPU
    per-image transforms cost more than the training step itself. With several processes each
    holds rows offset…offset+N of a global batch of `total`: the random draws are made for the
    whole batch and sliced, so the images get the transforms a single process would give them.
    """
    n = images.shape[0]
    x = images.float()

    def rand(*rest: int) -> torch.Tensor:
        return _draws(images, generator, offset, total, *rest)

    # Random resized crop: keep 70–100 % of each side, anywhere in the image.
    scale = 0.7 + 0.3 * rand()
    shift = (1 - scale).unsqueeze(1) * (2 * rand(2) - 1)
    flip = torch.where(rand() < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    # Colour jitter: brightness, contrast and saturation each within ±20 %.
    brightness = 0.8 + 0.4 * rand(1, 1, 1)
    contrast = 0.8 + 0.4 * rand(1, 1, 1)
    saturation = 0.8 + 0.4 * rand(1, 1, 1)
    x = x * brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    gray = x.mean(dim=1, keepdim=True)
    x = (x - gray) * saturation + gray
    return x.clamp_(0, 255)


def flip_batch(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    offset: int = 0,
    total: int | None = None,
) -> torch.Tensor:
    """Mirror about half of a N×3×H×W batch left to right, at random; nothing else changes.

    The draws are made for the whole global batch of `total` and sliced, as in augment_batch.
    """
    mirror = (_draws(images, generator, offset, total) < 0.5).view(-1, 1, 1, 1)
    return torch.where(mirror, images.flip(-1), images)


def _draws(
    images: torch.Tensor,
    generator: torch.Generator | None,
    offset: int,
    total: int | None,
    *rest: int,
) -> torch.Tensor:
    """Uniform draws for a whole global batch, sliced to this process's rows, on its device."""
    n = images.shape[0]
    drawn = torch.rand(total or n, *rest, generator=generator)[offset : offset + n]
    return drawn.to(images.device, non_blocking=True)


def pick_views(
    views: torch.Tensor,
    count: int,
    generator: torch.Generator | None = None,
    offset: int = 0,
    total: int | None = None,
) -> torch.Tensor:
    """One of the first `count` cached views of each row (N×V×F → N×F), at random.

    The cached views of a pretrained backbone's features stand in for augmenting the images
    themselves; the draws are made for the whole global batch and sliced, as above.
    """
    choice = (_draws(views, generator, offset, total) * count).long().clamp_(max=count - 1)
    return views[torch.arange(views.shape[0], device=views.device), choice]
