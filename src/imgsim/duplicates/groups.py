"""Duplicate groups: connected pairs (union-find), the image to keep, and how alike they are."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Member:
    """One image of a group; the keeper has the most pixels (then bytes), the others are extras."""

    name: str
    size: int  # bytes
    width: int
    height: int
    keep: bool = False
    exact: bool = False  # the same bytes as the keeper (SHA-256)
    hash_distance: int | None = None  # perceptual-hash bits that differ from the keeper's
    similarity: float | None = None  # cosine of the centred embeddings to the keeper's

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

    def __post_init__(self) -> None:
        self.score = round(min((m.score() for m in self.extras), default=1.0), 4)

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
            "members": [asdict(m) for m in self.members],
        }


def keeper_first(members: list[Member]) -> list[Member]:
    """Members with the one to keep first: most pixels, then most bytes, then first by name."""
    ordered = sorted(members, key=lambda m: (-m.width * m.height, -m.size, m.name))
    ordered[0].keep = True
    return ordered


def components(count: int, pairs: Sequence[np.ndarray]) -> list[list[int]]:
    """Groups of two or more items joined by any chain of pairs (union-find), largest first."""
    parent = np.arange(count)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression: later finds are one step
            parent[x], x = root, parent[x]
        return int(root)

    for pair_array in pairs:
        for a, b in np.asarray(pair_array, dtype=np.int64).reshape(-1, 2).tolist():
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    joined: dict[int, list[int]] = {}
    touched = np.unique(np.concatenate([np.asarray(p).ravel() for p in pairs] or [[]]))
    for item in touched.astype(np.int64).tolist():
        joined.setdefault(find(item), []).append(item)
    found = [sorted(g) for g in joined.values() if len(g) > 1]
    return sorted(found, key=lambda g: (-len(g), g[0]))
