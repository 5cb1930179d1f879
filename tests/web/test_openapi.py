"""GET /openapi.json: the OpenAPI description is served and covers exactly the app's routes."""

from __future__ import annotations

import io
import re

from flask import Flask
from flask.testing import FlaskClient

from imgsim.web.openapi import openapi_spec


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in openapi_spec()["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }


def app_operations(app: Flask) -> set[tuple[str, str]]:
    operations = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":  # the page's own script and style
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        operations |= {(m, path) for m in rule.methods or () if m not in {"HEAD", "OPTIONS"}}
    return operations


def test_openapi_json_is_served(client: FlaskClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    body = response.get_json()
    assert body["openapi"].startswith("3.")
    assert body == openapi_spec()


def test_every_route_is_documented_and_nothing_else(app: Flask) -> None:
    assert documented_operations() == app_operations(app)


def test_errors_are_documented_with_the_error_shape() -> None:
    spec = openapi_spec()
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"] and error["additionalProperties"] is False
    for path in ("/search", "/search/batch"):
        statuses = set(spec["paths"][path]["post"]["responses"])
        assert statuses == {"200", "400", "408", "413", "503"}, path


def test_documented_keys_match_real_answers(client: FlaskClient, query_png: bytes) -> None:
    schemas = openapi_spec()["components"]["schemas"]
    stats = client.get("/stats").get_json()
    assert list(stats) == schemas["Stats"]["required"]
    body = client.post("/search", data={"image": (io.BytesIO(query_png), "q.png")}).get_json()
    assert list(body) == schemas["SearchResponse"]["required"]
    assert list(body["results"][0]) == schemas["Result"]["required"]
    browse = client.get("/browse").get_json()
    assert list(browse) == schemas["BrowseResponse"]["required"]
    assert (
        list(client.get("/similar/red_002.png").get_json())
        == (schemas["SimilarResponse"]["required"])
    )


def test_answers_without_a_model_or_collection_are_documented(make_app, tmp_path) -> None:
    # An empty workdir: every operation that needs the collection answers 503, documented.
    app = make_app(fresh=True, workdir=str(tmp_path), admin_token="t")
    client, paths = app.test_client(), openapi_spec()["paths"]
    asked = [
        ("get", "/browse", "/browse?category=red"),
        ("get", "/similar/{name}", "/similar/red_001.jpg"),
        ("get", "/map/points", "/map/points"),
        ("get", "/duplicates", "/duplicates"),
        ("post", "/duplicates/trash", "/duplicates/trash"),
    ]
    for method, path, url in asked:
        body = {"json": {"names": ["red_001.jpg"]}} if method == "post" else {}
        response = getattr(client, method)(url, headers={"Authorization": "Bearer t"}, **body)
        assert response.status_code == 503 and "error" in response.get_json(), url
        assert "503" in paths[path][method]["responses"], f"{method.upper()} {path}"
