"""POST /duplicates/keep (keep one image of a group, trash the rest) and POST
/duplicates/restore (the undo: trashed images back in place and in the index)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from ..core.errors import TrashError
from ..search.untrash import restore_to_index
from .duplicates import MAX_NAMES, current_groups, trash_ids
from .errors import ApiError
from .manage import require_token
from .searcher import get_editor, get_searcher

bp = Blueprint("review", __name__, url_prefix="/duplicates")


def _names(body: Any, key: str, fewest: int) -> list[str]:
    names = body.get(key) if isinstance(body, dict) else None
    if not isinstance(names, list) or not fewest <= len(names) <= MAX_NAMES:
        raise ApiError(f"{key} must be a list of {fewest} to {MAX_NAMES} names")
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ApiError(f"{key} must be distinct, non-empty names")
    return names


@bp.post("/keep")
def keep() -> Any:
    """Keep one image of a group and move the group's others to the trash (token).

    JSON {"keep": name, "names": [every member of the group, as the page showed it]}: `keep`
    may be any member (the suggested keeper or the one a person chose). When the group is not
    exactly those images now, nothing moves (409): only what a person saw is trashed.
    """
    denied = require_token()
    if denied is not None:
        return denied
    body = request.get_json(silent=True)
    names = _names(body, "names", 2)
    kept = body.get("keep")
    if not isinstance(kept, str) or kept not in names:
        raise ApiError("keep must be one of names")
    group = next((g for g in current_groups(body) if kept in [m["name"] for m in g["members"]]),
                 None)  # fmt: skip
    if group is None or {m["name"] for m in group["members"]} != set(names):
        raise ApiError("that group is not as it was shown (reload the groups)", 409)
    removed = get_editor().remove_images([n for n in names if n != kept])
    total = int(get_searcher().stats()["total_images"])
    return jsonify(kept=kept, trashed=removed, ids=trash_ids(removed), total_images=total)


@bp.post("/restore")
def restore() -> Any:
    """Undo a trash of this page (token): JSON {"ids": [trash ids]}; each file goes back to its
    place and into the index, or nothing changes (409 when one cannot)."""
    denied = require_token()
    if denied is not None:
        return denied
    ids = _names(request.get_json(silent=True), "ids", 1)
    get_searcher().ready()  # 503 without a collection to put them back into
    try:
        restored = restore_to_index(get_editor(), ids)
    except TrashError as exc:
        raise ApiError(str(exc), 409) from None
    return jsonify(restored=restored, total_images=int(get_searcher().stats()["total_images"]))
