"""The pages: GET / (search) and GET /collection (browse); behaviour lives in static/*.js."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, url_for

from ..core.config import PAGE_TOP_K_RANGE, PAGE_WATCH_REFRESH_SECONDS
from .browse import PER_PAGE_DEFAULT

bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> str:
    """The page; its settings reach the script as data attributes, as the CSP forbids inline JS."""
    config = current_app.config["IMGSIM"]
    return render_template(
        "pages/index.html",
        current="search",
        top_k=config.top_k,
        top_k_min=PAGE_TOP_K_RANGE[0],
        top_k_max=PAGE_TOP_K_RANGE[1],
        max_image_bytes=config.max_image_bytes,
        similar_url=url_prefix("browse.similar"),
        images_url=url_prefix("images.image"),
        watch_refresh_ms=int(PAGE_WATCH_REFRESH_SECONDS * 1000),
    )


@bp.get("/collection")
def collection() -> str:
    """The browse page: a paged grid of the collection, each image a "more like this" link."""
    return render_template("pages/browse.html", current="browse", per_page=PER_PAGE_DEFAULT)


def url_prefix(endpoint: str) -> str:
    """A `<path:name>` route's address without the name: the script appends an encoded one."""
    return url_for(endpoint, name="_").removesuffix("_")
