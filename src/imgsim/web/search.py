"""The search API: POST /search (one image) and POST /search/batch (several images)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Blueprint, current_app, jsonify, url_for

from ..search.searcher import UnreadableImageError, results_response
from .forms import (
    limit_request,
    read_categories,
    read_image,
    read_images,
    read_threshold,
    read_top_k,
)
from .searcher import get_searcher

bp = Blueprint("search", __name__)
# What werkzeug's path converter leaves unquoted (werkzeug.routing.BaseConverter.to_url).
PATH_SAFE = "!$&'()*+,/:;=@"


@bp.post("/search")
def search() -> Any:
    """The most similar indexed images to the uploaded one."""
    limit_request(1)
    searcher = get_searcher()
    searcher.ready()
    _, data = read_image()
    results = searcher.search(data, read_top_k(), read_threshold(), read_categories())
    return jsonify(with_urls(results_response(results)))


@bp.post("/search/batch")
def search_batch() -> Any:
    """One result list per uploaded image, in upload order, from one forward pass."""
    limit_request(current_app.config["IMGSIM"].max_batch_files)
    searcher = get_searcher()
    searcher.ready()
    uploads = read_images()
    top_k, threshold, categories = read_top_k(), read_threshold(), read_categories()
    try:
        batches = searcher.search_batch([data for _, data in uploads], top_k, threshold, categories)
    except UnreadableImageError:
        raise name_unreadable(uploads) from None
    queries = [
        {"query": name, **with_urls(results_response(results))}
        for (name, _), results in zip(uploads, batches, strict=True)
    ]
    return jsonify(queries=queries, total_queries=len(queries))


def with_urls(response: dict[str, Any]) -> dict[str, Any]:
    """Add each result's image URL (the /images route) to a results response."""
    # One url_for per response, not per result (it costs more than the vector search): the
    # route's prefix, then each name quoted as its path converter quotes it.
    base = url_for("images.image", name="x")[:-1]
    for result in response["results"]:
        result["url"] = base + quote(result["filename"], safe=PATH_SAFE)
    return response


def name_unreadable(uploads: list[tuple[str, bytes]]) -> UnreadableImageError:
    """The error for a batch with an unreadable image, naming the first bad one and its place."""
    # The batch decode does not say which image failed; find it (only on this error path).
    for position, (name, data) in enumerate(uploads, start=1):
        try:
            get_searcher().embed([data])
        except UnreadableImageError as exc:
            return UnreadableImageError(f"image {position} ({name}): {exc}")
    return UnreadableImageError("one of the images is not readable")
