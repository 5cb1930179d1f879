"""Duplicate data kept in the store: written by index, update and uploads, dropped with deletes,
and a second `imgsim duplicates` over an unchanged collection that opens no image."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from imgsim.cli.commands import main
from imgsim.core.config import VERDICTS_FILE, DuplicatesConfig, ExtractConfig
from imgsim.embed.update import update_index
from imgsim.explore.duplicates import StoreFinder, stored
from imgsim.explore.duplicates.derived import DERIVED_VERSION, decode
from imgsim.search.editor import CollectionEditor
from imgsim.search.searcher import Searcher
from imgsim.store import Store, open_store

CONFIRMED = DuplicatesConfig(method="confirmed", workers=1)


@pytest.fixture
def workdir(make_workdir, store_spec: str) -> Path:
    """An index (in the engine of `store_spec`) of 16 shapes and an exact copy of one."""
    work = make_workdir(("circle", "square"), 8)
    data = work.parent / "data"
    shutil.copy(data / "circle_00001.png", data / "copy_of_circle.png")
    update_index(config(work, store_spec), progress=False)
    return work


def config(work: Path, spec: str) -> ExtractConfig:
    return ExtractConfig(
        data_dir=str(work.parent / "data"), output_dir=str(work),
        model_path=str(work / "triplet_base_final.pt"), workers=1, store=spec,
    )  # fmt: skip


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every image file Pillow opens from now on."""
    seen: list[str] = []
    real = Image.open
    monkeypatch.setattr(
        Image, "open", lambda fp, *a, **k: seen.append(str(fp)) or real(fp, *a, **k)
    )
    return seen


@pytest.fixture
def derived_names(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names the finder derives from their files from now on."""
    names: list[str] = []
    real = stored.iter_derived
    monkeypatch.setattr(
        stored, "iter_derived", lambda r, *a: names.extend(x.name for x in r) or real(r, *a)
    )
    return names


def report(store: Store) -> dict:
    return {**StoreFinder().find(store, CONFIRMED).to_dict(), "seconds": 0}


def test_index_keeps_every_images_derived_data(workdir: Path, store_spec: str) -> None:
    with open_store(workdir, store_spec) as store:
        rows, facts = store.derived(), store.facts()
        assert set(rows) == set(facts) and len(rows) == 17
        assert {r.version for r in rows.values()} == {DERIVED_VERSION}
        assert all(rows[n].sha256 == facts[n].sha256 for n in rows)
        assert all(not r.thumb for r in rows.values())  # read only when asked
        thumbs = store.derived(["copy_of_circle.png"], thumbs=True)
        assert decode("copy_of_circle.png", thumbs["copy_of_circle.png"]).thumb.shape == (64, 64, 3)


def test_a_second_run_opens_no_image_and_finds_the_same(
    workdir: Path, store_spec: str, opened: list[str], derived_names: list[str]
) -> None:
    with open_store(workdir, store_spec) as store:
        kept = report(store)
        assert not opened and not derived_names  # all of it came from the store
        assert any(
            {m["name"] for m in g["members"]} == {"circle_00001.png", "copy_of_circle.png"}
            for g in kept["groups"]
        )
        # The same answer as from the files themselves (nothing kept, nothing written back).
        store.derived = lambda *a, **k: {}  # type: ignore[method-assign]
        store.put_derived = lambda rows: None  # type: ignore[method-assign]
        assert report(store) == kept
        assert len(derived_names) == 17 and opened


def test_a_changed_file_is_derived_again_and_written_back(
    workdir: Path, store_spec: str, derived_names: list[str]
) -> None:
    data = workdir.parent / "data"
    target = data / "square_00002.png"
    target.write_bytes((data / "circle_00003.png").read_bytes())  # now a copy of another
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    with open_store(workdir, store_spec) as store:
        groups = report(store)["groups"]
        assert derived_names == ["square_00002.png"]
        assert any("square_00002.png" in {m["name"] for m in g["members"]} for g in groups)
        row = store.derived(["square_00002.png"])["square_00002.png"]
        assert row.mtime_ns == 1_000_000_000 and row.sha256 != store.facts()[target.name].sha256
        report(store)
        assert derived_names == ["square_00002.png"]  # the second run read it from the store


def test_update_upload_and_delete_keep_it_in_step(workdir: Path, store_spec: str) -> None:
    data = workdir.parent / "data"
    shutil.copy(data / "square_00003.png", data / "new.png")
    (data / "circle_00002.png").unlink()
    update_index(config(workdir, store_spec), progress=False)
    searcher = Searcher.from_workdir(workdir, store=store_spec)
    CollectionEditor(searcher).add_images(
        {"uploaded.png": (data / "square_00004.png").read_bytes()}
    )
    CollectionEditor(searcher).remove_images(["square_00001.png"])
    with open_store(workdir, store_spec) as store:
        rows = store.derived()
        assert set(rows) == set(store.facts())
        assert {"new.png", "uploaded.png"} <= set(rows)
        assert not {"circle_00002.png", "square_00001.png"} & set(rows)


@pytest.mark.parametrize("store_spec", ["faiss"])  # the CLI opens either engine alike
def test_the_cli_second_run_opens_no_image(
    workdir: Path, opened: list[str], capsys: pytest.CaptureFixture
) -> None:
    args = ["duplicates", "--workdir", str(workdir), "--json"]
    assert main(args) == 0
    first = capsys.readouterr().out
    # Turned pairs whose pixels agree are embedded turned by the first run, and kept too.
    opened.clear()
    assert main(args) == 0
    assert not [p for p in opened if not p.endswith(".pt")]
    second = capsys.readouterr().out
    assert '"copy_of_circle.png"' in second
    assert re.sub(r'"seconds": [\d.]+', "", first) == re.sub(r'"seconds": [\d.]+', "", second)


@pytest.mark.parametrize("store_spec", ["faiss"])
def test_a_near_copy_is_looked_at_on_the_first_run_only(
    workdir: Path, opened: list[str], capsys: pytest.CaptureFixture
) -> None:
    """The judge decodes a pair the thumbnails let by again (views.second_look), once: its
    verdict is kept, so the next run opens no image."""
    data = workdir.parent / "data"
    with Image.open(data / "square_00001.png") as im:
        im.convert("RGB").save(data / "resaved.jpg", quality=80)
    update_index(config(workdir, "faiss"), progress=False)
    args = ["duplicates", "--workdir", str(workdir), "--json"]
    opened.clear()
    assert main(args) == 0
    assert {str(data / "square_00001.png"), str(data / "resaved.jpg")} <= set(opened)
    first = capsys.readouterr().out
    assert '"resaved.jpg"' in first
    opened.clear()
    assert main(args) == 0
    assert not [p for p in opened if not p.endswith(".pt")]
    assert re.sub(r'"seconds": [\d.]+', "", capsys.readouterr().out) == re.sub(
        r'"seconds": [\d.]+', "", first
    )


def test_another_algorithm_version_is_derived_again(
    workdir: Path, store_spec: str, derived_names: list[str]
) -> None:
    with open_store(workdir, store_spec) as store:
        old = {n: replace(r, version=DERIVED_VERSION - 1) for n, r in store.derived().items()}
        store.put_derived(old)
        report(store)
        assert len(derived_names) == 17
        assert {r.version for r in store.derived().values()} == {DERIVED_VERSION}


@pytest.mark.parametrize("store_spec", ["faiss"])
def test_the_watchers_update_pass_keeps_it_too(workdir: Path) -> None:
    from imgsim.embed.update import update_pass
    from imgsim.model.model_handle import ModelFile

    data = workdir.parent / "data"
    shutil.copy(data / "square_00005.png", data / "watched.png")
    model = ModelFile(str(workdir / "triplet_base_final.pt"))
    with open_store(workdir, "faiss", model.model_id) as store:
        update_pass(store, model, config(workdir, "faiss"))  # one batch of `imgsim watch`
        assert "watched.png" in store.derived()


@pytest.fixture
def judged(monkeypatch: pytest.MonkeyPatch) -> list[frozenset[str]]:
    """The pairs of names the confirmed method judges from now on (confirm._confirmed)."""
    from imgsim.explore.duplicates import confirm

    pairs: list[frozenset[str]] = []
    real = confirm._confirmed

    def counting(collection, proposed, config):  # the judge's own arguments
        pairs.extend(frozenset(collection.names[i] for i in pair) for pair in proposed)
        return real(collection, proposed, config)

    monkeypatch.setattr(confirm, "_confirmed", counting)
    return pairs


def search_none_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, searching every image's candidates (as a first run does) fails."""
    from imgsim.explore.duplicates import confirm

    def whole(*args: object) -> None:
        raise AssertionError("every image's candidates searched")

    monkeypatch.setattr(confirm, "view_pairs", whole)
    monkeypatch.setattr(confirm, "pairs_above", whole)


def kept_report(store: Store, work: Path, settings: DuplicatesConfig = CONFIRMED) -> dict:
    """The report of a run that keeps its verdicts in `work`."""
    return {**StoreFinder(workdir=work).find(store, settings).to_dict(), "seconds": 0}


def test_a_second_run_judges_no_pair(
    workdir: Path, store_spec: str, judged: list[frozenset[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(workdir, store_spec) as store:
        first = kept_report(store, workdir)
        assert judged and (workdir / VERDICTS_FILE).is_file()
        assert first == report(store)  # the same groups as a run that keeps nothing
        judged.clear()
        search_none_whole(monkeypatch)
        assert kept_report(store, workdir) == first
        assert not judged


@pytest.mark.parametrize("store_spec", ["faiss"])
def test_a_changed_file_has_only_its_pairs_judged(
    workdir: Path, store_spec: str, judged: list[frozenset[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(workdir, store_spec) as store:
        kept_report(store, workdir)
    data = workdir.parent / "data"
    with Image.open(data / "circle_00003.png") as im:  # new content: one pixel a shade off
        changed = im.convert("RGB")
    red, green, blue = changed.getpixel((0, 0))
    changed.putpixel((0, 0), (red ^ 1, green, blue))
    changed.save(data / "square_00002.png")
    update_index(config(workdir, store_spec), progress=False)
    judged.clear()
    with open_store(workdir, store_spec) as store:
        with monkeypatch.context() as alone:
            search_none_whole(alone)  # only the changed image's candidates are searched
            after = kept_report(store, workdir)
        assert judged and all("square_00002.png" in pair for pair in judged)
        # Now a near copy of circle_00003: grouped with it, as a run keeping nothing finds.
        assert any({"square_00002.png", "circle_00003.png"} <= {m["name"] for m in g["members"]}
                   for g in after["groups"])  # fmt: skip
        assert after == report(store)


@pytest.mark.parametrize("store_spec", ["faiss"])
def test_another_judge_judges_every_pair_again(
    workdir: Path, store_spec: str, judged: list[frozenset[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgsim.explore.duplicates import confirm

    with open_store(workdir, store_spec) as store:
        kept_report(store, workdir)
        everything = set(judged)
        judged.clear()
        kept_report(store, workdir, replace(CONFIRMED, pixel_threshold=0.96))
        assert set(judged) == everything  # another threshold: none of the verdicts holds
        judged.clear()
        monkeypatch.setattr(confirm, "CONFIRM_VERSION", confirm.CONFIRM_VERSION + 1)
        kept_report(store, workdir, replace(CONFIRMED, pixel_threshold=0.96))
        assert set(judged) == everything  # another judge: the same
        judged.clear()
        kept_report(store, workdir, replace(CONFIRMED, pixel_threshold=0.96, workers=2))
        assert not judged  # the workers do not judge


@pytest.mark.parametrize("store_spec", ["faiss"])
@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 not a zip", None])
def test_an_unreadable_verdicts_file_is_ignored_and_written_anew(
    workdir: Path, store_spec: str, judged: list[frozenset[str]], damage: bytes | None
) -> None:
    kept = workdir / VERDICTS_FILE
    with open_store(workdir, store_spec) as store:
        first = kept_report(store, workdir)
        everything = set(judged)
        if damage is None:  # a readable file cut short: half the bytes
            kept.write_bytes(kept.read_bytes()[: kept.stat().st_size // 2])
        else:
            kept.write_bytes(damage)
        judged.clear()
        assert kept_report(store, workdir) == first
        assert set(judged) == everything
        judged.clear()
        assert kept_report(store, workdir) == first
        assert not judged  # written anew, readable
