"""GET /images/<name>: indexed images only; no other file, whatever the path says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from flask.testing import FlaskClient
from webtest_images import ODD_NAMES

from imgsim.core.config import FEATURES_FILE, IMAGES_FILE, INDEX_META_FILE, MODEL_FILE
from imgsim.store import open_store
from imgsim.store.exports import build_collection


@pytest.mark.parametrize("name", ["red_001.jpg", "green_002.png", *ODD_NAMES])
def test_indexed_images_are_served(client: FlaskClient, data_dir: Path, name: str) -> None:
    response = client.get(f"/images/{quote(name)}")
    assert response.status_code == 200
    assert response.data == (data_dir / name).read_bytes()
    assert response.mimetype == ("image/jpeg" if name.endswith(".jpg") else "image/png")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # Images can be replaced or removed at run time (POST/DELETE /images): always revalidate.
    assert {"no-cache", "max-age=0"} <= set(response.headers["Cache-Control"].split(", "))
    again = client.get(
        f"/images/{quote(name)}", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert again.status_code == 304


OTHER_PATHS = [
    "/images/secret_001.png",  # in the data folder, not in the index
    "/images/../work/triplet_base_final.pt",
    "/images/..%2Fwork%2Ftriplet_base_final.pt",
    "/images/%2e%2e/%2e%2e/etc/passwd",
    "/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/images/%252e%252e%252fwork%252ftriplet_base_final.pt",  # encoded twice
    "/images/%2Fetc%2Fpasswd",  # an absolute path, encoded
    "/images/..%5Cwork%5Ctriplet_base_final.pt",  # Windows separators
    "/images/red_001.jpg/../../work/triplet_base_final.pt",
    "/images/./red_001.jpg",
    "/images//etc/passwd",
    "/images/red_001.jpg%00.png",
    "/images/RED_001.JPG",
    "/images/",
]


@pytest.mark.parametrize("path", OTHER_PATHS)
def test_other_paths_are_json_404(client: FlaskClient, path: str) -> None:
    # Werkzeug redirects "//" to "/" first; wherever it leads, nothing but a 404 comes back.
    response = client.get(path, follow_redirects=True)
    assert response.status_code == 404
    assert list(response.get_json()) == ["error"]


def test_other_paths_never_touch_the_disk(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only names found in the index become paths; nothing else is even looked up on disk.
    touched: list[str] = []
    for method in ("is_file", "exists", "stat", "open", "resolve"):
        real = getattr(Path, method)
        monkeypatch.setattr(
            Path, method, lambda p, *a, _r=real, **k: touched.append(str(p)) or _r(p, *a, **k)
        )
    for path in OTHER_PATHS:
        client.get(path, follow_redirects=True)
    assert touched == []
    client.get("/images/red_001.jpg")  # the spy works: an indexed name is looked up
    assert touched


def test_indexed_image_missing_from_disk_is_404(make_app, workdir: Path, tmp_path: Path) -> None:
    features = np.load(workdir / FEATURES_FILE)
    names = [str(n) for n in np.load(workdir / IMAGES_FILE)]
    model_id = json.loads((workdir / INDEX_META_FILE).read_text())["model_id"]
    shutil.copy(workdir / MODEL_FILE, tmp_path / MODEL_FILE)
    with open_store(tmp_path) as store:
        build_collection(store, features, names, tmp_path / "moved-away", model_id)
    client = make_app(fresh=True, workdir=str(tmp_path)).test_client()
    assert client.get("/stats").get_json()["total_images"] == len(names)
    response = client.get("/images/red_001.jpg")
    assert response.status_code == 404
    assert list(response.get_json()) == ["error"]


def test_unknown_route_is_json_404(client: FlaskClient) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert list(response.get_json()) == ["error"]


def test_a_folder_symlink_that_leads_out_is_not_followed(
    make_app, own_workdir: Path, tmp_path: Path
) -> None:
    from webtest_images import image_bytes, make_image

    from imgsim.search.editor import CollectionEditor
    from imgsim.search.searcher import Searcher

    searcher = Searcher.from_workdir(own_workdir)
    image = image_bytes(make_image((1, 2, 3), 1))
    CollectionEditor(searcher).add_images({"linked/hat_001.png": image})
    data = own_workdir.parent / "data"
    client = make_app(searcher).test_client()
    assert client.get("/images/linked/hat_001.png").status_code == 200
    # The indexed folder is swapped for a symlink to a folder outside with the same file name.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hat_001.png").write_bytes(b"private bytes outside the data folder")
    shutil.rmtree(data / "linked")
    (data / "linked").symlink_to(outside, target_is_directory=True)
    response = client.get("/images/linked/hat_001.png")
    assert response.status_code == 404
    assert b"private" not in response.data
    assert response.get_json()["error"].startswith("no indexed image")
