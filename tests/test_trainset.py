"""Tests for the streaming training set: names in memory, pixels decoded on demand, a cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imgsim.images.data import decode_file
from imgsim.train.trainset import FolderImages, ImageLoader, in_memory, scan_collection


def test_a_collection_holds_names_and_labels_not_pixels(shapes_dir: Path) -> None:
    data = scan_collection(shapes_dir, workers=1)
    assert data.images is None and len(data) == 96
    assert data.names.dtype.kind == "S"  # one flat array: forked workers share it untouched
    assert data.categories == ["circle", "square", "stripes", "triangle"]
    assert data.name(0) == "circle_00001.png" and int(data.labels[0]) == 0


def test_unreadable_files_are_named_and_skipped(
    tmp_path: Path, shapes_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for p in sorted(shapes_dir.glob("circle_*"))[:3] + sorted(shapes_dir.glob("square_*"))[:3]:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "square_09999.png").write_bytes(b"not a png at all")
    data = scan_collection(tmp_path, workers=1)
    assert "square_09999.png" in caplog.text and len(data) == 6


def test_folder_images_decode_on_demand_with_a_bounded_cache(shapes_dir: Path) -> None:
    data = scan_collection(shapes_dir, workers=1)
    dataset = FolderImages(data.root, data.names, 64, cache_mb=1)  # 12 KB per image
    for i in range(len(data)):
        index, arr, err = dataset[i]
        assert index == i and err is None
        assert np.array_equal(arr, decode_file(shapes_dir / data.name(i), 64))
    assert 0 < dataset._held <= 2**20 and len(dataset._cache) < len(data)
    assert next(reversed(dataset._cache)) == len(data) - 1  # the newest stays, the oldest went
    assert FolderImages(data.root, data.names, 64, cache_mb=0)[5][1] is not None


def test_loader_serves_any_plan_of_batches_from_one_pool(shapes_dir: Path) -> None:
    data = scan_collection(shapes_dir, workers=1)
    loader = ImageLoader(data.dataset(32), workers=1)
    for plan in ([[3, 1], [90]], [[7, 8, 9]]):
        got = list(loader.batches(plan))
        assert [idx.tolist() for idx, _ in got] == plan
        assert all(images.shape == (len(idx), 3, 32, 32) for idx, images in got)


def test_in_memory_collections_serve_their_tensors() -> None:
    images = torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8)
    data = in_memory(images, torch.tensor([0, 0, 0, 1, 1, 1]), ["a", "b"])
    loader = ImageLoader(data.dataset(32), workers=0)
    ((indices, batch),) = list(loader.batches([[4, 2]]))
    assert indices.tolist() == [4, 2] and torch.equal(batch, images[[4, 2]])


def test_scan_names_finds_what_scan_images_finds(tmp_path: Path, shapes_dir: Path) -> None:
    from imgsim.images.data import scan_images
    from imgsim.train.trainset import scan_names

    png = next(shapes_dir.glob("*.png")).read_bytes()
    for name in ("a.png", "a/b.png", "a/c/d.jpg", "a-b/x.png", "z.PNG", ".hidden.png",
                 ".h/e.png", "notes.txt", "b/.f.png"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(png)
    (tmp_path / "link").symlink_to(tmp_path / "a", target_is_directory=True)
    assert scan_names(tmp_path) == [r.name for r in scan_images(tmp_path)]


def test_workers_zero_means_the_default_and_memory_needs_none(shapes_dir: Path) -> None:
    from imgsim.images.data import default_workers

    data = scan_collection(shapes_dir, workers=1)
    assert data.workers(0) == default_workers() and data.workers(3) == 3
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    assert in_memory(images, torch.tensor([0, 1]), ["a", "b"]).workers(4) == 0


def test_per_image_state_is_flat_arrays_not_python_objects(shapes_dir: Path) -> None:
    data = scan_collection(shapes_dir, workers=1)
    longest = max(len(data.name(i)) for i in range(len(data)))
    per_image = (data.names.nbytes + data.labels.element_size() * len(data)) / len(data)
    assert per_image <= longest + 8  # the name's bytes and an int64 label, nothing per object
    dataset = data.dataset(32)  # what every forked decode worker holds
    for holder in (data, dataset):
        per_row = [k for k, v in vars(holder).items() if isinstance(v, list | tuple | dict | set)
                   and len(v) == len(data)]  # fmt: skip
        assert per_row == [], f"{type(holder).__name__} keeps a Python object per image"


@pytest.mark.parametrize("slice_size", [8192, 7])  # 7: many slices, a short last one
def test_fingerprint_is_the_digest_of_every_name_and_label(
    shapes_dir: Path, slice_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from imgsim.train import trainset

    monkeypatch.setattr(trainset, "FINGERPRINT_SLICE", slice_size)
    data = scan_collection(shapes_dir, workers=1)
    pairs = zip(data.names, data.labels, strict=True)
    lines = b"".join(n + b"\0" + str(int(y)).encode() + b"\n" for n, y in pairs)
    assert data.fingerprint() == hashlib.sha256(lines).hexdigest()[:16]  # as checkpoints store it
