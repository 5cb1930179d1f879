"""Verdicts on candidate pairs of duplicates, kept across runs by the two images' content.

Judging a proposed pair (confirm._confirmed: the aligned thumbnails) is most of a run's work
on a large collection. A verdict depends only on what the judge is given: the two images'
content (their SHA-256: the hashes, the thumbnail and the embedding are all derived from it),
the view they were compared in, and the judge's settings (every threshold, the model, the
code's versions; `settings_key`). Kept by those in the work folder (VERDICTS_FILE), a run
over an unchanged collection looks every pair up and searches no candidate; when a few files
changed, only the new contents' candidates are searched and only their pairs judged.

The file is one NumPy .npz written atomically: a crash leaves the previous one. One that
cannot be read, or of other settings, is ignored: every pair is judged again and it is
written anew.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...core.fileio import atomic_path
from .groups import NEAR, SAME, Link
from .neighbours import INVERSE_VIEW, NEIGHBOURS

if TYPE_CHECKING:
    from ...core.config import DuplicatesConfig
    from .finder import Collection

log = logging.getLogger("imgsim")

Pair = tuple[int, int]  # positions in the collection, first < second
Proposal = tuple[int, int | None, float]  # (view of the second like the first, bits, cosine)
Key = tuple[str, str, int]  # (content, content, view): the contents in sorted order
Kept = tuple[int | None, float, Link | None]  # (bits, cosine, the judge's link or None)
TIERS = ("", NEAR, SAME)  # a link's tier as kept: 0 = not confirmed
# Above this many new or changed contents, all candidates are searched again (FAISS, as on a
# first run): searching each one's alone costs n inner products and 16n hash comparisons.
SEARCH_ALONE_MAX = 500
LAYOUT = 1  # the file's arrays; another layout is ignored (judged again)


def settings_key(
    config: DuplicatesConfig, model_id: str, turned: bool, judge: tuple[int, int, float]
) -> str:
    """What a verdict was reached with: every setting but the workers, the network that made
    the embeddings, whether turned views could be embedded, and the code's versions (`judge`:
    confirm's CONFIRM_VERSION, CLOSE_BITS and COSINE_SLACK, given by the caller: confirm
    imports this module)."""
    from . import derived, views

    settings = {k: v for k, v in asdict(config).items() if k != "workers"}
    code = {
        "confirm": list(judge),
        "derived": derived.DERIVED_VERSION,
        "thumb": views.THUMB_SIDE,
        "compare": views.COMPARE_SIDE,
        "crops": list(views.CROPS),
        # The worst-region check's settings, read when used (the quality benchmark varies them).
        "detail": [views.DETAIL_BLUR, views.DETAIL_SHIFT, views.DETAIL_BLOCK, views.MAX_DETAIL],
        "look": [views.LOOK_SIDE, views.MAX_LOOK_DETAIL],
        "neighbours": NEIGHBOURS,
        "layout": LAYOUT,
    }
    body = {"settings": settings, "model": model_id, "turned": turned, "code": code}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _key(first: str, second: str, view: int) -> tuple[Key, bool]:
    """The pair's key with its contents in sorted order, and whether they were swapped (the
    view then names the first's view like the second: its inverse)."""
    if first > second:
        return (second, first, INVERSE_VIEW[view]), True
    if first == second:  # one content twice: either way round is the same question
        return (first, first, min(view, INVERSE_VIEW[view])), False
    return (first, second, view), False


def _turned(link: Link | None, swap: bool) -> Link | None:
    if link is None or not swap:
        return link
    return Link(link.tier, INVERSE_VIEW[link.view], link.distance, link.similarity, link.exact)


class Verdicts:
    """The verdicts kept in one file (none when `path` is None), and this run's."""

    def __init__(self, path: Path | None = None, settings: str = "") -> None:
        self.path = path
        self.settings = settings
        self.kept: dict[Key, Kept] = {}
        self.searched: set[str] = set()  # contents whose candidates are all in `kept`
        self.stats: Counter[str] = Counter()  # proposed, kept, judged, searched
        self._content: list[str | None] = []
        self._changed = False

    @classmethod
    def load(cls, path: Path, settings: str) -> Verdicts:
        """The verdicts kept at `path` for `settings`; none when absent, other or unreadable."""
        verdicts = cls(path, settings)
        try:
            with np.load(path, allow_pickle=False) as arrays:
                if str(arrays["settings"]) == settings:
                    verdicts._read(arrays)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("Judging every pair again: %s cannot be read (%s)", path, exc)
            verdicts.kept.clear()
            verdicts.searched.clear()
        return verdicts

    def _read(self, arrays: Any) -> None:
        contents = [bytes(row).hex() for row in arrays["contents"]]
        first, second = arrays["first"].tolist(), arrays["second"].tolist()
        columns = zip(first, second, *(arrays[k].tolist() for k in _COLUMNS), strict=True)
        for a, b, view, bits, cosine, tier, link_view, link_bits, similarity, exact in columns:
            link = None
            if tier:
                link = Link(TIERS[tier], link_view, None if link_bits < 0 else link_bits,
                            None if similarity != similarity else similarity, exact)  # fmt: skip
            self.kept[(contents[a], contents[b], view)] = (None if bits < 0 else bits, cosine, link)
        self.searched = set(contents)

    def content_of(self, collection: Collection) -> list[str | None]:
        """Each position's content: its SHA-256 when the store's facts (what was embedded)
        and its fingerprint (what the hashes and thumbnail come from) agree, else None."""
        prints = collection.fingerprints
        content: list[str | None] = []
        for name, sha in zip(collection.names, collection.sha256, strict=True):
            found = prints.get(name)
            content.append(sha if sha and found is not None and found.sha256 == sha else None)
        self._content = content
        return content

    def to_search(self, content: list[str | None]) -> np.ndarray | None:
        """Positions whose candidates must be searched (new or changed contents); None when
        so many (or nothing kept) that all are searched again."""
        fresh = [i for i, c in enumerate(content) if c is None or c not in self.searched]
        self.stats["searched"] = len(fresh)
        if len(fresh) > SEARCH_ALONE_MAX or (len(fresh) == len(content) and fresh):
            return None
        return np.array(fresh, np.int64)

    def proposals(self, content: list[str | None]) -> dict[Pair, Proposal]:
        """The kept candidate pairs among these contents, at every position that holds them."""
        at: dict[str, list[int]] = {}
        for i, c in enumerate(content):
            if c is not None:
                at.setdefault(c, []).append(i)
        out: dict[Pair, Proposal] = {}
        for (first, second, view), (bits, cosine, _) in self.kept.items():
            for a in at.get(first, ()):
                for b in at.get(second, ()):
                    if a < b:
                        out.setdefault((a, b), (view, bits, cosine))
                    elif b < a:
                        out.setdefault((b, a), (INVERSE_VIEW[view], bits, cosine))
        return out

    def split(
        self, proposed: dict[Pair, Proposal]
    ) -> tuple[dict[Pair, Link], dict[Pair, Proposal]]:
        """The links of the pairs whose verdict is kept, and the pairs left to judge."""
        known: dict[Pair, Link] = {}
        todo: dict[Pair, Proposal] = {}
        content = self._content
        for (a, b), found in proposed.items():
            first, second = content[a], content[b]
            kept, swap = None, False
            if first is not None and second is not None:
                key, swap = _key(first, second, found[0])
                kept = self.kept.get(key)
            if kept is None:
                todo[(a, b)] = found
            elif kept[2] is not None:
                known[(a, b)] = _turned(kept[2], swap)
        self.stats.update(proposed=len(proposed), kept=len(proposed) - len(todo))
        self.stats["judged"] += len(todo)
        return known, todo

    def record(self, judged: dict[Pair, Proposal], links: dict[Pair, Link]) -> None:
        """Keep the verdicts of the pairs just judged: `links` holds the confirmed ones."""
        content = self._content
        for (a, b), (view, bits, cosine) in judged.items():
            if content[a] is None or content[b] is None:
                continue  # of a file whose content is not the one indexed: not kept
            key, swap = _key(content[a], content[b], view)
            self.kept[key] = (bits, cosine, _turned(links.get((a, b)), swap))
            self._changed = True

    def keep(self) -> None:
        """Write the verdicts among the contents of this run, atomically; nothing when none
        changed. A read-only work folder only costs the next run the same judging."""
        present = {c for c in self._content if c is not None}
        if self.path is None or not (self._changed or self.searched != present):
            return
        kept = {k: v for k, v in self.kept.items() if k[0] in present and k[1] in present}
        try:
            with atomic_path(self.path) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **_arrays(kept, sorted(present), self.settings))
        except OSError as exc:
            log.warning("The duplicate verdicts could not be kept in %s: %s", self.path, exc)


_COLUMNS = ("view", "bits", "cosine", "tier", "link_view", "link_bits", "similarity", "exact")


def _arrays(kept: dict[Key, Kept], contents: list[str], settings: str) -> dict[str, np.ndarray]:
    """The file's arrays: contents as 32-byte digests, each pair by their rows in it."""
    row = {c: i for i, c in enumerate(contents)}
    links = [v[2] for v in kept.values()]
    return {
        "settings": np.array(settings),
        "contents": np.frombuffer(b"".join(bytes.fromhex(c) for c in contents), np.uint8).reshape(
            len(contents), 32
        ),
        "first": np.array([row[k[0]] for k in kept], np.int32),
        "second": np.array([row[k[1]] for k in kept], np.int32),
        "view": np.array([k[2] for k in kept], np.int8),
        "bits": np.array([-1 if v[0] is None else v[0] for v in kept.values()], np.int16),
        "cosine": np.array([v[1] for v in kept.values()], np.float64),
        "tier": np.array([0 if x is None else TIERS.index(x.tier) for x in links], np.int8),
        "link_view": np.array([0 if x is None else x.view for x in links], np.int8),
        "link_bits": np.array([_or(x and x.distance, -1) for x in links], np.int16),
        "similarity": np.array([_or(x and x.similarity, np.nan) for x in links], np.float64),
        "exact": np.array([x is not None and x.exact for x in links], bool),
    }


def _or(value: Any, missing: Any) -> Any:
    """`value`, or `missing` for None (a measure the link does not have)."""
    return missing if value is None else value
