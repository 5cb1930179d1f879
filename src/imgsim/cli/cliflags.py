"""Command-line flags generated from config dataclasses, so --help never disagrees with them."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

_COMMENTED_FIELD = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(?P<help>.+?)\s*$")


@functools.cache
def field_help(cls: type) -> dict[str, str]:
    """Help of every field: its metadata's "help", else the comment beside it in the source."""
    helps: dict[str, str] = {}
    for line in _class_lines(cls):
        match = _COMMENTED_FIELD.match(line)
        if match:
            helps[match.group(1)] = match.group("help")
    for f in dataclasses.fields(cls):
        if "help" in f.metadata:
            helps[f.name] = f.metadata["help"]
    return helps


def _class_lines(cls: type) -> list[str]:
    """The source lines of a top-level class, from `class` to the next unindented line.

    Not inspect.getsource: it parses the whole module once per class, which every CLI start
    paid for each config dataclass (about a tenth of a second).
    """
    lines = _module_lines(cls.__module__)
    start = f"class {cls.__qualname__}"
    for i, line in enumerate(lines):
        if line.startswith(start) and line[len(start) : len(start) + 1] in ("(", ":"):
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j][:1] not in ("", " ", "\t")),
                len(lines),
            )
            return lines[i:end]
    return []  # not top-level, or no source: its flags have no comment help


@functools.cache
def _module_lines(module: str) -> list[str]:
    try:
        path = inspect.getsourcefile(sys.modules[module])
        with open(path or "", encoding="utf-8") as f:
            return f.read().splitlines()
    except (OSError, TypeError, KeyError):  # no source (a frozen app): flags keep no text
        return []


def format_default(value: Any) -> str:
    """A default as a user would type it on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if value == "":
        return '""'
    return str(value)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_dataclass_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    names: Iterable[str] | None = None,
    aliases: Mapping[str, Iterable[str]] | None = None,
) -> list[str]:
    """Add one flag per field of `cls` (or the named ones); returns the field names added.

    Every flag defaults to None so that a config file's value stands unless the flag is given;
    the help shows the dataclass default. Booleans get --x/--no-x; tuples take "a,b,c".
    `aliases` gives other spellings; the first one replaces the generated flag name.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    helps = field_help(cls)
    chosen = list(names) if names is not None else list(fields)
    for name in chosen:
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        flags = list((aliases or {}).get(name, ())) or [flag_name(name)]
        text = helps.get(name, "").replace("%", "%%")
        text = f"{text} (default: {format_default(default)})".lstrip()
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": text}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _checked(cls, name, _flag_type(default))
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
            else:
                kwargs["metavar"] = f.metadata.get("metavar") or _metavar(name, default)
        parser.add_argument(*flags, **kwargs)
    return chosen


def _metavar(name: str, default: Any) -> str:
    if isinstance(default, tuple):
        return "N,N,..."
    if isinstance(default, bool | int):
        return "N"
    if isinstance(default, float):
        return "X"
    return name.split("_")[-1].upper()


def _checked(cls: type, name: str, parse: type) -> Callable[[str], Any]:
    """Parse a flag's text, then check its range (config.LIMITS) as a config file's would be."""
    from ..core.config import range_problem

    def flag_value(text: str) -> Any:
        value = parse(text)  # ValueError: argparse says "invalid int value: 'x'"
        problem = range_problem(cls, name, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    flag_value.__name__ = parse.__name__  # argparse names the type in its message
    return flag_value


def _flag_type(default: Any) -> type:
    # Tuples stay text here: config.replace() parses "8,16" and names the setting on error.
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    return str


def given(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """Only the flags the user gave: a config file's values stand unless a flag overrides them."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
