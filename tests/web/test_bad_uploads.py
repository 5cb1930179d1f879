"""The upload corpus against the API: every bad request a fast, clear 4xx; odd images searched.

The same corpus goes through the Flask test client (status, message, time) and through a live
threaded server over a socket, after which the server must still answer.
"""

from __future__ import annotations

import http.client
import io
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from upload_corpus import MAX_BATCH_FILES, MAX_IMAGE_BYTES, Upload, bad_uploads, valid_images
from werkzeug.test import TestResponse

BAD = bad_uploads()
VALID = valid_images()
# "Within a second": what a client waits at most for a refusal, with room for a busy machine
# left out on purpose: none of these needs more than a few milliseconds of work.
REFUSAL_SECONDS = 1.0


@pytest.fixture
def corpus_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(max_image_bytes=MAX_IMAGE_BYTES, max_batch_files=MAX_BATCH_FILES)


def send(client: FlaskClient, upload: Upload) -> TestResponse:
    if upload.body is not None:
        return client.post(upload.path, data=upload.body, content_type=upload.content_type)
    if not upload.files:
        return client.post(upload.path, data=upload.form or None)
    data: dict[str, Any] = dict(upload.form)
    for field_name, name, payload in upload.files:
        data.setdefault(field_name, []).append((io.BytesIO(payload), name))
    return client.post(upload.path, data=data, content_type="multipart/form-data")


@pytest.mark.parametrize("case", list(BAD))
def test_bad_upload_gets_a_clear_4xx_within_a_second(corpus_app: Flask, case: str) -> None:
    bad = BAD[case]
    client = corpus_app.test_client()
    start = time.perf_counter()
    response = send(client, bad.upload)
    elapsed = time.perf_counter() - start
    assert response.status_code == bad.status, response.get_data(as_text=True)[:300]
    assert response.is_json and list(response.get_json()) == ["error"]
    assert response.get_json()["error"].startswith(bad.message)
    assert elapsed < REFUSAL_SECONDS, f"{case}: {elapsed:.2f}s"


@pytest.mark.parametrize("case", list(VALID))
def test_unusual_valid_image_is_searched(corpus_app: Flask, case: str) -> None:
    name, data = VALID[case]
    response = send(corpus_app.test_client(), Upload(files=(("image", name, data),)))
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.get_json()["total_results"] == 10


def test_unusual_valid_images_in_one_batch(corpus_app: Flask) -> None:
    names = list(VALID)[:MAX_BATCH_FILES]
    files = tuple(("images", *VALID[n]) for n in names)
    response = send(corpus_app.test_client(), Upload(files=files, path="/search/batch"))
    assert response.status_code == 200
    assert [q["query"] for q in response.get_json()["queries"]] == [VALID[n][0] for n in names]


# --- over a real socket ------------------------------------------------------------------------


@pytest.fixture
def live(corpus_app: Flask, live_server: Callable[[Flask], str]) -> Iterator[tuple[str, int]]:
    host, port = live_server(corpus_app).removeprefix("http://").split(":")
    yield host, int(port)


def raw_request(address: tuple[str, int], upload: Upload) -> tuple[int, bytes]:
    """Send an upload with http.client (what any client library would put on the wire)."""
    body, content_type = encode_upload(upload)
    conn = http.client.HTTPConnection(*address, timeout=10)
    headers = {"Content-Type": content_type} if content_type else {}
    conn.request("POST", upload.path, body=body, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, payload


def encode_upload(upload: Upload) -> tuple[bytes, str | None]:
    if upload.body is not None:
        return upload.body, upload.content_type
    if not upload.files:
        return urlencode(upload.form).encode(), "application/x-www-form-urlencoded"
    boundary = "corpus-boundary-7f3a"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in upload.form.items()
    ]
    for field_name, name, payload in upload.files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + payload
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def test_live_server_refuses_the_whole_corpus_and_keeps_answering(
    live: tuple[str, int],
) -> None:
    for case, bad in BAD.items():
        start = time.perf_counter()
        status, payload = raw_request(live, bad.upload)
        assert status == bad.status, (case, payload[:300])
        assert time.perf_counter() - start < REFUSAL_SECONDS, case
    valid_name, valid = VALID["cmyk jpeg"]
    assert raw_request(live, Upload(files=(("image", valid_name, valid),)))[0] == 200
    conn = http.client.HTTPConnection(*live, timeout=10)
    conn.request("GET", "/health")
    assert conn.getresponse().status == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n\r\nzz\r\nnot a chunk\r\n0\r\n\r\n",
        b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n",  # then hangs up
        b"GARBAGE\r\n\r\n",
    ],
    ids=["bad length", "negative length", "bad chunk", "hang-up mid-body", "not http"],
)
def test_malformed_http_never_gets_a_500(live: tuple[str, int], request_bytes: bytes) -> None:
    import socket

    with socket.create_connection(live, timeout=10) as sock:
        sock.sendall(request_bytes)
        sock.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    # An answer, if any, is a 4xx; the worst allowed is that the server just hangs up.
    # (A line that is not HTTP/1.x gets an HTTP/0.9 answer: a bare page, no status line.)
    if answer.startswith(b"HTTP/"):
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:300]
    elif answer:
        assert b"Error code: 400" in answer, answer[:300]
    conn = http.client.HTTPConnection(*live, timeout=10)
    conn.request("GET", "/health")
    assert conn.getresponse().status == 200
