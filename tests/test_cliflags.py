"""Tests for flags generated from the config dataclasses: --help shows the real defaults."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

from imgsim.cli import build_parser
from imgsim.cliflags import add_dataclass_flags, field_help, given
from imgsim.config import ModelConfig, ThresholdConfig, TrainConfig, replace

_DEFAULT = re.compile(r"\(default: (?P<value>[^)]*)\)$")


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize(
    ("command", "classes"),
    [("train", (TrainConfig, ModelConfig)), ("tune-threshold", (ThresholdConfig,))],
)
def test_every_help_default_is_the_config_default(command: str, classes: tuple) -> None:
    parser = _subparser(command)
    by_dest = {a.dest: a for a in parser._actions}
    for cls in classes:
        defaults = cls()
        for f in dataclasses.fields(cls):
            action = by_dest[f.name]
            match = _DEFAULT.search(action.help.replace("%%", "%"))
            assert match, f"{f.name}: no default in {action.help!r}"
            parsed = replace(defaults, {f.name: match.group("value").strip('"')})
            assert getattr(parsed, f.name) == getattr(defaults, f.name), f.name
            assert action.default is None  # a config file's value stands unless the flag is given
            assert field_help(cls).get(f.name), f"{f.name} has no help text"


def test_help_names_the_default_loss_and_its_choices() -> None:
    text = " ".join(_subparser("train").format_help().split())
    from imgsim.config import LOSSES, TrainConfig

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
