"""What a work folder remembers: the image folder, model file and store its commands named."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from .config import INDEX_META_FILE, TRAIN_CONFIG_FILE, WORKFOLDER_FILE
from .fileio import write_text_atomic

log = logging.getLogger("imgsim")

REMEMBERED = ("data_dir", "model_path", "store")
_LABELS = {"data_dir": "image folder", "model_path": "model file", "store": "store"}


def recall(workdir: str | os.PathLike[str]) -> dict[str, str]:
    """The settings `workdir` remembers; {} where it remembers none (or its file is unreadable)."""
    values = _read_json(Path(workdir) / WORKFOLDER_FILE)
    return {k: v for k, v in values.items() if k in REMEMBERED and isinstance(v, str) and v}


def remember(workdir: str | os.PathLike[str], values: Mapping[str, str]) -> None:
    """Record settings a command named (paths made absolute, so any cwd finds them)."""
    new = {k: _absolute(k, v) for k, v in values.items() if k in REMEMBERED and v}
    old = recall(workdir)
    if not new or {**old, **new} == old:
        return
    text = json.dumps({**old, **new}, indent=2, ensure_ascii=False) + "\n"
    write_text_atomic(Path(workdir) / WORKFOLDER_FILE, text)


def settle(
    workdir: str | os.PathLike[str],
    named: Mapping[str, str],
    wanted: Iterable[str],
    record: bool = True,
) -> dict[str, str]:
    """The remembered values of the `wanted` settings the user did not name.

    With `record` (commands that write into the workdir), the named ones are remembered; a
    read-only command (stats, search) leaves no file behind. A work folder made before it
    remembered anything still knows its image folder from its index or training record.
    Says in one line what it took from memory.
    """
    usable = {k: v for k, v in named.items() if k != "data_dir" or Path(v).is_dir()}
    if "model_path" in usable and not Path(usable["model_path"]).is_file():
        del usable["model_path"]  # a typo must not become the folder's model
    if record:
        remember(workdir, usable)
    known = {**_older_records(workdir), **recall(workdir)}
    found = {k: known[k] for k in wanted if k not in named and k in known}
    if found:
        said = ", ".join(f"{_LABELS[k]} {v}" for k, v in found.items())
        log.info("Using %s (remembered by %s)", said, Path(workdir) / WORKFOLDER_FILE)
    return found


def _older_records(workdir: str | os.PathLike[str]) -> dict[str, str]:
    """The image folder an index or a training run in `workdir` recorded."""
    index = _read_json(Path(workdir) / INDEX_META_FILE).get("data_dir")
    trained = _read_json(Path(workdir) / TRAIN_CONFIG_FILE).get("train", {})
    folder = index or (trained.get("data_dir") if isinstance(trained, dict) else None)
    return {"data_dir": folder} if isinstance(folder, str) and Path(folder).is_dir() else {}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("Ignoring %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _absolute(key: str, value: str) -> str:
    # A store is an address (milvus://…), not a path.
    return value if key == "store" else os.path.abspath(value)
