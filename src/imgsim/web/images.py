"""GET /images/<name>: the indexed dataset images, and nothing else on the disk."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, send_file

from .errors import ApiError
from .searcher import get_searcher

bp = Blueprint("images", __name__, url_prefix="/images")

# POST /images may replace an image and DELETE remove it, so caches must ask again each time:
# max-age 0 with no-cache, and the ETag/Last-Modified make the answer a cheap 304 while the
# file is unchanged (a replaced file is a new file, with a new time and ETag).
CACHE_SECONDS = 0


@bp.get("/<path:name>")
def image(name: str) -> Any:
    """One indexed image by its index name; 404 for any other name, so no path escapes."""
    path = get_searcher().image_path(name)
    if path is None:
        raise ApiError(f"no indexed image named {name[:200]!r}", 404)
    return send_file(path, max_age=CACHE_SECONDS)
