"""The update API (issue #5): POST /images and DELETE /images/<name>, behind the admin token."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from ..core.errors import ImgsimError
from ..core.paths import safe_path
from ..images.data import category_of
from ..search.editor import ImageNameError, dataset_name
from ..search.searcher import UnreadableImageError
from .errors import ApiError, error_response
from .forms import limit_request, read_field, read_images
from .search import name_unreadable
from .searcher import get_editor, get_searcher

bp = Blueprint("manage", __name__)

TOKEN_HEADER = "X-Imgsim-Token"  # for clients that cannot set Authorization
OFF_MESSAGE = "updates are off: set IMGSIM_TOKEN (or admin_token in [search]) on the server"
CHALLENGE = 'Bearer realm="imgsim"'


@bp.before_request
def require_token() -> tuple[Response, int] | None:
    """403 while no token is configured, 401 for a missing or wrong one; None lets it through.

    It runs before the view reads the body, so a client without the token cannot make the
    server receive or decode anything.
    """
    expected = current_app.config["IMGSIM"].admin_token
    if not expected:
        return error_response(OFF_MESSAGE, 403)
    if token_matches(sent_token(), expected):
        return None
    response, status = error_response(
        f"a valid token is required: send 'Authorization: Bearer <token>' or '{TOKEN_HEADER}'",
        401,
    )
    response.headers["WWW-Authenticate"] = CHALLENGE
    return response, status


def sent_token() -> str:
    """The token of this request: `Authorization: Bearer <token>`, else X-Imgsim-Token."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get(TOKEN_HEADER, "")


def token_matches(sent: str, expected: str) -> bool:
    """Whether `sent` is the configured token, compared in constant time.

    Both are hashed first: compare_digest's time still depends on the lengths, and equal
    digests hide the token's length too. (Bytes, since compare_digest refuses non-ASCII str.)
    """
    return hmac.compare_digest(_digest(sent), _digest(expected))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


@bp.post("/images")
def add_images() -> Any:
    """Add (or replace) the uploaded images, all or none; 201 with where each one went."""
    limit_request(current_app.config["IMGSIM"].max_batch_files)
    uploads = read_images()
    stored = stored_names(uploads, read_field("category"), _data_dir())
    images = {name: data for name, (_, data) in zip(stored, uploads, strict=True)}
    try:
        names = get_editor().add_images(images)
    except UnreadableImageError:
        raise name_unreadable(uploads) from None
    added = [
        {"filename": n, "category": category_of(n) or "", "url": url_for("images.image", name=n)}
        for n in names
    ]
    return jsonify(added=added, total_images=_total()), 201


@bp.delete("/images/<path:name>")
def remove_image(name: str) -> Any:
    """Remove an indexed image and its file; 404 for any other name (nothing is touched)."""
    if not get_editor().remove_images([name]):
        raise ApiError(f"no indexed image named {name[:200]!r}", 404)
    return jsonify(removed=name, total_images=_total())


# Bytes a file or folder name may take: the file system's NAME_MAX (255 on Linux, macOS and
# Windows) less room for the temporary names imgsim adds around a name while it writes one.
NAME_MAX = 255
NAME_ROOM = 32


def stored_names(
    uploads: list[tuple[str, bytes]], category: str | None, data_dir: Path | None = None
) -> list[str]:
    """The dataset name of each upload; ApiError (400) naming the first that cannot be stored.

    With `category`, an image is stored as `<category>/<file name>`: category_of takes the
    first folder, so that is its category whatever the file is called. Without, the file
    name must carry one (`shirt_123.jpg`) and is the stored name. With `data_dir`, names are
    also checked against it: nothing may replace a folder, put a folder where a file is, or
    lead out of it; so a refused upload changes nothing.
    """
    limit = _name_limit(data_dir)
    if category is not None:
        if "/" in category or "\\" in category:
            raise ApiError(f"category must not contain '/' or '\\': {category[:100]!r}")
        _check_length("category", category, limit)
    names: list[str] = []
    for position, (filename, _) in enumerate(uploads, start=1):
        where = f"image {position} ({filename[:100]})"
        if "/" in filename or "\\" in filename:
            raise ApiError(f"{where}: send the file name without folders")
        _check_length(where, filename, limit)
        name = filename if category is None else f"{category}/{filename}"
        try:
            dataset_name(name)
        except ImageNameError as exc:
            raise ApiError(f"{where}: {exc}") from None
        if category_of(name) is None:
            raise ApiError(
                f"{where}: no category: send a 'category' field, or name the file "
                "category_number (shirt_001.jpg)"
            )
        if name in names:
            raise ApiError(f"{where}: {name!r} is sent twice")
        if data_dir is not None:
            _check_place(where, data_dir, name)
        names.append(name)
    return names


def _name_limit(data_dir: Path | None) -> int:
    try:
        name_max = os.pathconf(data_dir, "PC_NAME_MAX") if data_dir else NAME_MAX
    except (OSError, ValueError):
        name_max = NAME_MAX
    return min(name_max, NAME_MAX) - NAME_ROOM


def _check_length(what: str, name: str, limit: int) -> None:
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > limit:
        raise ApiError(f"{what}: the name is too long ({size} bytes; at most {limit})")


def _check_place(where: str, data_dir: Path, name: str) -> None:
    # Each case would fail half-way through a write (a 500), or replace something else.
    path = safe_path(data_dir, name)  # UnsafePathError (400): a symlink that leads out
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise ApiError(f"{where}: the category {folder.name!r} is the name of a file")
    if path.is_dir():
        raise ApiError(f"{where}: {name!r} is the name of a folder in the data folder")


def _data_dir() -> Path | None:
    """The data folder of the app's index, or None while there is none (the add says so)."""
    try:
        return get_editor().data_dir
    except ImgsimError:  # the store cannot say (unreachable): the add will answer for it
        return None


def _total() -> int:
    return int(get_searcher().stats()["total_images"])
