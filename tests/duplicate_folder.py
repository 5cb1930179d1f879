"""A folder of distinct generated pictures with planted duplicates, for the duplicate tests."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image

from imgsim.core.config import MODEL_FILE, ModelConfig
from imgsim.images.data import scan_images
from imgsim.model.network import EmbeddingNet, save_model
from imgsim.search.searcher import Searcher
from imgsim.store import open_store
from imgsim.store.exports import build_collection

from .benchmark_import import load_benchmark

bench = load_benchmark("duplicates")

# The planted groups of make_planted_folder, each {original, copy}.
PLANTED = [
    {"copies/cropped.jpg", "pic_003.jpg"},
    {"copies/exact.jpg", "pic_000.jpg"},
    {"copies/resaved.jpg", "pic_001.jpg"},
    {"copies/resized.png", "pic_002.jpg"},
]


def jpeg(im: Image.Image, quality: int = 95) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return out.getvalue()


def make_planted_folder(folder: Path, count: int = 10) -> Path:
    """`count` distinct pictures; copies of four: exact, re-saved, resized 60 %, cropped 2.5 %."""
    folder.mkdir(parents=True, exist_ok=True)
    originals = {i: bench.distinct_image(1000 + i) for i in range(count)}
    for i, im in originals.items():
        (folder / f"pic_{i:03d}.jpg").write_bytes(jpeg(im))
    (folder / "copies").mkdir()
    (folder / "copies" / "exact.jpg").write_bytes((folder / "pic_000.jpg").read_bytes())
    (folder / "copies" / "resaved.jpg").write_bytes(jpeg(originals[1], quality=40))
    small = originals[2].resize((originals[2].width * 6 // 10, originals[2].height * 6 // 10))
    small.save(folder / "copies" / "resized.png")
    w, h = originals[3].size
    (folder / "copies" / "cropped.jpg").write_bytes(
        jpeg(originals[3].crop((w // 40, h // 40, w - w // 40, h - h // 40)), 90)
    )
    return folder


def contents(folder: Path) -> dict[str, str]:
    """Every file under `folder` by relative name, with its SHA-256: what must never change."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


TINY = ModelConfig(image_size=32, widths=(8, 16), blocks=(1, 1), head_hidden=16, embedding_dim=8)


def indexed_workdir(root: Path, folder: Path) -> Path:
    """A workdir beside `folder` with an untrained tiny model and an index of its images."""
    workdir = root / "work"
    workdir.mkdir()
    model = EmbeddingNet(TINY).eval()
    model_id = save_model(workdir / MODEL_FILE, model, ["pic", "copies"])
    names = [r.name for r in scan_images(folder) if not r.name.startswith("broken")]
    features = Searcher(model, None).embed([folder / n for n in names])
    with open_store(workdir) as store:
        build_collection(store, features, names, folder, model_id)
    return workdir
