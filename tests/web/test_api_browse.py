"""The category filter on /search and /search/batch, GET /browse and GET /similar/<name>."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from imgsim.search.searcher import Searcher

CATEGORIES = {"blue": 3, "blue_<img src=x onerror=alert(1)>": 1, "green": 3, "green stripes": 1}
CATEGORIES |= {"red": 3}


def search(client: FlaskClient, data: bytes, **form: Any):
    form["image"] = (io.BytesIO(data), "q.png")
    return client.post("/search", data=form, content_type="multipart/form-data")


def categories_of(body: dict) -> set[str]:
    return {r["category"] for r in body["results"]}


def test_search_in_one_category_is_filtered_inside_the_index(
    client: FlaskClient, data_dir: Path
) -> None:
    # A blue query's nearest five are mostly blue: cutting them down would leave few reds.
    blue = (data_dir / "blue_001.jpg").read_bytes()
    body = search(client, blue, category="red", top_k="5").get_json()
    assert body["total_results"] == 3 and categories_of(body) == {"red"}
    distances = [r["embedding_distance"] for r in body["results"]]
    assert distances == sorted(distances)


def test_search_in_several_categories(client: FlaskClient, query_png: bytes) -> None:
    body = search(client, query_png, category=["green", "green stripes"], top_k="10").get_json()
    assert body["total_results"] == 4 and categories_of(body) == {"green", "green stripes"}
    # The same as a query string; an empty value means no filter, as forms send it.
    response = client.post(
        "/search?category=blue",
        data={"image": (io.BytesIO(query_png), "q.png"), "category": ""},
        content_type="multipart/form-data",
    )
    assert categories_of(response.get_json()) == {"blue"}
    assert search(client, query_png, category="").get_json()["total_results"] == 10


def test_unknown_category_is_400_naming_the_known_ones(
    client: FlaskClient, query_png: bytes
) -> None:
    response = search(client, query_png, category=["red", "purple"])
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error.startswith("unknown category 'purple': the collection has 'blue'")
    assert "'red'" in error
    too_many = search(client, query_png, category=[f"c{i}" for i in range(65)])
    assert too_many.status_code == 400 and "too many categories" in too_many.get_json()["error"]


def test_unknown_category_lists_at_most_twenty(searcher: Searcher, monkeypatch) -> None:
    many = {f"cat{i:02d}": 1 for i in range(30)}
    monkeypatch.setattr(searcher.store, "categories", lambda: many)
    with pytest.raises(ValueError, match=r"'cat19' and 10 more$"):
        searcher.check_categories(["nope"])


def test_batch_in_one_category(client: FlaskClient, data_dir: Path) -> None:
    files = [(io.BytesIO((data_dir / n).read_bytes()), n) for n in ("red_001.jpg", "blue_002.png")]
    response = client.post(
        "/search/batch",
        data={"images": files, "category": "green", "top_k": "5"},
        content_type="multipart/form-data",
    )
    queries = response.get_json()["queries"]
    assert [categories_of(q) for q in queries] == [{"green"}, {"green"}]
    assert [q["total_results"] for q in queries] == [3, 3]
    files = [(io.BytesIO((data_dir / "red_001.jpg").read_bytes()), "red_001.jpg")]
    bad = client.post(
        "/search/batch", data={"images": files, "category": "nope"},
        content_type="multipart/form-data",
    )  # fmt: skip
    assert bad.status_code == 400 and "unknown category 'nope'" in bad.get_json()["error"]


def test_browse_pages_through_everything_by_name(client: FlaskClient) -> None:
    first = client.get("/browse?per_page=4").get_json()
    assert list(first) == [
        "items", "category", "total", "page", "per_page", "pages", "categories", "total_images"
    ]  # fmt: skip
    assert (first["total"], first["page"], first["per_page"], first["pages"]) == (11, 1, 4, 3)
    assert first["categories"] == CATEGORIES and first["total_images"] == 11
    names = []
    for page in (1, 2, 3):
        body = client.get(f"/browse?per_page=4&page={page}").get_json()
        names += [item["filename"] for item in body["items"]]
    assert len(names) == 11 and names == sorted(names)
    item = first["items"][0]
    assert list(item) == ["filename", "category", "url"]
    assert client.get(item["url"]).status_code == 200
    assert client.get("/browse?per_page=4&page=4").get_json()["items"] == []


def test_browse_one_category(client: FlaskClient) -> None:
    body = client.get("/browse?category=green&per_page=2&page=2").get_json()
    assert (body["category"], body["total"], body["pages"]) == ("green", 3, 2)
    assert body["items"] == [
        {"filename": "green_003.jpg", "category": "green", "url": "/images/green_003.jpg"}
    ]
    assert body["categories"] == CATEGORIES  # the counts of all, for the picker
    odd = client.get("/browse", query_string={"category": "green stripes"}).get_json()
    assert [i["filename"] for i in odd["items"]] == ["green stripes_004.jpg"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("category=purple", "unknown category 'purple'"),
        ("page=0", "page must be between 1 and"),
        ("page=two", "page must be a whole number"),
        ("per_page=201", "per_page must be between 1 and 200"),
        ("page=1&page=2", "page was given 2 times"),
        # schemathesis: an empty number in a query string is a client's bug, not the default
        ("page=&per_page=114", "page is empty in the query string"),
        ("per_page=", "per_page is empty"),
    ],
)
def test_browse_bad_parameters_are_400(client: FlaskClient, query: str, message: str) -> None:
    response = client.get(f"/browse?{query}")
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_similar_searches_with_the_stored_vector(client: FlaskClient, query_png: bytes) -> None:
    body = client.get("/similar/red_002.png?top_k=5").get_json()
    assert list(body) == ["query", "results", "total_results", "threshold", "hidden"]
    assert body["query"] == "red_002.png" and body["total_results"] == 5
    assert body["results"][0]["filename"] == "red_002.png"
    assert body["results"][0]["embedding_distance"] < 1e-3
    uploaded = search(client, query_png, top_k="5").get_json()
    assert [r["filename"] for r in body["results"]] == [r["filename"] for r in uploaded["results"]]


@pytest.mark.parametrize("query", ["top_k=", "num_results=", "threshold="])
def test_similar_refuses_an_empty_number(client: FlaskClient, query: str) -> None:
    response = client.get(f"/similar/red_002.png?{query}")
    assert response.status_code == 400
    assert "is empty in the query string" in response.get_json()["error"]


def test_similar_takes_the_search_parameters(client: FlaskClient) -> None:
    body = client.get("/similar/red_002.png?category=blue&category=green").get_json()
    assert categories_of(body) == {"blue", "green"} and body["total_results"] == 6
    odd = "blue_<img src=x onerror=alert(1)>_004.png"
    found = client.get(f"/similar/{odd}", query_string={"threshold": "100"}).get_json()
    assert found["results"][0]["filename"] == odd  # itself first, then any of the same score
    assert all(r["similarity"] == 100 for r in found["results"])
    everything = client.get(f"/similar/{odd}", query_string={"threshold": "0"}).get_json()
    assert found["total_results"] < everything["total_results"]
    response = client.get("/similar/red_002.png?top_k=500")
    assert response.status_code == 400 and "top_k" in response.get_json()["error"]


def test_similar_unknown_name_is_404(client: FlaskClient) -> None:
    for name in ("nope_001.png", "secret_001.png", "../work/x.png"):
        response = client.get(f"/similar/{name}")
        assert response.status_code == 404, name
        assert response.get_json()["error"].startswith("no indexed image named")


def test_browse_needs_no_model_but_a_collection(make_app, tmp_path: Path) -> None:
    empty = make_app(fresh=True, workdir=str(tmp_path)).test_client()
    response = empty.get("/browse")
    assert response.status_code == 503 and "imgsim" in response.get_json()["error"]
    assert empty.get("/similar/red_001.jpg").status_code == 503


def test_thumbnails_fit_the_asked_size(client: FlaskClient) -> None:
    from PIL import Image

    response = client.get("/images/red_001.jpg?size=160")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(response.data)).size == (48, 48)  # never enlarged
    assert response.headers["Cache-Control"] == "no-cache, max-age=0"
    again = client.get(
        "/images/red_001.jpg?size=160", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert again.status_code == 304 and not again.data
    other = client.get("/images/red_001.jpg?size=320")
    assert other.headers["ETag"] != response.headers["ETag"]


def test_a_large_image_is_shrunk(own_workdir: Path, make_app) -> None:
    from PIL import Image

    data = own_workdir.parent / "data"
    Image.new("RGB", (900, 300), (200, 30, 30)).save(data / "red_001.jpg")  # same name, bigger
    client = make_app(fresh=True, workdir=str(own_workdir)).test_client()
    thumb = client.get("/images/red_001.jpg?size=320")
    assert Image.open(io.BytesIO(thumb.data)).size == (320, 107)
    assert client.get("/images/red_001.jpg").data == (data / "red_001.jpg").read_bytes()


@pytest.mark.parametrize("size", ["100", "abc", "-160", "1600000000000", "１６０"])
def test_thumbnail_sizes_are_a_fixed_set(client: FlaskClient, size: str) -> None:
    response = client.get("/images/red_001.jpg", query_string={"size": size})
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("size must be one of 160, 320")


def test_an_empty_thumbnail_size_is_400(client: FlaskClient) -> None:
    response = client.get("/images/red_001.jpg?size=")
    assert response.status_code == 400 and "size is empty" in response.get_json()["error"]


def test_thumbnails_of_unknown_names_are_404(client: FlaskClient) -> None:
    assert client.get("/images/secret_001.png?size=160").status_code == 404
