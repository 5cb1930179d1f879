"""GET /duplicates (JSON, paged), GET /duplicates/view (the page), POST /duplicates/trash and
POST /duplicates/not-duplicates."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, Flask, current_app, jsonify, render_template, request, url_for

from ..core.config import (
    DUPLICATES_MAX_PER_PAGE,
    DUPLICATES_PER_PAGE,
    DUPLICATES_SORTS,
    ENV_CONFIG,
    DuplicatesConfig,
    load_config,
    replace,
)
from ..core.errors import ImgsimError, NotReadyError, TrashError
from ..explore.duplicates.dismissed import change_dismissed, group_pairs
from ..explore.duplicates.finder import check_method
from ..explore.duplicates.kept import SETTINGS, KeptDuplicates
from ..explore.duplicates.review import review_page
from ..explore.kept_document import DocumentState
from ..files.trash import find as find_in_trash
from ..search.searcher import Searcher
from .errors import ApiError
from .manage import require_token
from .pending import pending_answer
from .searcher import get_editor, get_searcher, searcher_of

bp = Blueprint("duplicates", __name__, url_prefix="/duplicates")

_KEY = "imgsim.duplicates"
_GROUPS_KEY = "imgsim.duplicate_groups"
SETTINGS_KEY = "IMGSIM_DUPLICATES"  # a DuplicatesConfig in app.config; else IMGSIM_CONFIG's
MAX_NAMES = 10_000  # names one trash request may carry
# A trash right after another waits this long for the new groups (known fingerprints are not
# decoded again, so that is seconds); a longer search answers 409.
TRASH_WAIT_SECONDS = 20.0
# The kept file's own checks, not part of the answer.
PRIVATE_KEYS = frozenset({"generation", "store", "layout", "dismissed"})


def _app_settings(app: Flask) -> DuplicatesConfig:
    """The app's duplicate settings: app.config's, else IMGSIM_CONFIG's (read once)."""
    settings = app.extensions.get(_KEY)
    if settings is None:
        settings = app.config.get(SETTINGS_KEY)
        if settings is None:
            settings = load_config(os.environ.get(ENV_CONFIG) or None).duplicates
        settings = app.extensions.setdefault(_KEY, settings)
    return settings


def request_settings(values: Any) -> DuplicatesConfig:
    """The app's settings with `method`, `threshold`, `embedding_threshold` from `values`."""
    chosen = {k: values.get(k) for k in SETTINGS}
    try:
        settings = replace(
            _app_settings(current_app), {k: v for k, v in chosen.items() if v is not None}
        )
        check_method(settings)
    except ImgsimError as exc:
        raise ApiError(str(exc)) from None
    return settings


def trash_ids(names: list[str]) -> list[str]:
    """The trash ids of the images just trashed under these names: what an undo sends back."""
    workdir = get_searcher().workdir
    ids = []
    for name in names:
        try:
            ids.append(find_in_trash(workdir, name).id)
        except TrashError:  # indexed without a file: nothing moved, nothing to bring back
            continue
    return ids


def init_app(app: Flask) -> None:
    """Give `app` its duplicate groups: found in the background, kept in the work folder;
    turned copies are embedded by the app's network."""
    searcher = searcher_of(app)
    app.extensions[_GROUPS_KEY] = KeptDuplicates(searcher.workdir, partial(embed_views, searcher))


def embed_views(searcher: Searcher, paths: Sequence[Path], views: Sequence[int]) -> np.ndarray:
    """The embeddings of these turned views of these files, by the searcher's network."""
    from ..explore.duplicates.views import ViewEmbedder

    if searcher.embedder is None:
        raise NotReadyError("no model to embed images with")
    return ViewEmbedder(searcher.embedder)(paths, views)


def wait_for_groups(app: Flask, timeout: float | None = None) -> None:
    """Wait until a search for groups in progress in this process ends (tests, scripts)."""
    app.extensions[_GROUPS_KEY].wait(timeout)


def groups_now(settings: DuplicatesConfig) -> DocumentState:
    """The kept groups for `settings`, starting a search in the background when not current;
    NotReadyError while a search could not run."""
    store = get_searcher().ready()
    return current_app.extensions[_GROUPS_KEY].current(store, settings)


def current_groups(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The groups of the collection as it is now, for the request's settings: what a move is
    checked against; 409 while they are still being found."""
    settings = request_settings(body)
    state = groups_now(settings)
    if not state.current:  # after a change (another trash): its groups take a moment, mostly
        wait_for_groups(current_app, TRASH_WAIT_SECONDS)
        state = groups_now(settings)
    if not state.current or state.document is None:
        raise ApiError("the duplicate groups are being found again (the collection changed); "
                       "reload them and choose again", 409)  # fmt: skip
    return state.document["groups"]


def _whole_number(name: str, default: int, most: int) -> int:
    text = request.args.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= most:
        raise ApiError(f"{name} must be a whole number from 1 to {most}")
    return int(text)


def _page_args() -> tuple[str, int, int]:
    """(sort, page, per_page) of the query string, checked before any group is looked at."""
    sort = request.args.get("sort", "size")
    if sort not in DUPLICATES_SORTS:
        raise ApiError(f"sort must be one of {', '.join(DUPLICATES_SORTS)}")
    page = _whole_number("page", 1, 1_000_000)
    return sort, page, _whole_number("per_page", DUPLICATES_PER_PAGE, DUPLICATES_MAX_PER_PAGE)


@bp.get("")
def duplicates() -> Any:
    """One page of the groups of duplicate images in the index, the one to keep first, with
    image URLs; `sort` size (the most images first) or date (the newest picture first).

    ready: the groups of the collection as it is; updating: of an earlier state while new ones
    are found; 202 while the first are found (ask again after `retry_after` seconds).
    """
    sort, page, per_page = _page_args()
    state = groups_now(request_settings(request.args))
    pending = pending_answer(state)
    if pending is not None:
        return pending
    assert state.document is not None
    body = {k: v for k, v in state.document.items() if k not in PRIVATE_KEYS}
    body.update(review_page(body["groups"], sort, page, per_page))
    body["status"] = state.status
    if state.error:
        body["error"] = state.error
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
        settings=_app_settings(current_app),
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
    extras = {name for g in current_groups(body) for name in g["extras"]}
    unknown = [n for n in names if n not in extras]
    if unknown:
        raise ApiError(
            f"not an extra of any duplicate group now (reload the groups): {unknown[0][:200]!r}",
            409,
        )
    removed = get_editor().remove_images(names)
    total = int(get_searcher().stats()["total_images"])
    return jsonify(trashed=removed, ids=trash_ids(removed), total_images=total)


@bp.post("/not-duplicates")
def not_duplicates() -> Any:
    """Mark a group's images as not duplicates of its kept one (token), or undo that.

    JSON {"names": [kept, other, ...], "undo": false}: the pairs of the first name with each
    other one are remembered in the workdir (never shown again) or, with undo, forgotten.
    """
    denied = require_token()
    if denied is not None:
        return denied
    body = request.get_json(silent=True)
    names = body.get("names") if isinstance(body, dict) else None
    if not isinstance(names, list) or not 2 <= len(names) <= MAX_NAMES:
        raise ApiError('send JSON: {"names": [kept name, other names...], "undo": false}')
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ApiError("names must be distinct image names")
    undo = body.get("undo", False)
    if not isinstance(undo, bool):  # an object or "false" must not count as either
        raise ApiError("undo must be true or false")
    pairs = group_pairs(names[0], names[1:])
    change = {"remove": pairs} if undo else {"add": pairs}
    dismissed = change_dismissed(get_searcher().workdir, **change)
    return jsonify(pairs=len(pairs), dismissed=len(dismissed), undo=undo)
