"""GET /map (the map page) and GET /map/points (the 2-D projection of the collection, JSON)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, render_template, url_for

from ..collection_map import MapSettings
from .errors import ApiError
from .forms import TOP_K_MAX, TOP_K_MIN
from .searcher import get_searcher

bp = Blueprint("map", __name__, url_prefix="/map")

RETRY_SECONDS = 2  # how soon a client should ask again while the first map is computed
# Kept in the work folder's map file for the server's own checks; not the API's business.
PRIVATE_KEYS = frozenset({"store"})


@bp.get("")
def page() -> str:
    """The map page; its behaviour lives in static/map.js."""
    config = current_app.config["IMGSIM"]
    return render_template(
        "pages/map.html", top_k=config.top_k, top_k_min=TOP_K_MIN, top_k_max=TOP_K_MAX
    )


@bp.get("/points")
def points() -> Any:
    """The map: ready (current), updating (the previous one while a new one is computed),
    or 202 computing while the first is; each point's image is at its `url`."""
    config = current_app.config["IMGSIM"]
    settings = MapSettings(config.map_points, config.map_method, config.map_seed)
    state = get_searcher().collection_map(settings)
    if state.document is None:
        if state.error:
            raise ApiError(state.error, 500)
        response = jsonify(status="computing", retry_after=RETRY_SECONDS)
        response.headers["Retry-After"] = str(RETRY_SECONDS)
        return response, 202
    status = "ready" if state.current else "updating" if state.computing else "stale"
    document = {k: v for k, v in state.document.items() if k not in PRIVATE_KEYS}
    document["points"] = [
        {**p, "url": url_for("images.image", name=p["filename"])} for p in document["points"]
    ]
    body: dict[str, Any] = {"status": status, **document}
    if state.error:
        body["error"] = state.error
    return jsonify(body)
