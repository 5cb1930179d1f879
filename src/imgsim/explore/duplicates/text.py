"""The duplicate groups as a person reads them in a terminal."""

from __future__ import annotations

import time
from collections.abc import Sequence

from .finder import DuplicateReport
from .groups import Member
from .plan import Step


def report_lines(report: DuplicateReport) -> list[str]:
    """One block per group (the image to keep first), then a summary line."""
    lines: list[str] = []
    for number, group in enumerate(report.groups, start=1):
        lines.append(
            f"Group {number}: {group.tier}, {len(group.members)} images, score "
            f"{group.score:.3f}; kept: {group.reason}"
        )
        lines.extend(_member_line(m) for m in group.members)
        lines.append("")
    plural = "s" if len(report.skipped) != 1 else ""
    if report.skipped:
        names = ", ".join(name for name, _ in report.skipped[:5])
        more = f" and {len(report.skipped) - 5} more" if len(report.skipped) > 5 else ""
        lines.append(f"Skipped {len(report.skipped)} unreadable image{plural}: {names}{more}")
    threshold = {
        "hash": f"at most {report.threshold} of 64 hash bits apart",
        "embedding": f"cosine similarity at least {report.embedding_threshold}",
        "both": f"{report.threshold} hash bits or cosine {report.embedding_threshold}",
        "confirmed": f"proposed within {report.threshold} hash bits in any of 8 turns and "
        f"mirrors, or as embedding neighbours; confirmed at cosine {report.embedding_threshold} "
        f"and aligned pixels {report.pixel_threshold}",
    }[report.method]
    lines.append(
        f"{len(report.groups)} group{'s' if len(report.groups) != 1 else ''} of duplicates, "
        f"{report.extras} extra image{'s' if report.extras != 1 else ''}, among "
        f"{report.images} images (method {report.method}: {threshold}; "
        f"{report.seconds:.1f}s). Nothing was moved."
    )
    return lines


def _member_line(member: Member) -> str:
    role = "keep " if member.keep else "extra"
    how = []
    if not member.keep:
        how.append("same bytes" if member.exact else member.tier)
        if member.view:
            how.append(member.view)
        if member.hash_distance is not None and not member.exact:
            how.append(f"{member.hash_distance} bits apart")
        if member.similarity is not None and not member.exact:
            how.append(f"cosine {member.similarity:.3f}")
    detail = f"  ({', '.join(how)})" if how else ""
    pixels = f"{member.width}x{member.height}"
    modified = "" if member.modified is None else time.strftime(
        "%Y-%m-%d", time.localtime(member.modified)
    )  # fmt: skip
    return (
        f"  {role} {pixels:>11} {member.size:>12,} B {member.format or '?':<5} {modified:<10}"
        f"  {member.name}{detail}"
    )


def plan_lines(steps: Sequence[Step], carried_out: bool, trash_folder: str) -> list[str]:
    """Per group the copy kept and why, then what would move (dry run) or what moved."""
    lines: list[str] = []
    for number, step in enumerate(steps, start=1):
        lines.append(f"Group {number} ({step.tier}): keep {step.keep} ({step.reason})")
        failed = dict(step.failed)
        for name in step.move:
            if not carried_out:
                lines.append(f"  would move {name}")
            elif name in failed:
                lines.append(f"  NOT moved  {name}: {failed[name]}")
            else:
                lines.append(f"  moved      {name}")
    going = sum(len(s.move) for s in steps)
    groups = f"{len(steps)} group{'s' if len(steps) != 1 else ''}"
    if not carried_out:
        lines.append(
            f"Would move {going} image{'s' if going != 1 else ''} of {groups} to the trash "
            f"({trash_folder}). Nothing was moved: --trash moves them."
        )
        return lines
    moved = sum(len(s.moved) for s in steps)
    lines.append(
        f"Moved {moved} image{'s' if moved != 1 else ''} of {groups} to the trash "
        f"({trash_folder}); `imgsim trash restore NAME` brings one back."
    )
    failures = going - moved
    if failures:
        lines.append(f"{failures} image{'s' if failures != 1 else ''} could not be moved.")
    return lines
