"""GET /stats (the original's statistics plus categories) and GET /health (for monitors)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from .searcher import get_searcher
from .watching import watcher_health

bp = Blueprint("status", __name__)


@bp.get("/stats")
def stats() -> Any:
    """Whether the model and embeddings are loaded, sizes, categories, the default threshold."""
    return jsonify(get_searcher().stats())


@bp.get("/health")
def health() -> Any:
    """Liveness: 200 while the process answers; `ready` says whether searches can run;
    `watcher` whether the folder is followed (running, last change, pending files)."""
    searcher = get_searcher()
    ready = searcher.model_loaded and searcher.embeddings_loaded
    body = {"status": "ok", "ready": ready, "problems": list(searcher.problems)}
    watcher = watcher_health(current_app.config["IMGSIM"])
    if watcher is not None:  # serve --watch, or imgsim watch on this workdir
        body["watcher"] = watcher
    return jsonify(body)
