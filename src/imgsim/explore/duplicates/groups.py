"""Duplicate groups: each a kept image and the images paired with it, and how alike they are."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SAME = "same picture"  # the same bytes or decoded pixels, or hashes and embeddings alike
NEAR = "near duplicate"  # re-saved, resized, slightly cropped, turned, mirrored, recoloured


@dataclass
class Link:
    """How two images were found to be duplicates: the tier, and the measures that said so.

    `view`: the view (views.DIHEDRAL) of the pair's second image that looks like the first.
    """

    tier: str
    view: int = 0
    distance: int | None = None  # perceptual-hash bits apart (in that view)
    similarity: float | None = None  # cosine of the embeddings (in that view)
    exact: bool = False  # the same bytes


# Formats that keep every pixel as it was: after pixels and bytes, one is kept over a JPEG.
LOSSLESS = frozenset({"PNG", "TIFF", "BMP", "GIF"})


@dataclass
class Member:
    """One image of a group; the keeper is chosen by keeper_first, the others are extras."""

    name: str
    size: int  # bytes
    width: int
    height: int
    format: str = ""  # PNG, JPEG... ("" when unknown)
    modified: float | None = None  # the file's modification time, seconds since 1970
    keep: bool = False
    exact: bool = False  # the same bytes as the keeper (SHA-256)
    hash_distance: int | None = None  # perceptual-hash bits that differ from the keeper's
    similarity: float | None = None  # cosine of the embeddings to the keeper's
    tier: str = ""  # SAME or NEAR, to the keeper; "" for the keeper
    view: str = ""  # how it is turned or mirrored from the keeper ("" when it is not)
    captured: float | None = None  # when taken: EXIF DateTimeOriginal, else `modified`
    captured_from: str = ""  # "exif", "file" (the mtime) or "" (unknown)

    def score(self) -> float:
        """How alike it is to the keeper, 0..1: 1 for the same bytes, else the best measure."""
        if self.exact:
            return 1.0
        scores = [1.0 - self.hash_distance / 64] if self.hash_distance is not None else []
        scores += [self.similarity] if self.similarity is not None else []
        return max(scores, default=0.0)


@dataclass
class Group:
    """Images that are the same picture; the first member is the one to keep."""

    members: list[Member]
    score: float = field(init=False)  # the least alike member's score: the group's weakest link
    reason: str = field(init=False)  # why the first member is the one kept

    def __post_init__(self) -> None:
        self.score = round(min((m.score() for m in self.extras), default=1.0), 4)
        self.reason = keep_reason(self.keeper, self.extras)

    @property
    def tier(self) -> str:
        """SAME when every extra is the same picture as the keeper, else NEAR."""
        return SAME if all(m.tier == SAME for m in self.extras) else NEAR

    @property
    def keeper(self) -> Member:
        return self.members[0]

    @property
    def extras(self) -> list[Member]:
        return self.members[1:]

    def to_dict(self) -> dict[str, Any]:
        return {
            "keep": self.keeper.name,
            "extras": [m.name for m in self.extras],
            "score": self.score,
            "exact": all(m.exact for m in self.extras),
            "tier": self.tier,
            "reason": self.reason,
            "members": [asdict(m) for m in self.members],
        }


def keeper_key(member: Member) -> tuple:
    """Sorts the best one to keep first: the most pixels, then the largest file, then a
    lossless format, then the oldest (date taken, else the file's), then the first name."""
    when = member.captured if member.captured is not None else member.modified
    age = when if when is not None else float("inf")
    lossy = member.format.upper() not in LOSSLESS
    return (-member.width * member.height, -member.size, lossy, age, member.name)


def keeper_first(members: list[tuple[int, Member]]) -> list[tuple[int, Member]]:
    """(position, member) with the best one to keep first (keeper_key)."""
    return sorted(members, key=lambda pm: keeper_key(pm[1]))


def keep_reason(keeper: Member, others: Sequence[Member]) -> str:
    """Why `keeper` is kept: the first of keeper_key's measures that puts it before the
    runner-up."""
    if not others:
        return ""
    runner_up = min(others, key=keeper_key)
    first, second = keeper_key(keeper), keeper_key(runner_up)
    reasons = (
        f"most pixels ({keeper.width}x{keeper.height})",
        "as many pixels, largest file",
        f"as many pixels and bytes, lossless format ({keeper.format})",
        "otherwise equal, taken first" if keeper.captured_from == "exif" else
        "otherwise equal, oldest file",
    )  # fmt: skip
    for reason, a, b in zip(reasons, first, second, strict=False):
        if a != b:
            return reason
    return "otherwise equal, first name"


def stars(order: Sequence[int], pairs: Sequence[np.ndarray]) -> list[list[int]]:
    """Groups of two or more items, each its keeper first and then the items paired with it.

    Items are visited in `order` (the best keeper first); an item not yet in a group starts
    one and takes every item not yet in a group that it is paired with *directly*. Pairs are
    never chained: with a~b and b~c but not a~c, c is not in a's group, so every member is a
    duplicate of its group's keeper itself. Largest groups first.
    """
    linked: dict[int, set[int]] = {}
    for pair_array in pairs:
        for a, b in np.asarray(pair_array, dtype=np.int64).reshape(-1, 2).tolist():
            if a != b:
                linked.setdefault(a, set()).add(b)
                linked.setdefault(b, set()).add(a)
    taken: set[int] = set()
    found = []
    for item in order:
        if item in taken or item not in linked:
            continue
        members = sorted(linked[item] - taken)
        if members:
            taken.update(members, (item,))
            found.append([item, *members])
    return sorted(found, key=lambda g: -len(g))  # stable: equal sizes keep keeper order
