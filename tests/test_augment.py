"""Tests for imgsim.train.augment: shapes, ranges, repeatability and what each transform changes."""

from __future__ import annotations

import pytest
import torch

from imgsim.train.augment import augment_batch


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_batch(n: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=seeded(seed))


@pytest.mark.parametrize(("n", "height", "width"), [(1, 8, 8), (5, 16, 16), (3, 12, 20)])
def test_shape_dtype_and_range(n: int, height: int, width: int) -> None:
    images = torch.randint(0, 256, (n, 3, height, width), dtype=torch.uint8, generator=seeded(1))
    out = augment_batch(images, seeded(2))
    assert out.shape == (n, 3, height, width)
    assert out.dtype == torch.float32
    assert out.min() >= 0
    assert out.max() <= 255
    assert torch.isfinite(out).all()


def test_extreme_images_stay_in_range() -> None:
    images = torch.cat([torch.zeros(8, 3, 8, 8), torch.full((8, 3, 8, 8), 255.0)]).to(torch.uint8)
    out = augment_batch(images, seeded(0))
    assert out.min() >= 0
    assert out.max() <= 255


def test_input_is_not_modified() -> None:
    images = random_batch()
    before = images.clone()
    augment_batch(images, seeded(0))
    assert torch.equal(images, before)


def test_same_seed_same_output() -> None:
    images = random_batch()
    assert torch.equal(augment_batch(images, seeded(7)), augment_batch(images, seeded(7)))


def test_different_seeds_differ() -> None:
    images = random_batch()
    assert not torch.equal(augment_batch(images, seeded(7)), augment_batch(images, seeded(8)))


def test_global_seed_without_generator() -> None:
    images = random_batch()
    torch.manual_seed(3)
    first = augment_batch(images)
    torch.manual_seed(3)
    assert torch.equal(first, augment_batch(images))


def test_uniform_image_only_changes_brightness() -> None:
    # Crop, flip, contrast and saturation leave a uniform grey image uniform; brightness
    # scales it by 0.8–1.2: 100 → somewhere in 80–120, the same everywhere in the image.
    images = torch.full((16, 3, 8, 8), 100, dtype=torch.uint8)
    out = augment_batch(images, seeded(0))
    per_image = out.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-3)
    assert per_image.min() >= 80 - 1e-3
    assert per_image.max() <= 120 + 1e-3
    assert per_image[:, 0].unique().numel() > 1  # each image has its own brightness


def test_grey_images_stay_grey() -> None:
    grey = torch.randint(0, 256, (6, 1, 12, 12), dtype=torch.uint8, generator=seeded(4))
    out = augment_batch(grey.expand(6, 3, 12, 12).contiguous(), seeded(5))
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-3)
    assert torch.allclose(out[:, 0], out[:, 2], atol=1e-3)


def test_horizontal_flip_happens_sometimes() -> None:
    # Dark left half, light right half. A crop keeps 70–100 % of the width, so the light
    # side stays on the same side unless the image is flipped.
    images = torch.zeros(64, 3, 16, 16, dtype=torch.uint8)
    images[..., 8:] = 200
    out = augment_batch(images, seeded(0))
    right_minus_left = out[..., 8:].mean(dim=(1, 2, 3)) - out[..., :8].mean(dim=(1, 2, 3))
    flipped = (right_minus_left < 0).sum().item()
    assert (right_minus_left.abs() > 20).all()
    assert 10 < flipped < 54  # about half of 64


def test_flip_mirrors_about_half_and_changes_nothing_else() -> None:
    from imgsim.train.augment import flip_batch

    images = random_batch(n=64)
    out = flip_batch(images, seeded(5))
    assert out.dtype == images.dtype and out.shape == images.shape
    mirrored = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, images, strict=True)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, images, strict=True)])
    assert (mirrored | kept).all()  # each image is itself or its exact mirror image
    assert 16 <= int(mirrored.sum()) <= 48


def test_flip_slices_of_a_global_batch_match_the_whole() -> None:
    from imgsim.train.augment import flip_batch

    images = random_batch(n=8)
    whole = flip_batch(images, seeded(3))
    parts = [flip_batch(images[i : i + 4], seeded(3), offset=i, total=8) for i in (0, 4)]
    assert torch.equal(whole, torch.cat(parts))
