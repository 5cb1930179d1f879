"""Duplicate finding: hash pairs match brute force, planted duplicates are grouped, others not."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsim.core.config import DuplicatesConfig
from imgsim.core.errors import ConfigError
from imgsim.explore.duplicates import Collection, Fingerprint, find_groups, find_in_folder
from imgsim.explore.duplicates.groups import Member, keep_reason, keeper_first, stars
from imgsim.explore.duplicates.neighbours import centred, pairs_above, pairs_within

from .duplicate_folder import PLANTED, bench, make_planted_folder

HASH = DuplicatesConfig(method="hash", threshold=10, workers=1)  # the perceptual hash alone


def brute_force(hashes: np.ndarray, t: int) -> set[tuple[int, int]]:
    d = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    i, j = np.triu_indices(len(hashes), 1)
    keep = d[i, j] <= t
    return set(zip(i[keep].tolist(), j[keep].tolist(), strict=True))


@pytest.mark.parametrize("t", [0, 2, 5, 8, 10, 13, 16])
def test_hash_pairs_are_exactly_the_brute_force_pairs(t: int) -> None:
    rng = np.random.default_rng(t)
    hashes = rng.integers(0, 2**64, 600, dtype=np.uint64, endpoint=False)
    for k in range(0, 120, 2):  # near pairs at every distance up to 20 bits
        bits = rng.choice(64, size=k % 21, replace=False)
        hashes[k + 1] = hashes[k] ^ np.uint64(sum(1 << int(b) for b in bits))
    pairs, distances = pairs_within(hashes, t)
    assert set(map(tuple, pairs.tolist())) == brute_force(hashes, t)
    assert (distances <= t).all()
    assert len(brute_force(hashes, t)) >= t // 2  # the planted ones are in there


def test_hash_pairs_of_nothing() -> None:
    assert pairs_within(np.array([], np.uint64), 10)[0].shape == (0, 2)
    assert pairs_within(np.array([5], np.uint64), 10)[0].shape == (0, 2)


def test_embedding_pairs_above_a_similarity() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 16)).astype(np.float32)
    x[7] = x[3] + 0.01 * rng.normal(size=16)
    x = centred(x)
    pairs, scores = pairs_above(x, 0.95)
    assert pairs.tolist() == [[3, 7]]
    assert scores[0] > 0.99


def test_stars_never_chain_pairs() -> None:
    # 0~1 and 1~2, but 0 and 2 are not a pair: 2 is not in 0's group.
    chain = [np.array([[0, 1], [1, 2]]), np.array([[5, 6]])]
    assert stars([0, 1, 2, 5, 6], chain) == [[0, 1], [5, 6]]
    # With 1 the best keeper, both 0 and 2 are its duplicates: one group around it.
    assert stars([1, 0, 2, 6, 5], chain) == [[1, 0, 2], [6, 5]]
    assert stars([0, 1], []) == []


def test_the_keeper_has_most_pixels_then_bytes_then_lossless_then_oldest() -> None:
    members = [Member("a", 100, 10, 10), Member("b", 50, 20, 20), Member("c", 90, 20, 20)]
    ordered = keeper_first(list(enumerate(members)))
    assert [m.name for _, m in ordered] == ["c", "b", "a"]
    assert keep_reason(ordered[0][1], [m for _, m in ordered[1:]]) == "as many pixels, largest file"
    assert keep_reason(members[2], [members[0]]) == "most pixels (20x20)"
    jpeg = Member("photo.jpg", 90, 20, 20, "JPEG", modified=100.0)
    png = Member("photo.png", 90, 20, 20, "PNG", modified=200.0)
    assert [m.name for _, m in keeper_first([(0, jpeg), (1, png)])] == ["photo.png", "photo.jpg"]
    assert keep_reason(png, [jpeg]) == "as many pixels and bytes, lossless format (PNG)"
    older = Member("copy.png", 90, 20, 20, "PNG", modified=50.0)
    assert keeper_first([(0, png), (1, older)])[0][1] is older
    assert keep_reason(older, [png, jpeg]) == "otherwise equal, oldest file"
    twin = Member("d.png", 90, 20, 20, "PNG", modified=50.0)
    assert keep_reason(older, [twin]) == "otherwise equal, first name"


def chain_collection(widths: dict[str, int]) -> Collection:
    """a ~ b ~ c by perceptual hash (6 bits apart each), a and c 12 bits apart."""
    bits = {"a": 0, "b": (1 << 6) - 1, "c": (1 << 12) - 1}
    names = sorted(bits)
    prints = {n: Fingerprint(n, 1000, widths[n], widths[n], f"sha-{n}", bits[n]) for n in names}
    return Collection(names, [Path(n) for n in names], [f"sha-{n}" for n in names],
                      [1000] * 3, prints)  # fmt: skip


def test_groups_never_chain_a_to_c_through_b() -> None:
    groups = find_groups(chain_collection({"a": 900, "b": 500, "c": 100}), HASH)
    assert [[m.name for m in g.members] for g in groups] == [["a", "b"]]
    assert groups[0].extras[0].hash_distance == 6
    # Kept b is a duplicate of both: a and c are each 6 bits from it.
    groups = find_groups(chain_collection({"a": 100, "b": 900, "c": 500}), HASH)
    assert [[m.name for m in g.members] for g in groups] == [["b", "a", "c"]]
    assert max(m.hash_distance for m in groups[0].extras) == 6


def test_every_member_is_within_the_threshold_of_its_keeper() -> None:
    rng = np.random.default_rng(0)
    # Random walks of hashes: each step 3 bits, so a walk chains far past 10 bits.
    walk = [0]
    for _ in range(60):
        walk.append(walk[-1] ^ sum(1 << int(b) for b in rng.choice(64, 3, replace=False)))
    names = [f"w{i:02d}" for i in range(len(walk))]
    prints = {n: Fingerprint(n, 100 + i, 10, 10, n, walk[i]) for i, n in enumerate(names)}
    collection = Collection(names, [Path(n) for n in names], names, [1] * len(names), prints)
    groups = find_groups(collection, DuplicatesConfig(method="hash", threshold=10))
    assert len(groups) > 1
    for group in groups:
        for member in group.extras:
            assert (prints[member.name].phash ^ prints[group.keeper.name].phash).bit_count() <= 10
    assert len({m.name for g in groups for m in g.members}) == sum(len(g.members) for g in groups)


@pytest.fixture
def planted_folder(tmp_path: Path) -> Path:
    return make_planted_folder(tmp_path / "photos")


def group_names(report) -> list[set[str]]:
    return [{m.name for m in g.members} for g in report.groups]


def test_planted_duplicates_are_found_and_distinct_images_are_not(planted_folder: Path) -> None:
    os.utime(planted_folder / "copies" / "exact.jpg", (1e9, 1e9))  # the older copy
    report = find_in_folder(planted_folder, HASH)
    assert report.images == 14 and report.skipped == []
    assert sorted(group_names(report), key=sorted) == PLANTED
    by_keeper = {g.keeper.name: g for g in report.groups}
    exact = by_keeper["copies/exact.jpg"]  # same pixels, same bytes: the older one is kept
    assert exact.score == 1.0 and exact.extras[0].exact
    assert exact.reason == "otherwise equal, oldest file" and exact.tier == "same picture"
    # The larger original is kept, never the shrunk or cropped copy.
    assert "pic_002.jpg" in by_keeper and "pic_003.jpg" in by_keeper
    assert by_keeper["pic_001.jpg"].extras[0].hash_distance <= 10


def test_a_lower_threshold_finds_fewer(planted_folder: Path) -> None:
    strict = find_in_folder(planted_folder, DuplicatesConfig(method="hash", threshold=0, workers=1))
    assert {"copies/exact.jpg", "pic_000.jpg"} in group_names(strict)
    assert len(strict.groups) < 4


def test_corrupt_images_are_skipped_and_named(planted_folder: Path) -> None:
    (planted_folder / "broken_001.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    report = find_in_folder(planted_folder, HASH)
    assert [name for name, _ in report.skipped] == ["broken_001.jpg"]
    assert len(report.groups) == 4


def test_embedding_method_needs_a_model(planted_folder: Path) -> None:
    with pytest.raises(ConfigError, match="needs a model"):
        find_in_folder(planted_folder, DuplicatesConfig(method="embedding", workers=1))


def test_embedding_method_groups_by_vectors(planted_folder: Path) -> None:
    def embed(records: list) -> tuple[np.ndarray, list[int]]:
        # Stand-in vectors: one direction per original picture, so copies share theirs.
        origin = {"exact": 0, "resaved": 1, "resized": 2, "cropped": 3}
        rng = np.random.default_rng(0)
        basis = rng.normal(size=(10, 32))
        rows = []
        for r in records:
            stem = Path(r.name).stem
            rows.append(basis[origin.get(stem, int(stem[-3:]) if stem[-1].isdigit() else 0)])
        return np.array(rows, np.float32), list(range(len(records)))

    report = find_in_folder(planted_folder, DuplicatesConfig(method="embedding"), embed)
    assert len(report.groups) == 4
    near = [m for g in report.groups for m in g.extras if not m.exact]
    assert len(near) == 3
    assert all(m.similarity is not None and m.hash_distance is None for m in near)


def test_bad_settings_are_refused(planted_folder: Path) -> None:
    with pytest.raises(ConfigError):
        find_in_folder(planted_folder, DuplicatesConfig(threshold=40))
    with pytest.raises(ConfigError):
        find_in_folder(planted_folder, DuplicatesConfig(method="magic"))


def test_worker_processes_give_the_same_fingerprints(
    planted_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgsim.explore.duplicates import fingerprint
    from imgsim.images.data import scan_images

    (planted_folder / "broken_001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    records = scan_images(planted_folder)
    here = list(fingerprint.iter_fingerprints(records, workers=1))
    monkeypatch.setattr(fingerprint, "MIN_IMAGES_PER_WORKER", 1)
    monkeypatch.setattr(fingerprint, "CHUNK", 4)
    there = list(fingerprint.iter_fingerprints(records, workers=2))
    assert len(there) == 4  # the chunks went to the worker processes, back in order
    flat = [f for done, _ in there for f in done]
    assert flat == [f for done, _ in here for f in done]
    assert [name for _, failed in there for name, _ in failed] == ["broken_001.png"]


def test_the_inverted_file_search_finds_the_near_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgsim.explore.duplicates import neighbours

    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    x[1::100] = x[0::100] + 0.02 * rng.normal(size=x[0::100].shape)
    exact = set(map(tuple, pairs_above(centred(x), 0.95)[0].tolist()))
    monkeypatch.setattr(neighbours, "FLAT_MAX", 1000)  # 3000 vectors: the IVF path
    approx = set(map(tuple, neighbours.pairs_above(centred(x), 0.95)[0].tolist()))
    assert {(i, i + 1) for i in range(0, 3000, 100)} <= approx
    assert approx <= exact


def test_the_hash_is_imagehash_phash_as_an_integer() -> None:
    import imagehash
    from PIL import Image

    from imgsim.explore.duplicates.fingerprint import perceptual_hash

    for seed in range(3):
        im = bench.distinct_image(seed)
        assert perceptual_hash(im) == int(str(imagehash.phash(im)), 16)
    flat = Image.new("RGB", (64, 64), (200, 10, 10))
    assert perceptual_hash(flat) == int(str(imagehash.phash(flat)), 16)


@pytest.fixture(scope="module")
def pretrained():
    from imgsim.explore.duplicates.finder import pretrained_embedder

    return pretrained_embedder()


def confirmed(folder: Path, embedder) -> object:
    """The default method on `folder`, with the pretrained network as the CLI uses it."""
    from imgsim.embed.extract import embed_records
    from imgsim.explore.duplicates.views import ViewEmbedder

    def embed(records: list) -> tuple[np.ndarray, list[int]]:
        return embed_records(embedder, embedder.image_size, records, progress=False)

    return find_in_folder(folder, DuplicatesConfig(workers=1), embed, ViewEmbedder(embedder))


def test_confirmed_method_finds_turned_mirrored_recoloured_copies_not_lookalikes(
    planted_folder: Path, pretrained
) -> None:
    from PIL import Image, ImageEnhance

    im = {i: bench.distinct_image(1000 + i) for i in (4, 5, 6, 7, 8)}
    copies = planted_folder / "copies"
    im[4].rotate(90, expand=True).save(copies / "turned.jpg", quality=90)
    im[5].transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(copies / "mirrored.jpg", quality=90)
    ImageEnhance.Brightness(im[6]).enhance(1.1).save(copies / "brighter.jpg", quality=90)
    # A look-alike: the same shapes in other colours (as flags with the same stripes).
    Image.fromarray(np.asarray(im[7])[:, :, ::-1]).save(copies / "other_colours.jpg", quality=95)
    im[8].save(copies / "lossless.png")
    with Image.open(copies / "lossless.png") as png:
        png.save(copies / "same_pixels.png", compress_level=1)
    report = confirmed(planted_folder, pretrained)
    found = sorted(({m.name for m in g.members} for g in report.groups), key=sorted)
    assert found == sorted(
        [*PLANTED, {"copies/turned.jpg", "pic_004.jpg"}, {"copies/mirrored.jpg", "pic_005.jpg"},
         {"copies/brighter.jpg", "pic_006.jpg"},
         {"copies/lossless.png", "copies/same_pixels.png", "pic_008.jpg"}],
        key=sorted,
    )  # fmt: skip
    member = {m.name: m for g in report.groups for m in g.members}
    assert member["copies/turned.jpg"].view == "turned 90°"
    assert member["copies/mirrored.jpg"].view == "mirrored"
    assert member["copies/exact.jpg"].tier == "same picture" or member["pic_000.jpg"].exact
    lossless = next(g for g in report.groups if "pic_008.jpg" in {m.name for m in g.members})
    assert lossless.keeper.name in {"copies/lossless.png", "copies/same_pixels.png"}
    tiers = {m.name: m.tier for m in lossless.extras}
    assert tiers.pop("pic_008.jpg") == "near duplicate"
    assert list(tiers.values()) == ["same picture"] and lossless.tier == "near duplicate"
    assert {g.tier for g in report.groups if len(g.members) == 2 and g.extras[0].exact} == {
        "same picture"
    }


def test_view_pairs_find_the_closest_view_of_each_pair() -> None:
    from imgsim.explore.duplicates.neighbours import INVERSE_VIEW, view_pairs
    from imgsim.explore.duplicates.views import dihedral_view

    x = np.arange(12).reshape(3, 4)
    for view in range(8):  # each view's inverse undoes it
        assert (dihedral_view(dihedral_view(x, view), INVERSE_VIEW[view]) == x).all()
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**64, (300, 8), dtype=np.uint64, endpoint=False)
    hashes[7, 3] = hashes[2, 0] ^ np.uint64(0b101)  # view 3 of 7 looks like 2, 2 bits apart
    hashes[1, 0] = hashes[9, 6]  # view 6 of 9 is 1
    pairs, views, distances = view_pairs(hashes, 4)
    found = {tuple(p): (v, d) for p, v, d in zip(pairs.tolist(), views, distances, strict=True)}
    assert found == {(2, 7): (3, 2), (1, 9): (INVERSE_VIEW[6], 0)}


def test_view_pairs_through_the_binary_index_agree_with_the_band_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from imgsim.explore.duplicates import neighbours

    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 2**64, (2000, 8), dtype=np.uint64, endpoint=False)
    for k in range(0, 1000, 50):  # view k % 8 of image k + 1000 is k, k % 7 bits off
        flips = sum(1 << int(b) for b in rng.choice(64, k % 7, replace=False))
        hashes[k + 1000, k % 8] = hashes[k, 0] ^ np.uint64(flips)
    exact = neighbours.view_pairs(hashes, 8)
    monkeypatch.setattr(neighbours, "FLAT_MAX", 500)  # 2000 images: the binary index
    indexed = neighbours.view_pairs(hashes, 8)
    found = {tuple(p): (v, d) for p, v, d in zip(*(a.tolist() for a in indexed), strict=True)}
    expected = {tuple(p): (v, d) for p, v, d in zip(*(a.tolist() for a in exact), strict=True)}
    assert {(k, k + 1000) for k in range(0, 1000, 50)} <= set(found)
    assert all(expected[pair] == found[pair] for pair in found)  # a subset, with the same view


def test_the_view_hashes_of_a_turned_image_match_the_original() -> None:
    from imgsim.explore.duplicates.views import view_hashes

    im = bench.distinct_image(7)
    original = view_hashes(im)[0]
    turned = view_hashes(im.transpose(Image.Transpose.ROTATE_90))
    mirrored = view_hashes(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert min((original ^ h).bit_count() for h in turned) <= 2
    assert min((original ^ h).bit_count() for h in mirrored) <= 2
    assert (original ^ turned[0]).bit_count() > 12  # as they are, they look different


def test_dismissed_pairs_are_never_grouped(tmp_path: Path) -> None:
    from imgsim.explore.duplicates.dismissed import change_dismissed, group_pairs, load_dismissed

    assert load_dismissed(tmp_path) == set()
    pairs = change_dismissed(tmp_path, add=group_pairs("b", ["a", "c"]))
    assert pairs == {frozenset("ab"), frozenset("bc")} == load_dismissed(tmp_path)
    collection = chain_collection({"a": 100, "b": 900, "c": 500})
    collection.dismissed = {frozenset("ab")}
    assert [[m.name for m in g.members] for g in find_groups(collection, HASH)] == [["b", "c"]]
    collection.dismissed = pairs
    assert find_groups(collection, HASH) == []
    assert change_dismissed(tmp_path, remove=[frozenset("ab")]) == {frozenset("bc")}
    (tmp_path / "not_duplicates.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="fix or remove it"):
        load_dismissed(tmp_path)


def by_pair(found: np.ndarray, view: np.ndarray, distance: np.ndarray) -> dict:
    """view_pairs' answer as {(i, j): (view, distance)}."""
    measures = zip(view.tolist(), distance.tolist(), strict=True)
    return dict(zip(map(tuple, found.tolist()), measures, strict=True))


def test_the_search_of_a_few_images_finds_what_the_whole_search_finds_for_them() -> None:
    from imgsim.explore.duplicates.neighbours import neighbours_of, view_pairs, view_pairs_of

    rng = np.random.default_rng(3)
    noise = lambda: rng.integers(0, 2**63, (400, 8), dtype=np.uint64)  # noqa: E731
    views = noise() ^ (noise() & noise() & noise())  # views of one image share some bits
    views[7] = views[3] ^ np.uint64(0b101)  # a near copy, as it is
    views[9, 2] = views[4, 0] ^ np.uint64(1)  # a turned copy
    rows = np.array([3, 4, 9, 100])
    whole = by_pair(*view_pairs(views, 12))
    alone = by_pair(*view_pairs_of(views, rows, 12))
    assert alone == {p: v for p, v in whole.items() if set(p) & set(rows.tolist())}
    assert {(3, 7), (4, 9)} <= set(alone)
    x = rng.normal(size=(600, 16)).astype(np.float32)
    x[5] = x[6] + 0.05
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    every, _ = pairs_above(x, 0.5)
    some, _ = neighbours_of(x, np.array([5, 50]), 0.5)
    assert {tuple(p) for p in some.tolist()} == {
        tuple(p) for p in every.tolist() if {5, 50} & set(p)
    }
