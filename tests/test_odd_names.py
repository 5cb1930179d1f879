"""File names that are not UTF-8: every command indexes, trains on and shows them (issue #24)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from imgsim.cli.commands import main
from imgsim.core.errors import UnsafePathError
from imgsim.core.paths import escape_name, name_path, safe_path, unescape_name
from imgsim.images.data import category_of, scan_images
from imgsim.store import open_store

# b"\xff" and b"\xe9" alone are not UTF-8: Python names them with lone surrogates.
ODD = os.fsdecode(b"circle_913_\xff.png")
ODD_FOLDER = os.fsdecode(b"caf\xe9")


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain_001.jpg", "plain_001.jpg"),
        ("café_001.jpg", "café_001.jpg"),  # UTF-8 stays as it is
        (os.fsdecode(b"red_913\xff.jpg"), "red_913\\xff.jpg"),
        ("back\\slash_1.jpg", "back\\\\slash_1.jpg"),
        (os.fsdecode(b"a\\xff\xff_1.jpg"), "a\\\\xff\\xff_1.jpg"),  # a literal "\xff" too
    ],
)
def test_names_escape_and_back(raw: str, escaped: str) -> None:
    assert escape_name(raw) == escaped
    assert unescape_name(escaped) == raw
    escaped.encode("utf-8")  # valid text: SQLite, JSON and pages carry it


@pytest.mark.parametrize("name", ["a\\b.jpg", "..\\..\\etc\\passwd", "x\\x41.jpg", "end\\"])
def test_backslashes_that_are_no_escape_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError):
        unescape_name(name)
    with pytest.raises(UnsafePathError):
        safe_path(tmp_path, name)


def test_scan_names_odd_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / ODD_FOLDER).mkdir()
    for path in (tmp_path / ODD, tmp_path / ODD_FOLDER / "x.png"):
        path.write_bytes(b"")
    records = {r.name: r for r in scan_images(tmp_path)}
    assert set(records) == {"circle_913_\\xff.png", "caf\\xe9/x.png"}
    assert records["circle_913_\\xff.png"].category == "circle"
    assert records["caf\\xe9/x.png"].category == category_of("caf\\xe9/x.png") == "caf\\xe9"
    assert records["caf\\xe9/x.png"].path == name_path(tmp_path, "caf\\xe9/x.png")
    assert records["caf\\xe9/x.png"].path.exists()


def _add_odd_files(data: Path) -> None:
    first = sorted(data.glob("circle_*"))[0]
    shutil.copy(first, data / ODD)
    (data / ODD_FOLDER).mkdir()
    for path in sorted(data.glob("square_*"))[:2]:
        shutil.copy(path, data / ODD_FOLDER / path.name)


def test_index_update_and_search_odd_names(
    make_workdir, capsys: pytest.CaptureFixture[str]
) -> None:
    work = make_workdir()
    data = work.parent / "data"
    _add_odd_files(data)
    args = ["index", "--data", str(data), "--workdir", str(work)]
    assert main(args) == 0
    assert "Indexed 27 images" in capsys.readouterr().out
    with open_store(work) as store:
        assert store.contains("circle_913_\\xff.png")
        assert store.contains("caf\\xe9/square_00001.png")
    shutil.copy(data / ODD, data / os.fsdecode(b"circle_914\xfe.png"))
    assert main([*args, "--update"]) == 0
    assert "1 reused" in capsys.readouterr().out
    assert main(["search", str(data / ODD), "--workdir", str(work), "--json"]) == 0
    assert "circle_913_\\\\xff.png" in capsys.readouterr().out  # escaped, then JSON's own \\


def test_train_on_odd_names(make_workdir, tmp_path: Path) -> None:
    from imgsim.train.trainset import scan_collection

    work = make_workdir()
    data = work.parent / "data"
    _add_odd_files(data)
    collection = scan_collection(data, workers=1)
    names = [collection.name(i) for i in range(len(collection))]
    assert "circle_913_\\xff.png" in names and "caf\\xe9/square_00001.png" in names
    assert collection.fingerprint()
    loaded = collection.dataset(32)[names.index("circle_913_\\xff.png")]
    assert loaded is not None
