"""Every default the docs' settings tables state is the config's own default."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from imgsim.core.config import Config

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
KEY = re.compile(r"`([a-z]+)\.([a-z_]+)`")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:e-?\d+)?")
# How the tables write a zero that means "decide for me" or "off".
ZERO_WORDS = ("one per core", "off", "none", "auto")
UNITS = {"MB": 1024 * 1024, "M": 1_000_000}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def documented_rows() -> list[tuple[str, str, str, str]]:
    """(file, section, name, default cell) for each settings-table row that names one key."""
    sections = {f.name for f in fields(Config)}
    rows = []
    for doc in DOCS:
        column = None
        for line in doc.read_text(encoding="utf-8").splitlines():
            if not line.startswith("|"):
                column = None
                continue
            cells = _cells(line)
            if column is None:
                column = cells.index("default") if "default" in cells else -1
                continue
            if column < 0 or len(cells) <= column or set(cells[0]) <= set("-: "):
                continue
            keys = [k for k in KEY.findall(cells[0]) if k[0] in sections]
            defaults = cells[column].split(", ") if len(keys) > 1 else [cells[column]]
            if len(defaults) != len(keys):  # one default stated for several keys
                defaults = [cells[column]] * len(keys)
            for (section, name), default in zip(keys, defaults, strict=True):
                rows.append((doc.name, section, name, default))
    return rows


def _number(cell: str) -> float | None:
    match = NUMBER.search(cell.replace("`", ""))
    if match is None:
        return None
    value = float(match.group().replace(",", ""))
    unit = cell[match.end() :].split()
    if unit and unit[0] in UNITS:
        value *= UNITS[unit[0]]
    return value


def agrees(value: Any, cell: str) -> bool:
    """Whether a table's default cell states `value`."""
    text = cell.strip().lower()
    if isinstance(value, bool):
        return text.startswith("on" if value else "off")
    if isinstance(value, str):
        if value == "":
            return text.startswith(('""', '`""`', "none", "empty"))
        return f"`{value.lower()}`" in text or text.split()[0] == value.lower()
    if isinstance(value, tuple):
        return text.startswith(",".join(str(v) for v in value))
    if value == 0 and text.startswith(ZERO_WORDS):
        return True
    number = _number(cell)
    return number is not None and abs(number - value) <= 1e-9 + 0.005 * abs(value)


ROWS = documented_rows()


def test_the_docs_have_settings_tables() -> None:
    assert len(ROWS) >= 50


@pytest.mark.parametrize(("doc", "section", "name", "cell"), ROWS)
def test_documented_default_is_the_configs(doc: str, section: str, name: str, cell: str) -> None:
    config = getattr(Config(), section)
    assert hasattr(config, name), f"{doc}: `{section}.{name}` is not a setting"
    value = getattr(config, name)
    assert agrees(value, cell), f"{doc}: `{section}.{name}` documented as {cell!r}, is {value!r}"


@pytest.mark.parametrize(
    ("value", "cell", "expected"),
    [
        (True, "on", True),
        (True, "off", False),
        ("onnx", "`torch`", False),
        ("onnx", "`onnx`", True),
        (0, "one per core", True),
        (0, "64", False),
        (10 * 1024 * 1024, "10 MB", True),
        (1e-3, "1e-3 (Adam)", True),
        (650_000, "650,000", True),
        ((16, 32), "16,32", True),
        ("", '`""`', True),
    ],
)
def test_agrees_reads_the_tables_as_written(value: Any, cell: str, expected: bool) -> None:
    assert agrees(value, cell) is expected
