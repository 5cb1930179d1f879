"""The Milvus engine's own promises: clear errors, one collection per model, kill -9 safety."""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from imgsim.cli.commands import main
from imgsim.core.config import ExtractConfig, SearchConfig
from imgsim.embed.update import update_index
from imgsim.search.searcher import Searcher
from imgsim.store import StoreUnavailableError, open_store
from tests import milvus_server


def closed_port() -> int:
    return milvus_server.free_port()  # nothing listens there once the probe socket is closed


def test_an_unreachable_milvus_is_named_by_the_cli(tmp_path: Path, capsys) -> None:
    address = f"milvus://127.0.0.1:{closed_port()}"
    with pytest.raises(StoreUnavailableError, match=r"cannot reach Milvus at 127\.0\.0\.1"):
        open_store(tmp_path, address, "m1")
    code = main(["index", "--data", str(tmp_path), "--workdir", str(tmp_path), "--store", address])
    assert code == 1  # the model is missing too, but nothing is changed either way
    assert "error:" in capsys.readouterr().err


def test_an_unreachable_milvus_is_503_from_the_server(trained_workdir: Path) -> None:
    from imgsim.web import create_app

    port = closed_port()
    config = SearchConfig(workdir=str(trained_workdir), store=f"milvus://127.0.0.1:{port}")
    client = create_app(config).test_client()
    image = (io.BytesIO(Path(__file__).read_bytes()), "q.png")
    response = client.post("/search", data={"image": image})
    assert response.status_code == 503
    assert f"127.0.0.1:{port}" in response.get_json()["error"]
    health = client.get("/health").get_json()
    assert health["ready"] is False and f"127.0.0.1:{port}" in health["problems"][0]


@pytest.fixture
def milvus_spec(milvus_address: str) -> object:
    spec = milvus_server.unique_spec(milvus_address)
    yield spec
    milvus_server.drop_prefix(milvus_address, spec)


@pytest.fixture
def workdir(make_workdir) -> Path:
    """A workdir with the trained model and no index, over a copy of shape images."""
    return make_workdir(("circle", "square"), 6)


def config(work: Path, spec: str) -> ExtractConfig:
    return ExtractConfig(
        data_dir=str(work.parent / "data"), output_dir=str(work),
        model_path=str(work / "triplet_base_final.pt"), workers=1, store=spec,
    )  # fmt: skip


def test_index_search_and_update_through_milvus(
    workdir: Path, shapes_dir: Path, milvus_spec: str
) -> None:
    assert update_index(config(workdir, milvus_spec), progress=False).total == 12
    assert not (workdir / "triplet_manifest.sqlite").exists()  # Milvus holds the collection
    shutil.copy(shapes_dir / "triangle_00001.png", workdir.parent / "data")
    (workdir.parent / "data" / "circle_00001.png").unlink()
    result = update_index(config(workdir, milvus_spec), progress=False)
    assert (result.embedded, result.removed, result.total) == (1, 1, 12)
    searcher = Searcher.from_workdir(workdir, store=milvus_spec)
    top = searcher.search(shapes_dir / "triangle_00001.png", top_k=1)[0]
    assert top.filename == "triangle_00001.png" and top.embedding_distance < 1e-3
    query = shapes_dir / "triangle_00001.png"
    only = searcher.search(query, top_k=20, threshold=0, categories=["square"])
    assert len(only) == 6 and {r.category for r in only} == {"square"}


def test_a_collection_of_another_model_is_refused(
    workdir: Path, milvus_spec: str, tmp_path: Path
) -> None:
    import torch

    from imgsim.model.network import load_model, save_model

    update_index(config(workdir, milvus_spec), progress=False)
    model, info = load_model(workdir / "triplet_base_final.pt")
    with torch.no_grad():
        model.head[-1].bias.add_(0.1)  # a retrained model: another id
    other = tmp_path / "other"
    other.mkdir()
    save_model(other / "triplet_base_final.pt", model, info["categories"])
    searcher = Searcher.from_workdir(other, store=milvus_spec)
    assert "holds the collection of model" in searcher.problems[-1]
    assert not searcher.embeddings_loaded


PAUSED_UPDATE = """
import sys, time
from imgsim.store.milvus_store import MilvusStore
marker = sys.argv[1]
real = MilvusStore.apply
def apply(self, *args, **kwargs):
    open(marker, "w").write("x")
    time.sleep(600)
MilvusStore.apply = apply
from imgsim.cli.commands import main
sys.exit(main(sys.argv[2:]))
"""


def test_kill_9_during_an_update_keeps_the_collection(
    workdir: Path, shapes_dir: Path, milvus_spec: str, tmp_path: Path
) -> None:
    update_index(config(workdir, milvus_spec), progress=False)
    shutil.copy(shapes_dir / "triangle_00002.png", workdir.parent / "data")
    marker = tmp_path / "paused"
    args = ["index", "--update", "--data", str(workdir.parent / "data"), "--workdir",
            str(workdir), "--store", milvus_spec]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_UPDATE, str(marker), *args])
    try:
        from tests.test_crash_safety import wait_for

        wait_for(marker.exists, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with open_store(workdir, milvus_spec) as store:
        assert store.count() == 12  # as before the update
    assert update_index(config(workdir, milvus_spec), progress=False).total == 13
