"""Search with no training on the other engines: `--pretrained` with Milvus and with Ray."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsim.cli.commands import main
from imgsim.core.config import MODEL_FILE, PRETRAINED, SearchConfig
from imgsim.model.network import read_model_meta
from imgsim.search.searcher import Searcher
from imgsim.store import open_store
from tests import milvus_server

from .test_pretrained import FLOWER, HOPPER


@pytest.fixture
def photos(tmp_path: Path, shapes_dir: Path) -> Path:
    """An unlabelled folder: two photographs (JPEG) and six shape drawings, no categories."""
    folder = tmp_path / "camera"
    folder.mkdir()
    for i, source in enumerate([FLOWER, HOPPER]):
        with Image.open(source) as im:
            im.convert("RGB").save(folder / f"IMG_{i:04d}.jpg")
    for i, path in enumerate(sorted(shapes_dir.glob("*.png"))[::4][:6]):
        shutil.copy(path, folder / f"IMG_{i + 2:04d}.png")
    return folder


@pytest.fixture
def milvus_spec(milvus_address: str) -> object:
    spec = milvus_server.unique_spec(milvus_address)
    yield spec
    milvus_server.drop_prefix(milvus_address, spec)


def test_extract_pretrained_into_milvus_answers_searches_and_the_server(
    photos: Path, tmp_path: Path, milvus_spec: str
) -> None:
    work = tmp_path / "work"
    code = main(["extract", "--pretrained", "--data", str(photos), "--workdir", str(work),
                 "--store", milvus_spec, "--workers", "1"])  # fmt: skip
    assert code == 0
    assert read_model_meta(work / MODEL_FILE)["pretrained"] == PRETRAINED
    assert not (work / "triplet_manifest.sqlite").exists()  # Milvus holds the collection
    searcher = Searcher.from_workdir(work, store=milvus_spec)
    top = searcher.search(photos / "IMG_0001.jpg", top_k=1, threshold=0)[0]
    assert top.filename == "IMG_0001.jpg" and top.embedding_distance < 1e-3

    from imgsim.web import create_app

    client = create_app(SearchConfig(workdir=str(work), store=milvus_spec)).test_client()
    stats = client.get("/stats").get_json()
    assert stats["total_images"] == 8 and stats["embedding_dimension"] == 1280
    assert stats["model_type"] == "EfficientNet-Lite0 (ImageNet, untrained here)"
    upload = (io.BytesIO((photos / "IMG_0000.jpg").read_bytes()), "query.jpg")
    answer = client.post("/search?threshold=0", data={"image": upload, "top_k": "2"})
    assert answer.status_code == 200
    assert answer.get_json()["results"][0]["filename"] == "IMG_0000.jpg"


def vectors(work: Path) -> dict[str, np.ndarray]:
    with open_store(work) as store:
        return {n: v for names, vs in store.iter_vectors() for n, v in zip(names, vs, strict=True)}


def test_index_pretrained_on_ray_matches_the_local_engine(photos: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="ray is the optional [scale] extra (dev installs it)")
    local, distributed = tmp_path / "local", tmp_path / "ray"
    assert main(["index", "--pretrained", "--data", str(photos), "--workdir", str(local)]) == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code = main(["index", "--pretrained", "--engine", "ray", "--concurrency", "2",
                     "--data", str(photos), "--workdir", str(distributed)])  # fmt: skip
    finally:
        ray.shutdown()
    assert code == 0
    assert read_model_meta(distributed / MODEL_FILE)["pretrained"] == PRETRAINED
    one, spread = vectors(local), vectors(distributed)
    assert set(one) == set(spread) and len(one) == 8
    assert all(np.allclose(one[n], spread[n], atol=1e-4) for n in one)
    searcher = Searcher.from_workdir(distributed)
    assert searcher.search(photos / "IMG_0000.jpg", top_k=1, threshold=0)[0].filename == (
        "IMG_0000.jpg"
    )
