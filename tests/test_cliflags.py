"""Tests for flags generated from the config dataclasses: --help shows the real defaults."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

from imgsim.cli.cliflags import add_dataclass_flags, field_help, given
from imgsim.cli.commands import build_parser
from imgsim.core.config import (
    DuplicatesConfig,
    ExtractConfig,
    ModelConfig,
    SearchConfig,
    ThresholdConfig,
    TrainConfig,
    replace,
)

_DEFAULT = re.compile(r"\(default: (?P<value>[^)]*)\)$")


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


COMMANDS = [
    ("train", (TrainConfig, ModelConfig)),
    ("tune-threshold", (ThresholdConfig,)),
    ("duplicates", (DuplicatesConfig,)),
    ("extract", (ExtractConfig,)),
    ("index", (ExtractConfig,)),
    ("search", (SearchConfig,)),
    ("serve", (SearchConfig,)),
    ("export", (SearchConfig,)),
]


def _generated(parser: argparse.ArgumentParser) -> list[str]:
    """The dests of the flags the command generated from its config dataclasses."""
    names: list[str] = []
    for key in ("config_flags", "train_flags", "model_flags"):
        names += parser.get_default(key) or []
    return names


@pytest.mark.parametrize(("command", "classes"), COMMANDS)
def test_every_help_default_is_the_config_default(command: str, classes: tuple) -> None:
    parser = _subparser(command)
    by_dest = {a.dest: a for a in parser._actions}
    generated = _generated(parser)
    assert generated, f"{command} generates no flags from {classes}"
    for name in generated:
        cls = next(c for c in classes if name in {f.name for f in dataclasses.fields(c)})
        defaults = cls()
        action = by_dest[name]
        match = _DEFAULT.search(action.help.replace("%%", "%"))
        assert match, f"{name}: no default in {action.help!r}"
        parsed = replace(defaults, {name: match.group("value").strip('"')})
        assert getattr(parsed, name) == getattr(defaults, name), name
        assert action.default is None  # a config file's value stands unless the flag is given
        assert field_help(cls).get(name), f"{name} has no help text"


@pytest.mark.parametrize(("command", "classes"), COMMANDS)
def test_no_hand_written_flag_copies_a_config_default(command: str, classes: tuple) -> None:
    """Any other flag whose dest is a config field is a known exception, with its reason."""
    fields = {f.name for c in classes for f in dataclasses.fields(c)}
    by_hand = {a.dest for a in _subparser(command)._actions} & fields
    assert by_hand - set(_generated(_subparser(command))) == set()


def test_whole_config_dataclasses_are_flags() -> None:
    for command, classes in COMMANDS[:3]:
        fields = [f.name for c in classes for f in dataclasses.fields(c)]
        assert sorted(_generated(_subparser(command))) == sorted(fields), command


def test_generated_flags_keep_their_spellings() -> None:
    parse = build_parser().parse_args
    args = parse(["index", "--workdir", "w", "--model", "m", "--concurrency", "2", "--data", "d"])
    assert given(args, args.config_flags) == {
        "output_dir": "w",
        "model_path": "m",
        "engine_concurrency": 2,
        "data_dir": "d",
    }
    args = parse(["extract", "--plot", "--thumbnail-cache", "--batch-size", "8"])
    assert given(args, args.config_flags) == {
        "plot": True,
        "thumbnail_cache": True,
        "batch_size": 8,
    }
    args = parse(["search", "q.png", "-k", "3", "--runtime", "torch"])
    assert given(args, args.config_flags) == {"top_k": 3, "runtime": "torch"}
    assert given(parse(["serve"]), parse(["serve"]).config_flags) == {}
    args = parse(["export", "--npy", "--workdir", "w", "--store", "milvus://h:1"])
    assert given(args, args.config_flags) == {"workdir": "w", "store": "milvus://h:1"}


def test_help_names_the_default_loss_and_its_choices() -> None:
    text = " ".join(_subparser("train").format_help().split())
    from imgsim.core.config import LOSSES, TrainConfig

    assert f"(default: {TrainConfig().loss})" in text and "{" + ",".join(LOSSES) + "}" in text
    assert "--no-augment" in text and "--lr" in text and "--device" in text


def test_generated_flags_parse_every_kind_of_field() -> None:
    parser = argparse.ArgumentParser()
    names = add_dataclass_flags(parser, TrainConfig, ["epochs", "augment", "loss", "margin"])
    args = parser.parse_args(["--epochs", "3", "--no-augment", "--loss", "triplet"])
    assert given(args, names) == {"epochs": 3, "augment": False, "loss": "triplet"}
    with pytest.raises(SystemExit):
        parser.parse_args(["--loss", "contrastive"])
    model = argparse.ArgumentParser()
    add_dataclass_flags(model, ModelConfig)
    assert replace(ModelConfig(), given(model.parse_args(["--widths", "8,16"]), ["widths"])) == (
        ModelConfig(widths=(8, 16))
    )


@pytest.mark.parametrize(
    "cls",
    [ModelConfig, TrainConfig, ThresholdConfig, ExtractConfig, SearchConfig, DuplicatesConfig],
)
def test_field_help_reads_each_comment_of_the_class_and_no_other(cls: type) -> None:
    """The quick reader of comments finds what inspect's (slow) parse of the class finds."""
    import inspect

    pattern = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(?P<help>.+?)\s*$")
    expected = {}
    for line in inspect.getsource(cls).splitlines():
        if match := pattern.match(line):
            expected[match.group(1)] = match.group("help")
    expected.update(
        {f.name: f.metadata["help"] for f in dataclasses.fields(cls) if "help" in f.metadata}
    )
    assert field_help(cls) == expected
    assert set(expected) <= {f.name for f in dataclasses.fields(cls)}
