"""POST /search/batch: one result list per uploaded image, in order, and its errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from imgsim.search.searcher import EMBEDDINGS_MISSING

QUERY_KEYS = ["query", "results", "total_results", "threshold", "hidden"]
RESULT_KEYS = ["filename", "similarity", "embedding_distance", "category", "confidence", "url"]


def post_batch(client: FlaskClient, files: list[tuple[str, bytes]], field: str = "images", **form):
    form[field] = [(io.BytesIO(data), name) for name, data in files]
    return client.post("/search/batch", data=form, content_type="multipart/form-data")


def dataset(data_dir: Path, *names: str) -> list[tuple[str, bytes]]:
    return [(name, (data_dir / name).read_bytes()) for name in names]


def test_batch_answers_each_image_in_order(client: FlaskClient, data_dir: Path) -> None:
    names = ["blue_003.jpg", "red_002.png", "green_001.jpg"]
    response = post_batch(client, dataset(data_dir, *names), top_k="5")
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["queries", "total_queries"]
    assert body["total_queries"] == 3
    for name, query in zip(names, body["queries"], strict=True):
        assert list(query) == QUERY_KEYS
        assert query["query"] == name
        assert query["total_results"] == len(query["results"]) == 5
        assert list(query["results"][0]) == RESULT_KEYS
        assert query["results"][0]["filename"] == name


def test_batch_matches_single_searches(client: FlaskClient, data_dir: Path) -> None:
    files = dataset(data_dir, "green_002.png", "red_003.jpg")
    batch = post_batch(client, files, threshold="10").get_json()["queries"]
    for (name, data), query in zip(files, batch, strict=True):
        single = client.post(
            "/search", data={"image": (io.BytesIO(data), name), "threshold": "10"}
        ).get_json()
        assert [r["filename"] for r in single["results"]] == [
            r["filename"] for r in query["results"]
        ]


def test_batch_accepts_repeated_image_fields(client: FlaskClient, data_dir: Path) -> None:
    files = dataset(data_dir, "red_001.jpg", "red_001.jpg")
    response = post_batch(client, files, field="image")
    assert response.get_json()["total_queries"] == 2


def test_a_bad_image_fails_the_batch_and_is_named(client: FlaskClient, data_dir: Path) -> None:
    files = [*dataset(data_dir, "red_001.jpg"), ("notes.txt", b"plain text")]
    response = post_batch(client, files)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("image 2 (notes.txt): not a readable image")


def test_no_files_is_400(client: FlaskClient) -> None:
    response = client.post("/search/batch", data={"top_k": "5"})
    assert response.status_code == 400
    assert "no image files" in response.get_json()["error"]


def test_too_many_files_is_400(make_app, data_dir: Path) -> None:
    client = make_app(max_batch_files=2).test_client()
    response = post_batch(client, dataset(data_dir, "red_001.jpg", "red_002.png", "red_003.jpg"))
    assert response.status_code == 400
    assert response.get_json() == {"error": "too many images: 3 (limit 2 per request)"}


def test_one_image_over_the_byte_limit_is_413(make_app, data_dir: Path) -> None:
    files = dataset(data_dir, "red_001.jpg", "red_002.png")
    client = make_app(max_image_bytes=max(len(d) for _, d in files) - 1).test_client()
    response = post_batch(client, files)
    assert response.status_code == 413
    assert response.get_json()["error"].startswith("image too large")


@pytest.mark.parametrize(("field", "value"), [("top_k", "101"), ("threshold", "-5")])
def test_bad_parameters_are_400(
    client: FlaskClient, data_dir: Path, field: str, value: str
) -> None:
    response = post_batch(client, dataset(data_dir, "red_001.jpg"), **{field: value})
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(f"{field} must be")


def test_batch_without_embeddings_is_503(make_app, tmp_path: Path, data_dir: Path) -> None:
    from imgsim.core.config import MODEL_FILE

    (tmp_path / MODEL_FILE).write_bytes((data_dir.parent / "work" / MODEL_FILE).read_bytes())
    client = make_app(fresh=True, workdir=str(tmp_path)).test_client()
    response = post_batch(client, dataset(data_dir, "red_001.jpg"))
    assert response.status_code == 503
    assert response.get_json() == {"error": EMBEDDINGS_MISSING}
