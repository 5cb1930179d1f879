"""GET /map (the map page) and GET /map/points (the 2-D projection of the collection, JSON)."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Flask, Response, current_app, render_template, url_for

from ..core.config import PAGE_TOP_K_RANGE
from ..explore.collection_map import CollectionMap, MapSettings
from ..explore.kept_document import DocumentState
from .pages import url_prefix
from .pending import pending_answer
from .searcher import get_searcher, searcher_of

bp = Blueprint("map", __name__, url_prefix="/map")

# Kept in the work folder's map file for the server's own checks; not the API's business.
PRIVATE_KEYS = frozenset({"store"})
_BODY_KEY = "imgsim.map_body"  # (the document, its answer serialised): once per new map
_KEY = "imgsim.map"


def init_app(app: Flask) -> None:
    """Give `app` the collection's map: computed in the background, kept in the work folder."""
    app.extensions[_KEY] = CollectionMap(searcher_of(app).workdir)


def collection_map(settings: MapSettings) -> DocumentState:
    """The 2-D map of the app's collection; NotReadyError while there is no collection."""
    store = get_searcher().ready(model=False)
    return current_app.extensions[_KEY].current(store, settings)


def wait_for_map(app: Flask, timeout: float | None = None) -> None:
    """Wait until a map being computed in this process is done (tests, scripts)."""
    app.extensions[_KEY].wait(timeout)


@bp.get("")
def page() -> str:
    """The map page; its behaviour lives in static/map.js."""
    config = current_app.config["IMGSIM"]
    return render_template(
        "pages/map.html",
        current="map",
        top_k=config.top_k,
        top_k_min=PAGE_TOP_K_RANGE[0],
        top_k_max=PAGE_TOP_K_RANGE[1],
        similar_url=url_prefix("browse.similar"),
    )


@bp.get("/points")
def points() -> Any:
    """The map: ready (current), updating (the previous one while a new one is computed),
    or 202 computing while the first is; each point's image is at its `url`."""
    config = current_app.config["IMGSIM"]
    settings = MapSettings(config.map_points, config.map_method, config.map_seed)
    state = collection_map(settings)
    pending = pending_answer(state)
    if pending is not None:
        return pending
    head: dict[str, Any] = {"status": state.status}
    if state.error:
        head["error"] = state.error
    # 5,000 points take ~0.2 s to give URLs and serialise: done once per map, not per request.
    cached = current_app.extensions.get(_BODY_KEY)
    if cached is None or cached[0] is not state.document:
        cached = (state.document, _serialised(state.document))
        current_app.extensions[_BODY_KEY] = cached
    body = json.dumps(head)[:-1] + ", " + cached[1][1:]
    return Response(body, mimetype="application/json")


def _serialised(document: dict[str, Any]) -> str:
    public = {k: v for k, v in document.items() if k not in PRIVATE_KEYS}
    public["points"] = [
        {**p, "url": url_for("images.image", name=p["filename"])} for p in public["points"]
    ]
    return json.dumps(public)
