"""The collection API: GET /browse (paged names by category) and GET /similar/<name>."""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, jsonify, url_for

from ..search.searcher import results_response
from .forms import read_categories, read_field, read_int, read_threshold, read_top_k
from .search import with_urls
from .searcher import get_searcher

bp = Blueprint("browse", __name__)

PER_PAGE_DEFAULT, PER_PAGE_MAX = 60, 200
PAGE_MAX = 10_000_000  # a bound for the number itself; past the last page is just empty


@bp.get("/browse")
def browse() -> Any:
    """One page of the collection's images (of one category, or all), by name, with counts."""
    searcher = get_searcher()
    store = searcher.ready(model=False, vectors=False)
    category = read_field("category")
    page = read_int("page", 1, 1, PAGE_MAX)
    per_page = read_int("per_page", PER_PAGE_DEFAULT, 1, PER_PAGE_MAX)
    counts = store.categories()
    if category is not None:
        searcher.check_categories([category])  # UnknownCategoryError names the known ones
    total = counts.get(category, 0) if category is not None else sum(counts.values())
    rows = store.list_images(category, (page - 1) * per_page, per_page)
    items = [
        {"filename": name, "category": cat, "url": url_for("images.image", name=name)}
        for name, cat in rows
    ]
    return jsonify(
        items=items,
        category=category,
        total=total,
        page=page,
        per_page=per_page,
        pages=math.ceil(total / per_page),
        categories=counts,
        total_images=sum(counts.values()),
    )


@bp.get("/similar/<path:name>")
def similar(name: str) -> Any:
    """ "More like this": the images nearest to an indexed image, by its stored embedding."""
    searcher = get_searcher()
    results = searcher.similar(name, read_top_k(), read_threshold(), read_categories())
    return jsonify(query=name, **with_urls(results_response(results)))


__all__ = ["PER_PAGE_DEFAULT", "PER_PAGE_MAX", "bp"]
