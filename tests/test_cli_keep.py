"""`imgsim duplicates --keep best --dry-run | --trash`: the plan, the trash, never a deletion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgsim.cli.commands import main
from imgsim.core.errors import TrashError
from imgsim.explore.duplicates.groups import Group, Member
from imgsim.explore.duplicates.plan import carry_out, plan_of
from imgsim.explore.duplicates.text import plan_lines
from imgsim.files import trash
from imgsim.store import open_store

from .duplicate_folder import PLANTED, contents, indexed_workdir, make_planted_folder

HASH = ["--method", "hash", "--workers", "1"]  # no model: fast, and the planted groups all show


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_planted_folder(tmp_path / "photos")


def run(capsys: pytest.CaptureFixture, *args: str, code: int = 0) -> str:
    assert main(["duplicates", *args, *HASH]) == code
    return capsys.readouterr().out


def test_dry_run_prints_the_plan_and_moves_nothing(
    tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture
) -> None:
    before = contents(folder)
    work = ["--workdir", str(tmp_path / "work")]
    out = run(capsys, str(folder), *work, "--keep", "best", "--dry-run")
    assert out.count("Group ") == 4 and out.count("  would move ") == 4
    assert "Group 1 (" in out and "): keep pic_00" in out
    assert "keep pic_002.jpg (most pixels (" in out  # the resized copy is the smaller one
    assert "  would move copies/resized.png" in out
    assert "Would move 4 images of 4 groups to the trash" in out and "Nothing was moved" in out
    body = json.loads(run(capsys, str(folder), *work, "--keep", "best", "--dry-run", "--json"))
    plan = body["plan"]
    assert (plan["keep"], plan["action"]) == ("best", "dry-run")
    assert plan["trash"] == str(tmp_path / "work" / "trash")
    for step, group in zip(plan["groups"], body["groups"], strict=True):
        assert step["keep"] == group["keep"] and step["move"] == group["extras"]
        assert step["reason"] == group["reason"] and step["tier"] == group["tier"]
        assert step["moved"] == [] and step["failed"] == []
    assert sorted(({s["keep"], *s["move"]} for s in plan["groups"]), key=sorted) == PLANTED
    assert contents(folder) == before and trash.list_trash(tmp_path / "work") == []


def test_trash_moves_the_extras_honours_not_duplicates_and_restores(
    tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture
) -> None:
    before = contents(folder)
    work = ["--workdir", str(tmp_path / "work")]
    run(capsys, str(folder), *work, "--not-duplicates", "pic_001.jpg", "copies/resaved.jpg")
    body = json.loads(run(capsys, str(folder), *work, "--keep", "best", "--trash", "--json"))
    plan = body["plan"]
    assert plan["action"] == "trash" and len(plan["groups"]) == 3
    moved = [n for step in plan["groups"] for n in step["moved"]]
    assert sorted(moved) == ["copies/cropped.jpg", "copies/exact.jpg", "copies/resized.png"]
    assert "copies/resaved.jpg" not in moved  # "not duplicates": left alone
    in_trash = {item.name: item for item in trash.list_trash(tmp_path / "work")}
    assert sorted(in_trash) == sorted(moved)
    for name in moved:
        assert not (folder / name).exists() and in_trash[name].sha256 == before[name]
    assert contents(folder) == {n: h for n, h in before.items() if n not in moved}
    # The same trash as the page's: one command brings a file back.
    assert main(["trash", "restore", "copies/exact.jpg", "--workdir", str(tmp_path / "work")]) == 0
    assert (folder / "copies/exact.jpg").read_bytes() == (folder / "pic_000.jpg").read_bytes()
    capsys.readouterr()
    again = run(capsys, str(folder), *work, "--keep", "best", "--trash")
    assert "  moved      copies/exact.jpg" in again and "Moved 1 image of 1 group" in again


def test_without_a_folder_the_extras_leave_the_index_too(
    tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture
) -> None:
    workdir = indexed_workdir(tmp_path, folder)
    out = run(capsys, "--workdir", str(workdir), "--keep", "best", "--trash")
    assert "Moved 4 images of 4 groups to the trash" in out
    with open_store(workdir) as store:
        assert store.count() == 10  # the ten originals stay indexed
    assert len(trash.list_trash(workdir)) == 4 and len(list(folder.rglob("*.*"))) == 10
    assert "0 groups of duplicates" in run(capsys, "--workdir", str(workdir))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dry-run"], "--dry-run and --trash go with --keep best"),
        (["--trash"], "--dry-run and --trash go with --keep best"),
        (["--keep", "best"], "--keep best needs --dry-run"),
    ],
)
def test_incomplete_keep_flags_are_refused_before_any_work(
    folder: Path, capsys: pytest.CaptureFixture, flags: list[str], message: str
) -> None:
    before = contents(folder)
    assert main(["duplicates", str(folder), *flags, *HASH]) == 1
    assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one or the other, never both
        main(["duplicates", str(folder), "--keep", "best", "--dry-run", "--trash"])
    with pytest.raises(SystemExit):
        main(["duplicates", str(folder), "--keep", "worst", "--dry-run"])
    assert contents(folder) == before


def test_an_image_that_cannot_move_is_named_and_the_others_still_go() -> None:
    def member(name: str, width: int) -> Member:
        return Member(name, size=10, width=width, height=10, format="PNG")

    steps = plan_of([Group([member("a.png", 20), member("b.png", 10), member("c.png", 10)])])
    moved: list[str] = []

    def move(name: str) -> None:
        if name == "b.png":
            raise TrashError("no file named 'b.png'")
        moved.append(name)

    carry_out(steps, move)
    assert moved == ["c.png"] and steps[0].moved == ["c.png"]
    assert steps[0].failed == [("b.png", "no file named 'b.png'")]
    lines = plan_lines(steps, True, "work/trash")
    assert "  NOT moved  b.png: no file named 'b.png'" in lines
    assert lines[-2:] == [
        "Moved 1 image of 1 group to the trash (work/trash); `imgsim trash restore NAME` "
        "brings one back.",
        "1 image could not be moved.",
    ]
