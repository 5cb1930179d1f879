"""POST /search: the original's response shape, parameters, and every bad-input error."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image
from webtest_images import image_bytes, make_image

from imgsim.core.config import NEAR_COPY_SIMILARITY
from imgsim.search.searcher import Searcher

# The original's four keys, then the category-calibrated confidence (or null) and the link.
RESULT_KEYS = ["filename", "similarity", "embedding_distance", "category", "confidence", "url"]


def post(client: FlaskClient, data: bytes | None = None, name: str = "query.png", **form: Any):
    if data is not None:
        form.setdefault("image", (io.BytesIO(data), name))
    return client.post("/search", data=form, content_type="multipart/form-data")


def test_search_returns_the_original_shape(client: FlaskClient, query_png: bytes) -> None:
    response = post(client, query_png)
    assert response.status_code == 200
    body = response.get_json()
    # The original's two keys first; the cutoff used and how many results it hid follow.
    assert list(body) == ["results", "total_results", "threshold", "hidden"]
    assert body["total_results"] == len(body["results"]) == 10
    for result in body["results"]:
        assert list(result) == RESULT_KEYS
        assert isinstance(result["similarity"], float)
        assert 0.0 <= result["similarity"] <= 100.0


def test_search_finds_the_query_itself_first_and_sorts_by_distance(
    client: FlaskClient, query_png: bytes
) -> None:
    results = post(client, query_png).get_json()["results"]
    first = results[0]
    assert first["filename"] == "red_002.png"
    assert first["category"] == "red"
    assert first["similarity"] >= 99.9
    assert first["url"] == "/images/red_002.png"
    distances = [r["embedding_distance"] for r in results]
    assert distances == sorted(distances)


def test_result_urls_serve_the_images(client: FlaskClient, query_png: bytes) -> None:
    for result in post(client, query_png, top_k="50").get_json()["results"]:
        response = client.get(result["url"])
        assert response.status_code == 200, result["filename"]
        assert response.mimetype.startswith("image/")


@pytest.mark.parametrize(
    ("field", "value", "expected"), [("top_k", "5", 5), ("num_results", "6", 6), ("top_k", "3", 3)]
)
def test_top_k_limits_the_results(
    client: FlaskClient, query_png: bytes, field: str, value: str, expected: int
) -> None:
    body = post(client, query_png, **{field: value}).get_json()
    assert body["total_results"] == expected


def test_top_k_above_the_index_size_returns_every_image(
    client: FlaskClient, query_png: bytes
) -> None:
    assert post(client, query_png, top_k="50").get_json()["total_results"] == 11


def test_threshold_drops_less_similar_images(client: FlaskClient, query_png: bytes) -> None:
    everything = post(client, query_png, top_k="50", threshold="0").get_json()["results"]
    cutoff = everything[len(everything) // 2]["similarity"]
    kept = post(client, query_png, top_k="50", threshold=str(cutoff)).get_json()["results"]
    assert kept == [r for r in everything if r["similarity"] >= cutoff]
    assert 0 < len(kept) < len(everything)


def test_absent_threshold_uses_the_models_default(
    make_app, searcher: Searcher, query_png: bytes
) -> None:
    everything = post(make_app().test_client(), query_png, top_k="50").get_json()["results"]
    cutoff = everything[len(everything) // 2]["similarity"]
    tuned = Searcher(searcher.model, searcher.store, {"threshold": cutoff})
    client = make_app(tuned).test_client()
    # The tuned cutoff never hides a near copy: it stops at NEAR_COPY_SIMILARITY.
    expected = [r for r in everything if r["similarity"] >= min(cutoff, NEAR_COPY_SIMILARITY)]
    assert post(client, query_png, top_k="50").get_json()["results"] == expected
    assert post(client, query_png, top_k="50", threshold="").get_json()["results"] == expected
    assert post(client, query_png, top_k="50", threshold="0").get_json()["results"] == everything


def test_the_field_name_file_is_accepted_too(client: FlaskClient, query_png: bytes) -> None:
    response = post(client, file=(io.BytesIO(query_png), "q.png"))
    assert response.status_code == 200


def test_rgba_png_and_jpeg_queries_are_searched(client: FlaskClient) -> None:
    rgba = make_image((10, 200, 10), 5).convert("RGBA")
    assert post(client, image_bytes(rgba)).status_code == 200
    assert post(client, image_bytes(make_image((1, 2, 3), 6), "JPEG"), "q.jpg").status_code == 200


def test_big_uploads_stay_in_memory(client: FlaskClient, monkeypatch) -> None:
    # Werkzeug writes uploads over 500 KB to temporary files; ours must not.
    import werkzeug.wrappers.request as werkzeug_request

    def no_disk(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("upload spooled to disk")

    monkeypatch.setattr(werkzeug_request, "default_stream_factory", no_disk)
    noise = np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8)
    data = image_bytes(Image.fromarray(noise))
    assert len(data) > 600_000
    assert post(client, data).status_code == 200


def truncated_png() -> bytes:
    return image_bytes(make_image((9, 9, 9), 1, size=64))[:-200]


def bad_crc_png() -> bytes:
    data = bytearray(image_bytes(make_image((9, 9, 9), 1)))
    data[60] ^= 0xFF  # inside the IDAT data: its checksum and deflate stream break
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"hello, I am text", "notes.txt", "not a readable image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 50, "fake.png", "not a readable image"),
        (truncated_png(), "cut.png", "not a readable image"),
        (bad_crc_png(), "crc.png", "not a readable image"),
        (b"GIF89a" + zlib.compress(b"x"), "bad.gif", "not a readable image"),
        (b"", "empty.png", "empty file"),
    ],
)
def test_unreadable_uploads_are_400(
    client: FlaskClient, data: bytes, name: str, message: str
) -> None:
    response = post(client, data, name)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(message)


def test_missing_file_is_400(client: FlaskClient) -> None:
    response = client.post("/search", data={"top_k": "10"})
    assert response.status_code == 400
    assert "no image file" in response.get_json()["error"]


def test_unselected_file_is_400(client: FlaskClient) -> None:
    response = post(client, b"", name="")
    assert response.status_code == 400
    assert response.get_json() == {"error": "no image selected"}


@pytest.mark.parametrize("top_k", ["abc", "0", "-3", "101", "1000", "10.5", "1e3"])
def test_bad_top_k_is_400(client: FlaskClient, query_png: bytes, top_k: str) -> None:
    response = post(client, query_png, top_k=top_k)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("top_k must be")


@pytest.mark.parametrize("threshold", ["high", "-1", "100.5", "nan", "inf", "-inf", "1,5"])
def test_bad_threshold_is_400(client: FlaskClient, query_png: bytes, threshold: str) -> None:
    response = post(client, query_png, threshold=threshold)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("threshold must be")


def test_image_over_the_byte_limit_is_413(make_app, query_png: bytes) -> None:
    client = make_app(max_image_bytes=len(query_png) - 1).test_client()
    response = post(client, query_png)
    assert response.status_code == 413
    assert response.get_json()["error"].startswith("image too large")


def test_request_over_the_body_limit_is_413_before_reading_it(make_app) -> None:
    client = make_app(max_image_bytes=1000).test_client()
    response = post(client, b"\0" * 200_000)
    assert response.status_code == 413
    assert response.get_json()["error"].startswith("image too large")


def test_image_with_too_many_pixels_is_400(make_app) -> None:
    client = make_app(fresh=True, max_image_pixels=32 * 32).test_client()
    response = post(client, image_bytes(Image.new("RGB", (64, 64))))
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("image too large: 64x64 pixels")


def png_declaring(width: int, height: int) -> bytes:
    """A few-KB RGB PNG whose header declares width × height (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 100_000, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)


# Since the limits became a declared-size ceiling (16,384², decoding time) plus a memory budget
# counted at the decoded size (max_decode_mb, 96), a 48 M-pixel 1-bit image (48 MB decoded) is
# a legitimate upload; these are bombs under the new rules. Their few KB hold far fewer pixels
# than declared, so a decode would fail as unreadable: "too large" means refused from the header.
@pytest.mark.parametrize(
    ("size", "refusal"),
    [
        ((50_000, 50_000), "image too large"),  # over the declared-pixel ceiling
        ((8000, 6000), "image too large to decode: 8000x6000"),  # RGB, 183 MB: over memory
    ],
)
def test_decompression_bomb_is_refused_without_decoding(
    client: FlaskClient, size: tuple[int, int], refusal: str
) -> None:
    response = post(client, png_declaring(*size))
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(refusal)


def test_get_on_search_is_a_json_405(client: FlaskClient) -> None:
    response = client.get("/search")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert list(response.get_json()) == ["error"]


@pytest.mark.parametrize("script_root", ["", "/app"])
def test_result_urls_are_what_url_for_builds(client: FlaskClient, script_root: str) -> None:
    from flask import url_for

    from imgsim.web.search import with_urls

    names = [
        "red_002.png", "sub dir/a b.jpg", "ünï/çødé.png", "100%_#1?.jpg", "a+b&c=d;e@f.png",
        "x/../y.png", "tab\there.png", "~tilde-'quote'.png", "[br]{ce}|^`.jpg",
    ]  # fmt: skip
    response = {"results": [{"filename": n} for n in names]}
    with client.application.test_request_context("/", base_url=f"http://h{script_root}"):
        urls = [r["url"] for r in with_urls(response)["results"]]
        assert urls == [url_for("images.image", name=n) for n in names]
    assert all(u.startswith(f"{script_root}/images/") for u in urls)
