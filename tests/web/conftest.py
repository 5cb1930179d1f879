"""Fixtures for the web tests: a tiny indexed workdir (built once), and app/client/runner."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_page import browser, guarded_page, problems  # noqa: F401 - for test_browser*.py
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from webtest_images import COLOURS, ODD_NAMES, make_image
from werkzeug.serving import make_server

from imgsim.core.config import MODEL_FILE, ModelConfig, SearchConfig
from imgsim.model.network import EmbeddingNet, save_model
from imgsim.search.searcher import Searcher
from imgsim.store import open_store
from imgsim.store.exports import build_collection, write_exports
from imgsim.web import create_app
from imgsim.web.limits import request_handler

TINY_MODEL = ModelConfig(
    image_size=32, widths=(8, 16), blocks=(1, 1), head_hidden=16, embedding_dim=8
)


def build_workdir(root: Path) -> Path:
    """Dataset images, an untrained tiny model and its index, laid out as `imgsim serve` expects."""
    data = root / "data"
    data.mkdir(parents=True)
    names = []
    for c, (category, colour) in enumerate(COLOURS.items()):
        for i in range(1, 4):
            name = f"{category}_{i:03d}.{'jpg' if i % 2 else 'png'}"
            make_image(colour, seed=10 * c + i).save(data / name)
            names.append(name)
    for seed, name in enumerate(ODD_NAMES, start=100):
        make_image(COLOURS[name.split("_")[0].split()[0]], seed).save(data / name)
        names.append(name)
    # On disk beside the indexed images but not in the index: must never be served.
    make_image((0, 0, 0), 99).save(data / "secret_001.png")
    workdir = root / "work"
    workdir.mkdir()
    model = EmbeddingNet(TINY_MODEL).eval()
    model_id = save_model(workdir / MODEL_FILE, model, sorted(COLOURS))
    features = Searcher(model, None).embed([data / n for n in names])
    with open_store(workdir) as store:
        build_collection(store, features, names, data, model_id)
        write_exports(store, workdir)
    return workdir


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_workdir(tmp_path_factory.mktemp("imgsim-web"))


@pytest.fixture
def own_workdir(tmp_path: Path) -> Path:
    """A workdir of this test's own, for tests that add or remove images (its data: ../data)."""
    return build_workdir(tmp_path)


@pytest.fixture(scope="session")
def data_dir(workdir: Path) -> Path:
    return workdir.parent / "data"


@pytest.fixture(scope="session")
def searcher(workdir: Path) -> Searcher:
    return Searcher.from_workdir(workdir)


@pytest.fixture
def make_app(workdir: Path, searcher: Searcher) -> Callable[..., Flask]:
    """An app over the shared workdir; `settings` are SearchConfig fields.

    The session's loaded Searcher is reused (no model load per test) unless another is
    given, or `fresh=True` asks the app to load its own from `workdir` as in production.
    """

    def make(
        searcher_: Searcher | None = None,
        fresh: bool = False,
        flask_config: dict[str, Any] | None = None,
        **settings: Any,
    ) -> Flask:
        settings.setdefault("workdir", str(workdir))
        chosen = None if fresh else (searcher_ or searcher)
        flask_settings = {"TESTING": True, **(flask_config or {})}
        return create_app(SearchConfig(**settings), searcher=chosen, flask_config=flask_settings)

    return make


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture(scope="session")
def query_png(data_dir: Path) -> bytes:
    """The bytes of an indexed image, so its own entry must come first."""
    return (data_dir / "red_002.png").read_bytes()


@pytest.fixture
def live_server() -> Iterator[Callable[[Flask], str]]:
    """Serve an app as `imgsim serve` does, threaded on a free loopback port; gives its URL."""
    servers = []

    def start(app: Flask) -> str:
        handler = request_handler(app.config["IMGSIM"].request_timeout)
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=handler)
        # A short poll interval: shutdown() waits up to one interval.
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
