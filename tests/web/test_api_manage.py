"""POST /images and DELETE /images/<name>: the token, all-or-nothing adds, removals, restarts."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from webtest_images import ODD_NAMES, image_bytes, make_image
from werkzeug.test import TestResponse

from imgsim.search.searcher import ModelMismatchError
from imgsim.web import manage
from imgsim.web.app import config_from_env
from imgsim.web.openapi import openapi_spec

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ADDED_KEYS = ["filename", "category", "url"]


@pytest.fixture
def updatable(make_app: Callable[..., Flask], own_workdir: Path) -> Callable[..., FlaskClient]:
    """A client of an app that loads its own workdir (so nothing shared changes)."""

    def make(**settings: Any) -> FlaskClient:
        settings.setdefault("admin_token", TOKEN)
        return make_app(fresh=True, workdir=str(own_workdir), **settings).test_client()

    return make


@pytest.fixture
def client_w(updatable: Callable[..., FlaskClient]) -> FlaskClient:
    return updatable()


@pytest.fixture
def data(own_workdir: Path) -> Path:
    return own_workdir.parent / "data"


def new_png(seed: int = 7) -> bytes:
    return image_bytes(make_image((230, 200, 20), seed=seed))


def post_images(
    client: FlaskClient,
    files: list[tuple[str, bytes]],
    headers: dict[str, str] | None = None,
    **form: str,
) -> TestResponse:
    body: dict[str, Any] = {"images": [(io.BytesIO(d), n) for n, d in files], **form}
    return client.post("/images", data=body, headers=AUTH if headers is None else headers)


def top_hit(client: FlaskClient, image: bytes) -> dict[str, Any]:
    body = client.post("/search", data={"image": (io.BytesIO(image), "q.png")}).get_json()
    return body["results"][0]


def total(client: FlaskClient) -> int:
    return client.get("/stats").get_json()["total_images"]


# The token


@pytest.mark.parametrize("method, path", [("POST", "/images"), ("DELETE", "/images/red_001.jpg")])
def test_updates_are_off_without_a_configured_token(
    updatable: Callable[..., FlaskClient], data: Path, method: str, path: str
) -> None:
    client = updatable(admin_token="")
    before = total(client)
    # Even the empty token a client might try does not open them.
    for headers in (AUTH, {"Authorization": "Bearer "}, {}):
        form = {"images": (io.BytesIO(new_png()), "yellow_001.png")} if method == "POST" else None
        response = client.open(path, method=method, data=form, headers=headers)
        assert response.status_code == 403
        assert response.get_json() == {"error": manage.OFF_MESSAGE}
    assert total(client) == before
    assert (data / "red_001.jpg").is_file() and not (data / "yellow_001.png").exists()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"X-Imgsim-Token": "wrong"},
        {"Authorization": "Bearer tökén"},  # not ASCII: compared, not a 500
    ],
)
def test_a_missing_or_wrong_token_is_401(
    client_w: FlaskClient, data: Path, headers: dict[str, str]
) -> None:
    for response in (
        post_images(client_w, [("yellow_001.png", new_png())], headers=headers),
        client_w.delete("/images/red_001.jpg", headers=headers),
    ):
        assert response.status_code == 401
        assert list(response.get_json()) == ["error"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (data / "red_001.jpg").is_file() and not (data / "yellow_001.png").exists()


@pytest.mark.parametrize("configured, status", [("", 403), (TOKEN, 401)])
def test_the_token_is_checked_before_the_body_is_read(
    updatable: Callable[..., FlaskClient], configured: str, status: int
) -> None:
    # Over the request size limit: reading the body would answer 413.
    client = updatable(admin_token=configured, max_image_bytes=1000, max_batch_files=1)
    response = post_images(client, [("yellow_001.png", b"x" * 200_000)], headers={})
    assert response.status_code == status


def test_the_token_is_compared_in_constant_time(
    client_w: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = manage.hmac.compare_digest
    monkeypatch.setattr(
        manage.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b)
    )
    assert client_w.delete("/images/no_such_001.jpg", headers=AUTH).status_code == 404
    assert client_w.delete("/images/no_such_001.jpg").status_code == 401
    assert len(calls) == 2
    # Digests of equal length whatever was sent, so the time says nothing about the token.
    assert all(len(a) == len(b) == 32 for a, b in calls)


def test_the_token_comes_from_the_environment_over_the_file(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text('[search]\nadmin_token = "from-file"\n')
    assert config_from_env({"IMGSIM_CONFIG": str(settings)}).admin_token == "from-file"
    env = {"IMGSIM_CONFIG": str(settings), "IMGSIM_TOKEN": "from-env"}
    assert config_from_env(env).admin_token == "from-env"
    assert config_from_env({}).admin_token == ""
    assert "from-env" not in repr(config_from_env(env))  # a logged config does not show it


# Adding


def test_an_added_image_is_found_at_once_and_after_a_restart(
    updatable: Callable[..., FlaskClient],
) -> None:
    client = updatable()
    before, image = total(client), new_png()
    response = post_images(client, [("yellow_001.png", image)])
    assert response.status_code == 201
    body = response.get_json()
    assert list(body) == ["added", "total_images"]
    assert body["added"] == [
        {"filename": "yellow_001.png", "category": "yellow", "url": "/images/yellow_001.png"}
    ]
    assert body["total_images"] == total(client) == before + 1
    documented = openapi_spec()["paths"]["/images"]["post"]["responses"]["201"]
    assert list(body) == documented["content"]["application/json"]["schema"]["required"]
    hit = top_hit(client, image)
    assert hit["filename"] == "yellow_001.png" and hit["category"] == "yellow"
    assert hit["embedding_distance"] == 0  # the same bytes: the same embedding
    assert client.get("/images/yellow_001.png").data == image

    restarted = updatable()  # a new app (and Searcher) from the same workdir
    assert total(restarted) == before + 1
    assert top_hit(restarted, image)["filename"] == "yellow_001.png"


def test_a_category_field_stores_images_in_its_folder(client_w: FlaskClient, data: Path) -> None:
    files = [("photo.png", new_png(1)), ("shirt_009.png", new_png(2))]
    # X-Imgsim-Token works as well as Authorization.
    response = post_images(client_w, files, headers={"X-Imgsim-Token": TOKEN}, category="hats")
    assert response.status_code == 201
    added = response.get_json()["added"]
    assert [a["filename"] for a in added] == ["hats/photo.png", "hats/shirt_009.png"]
    assert [a["category"] for a in added] == ["hats", "hats"]  # the folder wins over the name
    assert all(list(a) == ADDED_KEYS for a in added)
    assert (data / "hats" / "photo.png").read_bytes() == files[0][1]
    assert client_w.get("/stats").get_json()["categories"]["hats"] == 2
    assert client_w.get(added[0]["url"]).data == files[0][1]


@pytest.mark.parametrize(("name", "fmt"), [("iphone_001.heic", "HEIF"), ("web_001.avif", "AVIF")])
def test_heic_and_avif_uploads_are_stored_searched_and_thumbnailed(
    client_w: FlaskClient, data: Path, name: str, fmt: str
) -> None:
    buffer = io.BytesIO()
    make_image((20, 200, 230), seed=3).save(buffer, fmt, quality=90)
    response = post_images(client_w, [(name, buffer.getvalue())], category="hats")
    assert response.status_code == 201, response.get_json()
    assert (data / "hats" / name).read_bytes() == buffer.getvalue()
    assert top_hit(client_w, buffer.getvalue())["filename"] == f"hats/{name}"
    thumbnail = client_w.get(f"/images/hats/{name}?size=160")  # browsers rarely show HEIC
    assert thumbnail.status_code == 200 and thumbnail.mimetype == "image/jpeg"


def test_an_existing_name_is_replaced(client_w: FlaskClient, data: Path) -> None:
    before = total(client_w)
    old = client_w.get("/images/red_001.jpg")
    image = new_png()
    assert post_images(client_w, [("red_001.jpg", image)]).status_code == 201
    assert total(client_w) == before
    assert top_hit(client_w, image)["filename"] == "red_001.jpg"
    assert top_hit(client_w, image)["embedding_distance"] == 0
    # A cached copy is not fresh any more: its ETag no longer matches.
    again = client_w.get("/images/red_001.jpg", headers={"If-None-Match": old.headers["ETag"]})
    assert again.status_code == 200 and again.data == image == (data / "red_001.jpg").read_bytes()


BAD_UPLOADS = {
    "not an image": ([("yellow_001.png", new_png()), ("yellow_002.png", b"plain text")], {}),
    "no category": ([("yellow_001.png", new_png()), ("photo.png", new_png(2))], {}),
    "sent twice": ([("yellow_001.png", new_png()), ("yellow_001.png", new_png(2))], {}),
    "not an image name": ([("yellow_001.png", new_png()), ("yellow_002.txt", new_png(2))], {}),
    "hidden file": ([("yellow_001.png", new_png()), (".yellow_002.png", new_png(2))], {}),
    "a folder in the name": ([("yellow_001.png", new_png()), ("../yellow_2.png", new_png())], {}),
    "backslash": ([("yellow_001.png", new_png()), ("..\\yellow_2.png", new_png())], {}),
    "category with a slash": ([("a.png", new_png())], {"category": "hats/../.."}),
    "category '..'": ([("a.png", new_png())], {"category": ".."}),
    "hidden category": ([("a.png", new_png())], {"category": ".hats"}),
}


@pytest.mark.parametrize("files, form", BAD_UPLOADS.values(), ids=BAD_UPLOADS)
def test_one_bad_upload_refuses_the_request_and_changes_nothing(
    client_w: FlaskClient, data: Path, files: list[tuple[str, bytes]], form: dict[str, str]
) -> None:
    before, on_disk = total(client_w), sorted(data.rglob("*"))
    response = post_images(client_w, files, **form)
    assert response.status_code == 400
    assert list(response.get_json()) == ["error"]
    if len(files) > 1:
        assert response.get_json()["error"].startswith("image 2 (")
    assert total(client_w) == before
    assert sorted(data.rglob("*")) == on_disk
    assert not (data.parent / "yellow_001.png").exists()


def test_the_search_limits_apply(updatable: Callable[..., FlaskClient]) -> None:
    client = updatable(max_batch_files=2, max_image_bytes=50_000)
    files = [(f"yellow_00{i}.png", new_png(i)) for i in range(1, 4)]
    response = post_images(client, files)
    assert response.status_code == 400
    assert "too many images" in response.get_json()["error"]
    big = image_bytes(make_image((1, 2, 3), seed=1, size=400), "BMP")
    assert post_images(client, [("yellow_001.bmp", big)]).status_code == 413
    assert post_images(client, []).status_code == 400  # no image at all


def test_changes_by_another_process_are_seen_at_once(
    updatable: Callable[..., FlaskClient],
) -> None:
    first, second = updatable(), updatable()  # e.g. two gunicorn workers, one store
    before = second.get("/stats").get_json()["total_images"]
    assert post_images(first, [("yellow_001.png", new_png(1))]).status_code == 201
    assert post_images(second, [("yellow_002.png", new_png(2))]).status_code == 201
    for client in (first, second):
        assert client.get("/stats").get_json()["total_images"] == before + 2
        assert client.get("/images/yellow_001.png").status_code == 200
    assert second.delete("/images/yellow_001.png", headers=AUTH).status_code == 200
    assert first.get("/images/yellow_001.png").status_code == 404
    assert first.delete("/images/yellow_001.png", headers=AUTH).status_code == 404


def test_embeddings_of_another_model_are_409(
    client_w: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    editor = client_w.application.extensions["imgsim.editor"]

    def mismatch(images: object) -> list[str]:
        raise ModelMismatchError("These embeddings come from model a but the index holds b's")

    monkeypatch.setattr(editor, "add_images", mismatch)
    response = post_images(client_w, [("yellow_001.png", new_png())])
    assert response.status_code == 409
    assert "model" in response.get_json()["error"]


def test_no_index_is_503(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    client = make_app(fresh=True, workdir=str(tmp_path), admin_token=TOKEN).test_client()
    assert post_images(client, [("yellow_001.png", new_png())]).status_code == 503
    assert client.delete("/images/red_001.jpg", headers=AUTH).status_code == 503


# Removing


def test_a_removed_image_is_gone_now_and_after_a_restart(
    updatable: Callable[..., FlaskClient], data: Path
) -> None:
    client = updatable()
    before, image = total(client), (data / "red_002.png").read_bytes()
    assert top_hit(client, image)["filename"] == "red_002.png"
    response = client.delete("/images/red_002.png", headers=AUTH)
    assert response.status_code == 200
    assert response.get_json() == {"removed": "red_002.png", "total_images": before - 1}
    assert top_hit(client, image)["filename"] != "red_002.png"
    assert client.get("/images/red_002.png").status_code == 404
    assert not (data / "red_002.png").exists()
    assert client.delete("/images/red_002.png", headers=AUTH).status_code == 404

    restarted = updatable()
    assert total(restarted) == before - 1
    assert top_hit(restarted, image)["filename"] != "red_002.png"


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_names_are_removed(client_w: FlaskClient, data: Path, name: str) -> None:
    response = client_w.delete(f"/images/{quote(name)}", headers=AUTH)
    assert response.status_code == 200
    assert response.get_json()["removed"] == name
    assert not (data / name).exists()


UNKNOWN_NAMES = [
    "no_such_001.jpg",
    "secret_001.png",  # in the data folder, not in the index
    "../work/triplet_base_final.pt",
    "..%2Fwork%2Ftriplet_base_final.pt",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252fwork%252ftriplet_base_final.pt",  # encoded twice
    "%2Fetc%2Fpasswd",  # absolute
    "..%5Cwork%5Ctriplet_base_final.pt",
    "red_001.jpg/../../work/triplet_base_final.pt",
    "./red_001.jpg",
    "red_001.jpg%00.png",
    "RED_001.JPG",
]


@pytest.mark.parametrize("name", UNKNOWN_NAMES)
def test_unknown_and_traversal_names_are_404(
    client_w: FlaskClient, own_workdir: Path, name: str
) -> None:
    before = sorted((p, p.stat().st_mtime_ns) for p in own_workdir.parent.rglob("*"))
    # Werkzeug redirects "//" (from %2F) to "/" first (308 keeps the method); then 404.
    response = client_w.delete(f"/images/{name}", headers=AUTH, follow_redirects=True)
    assert response.status_code == 404
    assert list(response.get_json()) == ["error"]
    # Not even the manifest is written for a name that is not indexed.
    assert sorted((p, p.stat().st_mtime_ns) for p in own_workdir.parent.rglob("*")) == before


def test_unknown_names_never_touch_the_disk(
    client_w: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    touched: list[str] = []
    for method in ("is_file", "exists", "stat", "open", "resolve", "unlink"):
        real = getattr(Path, method)
        monkeypatch.setattr(
            Path, method, lambda p, *a, _r=real, **k: touched.append(str(p)) or _r(p, *a, **k)
        )
    for name in UNKNOWN_NAMES:
        client_w.delete(f"/images/{name}", headers=AUTH, follow_redirects=True)
    assert touched == []
    client_w.delete("/images/red_001.jpg", headers=AUTH)  # the spy works: this one is deleted
    assert any(path.endswith("red_001.jpg") for path in touched)


def test_delete_moves_the_file_to_the_trash_and_restore_brings_it_back(
    client_w: FlaskClient, own_workdir: Path
) -> None:
    from imgsim.files import trash

    data = own_workdir.parent / "data"
    original = (data / "red_001.jpg").read_bytes()
    assert client_w.delete("/images/red_001.jpg", headers=AUTH).status_code == 200
    assert not (data / "red_001.jpg").exists()
    (item,) = trash.list_trash(own_workdir)
    assert item.name == "red_001.jpg" and Path(item.stored).read_bytes() == original
    trash.restore(own_workdir, "red_001.jpg")
    assert (data / "red_001.jpg").read_bytes() == original


def test_a_replaced_image_goes_to_the_trash(client_w: FlaskClient, own_workdir: Path) -> None:
    from imgsim.files import trash

    data = own_workdir.parent / "data"
    original = (data / "red_002.png").read_bytes()
    assert post_images(client_w, [("red_002.png", new_png(3))]).status_code == 201
    assert (data / "red_002.png").read_bytes() == new_png(3)
    (item,) = trash.list_trash(own_workdir)
    assert Path(item.stored).read_bytes() == original


def test_same_name_changes_from_two_apps_never_answer_500(
    make_app: Callable[..., Flask], own_workdir: Path
) -> None:
    import random
    import threading

    apps = [make_app(fresh=True, workdir=str(own_workdir), admin_token=TOKEN) for _ in range(2)]
    clients = [app.test_client() for app in apps]
    upload = image_bytes(make_image((200, 30, 30), 5))
    statuses: list[int] = []
    bodies: list[Any] = []

    def run(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(6):
            client = rng.choice(clients)
            if rng.random() < 0.5:
                files = {"images": (io.BytesIO(upload), "red_777.png")}
                response = client.post("/images", data=files, headers=AUTH)
            else:
                response = client.delete("/images/red_777.png", headers=AUTH)
            statuses.append(response.status_code)
            bodies.append(response.get_json())

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(statuses) == 24 and set(statuses) <= {200, 201, 404, 409}, statuses
    assert all(isinstance(b, dict) and b for b in bodies)
    assert not list((own_workdir / ".imgsim-staging").iterdir())
