"""Reviewing duplicates: capture dates, the keeper by date, pages of groups, the undo's trash."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from PIL import Image

from imgsim.core.errors import ConfigError, TrashError
from imgsim.explore.duplicates.captured import (
    DATE_TIME_ORIGINAL,
    EXIF_IFD,
    capture_time,
    exif_taken,
)
from imgsim.explore.duplicates.groups import Group, Member, keeper_first
from imgsim.explore.duplicates.review import group_date, review_page, sorted_groups
from imgsim.files import trash


def photo(path: Path, taken: str | None, size: tuple[int, int] = (32, 24)) -> Path:
    exif = Image.Exif()
    if taken is not None:
        exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = taken
    Image.new("RGB", size, (200, 40, 40)).save(path, "JPEG", exif=exif)
    return path


def test_exif_date_taken_else_the_file_time(tmp_path: Path) -> None:
    taken = photo(tmp_path / "camera.jpg", "2019:05:04 10:11:12")
    expected = time.mktime((2019, 5, 4, 10, 11, 12, 0, 0, -1))
    assert exif_taken(taken) == expected
    assert capture_time(taken, 5.0) == (expected, "exif")
    plain = photo(tmp_path / "plain.jpg", None)
    assert capture_time(plain, 5.0) == (5.0, "file")
    assert capture_time(plain, None) == (None, "")


@pytest.mark.parametrize("text", ["0000:00:00 00:00:00", "yesterday", "", "2019:13:40 99:00:00"])
def test_a_broken_exif_date_falls_back_to_the_file_time(tmp_path: Path, text: str) -> None:
    path = photo(tmp_path / "odd.jpg", text)
    assert capture_time(path, 7.0) == (7.0, "file")


def test_unreadable_or_missing_files_have_no_exif_date(tmp_path: Path) -> None:
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    assert exif_taken(tmp_path / "cut.jpg") is None
    assert exif_taken(tmp_path / "absent.jpg") is None


def member(name: str, captured: float | None, source: str = "exif", **kw: object) -> Member:
    facts = {"size": 100, "width": 10, "height": 10, "format": "JPEG", "modified": 50.0, **kw}
    return Member(name, captured=captured, captured_from=source, **facts)  # type: ignore[arg-type]


def test_the_keeper_is_the_one_taken_first_when_otherwise_equal() -> None:
    # The older capture date wins over a newer one even when its file is younger.
    later, earlier = member("a.jpg", 2000.0, modified=10.0), member("b.jpg", 1000.0, modified=90.0)
    order = [m for _, m in keeper_first([(0, later), (1, earlier)])]
    assert [m.name for m in order] == ["b.jpg", "a.jpg"]
    assert Group(order).reason == "otherwise equal, taken first"
    files = [member("c.jpg", 10.0, "file"), member("d.jpg", 20.0, "file")]
    assert Group(files).reason == "otherwise equal, oldest file"


def group(*captured: float | None) -> dict:
    members = [{"name": f"m{i}_{c}", "captured": c} for i, c in enumerate(captured)]
    return {"keep": members[0]["name"], "members": members}


def test_sorted_by_size_or_by_the_newest_picture() -> None:
    small_new, big_old, undated = group(900.0, 100.0), group(50.0, 60.0, 70.0), group(None, None)
    groups = [small_new, big_old, undated]
    assert group_date(small_new) == 900.0 and group_date(undated) is None
    assert sorted_groups(groups, "size") == [big_old, small_new, undated]
    assert sorted_groups(groups, "date") == [small_new, big_old, undated]
    with pytest.raises(ConfigError, match="sort must be one of size, date"):
        sorted_groups(groups, "name")


def test_pages_split_the_sorted_groups() -> None:
    groups = [group(float(i), float(i)) for i in range(5)]
    first = review_page(groups, "date", 1, 2)
    assert [g["members"][0]["captured"] for g in first["groups"]] == [4.0, 3.0]
    assert (first["pages"], first["total_groups"], first["first"]) == (3, 5, 1)
    last = review_page(groups, "date", 3, 2)
    assert [g["members"][0]["captured"] for g in last["groups"]] == [0.0] and last["first"] == 5
    assert review_page([], "size", 1, 20)["pages"] == 1
    with pytest.raises(ConfigError):
        review_page(groups, "size", 0, 2)


def test_drop_restored_only_once_the_same_bytes_are_back(tmp_path: Path) -> None:
    data, work = tmp_path / "data", tmp_path / "work"
    data.mkdir()
    photo(data / "a.jpg", None)
    original = (data / "a.jpg").read_bytes()
    item = trash.move_to_trash(work, data, "a.jpg")
    with pytest.raises(TrashError, match="not back in its place"):
        trash.drop_restored(work, item.id)  # the trash holds the only copy: it stays
    (data / "a.jpg").write_bytes(b"other bytes")
    with pytest.raises(TrashError, match="not back in its place"):
        trash.drop_restored(work, item.id)
    assert Path(item.stored).read_bytes() == original
    (data / "a.jpg").write_bytes(original)
    trash.drop_restored(work, item.id)
    assert trash.list_trash(work) == [] and not os.path.lexists(item.stored)
    with pytest.raises(TrashError, match="has the id"):
        trash.drop_restored(work, item.id)


def test_the_finder_keeps_the_copy_taken_first(tmp_path: Path) -> None:
    from imgsim.core.config import DuplicatesConfig
    from imgsim.explore.duplicates import find_in_folder

    folder = tmp_path / "photos"
    folder.mkdir()
    # The same pixels and file size; the one taken first has the newer file time.
    photo(folder / "a_later.jpg", "2020:01:01 00:00:00", (64, 48))
    photo(folder / "b_first.jpg", "2019:01:01 00:00:00", (64, 48))
    os.utime(folder / "a_later.jpg", (1_000_000, 1_000_000))
    report = find_in_folder(folder, DuplicatesConfig(method="hash", workers=1))
    [group] = report.groups
    assert [m.name for m in group.members] == ["b_first.jpg", "a_later.jpg"]
    assert group.reason == "otherwise equal, taken first" and group.tier == "same picture"
    assert [m.captured_from for m in group.members] == ["exif", "exif"]
    assert group.keeper.captured == time.mktime((2019, 1, 1, 0, 0, 0, 0, 0, -1))
