"""The collection's duplicate groups, kept in the work folder per store generation and settings.

Fingerprinting decodes every image once (minutes on a large collection), so the server never
does it inside a request: the groups are a KeptDocument, computed in the background.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ...core.config import DUPLICATES_FILE, DUPLICATES_LOCK_FILE, DuplicatesConfig
from ...store import Store
from ..kept_document import KeptDocument
from .confirm import ViewEmbed
from .dismissed import load_dismissed
from .finder import StoreFinder

SETTINGS = ("method", "threshold", "embedding_threshold", "pixel_threshold")
# What a group's members carry: 2 added their capture dates; 3: groups confirmed by the worst
# region too (views.detail_difference), so groups kept before may hold look-alikes. A kept
# file of another layout is found again (and shown meanwhile, as after a change).
LAYOUT = 3


class KeptDuplicates(KeptDocument[DuplicatesConfig]):
    """The duplicate groups of one work folder's collection for one process."""

    what = "duplicate groups"
    required = "groups"

    def __init__(self, workdir: str | Path, views: ViewEmbed | None = None) -> None:
        super().__init__(Path(workdir) / DUPLICATES_FILE, Path(workdir) / DUPLICATES_LOCK_FILE)
        self.workdir = Path(workdir)
        # Fingerprints and verdicts kept by content: a change costs its images. `views`
        # embeds turned images with the index's network, to confirm turned and mirrored copies.
        self.finder = StoreFinder(views, workdir)

    def compute(self, store: Store, settings: DuplicatesConfig) -> dict[str, Any]:
        generation = store.generation()  # read first: a change during the search makes it stale
        key = self.key(store, settings, generation)
        report = self.finder.find(store, settings, load_dismissed(self.workdir))
        return {**report.to_dict(), **key}

    def key(self, store: Store, settings: DuplicatesConfig, generation: int) -> dict[str, Any]:
        # The pairs marked "not duplicates" are part of the key: marking one finds new groups.
        pairs = sorted(sorted(p) for p in load_dismissed(self.workdir))
        return {
            "generation": generation,
            "store": store.address,
            "layout": LAYOUT,
            **{name: getattr(settings, name) for name in SETTINGS},
            "dismissed": hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16],
        }

    def shows_stale(self, document: dict[str, Any], key: dict[str, Any]) -> bool:
        # Groups of an earlier collection help while new ones are found; other settings' do not.
        return all(document.get(k) == key[k] for k in ("store", *SETTINGS))
