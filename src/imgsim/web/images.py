"""GET /images/<name>: the indexed dataset images, and nothing else on the disk."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from flask import Blueprint, send_file

from ..errors import UnsafePathError
from ..paths import safe_path
from .errors import ApiError
from .searcher import get_searcher

bp = Blueprint("images", __name__, url_prefix="/images")

# POST /images may replace an image and DELETE remove it, so caches must ask again each time:
# max-age 0 with no-cache, and the ETag/Last-Modified make the answer a cheap 304 while the
# file is unchanged (a replaced file is a new file, with a new time and ETag).
CACHE_SECONDS = 0


@bp.get("/<path:name>")
def image(name: str) -> Any:
    """One indexed image by its index name; 404 for any other name, so no path escapes.

    Indexed is not enough: a folder of the data folder may since have become a symlink that
    leads out of it, so the path is resolved and must still lie inside.
    """
    path = get_searcher().image_path(name)
    if path is None:
        raise ApiError(f"no indexed image named {name[:200]!r}", 404)
    # image_path is data_dir / name: its data folder is as many levels up as name has parts.
    data_dir = path.parents[len(PurePosixPath(name).parts) - 1]
    try:
        path = safe_path(data_dir, name)
    except UnsafePathError:
        raise ApiError(f"no indexed image named {name[:200]!r}", 404) from None
    return send_file(path, max_age=CACHE_SECONDS)
