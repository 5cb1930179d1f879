"""Pairs of near images without comparing every pair: hash bands, and FAISS for vectors."""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np

BANDS = 4  # the 64-bit hash is cut into 4 bands of 16 bits: ~log2 of 100,000 images
BAND_BITS = 64 // BANDS
BAND_VALUES = 1 << BAND_BITS
FLAT_MAX = 5_000  # up to this many vectors: exact search; above it, an IVF index
IVF_PROBES = 8  # cells an IVF search visits: near-duplicates share a cell or a near one
IVF_TRAIN_PER_CELL = 40  # k-means sees this many vectors per cell (FAISS asks 39), a sample
# Nearest neighbours each vector may pair with: the work and memory stay n x 20, however many
# images look alike; a near copy has fewer look-alikes above the threshold than this.
NEIGHBOURS = 20
HASH_PROBES = 64  # cells a hash search visits: 99 % of random hashes' pairs (8 probes: 82 %)


def pairs_within(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i < j) of 64-bit hashes at most `max_distance` bits apart, and distances.

    Multi-index hashing: when two hashes differ in at most T bits, one of the 4 bands differs
    in at most T // 4 (pigeonhole). So each hash only meets those whose band equals one of its
    own with up to T // 4 bits flipped: found by binary search in the sorted band, verified on
    all 64 bits. Every pair within T is found; the work grows with n times the number of
    flips (137 at T = 8..11) plus the pairs that share a band, not with n squared.
    """
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    found_i, found_j = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    if len(hashes) < 2 or max_distance < 0:
        return _unique_pairs(hashes, found_i, found_j)
    for band in range(BANDS):
        keys = ((hashes >> np.uint64(band * BAND_BITS)) & np.uint64(BAND_VALUES - 1)).astype(
            np.int64
        )
        # A table over all 65,536 band values: where each value's run starts in the sorted
        # order, and how long it is. A probe is then two lookups, not a search.
        order = np.argsort(keys, kind="stable")
        count = np.bincount(keys, minlength=BAND_VALUES)
        start = np.cumsum(count) - count
        for mask in _flip_masks(min(max_distance // BANDS, BAND_BITS)):
            i, j = _band_matches(keys ^ mask, start, count, order)
            keep = (i < j) & (_popcount(hashes[i] ^ hashes[j]) <= max_distance)
            found_i.append(i[keep])
            found_j.append(j[keep])
    return _unique_pairs(hashes, found_i, found_j)


def _band_matches(
    probes: np.ndarray, start: np.ndarray, count: np.ndarray, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    # For each probe p, every j whose band key equals it: one run of the sorted order.
    counts = count[probes]
    (hit,) = np.nonzero(counts)
    counts = counts[hit]
    i = np.repeat(hit, counts)
    offsets = np.arange(len(i)) - np.repeat(np.cumsum(counts) - counts, counts)
    return i, order[np.repeat(start[probes[hit]], counts) + offsets]


def _unique_pairs(
    hashes: np.ndarray, found_i: list[np.ndarray], found_j: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    n = max(len(hashes), 1)
    codes = np.unique(np.concatenate(found_i) * n + np.concatenate(found_j))
    i, j = codes // n, codes % n
    distances = _popcount(hashes[i] ^ hashes[j]) if len(i) else np.empty(0, np.int64)
    return np.stack([i, j], axis=1), distances


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x).astype(np.int64)


@cache
def _flip_masks(flips: int) -> tuple[int, ...]:
    """Every mask of at most `flips` bits set within one band."""
    return tuple(
        sum(1 << b for b in bits)
        for k in range(flips + 1)
        for bits in itertools.combinations(range(BAND_BITS), k)
    )


def centred(vectors: np.ndarray) -> np.ndarray:
    """Vectors less the collection's mean, L2-normalised again.

    Embeddings share a large common direction (every image of a collection looks alike to a
    network next to all possible images), which puts every cosine near 1; without it, a
    duplicate stands out from merely similar images (docs/benchmarks.md, "Duplicates").
    """
    x = np.asarray(vectors, dtype=np.float32)
    if len(x) < 2:
        return x
    x = x - x.mean(axis=0, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pairs_above(vectors: np.ndarray, min_similarity: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) of L2-normalised vectors with cosine similarity >= `min_similarity`,
    among each vector's NEIGHBOURS nearest.

    An exact FAISS search up to FLAT_MAX vectors; above, an inverted-file index of about
    2 sqrt(n) cells searched in IVF_PROBES cells per vector, so each vector is compared with
    about 4 sqrt(n) others (1,300 of 100,000), not all n.
    """
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape if x.ndim == 2 else (0, 0)
    if n < 2:
        return np.empty((0, 2), np.int64), np.empty(0, np.float32)
    if n <= FLAT_MAX:
        index = faiss.IndexFlatIP(dim)
    else:
        cells = int(2 * np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, cells, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10  # cells only need to be roughly right: IVF_PROBES covers the rest
        sample = np.random.default_rng(0).choice(n, min(n, IVF_TRAIN_PER_CELL * cells), False)
        index.train(x[np.sort(sample)])
        index.nprobe = IVF_PROBES
    index.add(x)
    # The k nearest, then those above the threshold (as a range search's radius would keep).
    scores, ids = index.search(x, min(n, NEIGHBOURS + 1))  # the vector itself among them
    rows = np.repeat(np.arange(n), ids.shape[1])
    scores, ids = scores.ravel(), ids.ravel()
    keep = (ids >= 0) & (rows != ids) & (scores > float(min_similarity) - 1e-6)
    # An approximate search may find a pair from one side only: each pair once, lowest first.
    low = np.minimum(rows[keep], ids[keep]).astype(np.int64)
    high = np.maximum(rows[keep], ids[keep]).astype(np.int64)
    codes, first = np.unique(low * n + high, return_index=True)
    pairs = np.stack([codes // n, codes % n], axis=1)
    return pairs, np.minimum(scores[keep][first], 1.0)


# The view that undoes each view (views.DIHEDRAL): turns go back, turned-and-mirrored undo
# themselves.
INVERSE_VIEW = (0, 3, 2, 1, 4, 5, 6, 7)


def view_pairs(views: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) where some view of j is at most `max_distance` bits from i's hash.

    `views` is N×8 (each image's hashes turned and mirrored, views.DIHEDRAL). Returns the
    pairs, for each the view of j that looks like i, and its distance: the closest view.
    The 8N hashes go through the same band search as pairs_within, never all pairs.
    """
    views = np.ascontiguousarray(views, dtype=np.uint64)
    n = len(views)
    if n > FLAT_MAX:
        i, j, view, distance = _view_neighbours(views, max_distance)
    else:
        found, distance = pairs_within(views.T.ravel(), max_distance)  # index: view * n + image
        a, b = (found[:, 0], found[:, 1]) if len(found) else (found, found)
        keep = (a < n) & (b % n != a)  # a as it is, b any view of another image
        i, j, view, distance = a[keep], b[keep] % n, b[keep] // n, distance[keep]
    return _closest_views(i, j, view, distance, n)


def _closest_views(
    i: np.ndarray, j: np.ndarray, view: np.ndarray, distance: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, view of j like i, distance) as pairs i < j, each once with its closest view."""
    swap = i > j  # view v of j looks like i, so view INVERSE[v] of i looks like j
    view = np.where(swap, np.asarray(INVERSE_VIEW)[view], view)
    i, j = np.minimum(i, j), np.maximum(i, j)
    order = np.lexsort((view, distance, i * n + j))  # each pair's closest view first
    codes = (i * n + j)[order]
    first = order[np.unique(codes, return_index=True)[1]]
    return np.stack([i[first], j[first]], axis=1), view[first], distance[first]


def _view_neighbours(
    views: np.ndarray, max_distance: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, view, distance): view `view` of j within `max_distance` bits of i's hash, among
    the NEIGHBOURS nearest hashes of each view of each image.

    Above FLAT_MAX images the band search's candidates grow as n² (8n hashes, 697 probes per
    band at 12 bits): a FAISS binary inverted-file index of the images' hashes, searched with
    each of their 8 views in IVF_PROBES cells, keeps it near n sqrt(n).
    """
    import faiss

    n = len(views)
    base = np.ascontiguousarray(views[:, 0]).view(np.uint8).reshape(n, 8)
    queries = np.ascontiguousarray(views.T).view(np.uint8).reshape(8 * n, 8)  # view * n + j
    cells = int(2 * np.sqrt(n))
    index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(64), 64, cells)
    sample = np.random.default_rng(0).choice(n, min(n, IVF_TRAIN_PER_CELL * cells), False)
    index.train(base[np.sort(sample)])
    index.nprobe = HASH_PROBES
    index.add(base)
    distance, found = index.search(queries, NEIGHBOURS + 1)  # the image itself among them
    rows = np.repeat(np.arange(8 * n), found.shape[1])
    i, distance = found.ravel().astype(np.int64), distance.ravel().astype(np.int64)
    j, view = rows % n, rows // n
    keep = (i >= 0) & (i != j) & (distance <= max_distance)
    return i[keep], j[keep], view[keep], distance[keep]


def view_pairs_of(
    views: np.ndarray, rows: np.ndarray, max_distance: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """view_pairs, only the pairs with an image of `rows`: each of those images as it is
    against every view of every image, and every image as it is against each of its views.

    For the few images new since the last run (duplicates.verdicts): every pair within
    `max_distance` is found, comparing len(rows) x 16n hashes, not all n images' again.
    """
    views = np.ascontiguousarray(views, dtype=np.uint64).reshape(-1, 8)
    n = len(views)
    found: list[tuple[np.ndarray, ...]] = []
    for r in np.asarray(rows, np.int64).tolist():
        # r as it is, like view v of j; then j as it is, like view v of r.
        for mine, distance in ((True, _popcount(views ^ views[r, 0])),
                               (False, _popcount(views[:, :1] ^ views[r][None, :]))):  # fmt: skip
            j, v = np.nonzero(distance <= max_distance)
            keep = j != r
            j, v, d = j[keep], v[keep], distance[j[keep], v[keep]]
            mine_i = np.full(len(j), r, np.int64)
            found.append((mine_i, j, v, d) if mine else (j, mine_i, v, d))
    if not found:
        empty = np.empty(0, np.int64)
        return empty.reshape(0, 2), empty, empty
    parts = zip(*found, strict=True)
    i, j, view, distance = (np.concatenate(part).astype(np.int64) for part in parts)
    return _closest_views(i, j, view, distance, n)


def neighbours_of(
    vectors: np.ndarray, rows: np.ndarray, min_similarity: float
) -> tuple[np.ndarray, np.ndarray]:
    """pairs_above, only for the vectors of `rows`: each one's NEIGHBOURS nearest among all,
    found exactly (len(rows) x n inner products), with cosine at least `min_similarity`."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    rows = np.asarray(rows, np.int64)
    n = len(x)
    k = min(n, NEIGHBOURS + 1)  # the vector itself among them
    found_i, found_j, found_s = [], [], []
    for start in range(0, len(rows), 256):  # 256 x n scores at a time: 100 MB at 100,000
        chunk = rows[start : start + 256]
        scores = x[chunk] @ x.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n else (
            np.broadcast_to(np.arange(n), (len(chunk), n))
        )  # fmt: skip
        best = np.take_along_axis(scores, top, axis=1)
        mine = np.repeat(chunk, top.shape[1])
        keep = (top.ravel() != mine) & (best.ravel() > float(min_similarity) - 1e-6)
        found_i.append(mine[keep])
        found_j.append(top.ravel()[keep].astype(np.int64))
        found_s.append(best.ravel()[keep])
    if not found_i:
        return np.empty((0, 2), np.int64), np.empty(0, np.float32)
    i, j, s = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_s)
    low, high = np.minimum(i, j), np.maximum(i, j)
    codes, first = np.unique(low * n + high, return_index=True)
    return np.stack([codes // n, codes % n], axis=1), np.minimum(s[first], 1.0)
