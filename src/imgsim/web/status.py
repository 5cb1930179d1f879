"""GET /stats (the original's statistics plus categories) and GET /health (for monitors)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from .searcher import get_searcher

bp = Blueprint("status", __name__)


@bp.get("/stats")
def stats() -> Any:
    """Whether the model and embeddings are loaded, sizes, categories, the default threshold."""
    return jsonify(get_searcher().stats())


@bp.get("/health")
def health() -> Any:
    """Liveness: 200 while the process answers; `ready` says whether searches can run."""
    searcher = get_searcher()
    ready = searcher.model_loaded and searcher.embeddings_loaded
    return jsonify(status="ok", ready=ready, problems=list(searcher.problems))
