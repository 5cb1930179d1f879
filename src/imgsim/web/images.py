"""GET /images/<name>: the indexed dataset images (or their thumbnails), and nothing else."""

from __future__ import annotations

import io
from pathlib import Path, PurePosixPath
from typing import Any

from flask import Blueprint, Response, current_app, request, send_file

from ..core.errors import UnsafePathError
from ..core.paths import safe_path
from ..images.data import load_image
from .errors import ApiError
from .forms import read_field
from .searcher import get_editor

bp = Blueprint("images", __name__, url_prefix="/images")

# POST /images may replace an image and DELETE remove it, so caches must ask again each time:
# max-age 0 with no-cache, and the ETag/Last-Modified make the answer a cheap 304 while the
# file is unchanged (a replaced file is a new file, with a new time and ETag).
CACHE_SECONDS = 0
# Thumbnail sides a client may ask for: a few, so a grid's requests can be cached and no
# request can make the server resize to any size it likes.
THUMBNAIL_SIZES = (160, 320)


@bp.get("/<path:name>")
def image(name: str) -> Any:
    """One indexed image by its index name; 404 for any other name, so no path escapes.

    Indexed is not enough: a folder of the data folder may since have become a symlink that
    leads out of it, so the path is resolved and must still lie inside. With `?size=`, a JPEG
    thumbnail that fits in size × size.
    """
    size = _thumbnail_size()
    path = get_editor().image_path(name)
    if path is None:
        raise ApiError(f"no indexed image named {name[:200]!r}", 404)
    # image_path is data_dir / name: its data folder is as many levels up as name has parts.
    data_dir = path.parents[len(PurePosixPath(name).parts) - 1]
    try:
        path = safe_path(data_dir, name)
    except UnsafePathError:
        raise ApiError(f"no indexed image named {name[:200]!r}", 404) from None
    if size is None:
        # The name, not the path: a file name that is not UTF-8 has no text form but its
        # escaped name, which Werkzeug would otherwise fail to encode (a 500).
        stat = path.stat()
        etag = f"{stat.st_mtime_ns:x}-{stat.st_size:x}"
        return send_file(
            path, max_age=CACHE_SECONDS, download_name=PurePosixPath(name).name, etag=etag
        )
    return _thumbnail(path, size)


def _thumbnail_size() -> int | None:
    raw = read_field("size", number=True)
    if raw is None:
        return None
    sizes = ", ".join(map(str, THUMBNAIL_SIZES))
    if not raw.isascii() or not raw.isdigit() or int(raw[:6]) not in THUMBNAIL_SIZES:
        raise ApiError(f"size must be one of {sizes}, not {raw[:20]!r}")
    return int(raw)


def _thumbnail(path: Path, size: int) -> Response:
    """The file shrunk to fit size × size, decoded as uploads are (limits, no bombs)."""
    stat = path.stat()
    etag = f"{stat.st_mtime_ns:x}-{stat.st_size:x}-{size}"
    if request.if_none_match.contains(etag):  # unchanged: no decode at all
        response = Response(status=304)
    else:
        im = load_image(path, current_app.config["IMGSIM"].max_image_pixels, draft_size=size)
        im.thumbnail((size, size))
        buffer = io.BytesIO()
        im.save(buffer, format="JPEG", quality=85)  # not an output: in memory
        response = Response(buffer.getvalue(), mimetype="image/jpeg")
    response.set_etag(etag)
    response.cache_control.no_cache = True
    response.cache_control.max_age = CACHE_SECONDS
    return response
