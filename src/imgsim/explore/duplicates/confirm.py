"""Near duplicates proposed by cheap signals and confirmed by the embeddings of the pair."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ...core.config import DuplicatesConfig
from ...core.errors import ConfigError
from . import views as _views  # MAX_*DETAIL read when used: the benchmark varies them
from .fingerprint import Fingerprint
from .groups import NEAR, Link
from .neighbours import INVERSE_VIEW, neighbours_of, pairs_above, view_pairs, view_pairs_of
from .verdicts import Verdicts
from .views import (
    CroppedCache,
    best_alignment,
    cropped_at,
    detail_difference,
    dihedral_view,
    second_look,
)

if TYPE_CHECKING:
    from .finder import Collection

log = logging.getLogger("imgsim")
T = TypeVar("T")
# The judge's version (_confirmed and what it compares): bump it when a pair would be judged
# otherwise, and the verdicts kept from earlier runs (duplicates.verdicts) are judged again.
CONFIRM_VERSION = 2  # 2: the second look and the cosine slack of close hashes
# A pair whose hashes, in the matching view, are at most CLOSE_BITS apart needs a cosine only
# COSINE_SLACK below embedding_threshold: the network sees a small image halved (an icon of
# 64 px at 32) blurred at its input and moves it to cosine 0.6-0.8 of its original, while the
# hashes and the aligned pixels still agree. On the benchmark's planted copies this kept no
# extra false pair and found 0.93 -> 0.97 of the half-size copies (docs/benchmarks.md,
# "Duplicates").
CLOSE_BITS = 4
COSINE_SLACK = 0.2
# Embeds (path, view) pairs: images turned and mirrored (views.ViewEmbedder).
ViewEmbed = Callable[[Sequence[Path], Sequence[int]], np.ndarray]


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, so that inner products are cosines."""
    x = np.asarray(vectors, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def confirmed_links(
    collection: Collection,
    rows: np.ndarray,
    prints: Sequence[Fingerprint],
    config: DuplicatesConfig,
    views: ViewEmbed | None,
) -> dict[tuple[int, int], Link]:
    """Pairs whose embeddings agree, proposed by hashes or by the embeddings themselves.

    Proposed: a pair where one of the 8 views (turned, mirrored) of one image is within
    `threshold` hash bits of the other, or whose embeddings have cosine at least
    `embedding_threshold` among its 20 nearest (FAISS: crops and colour changes move hashes
    more).
    Confirmed: the cosine of one image's embedding and the other's, in the view the hashes
    matched (embedded turned by `views`), is at least `embedding_threshold` (COSINE_SLACK
    less where the hashes are at most CLOSE_BITS apart), their
    thumbnails, aligned, correlate at least `pixel_threshold` (views.aligned_correlation),
    and no small region of them differs by more than views.MAX_DETAIL
    (views.detail_difference).
    """
    if collection.vectors is None or len(collection.vectors) != len(collection.names):
        raise ConfigError("the confirmed method needs the images' embeddings")
    vectors = unit(collection.vectors)
    # Verdicts kept from earlier runs (duplicates.verdicts): only pairs without one are
    # judged, and only new contents' candidates searched. Without any, all are.
    verdicts = collection.verdicts if collection.verdicts is not None else Verdicts()
    content = verdicts.content_of(collection)
    search = verdicts.to_search(content)
    if search is None:
        proposed = _proposed(collection, vectors, rows, prints, config, views)
    else:
        proposed = verdicts.proposals(content)
        if len(search):
            proposed.update(_proposed(collection, vectors, rows, prints, config, views, search))
    known, todo = verdicts.split(proposed)
    links = _confirmed(collection, todo, config) if todo else {}
    verdicts.record(todo, links)
    stats = verdicts.stats
    log.info("%d candidate pairs (%.2f per image): %d verdicts kept, %d judged; "
             "candidates of %d images searched", stats["proposed"],
             stats["proposed"] / max(len(collection.names), 1), stats["kept"],
             stats["judged"], len(collection.names) if search is None else len(search))  # fmt: skip
    return {**known, **links}


def _proposed(
    collection: Collection,
    vectors: np.ndarray,
    rows: np.ndarray,
    prints: Sequence[Fingerprint],
    config: DuplicatesConfig,
    views: ViewEmbed | None,
    only: np.ndarray | None = None,
) -> dict[tuple[int, int], tuple[int, int | None, float]]:
    """The candidate pairs (view, hash distance, cosine) of every image, or only those with
    an image of the positions `only` (each of them searched alone)."""
    hashes = np.array([f.views or (f.phash,) * 8 for f in prints], np.uint64).reshape(-1, 8)
    if only is None:
        found, view, distance = view_pairs(hashes, config.threshold)
        near, near_cosine = pairs_above(vectors, config.embedding_threshold)
    else:
        local = np.flatnonzero(np.isin(rows, only))
        found, view, distance = view_pairs_of(hashes, local, config.threshold)
        near, near_cosine = neighbours_of(vectors, only, config.embedding_threshold)
    pairs = rows[found] if len(found) else found.reshape(-1, 2)
    # rows need not be in order: each pair first < second, its view then the first's inverse.
    swap = pairs[:, 0] > pairs[:, 1]
    view = np.where(swap, np.asarray(INVERSE_VIEW)[view], view) if len(view) else view
    pairs = np.sort(pairs, axis=1)
    cosine = _view_cosines(collection, vectors, pairs, view, views, config)
    found_by_hash = zip(pairs.tolist(), view.tolist(), distance.tolist(), cosine, strict=True)
    proposed = {(a, b): (v, d, c) for (a, b), v, d, c in found_by_hash}
    phash = {int(r): f.phash for r, f in zip(rows.tolist(), prints, strict=True)}
    for (a, b), c in zip(near.tolist(), near_cosine.tolist(), strict=True):
        best = proposed.get((a, b))
        if best is None or best[2] < c:  # the views as they are are the closer match
            d = (phash[a] ^ phash[b]).bit_count() if a in phash and b in phash else None
            proposed[(a, b)] = (0, d, c)
    return proposed


def _confirmed(
    collection: Collection,
    proposed: dict[tuple[int, int], tuple[int, int | None, float]],
    config: DuplicatesConfig,
) -> dict[tuple[int, int], Link]:
    """The proposed pairs (view, hash distance, cosine) whose cosine and aligned pixels agree."""
    todo = [(pair, found) for pair, found in proposed.items() if _close_enough(found, config)]
    # The thumbnails of every pair to compare, read at once (kept in the store, or decoded).
    collection.fill_thumbnails(sorted({i for pair, _ in todo for i in pair}))
    links = {}
    crops = CroppedCache()
    for (a, b), (v, d, c) in _local_order(todo, len(collection.names)):
        if _pixels_agree(collection, a, b, v, crops, config.pixel_threshold):
            links[(a, b)] = _link(v, d, c)
    return links


def _close_enough(found: tuple[int, int | None, float], config: DuplicatesConfig) -> bool:
    """Whether a proposed pair's (view, hash distance, cosine) is worth comparing its pixels:
    its cosine at least embedding_threshold, or COSINE_SLACK less where the hashes are close."""
    _, distance, cosine = found
    if cosine >= config.embedding_threshold:
        return True
    close = distance is not None and distance <= CLOSE_BITS
    return close and cosine >= config.embedding_threshold - COSINE_SLACK


def _local_order(todo: list[tuple[tuple[int, int], T]], n: int) -> list[tuple[tuple[int, int], T]]:
    """The pairs in an order where each image's pairs come close together (reverse
    Cuthill-McKee of the pair graph), so the crops of both images of a pair are mostly still
    in the CroppedCache: cropping is most of the confirmation's work."""
    if len(todo) < 2:
        return todo
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    ends = np.array([pair for pair, _ in todo], np.int64)
    graph = coo_matrix((np.ones(len(ends), np.int8), (ends[:, 0], ends[:, 1])), (n, n)).tocsr()
    position = np.empty(n, np.int64)
    position[reverse_cuthill_mckee(graph, symmetric_mode=False)] = np.arange(n)
    at = position[ends]
    order = np.lexsort((at.min(axis=1), at.max(axis=1)))
    return [todo[i] for i in order.tolist()]


def _pixels_agree(
    collection: Collection,
    a: int,
    b: int,
    view: int,
    crops: CroppedCache,
    threshold: float,
    look: bool = True,
) -> bool:
    """Whether the pair's thumbnails, aligned, correlate at least `threshold`
    (views.aligned_correlation) and differ nowhere by more than views.MAX_DETAIL
    (views.detail_difference), and, with `look`, the images decoded again differ nowhere by
    more than views.MAX_LOOK_DETAIL (views.second_look); False when one is unreadable."""
    collection.fill_thumbnails((a, b))
    thumbs = collection.thumbnails
    first, second = thumbs[a], thumbs[b]
    if first is None or second is None:
        return False
    r, i, j = best_alignment(crops.get((a, 0), first), crops.get((b, view), second))
    if r < threshold:
        return False
    second = dihedral_view(second, view)
    if detail_difference(cropped_at(first, i), cropped_at(second, j)) > _views.MAX_DETAIL:
        return False
    if not look or _same_content(collection, a, b):
        return True
    # The few pairs left are decoded again: at 64 px squashed, archive boxes whose labels
    # differ, or a face with another mouth, still pass (docs/benchmarks.md, "Duplicates").
    seen = second_look(collection.paths[a], collection.paths[b], view, (i, j))
    return seen is not None and seen <= _views.MAX_LOOK_DETAIL


def _same_content(collection: Collection, a: int, b: int) -> bool:
    """Whether two images are the same bytes or the same decoded pixels: nothing to look at."""
    if collection.sha256[a] is not None and collection.sha256[a] == collection.sha256[b]:
        return True
    prints = collection.fingerprints
    first, second = prints.get(collection.names[a]), prints.get(collection.names[b])
    return bool(first and second and first.pixels and first.pixels == second.pixels)


def _link(view: int, distance: int | None, cosine: float) -> Link:
    # Only the same bytes or decoded pixels are the same picture (finder._same_links): a
    # re-saved or recoloured copy correlates as well as one but is not it.
    return Link(NEAR, view, distance, round(min(float(cosine), 1.0), 4))


def _view_cosines(
    collection: Collection,
    vectors: np.ndarray,
    pairs: np.ndarray,
    view: np.ndarray,
    views: ViewEmbed | None,
    config: DuplicatesConfig,
) -> list[float]:
    """Cosine of each pair's first embedding and its second's in the view given; -1 for a
    turned pair that cannot be confirmed (no `views`, or its pixels disagree)."""
    cosine = np.einsum("ij,ij->i", vectors[pairs[:, 0]], vectors[pairs[:, 1]]) if len(pairs) else (
        np.empty(0, np.float32)
    )  # fmt: skip
    turned = np.flatnonzero(view != 0)
    if len(turned):
        if views is None:
            cosine[turned] = -1.0  # cannot be confirmed without embedding the turned image
        else:
            # Embedding an image turned (decode, network) costs ~50 times the pixel check, and
            # a pair whose aligned pixels disagree is never confirmed, whatever its cosine
            # (_confirmed): only the turned pairs whose pixels agree are embedded.
            agree = _turned_agree(collection, pairs, view, turned, config.pixel_threshold)
            cosine[turned[~agree]] = -1.0
            turned = turned[agree]
        if views is not None and len(turned):
            paths = [collection.paths[j] for j in pairs[turned, 1].tolist()]
            seen = unit(views(paths, view[turned].tolist()))
            cosine[turned] = np.einsum("ij,ij->i", vectors[pairs[turned, 0]], seen)
    return cosine.astype(float).tolist()


def _turned_agree(
    collection: Collection, pairs: np.ndarray, view: np.ndarray, rows: np.ndarray, least: float
) -> np.ndarray:
    """Whether each pair of `rows` passes the judge's thumbnail check (_pixels_agree; the
    second look is left to the judge)."""
    collection.fill_thumbnails(sorted(set(pairs[rows].ravel().tolist())))
    crops = CroppedCache()
    chosen = zip(pairs[rows].tolist(), view[rows].tolist(), strict=True)
    found = [_pixels_agree(collection, a, b, v, crops, least, look=False) for (a, b), v in chosen]
    return np.array(found, bool)
