"""Tests for imgsim.files.rename: planning, collision-safe renames, the log and undo."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from imgsim.files import rename
from imgsim.files.rename import JOURNAL_NAME, LOG_NAME, TMP_PREFIX, Rename
from imgsim.images.data import parse_category


def make_files(folder: Path, names: Iterable[str]) -> dict[str, bytes]:
    # Each file's content is unique, so a lost or swapped file shows up in a snapshot.
    for name in names:
        (folder / name).write_bytes(f"content of {name}".encode())
    return snapshot(folder)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != LOG_NAME}


def run_quiet(folder: Path, **kwargs) -> tuple[int, str]:
    lines: list[str] = []
    kwargs.setdefault("input_fn", _no_input)
    code = rename.run(folder, print_fn=lines.append, **kwargs)
    return code, "\n".join(lines)


def _no_input(prompt: str) -> str:
    raise AssertionError(f"unexpected prompt: {prompt}")


def answers(*replies: str) -> Callable[[str], str]:
    pending = list(replies)

    def fake_input(prompt: str) -> str:
        if not pending:
            raise EOFError
        return pending.pop(0)

    return fake_input


def fail_on_call(monkeypatch: pytest.MonkeyPatch, *failing: int) -> None:
    """Make the failing-th calls (1-based) of os.rename raise PermissionError."""
    real_rename = os.rename
    calls = 0

    def flaky_rename(src, dst):
        nonlocal calls
        calls += 1
        if calls in failing:
            raise PermissionError(13, "Permission denied (simulated)", str(src))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", flaky_rename)


@pytest.mark.parametrize(
    ("total", "parts", "sizes"),
    [(7, 3, [3, 2, 2]), (6, 3, [2, 2, 2]), (10, 4, [3, 3, 2, 2]), (2, 2, [1, 1]), (5, 1, [5])],
)
def test_split_evenly(total: int, parts: int, sizes: list[int]) -> None:
    assert rename.split_evenly(total, parts) == sizes


def test_plan_distributes_seven_files_over_three_categories(tmp_path: Path) -> None:
    make_files(tmp_path, [f"img{i}.jpg" for i in range(1, 8)])
    plan = rename.plan_renames(tmp_path, ["shirt", "pants", "dress"])
    assert [(r.old, r.new) for r in plan] == [
        ("img1.jpg", "shirt_001.jpg"),
        ("img2.jpg", "shirt_002.jpg"),
        ("img3.jpg", "shirt_003.jpg"),
        ("img4.jpg", "pants_001.jpg"),
        ("img5.jpg", "pants_002.jpg"),
        ("img6.jpg", "dress_001.jpg"),
        ("img7.jpg", "dress_002.jpg"),
    ]


def test_list_images_filters_and_sorts_naturally(tmp_path: Path) -> None:
    make_files(tmp_path, ["img10.png", "img2.JPG", "a.TIFF", ".hidden.jpg", "notes.txt", "b.webp"])
    (tmp_path / "folder.jpg").mkdir()
    assert rename.list_images(tmp_path) == ["a.TIFF", "b.webp", "img2.JPG", "img10.png"]


def test_plan_lowercases_extensions_and_widens_numbers(tmp_path: Path) -> None:
    make_files(tmp_path, ["A.JPEG", "B.Png"])
    assert [r.new for r in rename.plan_renames(tmp_path, ["x"])] == ["x_001.jpeg", "x_002.png"]
    make_files(tmp_path, [f"img{i}.jpg" for i in range(998)])
    news = [r.new for r in rename.plan_renames(tmp_path, ["x"])]
    assert news[0] == "x_0001.jpeg" and news[-1] == "x_1000.jpg"


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    before = make_files(tmp_path, ["a.jpg", "b.jpg", "c.png"])
    code, out = run_quiet(tmp_path, categories=["shirt", "pants"], dry_run=True)
    assert code == 0
    assert "a.jpg -> shirt_001.jpg" in out and "nothing was renamed" in out
    assert snapshot(tmp_path) == before
    assert not (tmp_path / LOG_NAME).exists()


def test_names_taken_by_other_entries_are_skipped(tmp_path: Path) -> None:
    before = make_files(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    (tmp_path / "shirt_001.jpg").mkdir()  # not an image, but its name is taken
    (tmp_path / "shirt_002.jpg").symlink_to(tmp_path / "missing")  # dangling: taken too
    code, _ = run_quiet(tmp_path, categories=["shirt"], yes=True)
    assert code == 0
    after = snapshot(tmp_path)
    assert sorted(after) == ["shirt_003.jpg", "shirt_004.jpg", "shirt_005.jpg"]
    assert set(after.values()) == set(before.values())
    assert (tmp_path / "shirt_001.jpg").is_dir()


@pytest.mark.parametrize(
    ("names", "categories", "expected"),
    [
        # a cycle: each file's target is the other file's current name
        (
            ["a_001.jpg", "b_001.jpg"],
            ["b", "a"],
            {"b_001.jpg": "a_001.jpg", "a_001.jpg": "b_001.jpg"},
        ),
        # a chain: a -> shirt_001 while shirt_001 -> shirt_002
        (
            ["a.jpg", "shirt_001.jpg"],
            ["shirt"],
            {"shirt_001.jpg": "a.jpg", "shirt_002.jpg": "shirt_001.jpg"},
        ),
    ],
)
def test_chains_and_cycles_keep_every_file(
    tmp_path: Path, names: list[str], categories: list[str], expected: dict[str, str]
) -> None:
    before = make_files(tmp_path, names)
    code, _ = run_quiet(tmp_path, categories=categories, yes=True)
    assert code == 0
    assert snapshot(tmp_path) == {new: before[old] for new, old in expected.items()}


def test_files_with_the_right_name_are_left_alone(tmp_path: Path) -> None:
    make_files(tmp_path, ["shirt_001.jpg", "zz.jpg"])
    inode = (tmp_path / "shirt_001.jpg").stat().st_ino
    code, _ = run_quiet(tmp_path, categories=["shirt"], yes=True)
    assert code == 0
    assert (tmp_path / "shirt_001.jpg").stat().st_ino == inode
    log = json.loads((tmp_path / LOG_NAME).read_text())
    assert log["runs"][0]["renames"] == [{"old": "zz.jpg", "new": "shirt_002.jpg"}]


def test_already_organised_folder_is_a_no_op(tmp_path: Path) -> None:
    before = make_files(tmp_path, ["shirt_001.jpg", "shirt_002.jpg"])
    code, out = run_quiet(tmp_path, categories=["shirt"], yes=True)
    assert code == 0 and "nothing to do" in out
    assert snapshot(tmp_path) == before and not (tmp_path / LOG_NAME).exists()


def test_log_appends_one_entry_per_run(tmp_path: Path) -> None:
    make_files(tmp_path, ["a.jpg", "b.jpg"])
    assert run_quiet(tmp_path, categories=["x"], yes=True)[0] == 0
    assert run_quiet(tmp_path, categories=["y"], yes=True)[0] == 0
    runs = json.loads((tmp_path / LOG_NAME).read_text())["runs"]
    assert len(runs) == 2 and all("timestamp" in run for run in runs)
    assert runs[1]["renames"][0] == {"old": "x_001.jpg", "new": "y_001.jpg"}


def test_undo_restores_names_and_contents_run_by_run(tmp_path: Path) -> None:
    original = make_files(tmp_path, ["a.jpg", "B.PNG", "shirt_001.jpg", "c.gif"])
    assert run_quiet(tmp_path, categories=["shirt", "pants"], yes=True)[0] == 0
    first = snapshot(tmp_path)
    assert run_quiet(tmp_path, categories=["dress"], yes=True)[0] == 0
    code, out = run_quiet(tmp_path, undo=True)
    assert code == 0 and "Restored" in out
    assert snapshot(tmp_path) == first
    assert run_quiet(tmp_path, undo=True)[0] == 0
    assert snapshot(tmp_path) == original
    assert not (tmp_path / LOG_NAME).exists()


def test_undo_with_nothing_to_undo(tmp_path: Path) -> None:
    make_files(tmp_path, ["a.jpg"])
    code, out = run_quiet(tmp_path, undo=True)
    assert code == 1 and "Nothing to undo" in out


def test_undo_dry_run_changes_nothing(tmp_path: Path) -> None:
    make_files(tmp_path, ["a.jpg"])
    run_quiet(tmp_path, categories=["x"], yes=True)
    code, out = run_quiet(tmp_path, undo=True, dry_run=True)
    assert code == 0 and "x_001.jpg -> a.jpg" in out
    assert sorted(snapshot(tmp_path)) == ["x_001.jpg"]


@pytest.mark.parametrize("change", ["target_exists", "renamed_missing"])
def test_undo_refuses_and_changes_nothing(tmp_path: Path, change: str) -> None:
    make_files(tmp_path, ["a.jpg", "b.jpg"])
    run_quiet(tmp_path, categories=["x"], yes=True)
    if change == "target_exists":
        make_files(tmp_path, ["a.jpg"])
    else:
        (tmp_path / "x_002.jpg").unlink()
    before = snapshot(tmp_path)
    log_before = (tmp_path / LOG_NAME).read_text()
    code, out = run_quiet(tmp_path, undo=True)
    assert code == 1 and "Cannot undo" in out and "Nothing was changed" in out
    assert snapshot(tmp_path) == before
    assert (tmp_path / LOG_NAME).read_text() == log_before


def test_undo_refuses_a_log_that_points_outside_the_folder(tmp_path: Path) -> None:
    make_files(tmp_path, ["x_001.jpg"])
    entry = {"timestamp": "t", "renames": [{"old": "../escaped.jpg", "new": "x_001.jpg"}]}
    (tmp_path / LOG_NAME).write_text(json.dumps({"version": 1, "runs": [entry]}))
    code, out = run_quiet(tmp_path, undo=True)
    assert code == 1 and "not a plain file name" in out
    assert sorted(snapshot(tmp_path)) == ["x_001.jpg"]


@pytest.mark.parametrize(
    "categories",
    [[], [""], ["   "], ["-_"], ["a/b"], ["a\\b"], ["shi.rt"], [".."], ["a", "A"], ["x y", "x_y"]],
)
def test_bad_categories_are_rejected(tmp_path: Path, categories: list[str]) -> None:
    before = make_files(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    code, out = run_quiet(tmp_path, categories=categories, yes=True)
    assert code == 1 and out.startswith("Error: ")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("raw", "name"),
    [("Shirt", "shirt"), ("Long  Sleeve", "long_sleeve"), ("T-Shirt", "t-shirt"), ("_a-", "a")],
)
def test_category_names_are_normalised(raw: str, name: str) -> None:
    assert rename.normalise_category(raw) == name


@pytest.mark.parametrize("category", ["shirt", "Long Sleeve", "t-shirt", "size2", "2020", "_x_"])
def test_new_names_parse_back_to_their_category(tmp_path: Path, category: str) -> None:
    make_files(tmp_path, ["a.jpg", "b.jpg"])
    for r in rename.plan_renames(tmp_path, [category]):
        assert parse_category(r.new) == r.category == rename.normalise_category(category)


def test_plan_notes_an_already_organised_folder(tmp_path: Path) -> None:
    make_files(tmp_path, ["IMG_0001.jpg", "IMG_0002.jpg"])
    quiet = rename.describe_plan(rename.plan_renames(tmp_path, ["x"]))
    assert not any("already carry categories" in line for line in quiet)
    make_files(tmp_path, ["shirt_001.jpg", "pants_001.jpg"])
    noisy = rename.describe_plan(rename.plan_renames(tmp_path, ["x"]))
    assert any("already carry categories (img, pants, shirt)" in line for line in noisy)


def test_more_categories_than_images_is_an_error(tmp_path: Path) -> None:
    make_files(tmp_path, ["a.jpg"])
    code, out = run_quiet(tmp_path, categories=["x", "y"], yes=True)
    assert code == 1 and "only 1 images" in out


@pytest.mark.parametrize(
    "replies",
    [
        ("3", "shirt", "pants", "dress", "y"),
        ("three", "3", "shirt", "Shirt", "pants", "dress", "yes"),  # re-asked after bad answers
    ],
)
def test_interactive_mode(tmp_path: Path, replies: tuple[str, ...]) -> None:
    make_files(tmp_path, [f"img{i}.jpg" for i in range(7)])
    code, out = run_quiet(tmp_path, input_fn=answers(*replies))
    assert code == 0
    assert "shirt: 3 files" in out and "imgsim rename" in out and "--undo" in out
    assert sorted(snapshot(tmp_path))[:3] == ["dress_001.jpg", "dress_002.jpg", "pants_001.jpg"]


@pytest.mark.parametrize("replies", [("2", "a", "b", "n"), ("2", "a", "b"), ("0", "9", "x")])
def test_interactive_declined_or_abandoned_changes_nothing(
    tmp_path: Path, replies: tuple[str, ...]
) -> None:
    before = make_files(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    code, _ = run_quiet(tmp_path, input_fn=answers(*replies))
    assert code == 1
    assert snapshot(tmp_path) == before


def test_categories_without_yes_still_ask(tmp_path: Path) -> None:
    make_files(tmp_path, ["a.jpg"])
    code, _ = run_quiet(tmp_path, categories=["x"], input_fn=answers("y"))
    assert code == 0 and sorted(snapshot(tmp_path)) == ["x_001.jpg"]


# The chain a.jpg -> shirt_001 -> shirt_002 plus c.jpg: 3 moves, so 6 os.rename calls.
@pytest.mark.parametrize("failing_call", range(1, 7))
def test_failure_mid_way_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_call: int
) -> None:
    before = make_files(tmp_path, ["a.jpg", "shirt_001.jpg", "zz.jpg"])
    fail_on_call(monkeypatch, failing_call)
    code, out = run_quiet(tmp_path, categories=["shirt"], yes=True)
    assert code == 1 and "Permission denied" in out and "back under its original name" in out
    assert snapshot(tmp_path) == before
    assert not any(p.name.startswith(TMP_PREFIX) for p in tmp_path.iterdir())
    assert not (tmp_path / LOG_NAME).exists()


@pytest.mark.parametrize("failing_call", range(1, 5))
def test_failure_during_undo_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_call: int
) -> None:
    original = make_files(tmp_path, ["a_001.jpg", "b_001.jpg"])
    run_quiet(tmp_path, categories=["b", "a"], yes=True)
    renamed = snapshot(tmp_path)
    fail_on_call(monkeypatch, failing_call)
    code, out = run_quiet(tmp_path, undo=True)
    assert code == 1 and "back under its original name" in out
    assert snapshot(tmp_path) == renamed
    monkeypatch.undo()
    assert run_quiet(tmp_path, undo=True)[0] == 0
    assert snapshot(tmp_path) == original


def test_failed_rollback_names_the_stuck_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = make_files(tmp_path, ["a.jpg", "b.jpg"])
    fail_on_call(monkeypatch, 2, 3)  # the move fails, then so does putting the first one back
    code, out = run_quiet(tmp_path, categories=["x"], yes=True)
    assert code == 1 and "could not be put back" in out and "-> a.jpg" in out
    assert "--recover" in out
    # The journal stays, so the run can be recovered once the cause is fixed.
    assert (tmp_path / JOURNAL_NAME).exists()
    assert any(p.name.startswith(TMP_PREFIX) and p.suffix == ".jpg" for p in tmp_path.iterdir())
    monkeypatch.undo()
    code, out = run_quiet(tmp_path, recover_run=True)
    assert code == 0 and "back under its name" in out
    assert snapshot(tmp_path) == before


def test_missing_folder_and_undo_with_categories_are_errors(tmp_path: Path) -> None:
    assert run_quiet(tmp_path / "nope", categories=["x"], yes=True)[0] == 1
    code, out = run_quiet(tmp_path, categories=["x"], undo=True)
    assert code == 1 and "--undo" in out


def test_describe_plan_warns_about_tiny_categories() -> None:
    lines = rename.describe_plan([Rename("a.jpg", "x_001.jpg", "x")])
    assert any("at least 2 images" in line for line in lines)
