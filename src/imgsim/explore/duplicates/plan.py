"""What `imgsim duplicates --keep best` does with each group: the copy kept and why, and the
others, which go to the trash (never deleted)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ...core.errors import ImgsimError
from .groups import Group


@dataclass
class Step:
    """One group's part of the plan: `keep` stays, `move` goes to the trash."""

    keep: str
    reason: str
    tier: str
    move: list[str]
    moved: list[str] = field(default_factory=list)  # once carried out
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, why) not moved

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["failed"] = [{"name": n, "error": e} for n, e in self.failed]
        return body


def plan_of(groups: Sequence[Group]) -> list[Step]:
    """Keep each group's suggested keeper (groups.keeper_key: the most pixels, the largest
    file, a lossless format, the oldest), move the others: what `--keep best` means."""
    return [Step(g.keeper.name, g.reason, g.tier, [m.name for m in g.extras]) for g in groups]


def carry_out(steps: Sequence[Step], move: Callable[[str], None]) -> None:
    """Move each step's images with `move(name)`, one at a time: an image that cannot be moved
    (gone meanwhile, a full disk) is named in its step's `failed`, and the others still go."""
    for step in steps:
        for name in step.move:
            try:
                move(name)
            except (ImgsimError, OSError) as exc:
                step.failed.append((name, str(exc)))
            else:
                step.moved.append(name)
