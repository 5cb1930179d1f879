"""GET /stats, GET /health, the `flask check` command, and a server without model or embeddings."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from flask.testing import FlaskClient, FlaskCliRunner

from imgsim.core.config import MODEL_FILE
from imgsim.search.searcher import EMBEDDINGS_MISSING, MODEL_MISSING

ORIGINAL_KEYS = [
    "model_loaded",
    "embeddings_loaded",
    "total_images",
    "embedding_dimension",
    "model_type",
    "similarity_metric",
]


def test_stats_has_the_original_keys_then_the_extras(client: FlaskClient) -> None:
    response = client.get("/stats")
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == [*ORIGINAL_KEYS, "categories", "default_threshold", "problems"]
    assert body["model_loaded"] is True
    assert body["embeddings_loaded"] is True
    assert body["total_images"] == 11
    assert body["embedding_dimension"] == 8
    assert body["model_type"] == "Embedding Network"  # the fixture model names no loss
    assert body["similarity_metric"] == "Euclidean Distance"
    assert body["categories"] == {"blue": 3, "blue_<img src=x onerror=alert(1)>": 1, "green": 3,
                                  "green stripes": 1, "red": 3}  # fmt: skip
    assert body["default_threshold"] == 0.0
    assert body["problems"] == []


def test_health_is_ok_and_ready(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "ready": True, "problems": []}


def test_check_command_prints_stats(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["check"])
    assert result.exit_code == 0
    assert json.loads(result.output)["total_images"] == 11


@pytest.fixture
def empty_workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def model_only_workdir(tmp_path: Path, workdir: Path) -> Path:
    shutil.copy(workdir / MODEL_FILE, tmp_path / MODEL_FILE)
    return tmp_path


@pytest.mark.parametrize(
    ("which", "model_loaded", "message"),
    [("empty_workdir", False, MODEL_MISSING), ("model_only_workdir", True, EMBEDDINGS_MISSING)],
)
def test_server_starts_without_model_or_embeddings(
    request: pytest.FixtureRequest, make_app, query_png: bytes, which, model_loaded, message
) -> None:
    app = make_app(fresh=True, workdir=str(request.getfixturevalue(which)))
    client = app.test_client()
    stats = client.get("/stats").get_json()
    assert stats["model_loaded"] is model_loaded
    assert stats["embeddings_loaded"] is False
    assert stats["total_images"] == 0
    assert stats["problems"]
    health = client.get("/health")
    assert health.status_code == 200
    assert health.get_json()["ready"] is False
    response = client.post("/search", data={"image": (io.BytesIO(query_png), "q.png")})
    assert response.status_code == 503
    assert response.get_json() == {"error": message}
    assert client.get("/").status_code == 200
    assert app.test_cli_runner().invoke(args=["check"]).exit_code == 1
