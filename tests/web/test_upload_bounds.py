"""Uploads within bounds: names that cannot be stored and images too large to decode are 400."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from webtest_images import image_bytes, make_image

from imgsim.core.config import SearchConfig
from imgsim.images.data import decode_limits, set_decode_limits
from imgsim.web import create_app
from imgsim.web.manage import NAME_MAX, NAME_ROOM

TOKEN = "upload-bounds-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def restore_limits() -> Iterator[None]:
    before = decode_limits()
    yield
    set_decode_limits(*before)


@pytest.fixture
def client(make_app: Callable[..., Flask], own_workdir: Path) -> FlaskClient:
    app = make_app(fresh=True, workdir=str(own_workdir), admin_token=TOKEN)
    return app.test_client()


@pytest.fixture
def data(own_workdir: Path) -> Path:
    return own_workdir.parent / "data"


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def post(client: FlaskClient, names: list[str], **form: str) -> tuple[int, dict]:
    png = image_bytes(make_image((230, 200, 20), seed=7))
    body = {"images": [(io.BytesIO(png), n) for n in names], **form}
    response = client.post("/images", data=body, headers=AUTH)
    return response.status_code, response.get_json()


LONG = NAME_MAX - NAME_ROOM  # the longest name in bytes that is accepted


@pytest.mark.parametrize(
    "names, form, message",
    [
        (["hat_" + "x" * 232 + ".jpg"], {}, "too long"),  # 240 characters
        (["a.png"], {"category": "c" * 300}, "too long"),
        (["a.png"], {"category": "é" * (LONG // 2 + 1)}, "too long"),  # bytes, not characters
        (["ok_001.png", "b" * (LONG - 3) + ".png"], {"category": "hats"}, "image 2"),
        (["a.png"], {"category": "red_001.jpg"}, "is the name of a file"),
    ],
)
def test_names_that_cannot_be_stored_are_400_and_change_nothing(
    client: FlaskClient, data: Path, names: list[str], form: dict, message: str
) -> None:
    before = listing(data)
    total = client.get("/stats").get_json()["total_images"]
    status, body = post(client, names, **form)
    assert status == 400 and message in body["error"], body
    assert listing(data) == before
    assert client.get("/stats").get_json()["total_images"] == total


def test_the_longest_accepted_name_is_stored(client: FlaskClient, data: Path) -> None:
    name = "b" * (LONG - 4) + ".png"
    status, body = post(client, [name], category="hats")
    assert status == 201, body
    assert (data / "hats" / name).is_file()


def test_a_name_that_is_a_folder_is_400(client: FlaskClient, data: Path) -> None:
    (data / "blue_009.png").mkdir()
    (data / "blue_009.png" / "keep.txt").write_text("mine")
    before = listing(data)
    status, body = post(client, ["blue_009.png"])
    assert status == 400 and "name of a folder" in body["error"]
    assert listing(data) == before


def test_a_category_folder_symlink_that_leads_out_is_400(
    client: FlaskClient, data: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (data / "hats").symlink_to(outside, target_is_directory=True)
    status, body = post(client, ["a.png"], category="hats")
    assert status == 400 and "outside the data folder" in body["error"]
    assert list(outside.iterdir()) == []


def test_the_app_sets_the_decode_limits_from_its_settings(workdir: Path) -> None:
    create_app(SearchConfig(workdir=str(workdir), max_decode_mb=3, max_concurrent_decodes=5))
    assert decode_limits() == (3 * 2**20, 5)


def _grey16_png(side: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    raw = zlib.compress((b"\x00" + bytes(2 * side)) * side, 9)
    header = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw)


def test_an_upload_over_the_decode_budget_is_400(make_app: Callable[..., Flask]) -> None:
    client = make_app(max_decode_mb=1).test_client()
    small, large = _grey16_png(700), _grey16_png(800)  # 0.98 MB and 1.28 MB decoded
    ok = client.post("/search", data={"image": (io.BytesIO(small), "a.png")})
    assert ok.status_code == 200
    refused = client.post("/search", data={"image": (io.BytesIO(large), "b.png")})
    assert refused.status_code == 400
    assert "too large to decode: 800x800" in refused.get_json()["error"]
    assert client.post("/search", data={"image": (io.BytesIO(small), "c.png")}).status_code == 200
