"""GET /duplicates (JSON), GET /duplicates/view (the page) and POST /duplicates/trash."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, render_template, request, url_for

from ..config import DuplicatesConfig, load_config, replace
from ..duplicates import DuplicateReport, StoreFinder
from ..duplicates.finder import check_method
from ..errors import ImgsimError
from .errors import ApiError
from .manage import require_token
from .searcher import get_searcher

bp = Blueprint("duplicates", __name__, url_prefix="/duplicates")

_KEY = "imgsim.duplicates"
SETTINGS_KEY = "IMGSIM_DUPLICATES"  # a DuplicatesConfig in app.config; else IMGSIM_CONFIG's
MAX_NAMES = 10_000  # names one trash request may carry


@dataclass
class _State:
    """One app's finder (fingerprints kept by content) and its latest answer per settings."""

    settings: DuplicatesConfig
    finder: StoreFinder = field(default_factory=StoreFinder)
    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: dict[tuple, DuplicateReport] = field(default_factory=dict)


def _state(app: Flask) -> _State:
    state = app.extensions.get(_KEY)
    if state is None:
        settings = app.config.get(SETTINGS_KEY)
        if settings is None:
            from .app import ENV_CONFIG  # here: app.py imports this module

            settings = load_config(os.environ.get(ENV_CONFIG) or None).duplicates
        state = app.extensions.setdefault(_KEY, _State(settings))
    return state


def _settings(values: Any, state: _State) -> DuplicatesConfig:
    """The app's settings with `method`, `threshold`, `embedding_threshold` from `values`."""
    chosen = {k: values.get(k) for k in ("method", "threshold", "embedding_threshold")}
    try:
        settings = replace(state.settings, {k: v for k, v in chosen.items() if v is not None})
        check_method(settings)
    except ImgsimError as exc:
        raise ApiError(str(exc)) from None
    return settings


def report_for(settings: DuplicatesConfig) -> DuplicateReport:
    """The groups of the indexed collection; computed once per store generation and settings.

    One computation at a time per process: a second request waits and gets the same answer.
    """
    searcher = get_searcher()
    searcher.require_ready()
    store = searcher.store
    assert store is not None
    state = _state(current_app)
    with state.lock:
        key = (
            store.generation(),
            settings.method,
            settings.threshold,
            settings.embedding_threshold,
        )
        if key not in state.answers:
            report = state.finder.find(store, settings)
            # Earlier generations are never asked for again.
            state.answers = {k: v for k, v in state.answers.items() if k[0] == key[0]}
            state.answers[key] = report
        return state.answers[key]


@bp.get("")
def duplicates() -> Any:
    """Groups of duplicate images in the index, the one to keep first, with image URLs."""
    report = report_for(_settings(request.args, _state(current_app)))
    body = report.to_dict()
    for group in body["groups"]:
        for member in group["members"]:
            member["url"] = url_for("images.image", name=member["name"])
    return jsonify(body)


@bp.get("/view")
def view() -> str:
    """The page: groups side by side, and the button that moves extras to the trash."""
    return render_template(
        "pages/duplicates.html",
        current="duplicates",
        settings=_state(current_app).settings,
        max_names=MAX_NAMES,
    )


@bp.post("/trash")
def trash() -> Any:
    """Move extras of duplicate groups to the trash (token); never a group's keeper.

    Every name must be an extra of a group in the answer GET /duplicates gives now with the
    same settings; otherwise nothing changes (409).
    """
    denied = require_token()
    if denied is not None:
        return denied
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("names"), list):
        raise ApiError('send JSON: {"names": [extra image names]}')
    names = body["names"]
    if not names or len(names) > MAX_NAMES or not all(isinstance(n, str) for n in names):
        raise ApiError(f"names must be 1 to {MAX_NAMES} image names")
    report = report_for(_settings(body, _state(current_app)))
    extras = {m.name for g in report.groups for m in g.extras}
    unknown = [n for n in names if n not in extras]
    if unknown:
        raise ApiError(
            f"not an extra of any duplicate group now (reload the groups): {unknown[0][:200]!r}",
            409,
        )
    removed = get_searcher().remove_images(names)
    return jsonify(trashed=removed, total_images=int(get_searcher().stats()["total_images"]))
