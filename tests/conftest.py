"""Shared fixtures: tiny generated image folders and a tiny trained workdir."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from imgsim.core.config import ExtractConfig, ModelConfig, TrainConfig
from imgsim.images.sample import generate_shapes

SHAPES = ("circle", "square", "triangle", "stripes")


def tiny_model_config(**overrides: object) -> ModelConfig:
    """A network small enough to train in a second on 32 px images."""
    values = dict(
        image_size=32, widths=(8, 16), blocks=(1, 1), head_hidden=32, embedding_dim=16,
        backbone="scratch",
    )  # fmt: skip
    values.update(overrides)
    return ModelConfig(**values)  # type: ignore[arg-type]


def tiny_train_config(data: Path, out: Path, **overrides: object) -> TrainConfig:
    values = dict(
        data_dir=str(data),
        output_dir=str(out),
        epochs=3,
        batch_size=32,
        m_per_class=8,
        learning_rate=3e-3,
        loss="triplet",  # on these tiny sets it learns in far fewer steps than multi-similarity
        workers=1,
        threads=1,  # one thread: faster than two on a loaded 2-core machine, and repeatable
        val_fraction=0.2,
        augment=False,
        augment_below=0,
        flip=False,
        early_stop=False,  # tests of stopping turn it on; the others run their epochs
    )
    values.update(overrides)
    return TrainConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four easy categories of 32 px generated pictures, 24 each (circle_00001.png, …)."""
    root = tmp_path_factory.mktemp("shapes")
    generate_shapes(root, per_class=24, size=32, seed=1, shapes=SHAPES)
    return root


@pytest.fixture(scope="session")
def shapes_queries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fresh pictures of the same four categories, never seen in training."""
    root = tmp_path_factory.mktemp("shape_queries")
    generate_shapes(root, per_class=8, size=32, seed=2, shapes=SHAPES)
    return root


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory: pytest.TempPathFactory, shapes_dir: Path) -> Path:
    """A workdir with a trained tiny model and its extracted index."""
    from imgsim.embed.extract import extract
    from imgsim.train.train import train

    out = tmp_path_factory.mktemp("workdir")
    config = tiny_train_config(shapes_dir, out, epochs=4, steps_per_epoch=8)
    train(config, tiny_model_config(), progress=False)
    extract(
        ExtractConfig(
            data_dir=str(shapes_dir),
            output_dir=str(out),
            model_path=str(out / "triplet_base_final.pt"),
            workers=1,
        ),
        progress=False,
    )
    return out


@pytest.fixture(autouse=True)
def _imgsim_logs_propagate() -> None:
    # The CLI turns propagation off for its own handler; caplog needs it on.
    logging.getLogger("imgsim").propagate = True


# A parallel run (pytest -n N, pytest-xdist): its workers share one Milvus server, in a folder
# the controller makes and hands to each worker, and stops at the end of the run.
SHARED_MILVUS = "imgsim_shared_milvus"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """(xdist, in the controller) Tell each worker where the run's shared server lives."""
    config = node.config
    if not hasattr(config, SHARED_MILVUS):
        setattr(config, SHARED_MILVUS, Path(tempfile.mkdtemp(prefix="imgsim-tests-milvus-")))
    node.workerinput[SHARED_MILVUS] = str(getattr(config, SHARED_MILVUS))
    node.workerinput["imgsim_controller_pid"] = os.getpid()


def pytest_unconfigure(config: pytest.Config) -> None:
    shared = getattr(config, SHARED_MILVUS, None)
    if shared is not None:  # the controller of a parallel run
        from . import milvus_server

        milvus_server.stop_shared(shared)
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture(scope="session")
def milvus_server_started(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> object:
    """HOST:PORT of a real Milvus server (see tests/milvus_server.py), or why ours failed."""
    from . import milvus_server

    worker = getattr(request.config, "workerinput", {})
    shared = Path(worker[SHARED_MILVUS]) if SHARED_MILVUS in worker else None
    try:
        yield from milvus_server.start(
            tmp_path_factory.mktemp("milvus"), shared, worker.get("imgsim_controller_pid", 0)
        )
    except ImportError:
        pytest.skip("no Milvus: pip install -e '.[dev]' (PyPI's milvus) or set IMGSIM_TEST_MILVUS")
    except milvus_server.ServerFailed as failure:
        yield failure  # raised before the server's one yield, so this is the only one


@pytest.fixture
def milvus_address(milvus_server_started: object) -> str:
    """HOST:PORT of the session's Milvus server; if it failed: one error, then skips saying why."""
    from . import milvus_server

    started = milvus_server_started
    if isinstance(started, str):
        return started
    assert isinstance(started, milvus_server.ServerFailed)
    if not started.reported:
        started.reported = True
        pytest.fail(f"the tests' Milvus server did not start: {started}", pytrace=False)
    pytest.skip(f"the tests' Milvus server did not start (an error above says so): {started}")


@pytest.fixture(params=["faiss", "milvus"])
def store_spec(request: pytest.FixtureRequest) -> object:
    """Each engine in turn: 'faiss' (embedded), or a fresh prefix on the Milvus server."""
    if request.param == "faiss":
        yield "faiss"
        return
    from . import milvus_server

    address = request.getfixturevalue("milvus_address")
    spec = milvus_server.unique_spec(address)
    yield spec
    milvus_server.drop_prefix(address, spec)


@pytest.fixture
def make_workdir(trained_workdir: Path, shapes_dir: Path, tmp_path: Path) -> object:
    """make(shapes, per_shape) → a workdir with the trained model and no index, over a copy of
    `per_shape` images of each shape in ../data (tests that change files get their own)."""

    def make(
        shapes: tuple[str, ...] = ("circle", "square", "triangle"), per_shape: int = 8
    ) -> Path:
        work, data = tmp_path / "work", tmp_path / "data"
        work.mkdir()
        data.mkdir()
        shutil.copy(trained_workdir / "triplet_base_final.pt", work)
        for shape in shapes:
            for path in sorted(shapes_dir.glob(f"{shape}_*"))[:per_shape]:
                shutil.copy(path, data / path.name)
        return work

    return make
