"""Fast start: the ONNX export is kept beside the model file, and search and a no-op update
never import torch (issue 26)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imgsim.core.config import MODEL_FILE, ONNX_FILE
from imgsim.core.errors import ModelNotLoadedError
from imgsim.model.modelfile import read_model_meta
from imgsim.model.network import read_model_file

SRC = Path(__file__).resolve().parents[1] / "src"

# Runs the CLI in a fresh interpreter and says whether torch was imported.
PROBE = """
import sys
from imgsim.cli.commands import main
code = main(sys.argv[1:])
print("TORCH" if "torch" in sys.modules else "NO-TORCH", code)
"""


@pytest.fixture
def workdir(trained_workdir: Path, shapes_dir: Path, tmp_path: Path) -> Path:
    """A copy of the trained workdir and its images, so nothing touches the shared one."""
    shutil.copytree(shapes_dir, tmp_path / "data")
    return Path(shutil.copytree(trained_workdir, tmp_path / "work"))


def _cli(*args: str) -> tuple[str, str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1], out.stdout


def test_the_header_is_read_without_torch_and_matches_torch(trained_workdir: Path) -> None:
    path = trained_workdir / MODEL_FILE
    meta = read_model_meta(path)
    full = read_model_file(path)
    assert meta == {k: v for k, v in full.items() if k != "state_dict"}
    assert meta["model_id"] and meta["categories"]


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.pt").write_bytes(b"not a model")
    with pytest.raises(ModelNotLoadedError):
        read_model_meta(tmp_path / "m.pt")
    with pytest.raises(ModelNotLoadedError, match="not found"):
        read_model_meta(tmp_path / "none.pt")


def test_search_keeps_the_export_then_runs_without_torch(workdir: Path) -> None:
    (workdir / ONNX_FILE).unlink(missing_ok=True)
    query = str(workdir.parent / "data" / "circle_00001.png")
    first, _ = _cli("-q", "search", query, "--workdir", str(workdir), "--json")
    assert first == "TORCH 0" and (workdir / ONNX_FILE).is_file()  # exported once, kept
    second, out = _cli("-q", "search", query, "--workdir", str(workdir), "--json")
    assert second == "NO-TORCH 0"
    results = json.loads(out[: out.rindex("}") + 1])["results"]
    assert results[0]["filename"] == "circle_00001.png"


def test_an_export_of_another_model_is_replaced(workdir: Path) -> None:
    from imgsim.model.export import onnx_metadata

    query = str(workdir.parent / "data" / "circle_00001.png")
    _cli("-q", "search", query, "--workdir", str(workdir))
    model_id = read_model_meta(workdir / MODEL_FILE)["model_id"]
    kept = (workdir / ONNX_FILE).read_bytes()
    # Same length, so still a valid file: only its model id says it is another model's.
    (workdir / ONNX_FILE).write_bytes(kept.replace(model_id.encode(), b"0" * 16))
    probe, _ = _cli("-q", "search", query, "--workdir", str(workdir))
    assert probe == "TORCH 0"
    assert onnx_metadata((workdir / ONNX_FILE).read_bytes())["imgsim.model_id"] == model_id


def test_a_no_op_update_imports_no_torch(workdir: Path) -> None:
    args = ("-q", "index", "--update", "--data", str(workdir.parent / "data"))
    _cli(*args, "--workdir", str(workdir))  # the export exists after this one
    meta = (workdir / "triplet_index.json").stat().st_mtime_ns
    probe, out = _cli(*args, "--workdir", str(workdir))
    assert probe == "NO-TORCH 0" and "0 embedded" in out
    assert (workdir / "triplet_index.json").stat().st_mtime_ns == meta  # nothing rewritten
