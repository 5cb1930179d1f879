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
COMPARE_SIDE = 32  # correlated at this size: detail a road sign's pictogram still shows
CROPS = (0.0, 0.02, 0.04, 0.06)  # per side: a copy cropped by up to ~12 % still lines up
# The aligned pair is then compared again region by region at THUMB_SIDE (detail_difference):
DETAIL_BLUR = 0.7  # Gaussian sigma in pixels: evens out resampling and JPEG edges
DETAIL_SHIFT = 1  # each pixel may match the other image's within this many pixels
DETAIL_BLOCK = 2  # the worst DETAIL_BLOCK² block of the difference decides
# At most this (levels of 255): chosen on the benchmark's --seed 0 planting (docs/benchmarks.md,
# "Duplicates"), where 99 % of the true copies that pass the correlation stay below it and
# most look-alikes that differ in one region (a face's mouth, an archive box's label) do not.
MAX_DETAIL = 52.0
# A pair that passes is looked at again (second_look), decoded at up to LOOK_SIDE a side: at
# most MAX_LOOK_DETAIL there. Chosen on the benchmark's --seed 0 planting (docs/benchmarks.md,
# "Duplicates"): 99.5 % of the true copies that pass the thumbnails stay below it, and of the
# 101 look-alike pairs that pass them 28 do (GNOME's icons and MATE's redraws of them, two
# artists' flags of Poland: pictures whose pixels differ less than a JPEG re-save's).
LOOK_SIDE = 128
MAX_LOOK_DETAIL = 40.0


def thumbnail(path: Path) -> np.ndarray | None:
    """The image decoded reduced and squashed to THUMB_SIDE², RGB; None when unreadable."""
    from ...images.data import UnreadableImageError, load_image

    try:
        im = load_image(path, draft_size=THUMB_SIDE)
    except (UnreadableImageError, OSError):
        return None
    return np.asarray(im.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX))


def _crop_box(crop: float) -> tuple[float, float, float, float]:
    edge = THUMB_SIDE * crop
    return (edge, edge, THUMB_SIDE - edge, THUMB_SIDE - edge)


def cropped(pixels: np.ndarray) -> list[np.ndarray]:
    """The thumbnail cropped by each of CROPS per side, at COMPARE_SIDE², zero mean and unit
    length: so a brighter or darker copy compares as the same."""
    im = Image.fromarray(np.ascontiguousarray(pixels))
    out = []
    for crop in CROPS:
        side = (COMPARE_SIDE, COMPARE_SIDE)
        small = im.resize(side, Image.Resampling.BILINEAR, box=_crop_box(crop))
        x = np.asarray(small, np.float32).ravel()
        x = x - x.mean()
        out.append(x / max(float(np.linalg.norm(x)), 1e-6))
    return out


def cropped_at(pixels: np.ndarray, crop: int) -> np.ndarray:
    """The thumbnail cropped by CROPS[crop] per side, at THUMB_SIDE² (float, RGB)."""
    if crop == 0:
        return np.asarray(pixels, np.float32)
    im = Image.fromarray(np.ascontiguousarray(pixels))
    side = (THUMB_SIDE, THUMB_SIDE)
    return np.asarray(im.resize(side, Image.Resampling.BILINEAR, box=_crop_box(CROPS[crop])),
                      np.float32)  # fmt: skip


def aligned_correlation(a: np.ndarray, b: np.ndarray, view: int) -> float:
    """How alike two thumbnails are, pixel by pixel, once b is turned as `view` says: the
    best correlation of the colour pixels over either one cropped by CROPS (the other whole).

    Look-alikes that features and hashes cannot tell apart (the same road-sign frame round
    another pictogram, flags with the same stripes in other colours) differ here, while a
    re-saved, resized, slightly cropped or recoloured copy correlates above 0.97
    (docs/benchmarks.md, "Duplicates").
    """
    return correlation_of(cropped(a), cropped(dihedral_view(b, view)))


def aligned_measures(a: np.ndarray, b: np.ndarray, view: int) -> tuple[float, float]:
    """aligned_correlation of two thumbnails, and the detail_difference of the crops that
    give it: a pair is confirmed when the first is at least the pixel threshold and the
    second at most MAX_DETAIL."""
    b = dihedral_view(b, view)
    r, i, j = best_alignment(cropped(a), cropped(b))
    return r, detail_difference(cropped_at(a, i), cropped_at(b, j))


def correlation_of(first: list[np.ndarray], second: list[np.ndarray]) -> float:
    """aligned_correlation of two thumbnails' `cropped` (the second already turned)."""
    return best_alignment(first, second)[0]


def best_alignment(first: list[np.ndarray], second: list[np.ndarray]) -> tuple[float, int, int]:
    """The best correlation of two thumbnails' `cropped` (the second already turned) and the
    crops (indices into CROPS) that give it: one of the two is whole."""
    best = max((float(first[0] @ y), 0, j) for j, y in enumerate(second))
    return max(best, *((float(x @ second[0]), i, 0) for i, x in enumerate(first) if i))


def detail_difference(first: np.ndarray, second: np.ndarray, block: int = DETAIL_BLOCK) -> float:
    """How much two aligned pictures of one shape (cropped_at, or a second_look) differ in
    their most different small region, in levels of 255: 0 for the same picture.

    Each colour channel of the second is scaled to the first's mean and spread (a brighter,
    darker or more saturated copy compares as the same), both are blurred by DETAIL_BLUR, and
    each pixel is compared with the closest of the other's within DETAIL_SHIFT pixels (so an
    edge moved by resampling, cropping or JPEG costs little), both ways, by its most different
    channel; the answer is the mean of the worst block² block. One global correlation
    misses what this catches: two faces that differ in the mouth, archive boxes with
    another label.
    """
    from scipy.ndimage import gaussian_filter

    # Channels first: each channel a contiguous plane, which numpy goes through fastest.
    a = np.ascontiguousarray(np.asarray(first, np.float32).transpose(2, 0, 1))
    b = np.ascontiguousarray(np.asarray(second, np.float32).transpose(2, 0, 1))
    a_mean, b_mean = a.mean(axis=(1, 2), keepdims=True), b.mean(axis=(1, 2), keepdims=True)
    a_std, b_std = a.std(axis=(1, 2), keepdims=True), b.std(axis=(1, 2), keepdims=True)
    gain = np.where(b_std > 1.0, np.clip(a_std / np.maximum(b_std, 1e-6), 0.5, 2.0), 1.0)
    b = (b - b_mean) * gain + a_mean
    blur = (0, DETAIL_BLUR, DETAIL_BLUR)
    a, b = gaussian_filter(a, blur), gaussian_filter(b, blur)
    d = np.maximum(_closest(a, b), _closest(b, a))
    rows, cols = d.shape[0] // block, d.shape[1] // block
    d = d[: rows * block, : cols * block]
    return float(d.reshape(rows, block, cols, block).mean(axis=(1, 3)).max())


def _closest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pixel of a (channels first): the least, over b's pixels within DETAIL_SHIFT, of the
    largest channel difference."""
    k, (h, w) = DETAIL_SHIFT, a.shape[1:]
    padded = np.pad(b, ((0, 0), (k, k), (k, k)), mode="edge")
    best = np.full((h, w), np.inf, np.float32)
    for dy in range(2 * k + 1):
        for dx in range(2 * k + 1):
            near = padded[:, dy : dy + h, dx : dx + w]
            d = np.abs(a[0] - near[0])
            for c in range(1, len(a)):
                np.maximum(d, np.abs(a[c] - near[c]), out=d)
            np.minimum(best, d, out=best)
    return best


def second_look(first: Path, second: Path, view: int, crops: tuple[int, int]) -> float | None:
    """detail_difference of two images aligned as the thumbnails matched (the second turned
    as `view` says, each cropped by CROPS[crops[...]]), decoded again and compared at the
    smaller one's own size per side, at most LOOK_SIDE: a copy halved is compared with its
    original halved, not blurred against it sharp, and a label's letters show; None when
    either is unreadable.
    """
    from ...images.data import UnreadableImageError, load_image

    try:
        a = load_image(first, draft_size=LOOK_SIDE)
        b = load_image(second, draft_size=LOOK_SIDE)
    except (UnreadableImageError, OSError):
        return None
    b = Image.fromarray(np.ascontiguousarray(dihedral_view(np.asarray(b), view)))
    boxes = [_box_of(im.size, CROPS[crop]) for im, crop in ((a, crops[0]), (b, crops[1]))]
    side = [max(8, round(min(LOOK_SIDE, *(box[k + 2] - box[k] for box in boxes)))) for k in (0, 1)]
    pictures = [
        np.asarray(im.resize(tuple(side), Image.Resampling.BOX, box=box))
        for im, box in zip((a, b), boxes, strict=True)
    ]
    block = max(1, round(DETAIL_BLOCK * max(side) / THUMB_SIDE))  # the same share of the picture
    return detail_difference(pictures[0], pictures[1], block)


def _box_of(size: tuple[int, int], crop: float) -> tuple[float, float, float, float]:
    width, height = size
    return (width * crop, height * crop, width * (1 - crop), height * (1 - crop))


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
