"""One command grammar: flags checked in one line, each summary said once, our own messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgsim.cli.commands import build_parser, main


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["train", "--epochs", "-1"], "argument --epochs: must be 0 or more, not -1"),
        (["train", "--val-fraction", "1.5"], "must be between 0 and 0.9, not 1.5"),
        (["search", "q.jpg", "-k", "0"], "must be between 1 and 100, not 0"),
        (["serve", "--workers", "-2"], "argument --workers: must be 0 or more, not -2"),
        (["duplicates", "--threshold", "65"], "must be between 0 and 64, not 65"),
    ],
)
def test_numeric_flags_are_checked_in_one_line(
    argv: list[str], says: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and says in err and err.count("\n") == 1  # no usage block


def test_a_config_file_is_checked_too(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nepochs = -2\n")
    assert main(["--config", str(cfg), "train"]) == 1
    assert capsys.readouterr().err == "error: epochs must be 0 or more, not -2\n"


def test_a_file_that_is_no_model_gets_our_message(
    shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fake = tmp_path / "notamodel.jpg"
    fake.write_bytes(b"\xff\xd8 not a model")
    assert main(["extract", str(shapes_dir), "--model", str(fake), "--workdir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "is not an imgsim model file" in err and "weights_only" not in err


def test_a_missing_model_is_said_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    query = tmp_path / "q.jpg"
    query.write_bytes(b"x")
    assert main(["search", str(query), "--workdir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("Model not loaded") == 1 and "not found" in err


def test_help_lists_commands_in_workflow_order() -> None:
    help_text = build_parser().format_help()
    order = ["demo", "stats", "rename", "train", "extract", "index", "search", "serve"]
    places = [help_text.index(f"    {name} ") for name in order]
    assert places == sorted(places)


@pytest.mark.parametrize("command", ["stats", "rename", "train", "extract", "index", "duplicates"])
def test_every_image_command_takes_folder_or_data(command: str) -> None:
    parser = build_parser()
    by_place = parser.parse_args([command, "photos"])
    by_flag = parser.parse_args([command, "--data", "photos"])
    assert by_place.folder == "photos" and by_flag.data_dir == "photos"


def test_a_file_named_as_the_folder_is_explained(
    shapes_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["duplicates", str(shapes_dir / "circle_00001.png")]) == 1
    assert "is a file: name the folder of images" in capsys.readouterr().err
