"""The 8 ways a picture can be turned and mirrored: their hashes, and embeddings of them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# (quarter turns anticlockwise, then mirrored left-right): view 0 is the picture as it is.
DIHEDRAL = tuple((turns, mirror) for mirror in (False, True) for turns in range(4))
VIEW_NAMES = (
    "", "turned 90°", "turned 180°", "turned 270°",
    "mirrored", "turned 90° and mirrored", "turned 180° and mirrored", "turned 270° and mirrored",
)  # fmt: skip
HASH_SIDE = 32  # imagehash's pHash: a 32x32 grey image, its 8x8 lowest DCT frequencies
HASH_LOW = 8


def dihedral_view(pixels: np.ndarray, view: int, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """`pixels` turned and mirrored as view `view` says; `axes` are its rows and columns."""
    turns, mirror = DIHEDRAL[view]
    out = np.rot90(pixels, turns, axes=axes)
    return np.flip(out, axis=axes[1]) if mirror else out


def view_hashes(image: Image.Image) -> tuple[int, ...]:
    """The 64-bit pHash of each of the image's 8 views; the first is imagehash.phash's.

    A copy turned or mirrored has, in one of its views, about the hash of the original: the
    32x32 grey image is turned, not the file, so the 8 hashes cost one decode.
    """
    from scipy.fftpack import dct

    grey = np.asarray(image.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS))
    hashes = []
    for view in range(len(DIHEDRAL)):
        pixels = dihedral_view(grey, view)
        low = dct(dct(pixels, axis=0), axis=1)[:HASH_LOW, :HASH_LOW]
        bits = (low > np.median(low)).ravel()  # most significant first, as imagehash
        hashes.append(int.from_bytes(np.packbits(bits).tobytes(), "big"))
    return tuple(hashes)


class ViewEmbedder:
    """Embeddings of images turned and mirrored, to confirm a copy the hashes found turned."""

    def __init__(self, embedder: Any, batch_size: int = 32) -> None:
        self.embedder = embedder  # an imgsim.model.embedder.Embedder (or anything with .embed)
        self.batch_size = batch_size

    def __call__(self, paths: Sequence[Path], views: Sequence[int]) -> np.ndarray:
        """One vector per (path, view): the image decoded, turned as `view` says, embedded.

        An image that cannot be read now (changed, removed) gets a zero vector: it confirms
        nothing.
        """
        out = []
        for start in range(0, len(paths), self.batch_size):
            chunk = list(zip(paths[start : start + self.batch_size],
                             views[start : start + self.batch_size], strict=True))  # fmt: skip
            arrays = [self._turned(Path(p), v) for p, v in chunk]
            size = self.embedder.image_size
            batch = np.stack([a if a is not None else np.zeros((3, size, size), np.uint8)
                              for a in arrays])  # fmt: skip
            vectors = np.array(self.embedder.embed(batch), np.float32)
            vectors[[a is None for a in arrays]] = 0.0
            out.append(vectors)
        return np.concatenate(out) if out else np.empty((0, 0), np.float32)

    def _turned(self, path: Path, view: int) -> np.ndarray | None:
        from ...images.data import UnreadableImageError, decode_file

        try:
            pixels = decode_file(path, self.embedder.image_size)
        except (UnreadableImageError, OSError):
            return None
        return np.ascontiguousarray(dihedral_view(pixels, view, axes=(1, 2)))


THUMB_SIDE = 64  # each image, squashed to a square this size, for the pixel comparison
COMPARE_SIDE = 32  # compared at this size: detail a road sign's pictogram still shows
CROPS = (0.0, 0.02, 0.04, 0.06)  # per side: a copy cropped by up to ~12 % still lines up


def thumbnail(path: Path) -> np.ndarray | None:
    """The image decoded reduced and squashed to THUMB_SIDE², RGB; None when unreadable."""
    from ...images.data import UnreadableImageError, load_image

    try:
        im = load_image(path, draft_size=THUMB_SIDE)
    except (UnreadableImageError, OSError):
        return None
    return np.asarray(im.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX))


def cropped(pixels: np.ndarray) -> list[np.ndarray]:
    """The thumbnail cropped by each of CROPS per side, at COMPARE_SIDE², zero mean and unit
    length: so a brighter or darker copy compares as the same."""
    im = Image.fromarray(np.ascontiguousarray(pixels))
    out = []
    for crop in CROPS:
        edge = THUMB_SIDE * crop
        box = (edge, edge, THUMB_SIDE - edge, THUMB_SIDE - edge)
        small = im.resize((COMPARE_SIDE, COMPARE_SIDE), Image.Resampling.BILINEAR, box=box)
        x = np.asarray(small, np.float32).ravel()
        x = x - x.mean()
        out.append(x / max(float(np.linalg.norm(x)), 1e-6))
    return out


def aligned_correlation(a: np.ndarray, b: np.ndarray, view: int) -> float:
    """How alike two thumbnails are, pixel by pixel, once b is turned as `view` says: the
    best correlation of the colour pixels over either one cropped by CROPS (the other whole).

    Look-alikes that features and hashes cannot tell apart (the same road-sign frame round
    another pictogram, flags with the same stripes in other colours) differ here, while a
    re-saved, resized, slightly cropped or recoloured copy correlates above 0.97
    (docs/benchmarks.md, "Duplicates").
    """
    return correlation_of(cropped(a), cropped(dihedral_view(b, view)))


def correlation_of(first: list[np.ndarray], second: list[np.ndarray]) -> float:
    """aligned_correlation of two thumbnails' `cropped` (the second already turned)."""
    best = max(float(first[0] @ y) for y in second)
    return max(best, max(float(x @ second[0]) for x in first[1:]))


class CroppedCache:
    """`cropped` of thumbnails by (image, view), the `size` most recently used kept: an image
    is compared with each of its neighbours, and cropping it is most of a comparison's work."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size  # 48 KB each
        self._kept: OrderedDict[tuple[int, int], list[np.ndarray]] = OrderedDict()

    def get(self, key: tuple[int, int], pixels: np.ndarray) -> list[np.ndarray]:
        """The crops of `pixels` (image key[0]) turned as view key[1] says."""
        found = self._kept.get(key)
        if found is None:
            found = cropped(dihedral_view(pixels, key[1]))
            self._kept[key] = found
            if len(self._kept) > self.size:
                self._kept.popitem(last=False)
        else:
            self._kept.move_to_end(key)
        return found
