"""Tests for imgsim.core.paths: names resolve inside the data folder or are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgsim.core.errors import ImgsimError, UnsafePathError
from imgsim.core.paths import is_inside, safe_path


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """data/ with a file, a sub-folder, and symlinks that stay inside or lead out."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "shirts").mkdir(parents=True)
    outside.mkdir()
    (data / "shirt_001.jpg").write_bytes(b"in")
    (data / "shirts" / "a.jpg").write_bytes(b"in")
    (outside / "secret.jpg").write_bytes(b"out")
    (data / "escape").symlink_to(outside, target_is_directory=True)
    (data / "alias").symlink_to(data / "shirts", target_is_directory=True)
    (data / "link_out.jpg").symlink_to(outside / "secret.jpg")
    (data / "link_in.jpg").symlink_to(data / "shirt_001.jpg")
    return data


@pytest.mark.parametrize("name", ["shirt_001.jpg", "shirts/a.jpg", "shirts/new.jpg", "new/x.png"])
def test_names_inside_resolve(layout: Path, name: str) -> None:
    path = safe_path(layout, name)
    assert path == layout.resolve() / name
    assert is_inside(layout, name)


def test_symlinks_that_stay_inside_are_allowed(layout: Path) -> None:
    assert safe_path(layout, "alias/a.jpg") == layout.resolve() / "shirts" / "a.jpg"
    # The link itself, not its target: removing it must not remove shirt_001.jpg.
    assert safe_path(layout, "link_in.jpg") == layout.resolve() / "link_in.jpg"


@pytest.mark.parametrize(
    "name",
    [
        "escape/secret.jpg",  # a folder symlink that leads out
        "escape/new.jpg",  # ... also for a file that does not exist yet (a write)
        "escape",
        "link_out.jpg",  # a file symlink that leads out
        "../outside/secret.jpg",
        "shirts/../../outside/secret.jpg",
        "/etc/passwd",
        "",
        "a\\..\\b.jpg",
        "a\x00.jpg",
    ],
)
def test_names_that_lead_out_are_refused(layout: Path, name: str) -> None:
    with pytest.raises(UnsafePathError) as info:
        safe_path(layout, name)
    assert isinstance(info.value, ImgsimError)
    assert not is_inside(layout, name)


def test_a_data_folder_that_is_itself_a_symlink_is_fine(layout: Path, tmp_path: Path) -> None:
    link = tmp_path / "data_link"
    link.symlink_to(layout, target_is_directory=True)
    assert safe_path(link, "shirts/a.jpg").read_bytes() == b"in"
