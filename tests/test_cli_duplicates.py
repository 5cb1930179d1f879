"""`imgsim duplicates`: JSON and human output, corrupt files named, nothing moved or deleted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgsim.cli.commands import main

from .duplicate_folder import PLANTED, contents, indexed_workdir, make_planted_folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = make_planted_folder(tmp_path / "photos")
    (folder / "broken_001.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    return folder


def run_json(capsys: pytest.CaptureFixture, *args: str) -> dict:
    assert main(["duplicates", *args, "--json", "--workers", "1"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_lists_groups_with_the_keeper_first(
    folder: Path, capsys: pytest.CaptureFixture
) -> None:
    before = contents(folder)
    body = run_json(capsys, str(folder))
    assert list(body) == [
        "images", "method", "threshold", "embedding_threshold", "pixel_threshold", "extras",
        "groups", "skipped", "seconds",
    ]  # fmt: skip
    assert body["images"] == 14 and body["method"] == "confirmed" and body["extras"] == 4
    assert sorted(({m["name"] for m in g["members"]} for g in body["groups"]), key=sorted) == (
        PLANTED
    )
    for group in body["groups"]:
        assert list(group) == ["keep", "extras", "score", "exact", "tier", "reason", "members"]
        keeper = group["members"][0]
        assert keeper["keep"] and keeper["name"] == group["keep"]
        assert group["extras"] == [m["name"] for m in group["members"][1:]]
        assert 0 < group["score"] <= 1
        assert set(keeper) == {
            "name", "size", "width", "height", "format", "modified", "keep", "exact",
            "hash_distance", "similarity", "tier", "view", "captured", "captured_from",
        }  # fmt: skip
    resized = next(g for g in body["groups"] if "pic_002.jpg" in g["keep"])
    assert resized["extras"] == ["copies/resized.png"]  # the larger original is kept
    assert resized["reason"].startswith("most pixels (")
    exact = next(g for g in body["groups"] if g["exact"])
    assert exact["reason"] in {"otherwise equal, oldest file", "otherwise equal, first name"}
    assert contents(folder) == before  # nothing moved, nothing deleted


def test_corrupt_image_is_named_and_skipped(folder: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["duplicates", str(folder), "--json", "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert "broken_001.jpg" in captured.err
    body = json.loads(captured.out)
    assert [s["name"] for s in body["skipped"]] == ["broken_001.jpg"]
    assert body["skipped"][0]["error"]
    assert (folder / "broken_001.jpg").exists()


def test_human_output(folder: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["duplicates", str(folder), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("Group ") == 4
    assert "keep " in out and "extra" in out and "same bytes" in out and "bits apart" in out
    assert out.count(": same picture, 2 images") == 1  # the exact copy
    assert out.count(": near duplicate, 2 images") == 3  # re-saved, resized, cropped
    assert "Skipped 1 unreadable image: broken_001.jpg" in out
    assert "4 groups of duplicates, 4 extra images, among 14 images" in out
    assert "Nothing was moved." in out


def test_threshold_flag_and_its_default(folder: Path, capsys: pytest.CaptureFixture) -> None:
    strict = run_json(capsys, str(folder), "--method", "hash", "--threshold", "0")
    assert strict["threshold"] == 0 and len(strict["groups"]) < 4
    with pytest.raises(SystemExit):
        main(["duplicates", "--help"])
    assert "(default: 12)" in capsys.readouterr().out


def test_bad_values_are_errors(folder: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):  # checked as the flag is read
        main(["duplicates", str(folder), "--threshold", "99"])
    assert "--threshold: must be between 0 and 64" in capsys.readouterr().err
    assert main(["duplicates", str(folder / "missing")]) == 1
    assert "not found" in capsys.readouterr().err


def test_without_a_folder_the_index_is_searched(
    tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture
) -> None:
    workdir = indexed_workdir(tmp_path, folder)
    body = run_json(capsys, "--workdir", str(workdir))
    assert body["images"] == 14
    assert sorted(({m["name"] for m in g["members"]} for g in body["groups"]), key=sorted) == (
        PLANTED
    )
    both = run_json(capsys, "--workdir", str(workdir), "--method", "both")
    assert both["method"] == "both"
    extras = [m for g in both["groups"] for m in g["members"][1:]]
    assert all(m["similarity"] is not None or m["hash_distance"] is not None for m in extras)


def test_without_an_index_says_what_to_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["duplicates", "--workdir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "imgsim duplicates FOLDER" in err


def test_settings_from_the_config_file(
    tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "imgsim.toml"
    config.write_text("[duplicates]\nthreshold = 3\nworkers = 1\n", encoding="utf-8")
    body = run_json(capsys, str(folder), "--config", str(config))
    assert body["threshold"] == 3
    flag_wins = run_json(capsys, str(folder), "--config", str(config), "--threshold", "7")
    assert flag_wins["threshold"] == 7


def test_not_duplicates_is_remembered_in_the_workdir_and_undone(
    tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture
) -> None:
    before = contents(folder)
    work = ["--workdir", str(tmp_path), "--method", "hash"]
    marked = run_json(capsys, str(folder), *work, "--not-duplicates", "pic_001.jpg",
                      "copies/resaved.jpg")  # fmt: skip
    pair = {"pic_001.jpg", "copies/resaved.jpg"}
    assert pair not in [{m["name"] for m in g["members"]} for g in marked["groups"]]
    assert len(marked["groups"]) == 3
    saved = json.loads((tmp_path / "not_duplicates.json").read_text(encoding="utf-8"))
    assert saved == {"pairs": [["copies/resaved.jpg", "pic_001.jpg"]]}
    again = run_json(capsys, str(folder), *work)  # remembered: never shown again
    assert pair not in [{m["name"] for m in g["members"]} for g in again["groups"]]
    undone = run_json(capsys, str(folder), *work, "--undo-not-duplicates", "pic_001.jpg",
                      "copies/resaved.jpg")  # fmt: skip
    assert pair in [{m["name"] for m in g["members"]} for g in undone["groups"]]
    assert contents(folder) == before
