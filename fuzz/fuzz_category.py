"""Fuzz target: file name → category (`parse_category`, `category_of`) never raises, never leaks.

The property: the result is None or a non-empty, lower-case string with no path separator
('/' or '\\') once its escapes are read back (category_of escapes bytes that are not UTF-8 as
imgsim.core.paths does: "caf\\xe9"), so a category can name a folder or a label without reaching
elsewhere.

    .venv/bin/python fuzz/fuzz_category.py -max_total_time=60
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["imgsim"]):
    from imgsim.core.paths import unescape_name
    from imgsim.images.data import category_of, parse_category

SEEDS = [
    "shirt_001.jpg",
    "long_sleeve_shirt_003.png",
    "Shirt-002.JPG",
    "shirt/any.jpg",
    "a/b/c_1.webp",
    "my shirt_001.jpg",
    "..\\x_1.jpg",
    "İstanbul_1.jpg",
]


def check(name: str, category: str | None) -> None:
    """Fail loudly when a category breaks the property."""
    if category is None:
        return
    assert isinstance(category, str) and category, (name, category)
    assert category == category.lower(), (name, category)
    raw = unescape_name(category) if "\\" in category else category
    assert "/" not in raw and "\\" not in raw, (name, category)


def test_one_input(data: bytes) -> None:
    name = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(len(data))
    check(name, parse_category(name))
    check(name, category_of(name))


def main(argv: list[str]) -> None:
    if not any(not arg.startswith("-") for arg in argv[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="imgsim-fuzz-category-"))
        for i, seed in enumerate(SEEDS):
            # FuzzedDataProvider's first byte picks the string's width: 0 = one byte a char.
            (corpus / f"seed{i}").write_bytes(b"\0" + seed.encode("latin-1", "replace"))
        argv = [*argv, str(corpus)]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
