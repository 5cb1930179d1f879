"""Tests for `imgsim export --onnx` and `--runtime torch|onnx` on extract, search and serve."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from imgsim.cli.commands import build_parser, main
from imgsim.core.config import ONNX_FILE, SearchConfig
from imgsim.model.export import onnx_metadata
from imgsim.model.network import read_model_file
from imgsim.search.searcher import Searcher
from imgsim.web.app import config_from_env


@pytest.fixture
def workdir(trained_workdir: Path, tmp_path: Path) -> Path:
    """A copy of the trained workdir, so exports never touch the shared one."""
    return Path(shutil.copytree(trained_workdir, tmp_path / "work"))


def test_export_writes_onnx_beside_the_model(workdir: Path, capsys) -> None:
    model = workdir / "triplet_base_final.pt"
    assert main(["export", "--onnx", "--model", str(model)]) == 0
    assert str(workdir / ONNX_FILE) in capsys.readouterr().out
    meta = onnx_metadata((workdir / ONNX_FILE).read_bytes())
    assert meta["imgsim.model_id"] == read_model_file(model)["model_id"]


def test_export_to_a_chosen_path(workdir: Path, tmp_path: Path) -> None:
    target = tmp_path / "phone" / "net.onnx"
    (workdir / ONNX_FILE).unlink(missing_ok=True)  # extraction keeps one; export adds none
    assert (
        main(["export", "--onnx", str(target), "--model", str(workdir / "triplet_base_final.pt")])
        == 0
    )
    assert target.stat().st_size > 1000 and not (workdir / ONNX_FILE).exists()


def test_export_without_a_model_is_a_message(tmp_path: Path, capsys) -> None:
    assert main(["export", "--onnx", "--model", str(tmp_path / "none.pt")]) == 1
    assert "run training first" in capsys.readouterr().err


def test_export_needs_something_to_export(capsys) -> None:
    assert main(["export"]) == 2
    assert "--onnx [PATH] and/or --npy" in capsys.readouterr().err


def _search(workdir: Path, image: Path, runtime: str, capsys) -> list[dict]:
    args = ["search", str(image), "-k", "5", "--threshold", "0", "--json"]
    assert main([*args, "--workdir", str(workdir), "--runtime", runtime]) == 0
    return json.loads(capsys.readouterr().out)["results"]


@pytest.mark.parametrize("exported", [False, True], ids=["in-memory", "exported-file"])
def test_search_runtime_onnx_finds_what_torch_finds(
    workdir: Path, shapes_queries: Path, capsys, exported: bool
) -> None:
    if exported:
        assert main(["export", "--onnx", "--model", str(workdir / "triplet_base_final.pt")]) == 0
        capsys.readouterr()
    query = shapes_queries / "triangle_00002.png"
    with_torch = _search(workdir, query, "torch", capsys)
    with_onnx = _search(workdir, query, "onnx", capsys)
    assert [r["filename"] for r in with_onnx] == [r["filename"] for r in with_torch]
    for a, b in zip(with_onnx, with_torch, strict=True):
        assert a["similarity"] == pytest.approx(b["similarity"], abs=0.02)


def test_extract_runtime_flag(workdir: Path, shapes_dir: Path, tmp_path: Path) -> None:
    features = {}
    for runtime in ("torch", "onnx"):
        out = tmp_path / runtime
        args = ["extract", "--data", str(shapes_dir), "--output-dir", str(out), "--workers", "1"]
        args += ["--model", str(workdir / "triplet_base_final.pt"), "--runtime", runtime]
        assert main(args) == 0
        features[runtime] = np.load(out / "triplet_features.npy")
    cosine = (features["torch"] * features["onnx"]).sum(axis=1)
    assert cosine.min() >= 0.9999


def test_unknown_runtime_is_refused(capsys) -> None:
    for command in (["extract"], ["search", "x.jpg"], ["serve"]):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([*command, "--runtime", "tensorflow"])
        assert exc.value.code == 2
    assert "invalid choice: 'tensorflow'" in capsys.readouterr().err


def test_serve_reads_the_runtime_from_the_environment(workdir: Path, shapes_dir: Path) -> None:
    config = config_from_env({"IMGSIM_WORKDIR": str(workdir), "IMGSIM_RUNTIME": "torch"})
    assert config.runtime == "torch"
    searcher = Searcher.from_workdir(workdir, config=config)
    assert searcher.embedder is not None and searcher.embedder.runtime == "torch"
    assert searcher.search(shapes_dir / "circle_00001.png", 3)[0].embedding_distance == 0.0
    # Without it, the measured faster runtime: onnx.
    assert Searcher.from_workdir(workdir, config=SearchConfig()).embedder.runtime == "onnx"
