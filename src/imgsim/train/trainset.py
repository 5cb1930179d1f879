"""The training collection: names and labels, the validation split, and images decoded on demand."""

# Only names and labels stay in memory; pixels are decoded in DataLoader worker processes when a
# batch needs them (with an optional bounded cache), so memory does not grow with the folder.

from __future__ import annotations

import hashlib
import logging
import sys
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..core.errors import DatasetError
from ..core.paths import name_path
from ..files.folders import walk_names
from ..images.data import (
    ImageRecord,
    UnreadableImageError,
    category_of,
    decode_file,
    default_workers,
    is_image_name,
    probe_file,
    require_categories,
    scan_images,
)

log = logging.getLogger("imgsim")

Item = tuple[int, np.ndarray | None, str | None]
FINGERPRINT_SLICE = 8192  # images hashed per step


@dataclass
class Collection:
    """The usable images of a folder (or of an in-memory array), with integer labels."""

    root: str
    names: np.ndarray  # UTF-8 bytes: one flat array, not a list of str objects that every
    # forked decode worker would copy as it touches their reference counts
    labels: torch.Tensor  # int64, an index into `categories`
    categories: list[str]
    images: torch.Tensor | None = None  # uint8 N×3×S×S when the images are already in memory

    def __len__(self) -> int:
        return len(self.labels)

    def name(self, i: int) -> str:
        return self.names[i].decode()

    def fingerprint(self) -> str:
        """Changes when an image is added, removed, renamed or moves category."""
        digest = hashlib.sha256()
        step = FINGERPRINT_SLICE  # a slice at a time, not a bytes object per image at once
        for start in range(0, len(self), step):
            names, labels = self.names[start : start + step], self.labels[start : start + step]
            for name, label in zip(names.tolist(), labels.tolist(), strict=True):
                digest.update(name + b"\0" + str(label).encode() + b"\n")
        return digest.hexdigest()[:16]

    def workers(self, requested: int = 0) -> int:
        """Decode processes for this collection: none for images in memory; 0 = the default."""
        return 0 if self.images is not None else (requested or default_workers())

    def dataset(self, image_size: int, cache_mb: int = 0) -> Dataset:
        if self.images is not None:
            return TensorImages(self.images)
        return FolderImages(self.root, self.names, image_size, cache_mb)


def in_memory(images: torch.Tensor, labels: torch.Tensor, categories: list[str]) -> Collection:
    """A collection of images already decoded to uint8 N×3×S×S (benchmarks)."""
    names = np.array([f"{i}".encode() for i in range(len(labels))], dtype=np.bytes_)
    return Collection("", names, labels.long(), list(categories), images)


def scan_names(root: Path) -> list[str]:
    """Image names under `root` as scan_images finds them (escaped), without a Path per file.

    200,000 ImageRecords with their Paths take ~90 MB; their names alone, a fraction of it.
    """
    if not root.is_dir():
        scan_images(root)  # raises the usual "Image folder not found" message
    return walk_names(root, is_image_name)


def _usable(root: Path, names: list[str]) -> Collection:
    """Names of categories with 2+ images, if there are 2+ such categories; else the usual error."""
    cats = [sys.intern(c) if (c := category_of(n)) else None for n in names]  # one str each
    counts = Counter(c for c in cats if c)
    usable = {c for c, n in counts.items() if n >= 2}
    if len(usable) < 2:  # the full records give the detailed message
        require_categories(
            [ImageRecord(n, c, name_path(root, n)) for n, c in zip(names, cats, strict=True)], root
        )
    categories = sorted(usable)
    lookup = {c: i for i, c in enumerate(categories)}
    keep = [i for i, c in enumerate(cats) if c in usable]
    labels = torch.tensor([lookup[cats[i]] for i in keep], dtype=torch.long)
    encoded = np.array([names[i].encode() for i in keep], dtype=np.bytes_)
    return Collection(str(root), encoded, labels, categories)


def scan_collection(data_dir: str | Path, workers: int = 0) -> Collection:
    """Every usable image of a folder: categories checked, unreadable files named and skipped."""
    root = Path(data_dir)
    data = _usable(root, scan_names(root))
    probes = DataLoader(
        _Probe(root, data.names), batch_size=256, num_workers=workers or default_workers(),
        collate_fn=list, worker_init_fn=_worker_init,
    )  # fmt: skip
    bad = set()
    for batch in probes:
        for i, err in batch:
            if err is not None:
                log.warning("Skipping unreadable image %s: %s", data.name(i), err)
                bad.add(i)
    if not bad:
        return data
    # Skipped files may leave a category too small: check again on what is left.
    return _usable(root, [data.name(i) for i in range(len(data)) if i not in bad])


class _Probe(Dataset):
    def __init__(self, root: Path, names: np.ndarray) -> None:
        self.root, self.names = root, names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> tuple[int, str | None]:
        return i, probe_file(name_path(self.root, self.names[i].decode()))


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation row indices, the same fraction of every category held out.

    Categories with fewer than 4 images stay whole in training: they need their pairs there.
    """
    gen = torch.Generator().manual_seed(seed)
    train_rows, val_rows = [], []
    for label in labels.unique().tolist():
        rows = (labels == label).nonzero().flatten()
        rows = rows[torch.randperm(len(rows), generator=gen)]
        n_val = 0
        if fraction > 0 and len(rows) >= 4:
            n_val = max(1, min(int(len(rows) * fraction), len(rows) - 3))
        val_rows.append(rows[:n_val])
        train_rows.append(rows[n_val:])
    return torch.cat(train_rows).sort().values, torch.cat(val_rows).sort().values


class FolderImages(Dataset):
    """Decodes an image file when asked, in whichever process asks (a DataLoader worker).

    Items are (index, uint8 3×S×S array or None, error message or None): a damaged file comes
    back as a message for the main process to name, never as a dead worker. Each process keeps
    up to `cache_mb` MB of decoded images, least recently used dropped first.
    """

    def __init__(self, root: str, names: np.ndarray, size: int, cache_mb: int = 0) -> None:
        self.root, self.names, self.size = Path(root), names, size
        self.cache_bytes = cache_mb * 2**20
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._held = 0

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> Item:
        if i in self._cache:
            self._cache.move_to_end(i)
            return i, self._cache[i], None
        try:
            arr = decode_file(name_path(self.root, self.names[i].decode()), self.size)
        except (UnreadableImageError, OSError) as exc:
            return i, None, str(exc)
        self._remember(i, arr)
        return i, arr, None

    def _remember(self, i: int, arr: np.ndarray) -> None:
        if arr.nbytes > self.cache_bytes:
            return
        self._cache[i] = arr
        self._held += arr.nbytes
        while self._held > self.cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._held -= old.nbytes


class TensorImages(Dataset):
    """Images already in memory, served through the same interface as FolderImages."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Item:
        return i, self.images[i].numpy(), None


def _collate(items: list[Item]) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    ok = [(i, a) for i, a, _ in items if a is not None]
    failed = [(i, e or "") for i, a, e in items if a is None]
    stacked = torch.from_numpy(np.stack([a for _, a in ok])) if ok else None
    return [i for i, _ in ok], stacked, failed


def _worker_init(_: int) -> None:
    from ..core.lifeline import bind_to_parent

    bind_to_parent()  # a killed `imgsim train` leaves no decode worker behind
    # Decode workers only decode: one thread each leaves the cores to the network.
    torch.set_num_threads(1)


class _Plan:
    """A batch sampler whose batches are set before each pass (keeps workers alive between)."""

    def __init__(self) -> None:
        self.batches: Iterable[list[int]] = ()

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)


class ImageLoader:
    """Batches of decoded images for any list of index batches, from one pool of workers."""

    def __init__(self, dataset: Dataset, workers: int, pin_memory: bool = False) -> None:
        self._plan = _Plan()
        self._names = getattr(dataset, "names", None)
        self._warned: set[int] = set()
        self._loader = DataLoader(
            dataset,
            batch_sampler=self._plan,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=pin_memory,
            persistent_workers=workers > 0,
            worker_init_fn=_worker_init if workers > 0 else None,
        )

    def batches(
        self, plan: Iterable[list[int]], strict: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(dataset indices, uint8 images) per planned batch; unreadable images are dropped
        with a warning, or raise DatasetError when `strict` (every process must agree)."""
        self._plan.batches = plan
        for indices, images, failed in self._loader:
            for i, err in failed:
                name = self._names[i].decode() if self._names is not None else str(i)
                if strict:
                    raise DatasetError(f"cannot decode {name}: {err}; remove it and resume")
                if i not in self._warned:
                    self._warned.add(i)
                    log.warning("Skipping unreadable image %s: %s", name, err)
            if images is not None:
                yield torch.tensor(indices, dtype=torch.long), images
