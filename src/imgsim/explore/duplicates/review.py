"""One page of duplicate groups for a person to review: sorted by size or date, then paged."""

from __future__ import annotations

from typing import Any

from ...core.config import DUPLICATES_SORTS
from ...core.errors import ConfigError


def group_date(group: dict[str, Any]) -> float | None:
    """When the group's newest picture was taken (EXIF, else the file's mtime); None if unknown."""
    dates = [m.get("captured") for m in group["members"]]
    return max((d for d in dates if d is not None), default=None)


def sorted_groups(groups: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    """`size`: the most images first (as found); `date`: the newest picture first, undated last.

    Both are stable, so a group keeps its place among equals from one request to the next.
    """
    if sort not in DUPLICATES_SORTS:
        raise ConfigError(f"sort must be one of {', '.join(DUPLICATES_SORTS)}")
    if sort == "size":
        return sorted(groups, key=lambda g: -len(g["members"]))
    dated = [(group_date(g), g) for g in groups]
    return [g for d, g in sorted(dated, key=lambda dg: (dg[0] is None, -(dg[0] or 0.0)))]


def review_page(
    groups: list[dict[str, Any]], sort: str, page: int, per_page: int
) -> dict[str, Any]:
    """The groups of page `page` (1-based) and where it lies: page, per_page, pages,
    total_groups, first (the number of its first group, 1-based). A page past the last is
    empty, so a client that trashed the last group of the last page asks for the one before."""
    if page < 1 or per_page < 1:
        raise ConfigError("page and per_page start at 1")
    ordered = sorted_groups(groups, sort)
    start = (page - 1) * per_page
    return {
        "sort": sort,
        "page": page,
        "per_page": per_page,
        "pages": max(1, -(-len(ordered) // per_page)),
        "total_groups": len(ordered),
        "first": start + 1,
        "groups": ordered[start : start + per_page],
    }
