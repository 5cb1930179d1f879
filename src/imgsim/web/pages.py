"""GET /: the search page (its HTML; behaviour lives in static/search.js)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from .forms import TOP_K_MAX, TOP_K_MIN

bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> str:
    """The page; its settings reach the script as data attributes, as the CSP forbids inline JS."""
    config = current_app.config["IMGSIM"]
    return render_template(
        "pages/index.html",
        top_k=config.top_k,
        top_k_min=TOP_K_MIN,
        top_k_max=TOP_K_MAX,
        max_image_bytes=config.max_image_bytes,
    )
