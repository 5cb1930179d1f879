"""Tests for the `imgsim` command and the original's root scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgsim.cli.commands import main

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )


def test_help_lists_subcommands_without_heavy_imports() -> None:
    code = (
        "import sys; from imgsim.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass\n"
    )
    code += "print('HEAVY' if {'torch', 'faiss', 'PIL'} & set(sys.modules) else 'LIGHT')"
    out = _run("-c", code).stdout
    for command in ("stats", "rename", "train", "extract", "search", "serve", "demo"):
        assert command in out
    assert out.strip().endswith("LIGHT")


def test_stats_json(shapes_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["stats", "--data", str(shapes_dir), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["categories"]["circle"] == 24 and stats["total_images"] == 96


def test_stats_without_categories_explains(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "photo.jpg").write_bytes(b"x")
    assert main(["stats", "--data", str(tmp_path)]) == 1
    assert "No categories detected" in capsys.readouterr().err


def test_search_json_shape(
    trained_workdir: Path, shapes_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["search", str(shapes_dir / "circle_00003.png"), "-k", "4", "--threshold", "0", "--json"]
    assert main([*args, "--workdir", str(trained_workdir)]) == 0
    response = json.loads(capsys.readouterr().out)
    assert response["total_results"] == 4 and response["results"][0]["embedding_distance"] == 0.0
    assert list(response["results"][0]) == [
        "filename",
        "similarity",
        "embedding_distance",
        "category",
        "confidence",
    ]


def test_search_says_what_the_threshold_hid(
    trained_workdir: Path, shapes_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["search", str(shapes_dir / "circle_00003.png"), "-k", "60"]
    assert main([*args, "--workdir", str(trained_workdir)]) == 0
    out = capsys.readouterr().out
    assert " 100.00%  same category" in out.splitlines()[0]
    assert "below the minimum similarity of" in out and "--threshold 0" in out


def test_search_in_categories(
    trained_workdir: Path, shapes_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    query = str(shapes_dir / "circle_00003.png")
    args = ["search", query, "-k", "30", "--threshold", "0", "--workdir", str(trained_workdir)]
    assert main([*args, "--json", "--category", "square", "--category", "stripes"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    # 30 of those two categories (48 images), not the nearest 30 cut down to them.
    assert len(results) == 30 and {r["category"] for r in results} == {"square", "stripes"}
    assert main([*args, "--category", "hexagon"]) == 1
    assert "unknown category 'hexagon': the collection has 'circle'" in capsys.readouterr().err


def test_search_takes_top_k_from_the_config_file_unless_k_is_given(
    trained_workdir: Path, shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[search]\ntop_k = 3\nworkdir = "{trained_workdir}"\n')
    args = ["--config", str(settings), "search", str(shapes_dir / "circle_00003.png"),
            "--threshold", "0", "--json"]  # fmt: skip
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["total_results"] == 3
    assert main([*args, "-k", "5"]) == 0
    assert json.loads(capsys.readouterr().out)["total_results"] == 5


def test_search_errors_are_messages(
    trained_workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    assert main(["search", str(bad), "--workdir", str(trained_workdir)]) == 1
    assert "not a readable image" in capsys.readouterr().err
    assert main(["search", str(bad), "--workdir", str(tmp_path)]) == 1
    assert "Model not loaded" in capsys.readouterr().err


def test_train_with_config_file_and_flags(shapes_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        "[model]\nimage_size = 32\nwidths = [8]\nblocks = [1]\nhead_hidden = 16\n"
        "embedding_dim = 8\n[train]\nepochs = 1\nsteps_per_epoch = 1\nworkers = 1\n"
    )
    out = tmp_path / "out"
    argv = [
        "-q",
        "train",
        "--config",
        str(cfg),
        "--data",
        str(shapes_dir),
        "--output-dir",
        str(out),
        "--margin",
        "0.3",
        "--augment",
    ]
    assert main(argv) == 1  # the default normalized-softmax loss has no margin: refused
    assert main([*argv, "--loss", "triplet"]) == 0
    saved = json.loads((out / "training_config.json").read_text())
    assert saved["train"]["margin"] == 0.3 and saved["train"]["epochs"] == 1
    assert saved["train"]["augment"] is True and saved["model"]["embedding_dim"] == 8
    assert (
        main(
            [
                "-q",
                "extract",
                "--data",
                str(shapes_dir),
                "--output-dir",
                str(out),
                "--model",
                str(out / "triplet_base_final.pt"),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert (out / "triplet_features.npy").is_file()


def test_bad_config_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("train:\n  epoks: 3\n")
    assert main(["train", "--config", str(cfg)]) == 1
    assert "unknown setting 'epoks'" in capsys.readouterr().err


def test_original_scripts_run_the_workflow(shapes_dir: Path, tmp_path: Path) -> None:
    """rename → train → extract from the repo root scripts, in a copy of the original's layout."""
    data = tmp_path / "static" / "dataset"
    data.mkdir(parents=True)
    for i, p in enumerate(
        sorted(shapes_dir.glob("circle_*"))[:6] + sorted(shapes_dir.glob("square_*"))[:6]
    ):
        (data / f"IMG_{i:04d}.png").write_bytes(p.read_bytes())
    renamed = _run(
        str(ROOT / "rename_images.py"), "--categories", "circle,square", "--yes", cwd=tmp_path
    )
    assert renamed.returncode == 0, renamed.stderr
    assert (data / "circle_001.png").is_file() and (data / "square_006.png").is_file()
    small = [
        "--image-size",
        "32",
        "--widths",
        "8",
        "--blocks",
        "1",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "1",
        "--workers",
        "1",
    ]
    trained = _run(str(ROOT / "train_triplet.py"), *small, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    extracted = _run(str(ROOT / "extract_features_triplet.py"), "--workers", "1", cwd=tmp_path)
    assert extracted.returncode == 0, extracted.stderr
    assert (tmp_path / "triplet_features.npy").is_file()


def test_original_messages_on_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "static" / "dataset").mkdir(parents=True)
    result = _run(str(ROOT / "train_triplet.py"), cwd=tmp_path)
    assert result.returncode == 1 and "No categories detected" in result.stderr
    result = _run(str(ROOT / "extract_features_triplet.py"), cwd=tmp_path)
    assert result.returncode == 1 and "Model not loaded" in result.stderr


def test_demo_runs_without_serving(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(
            [
                "-q",
                "demo",
                "--dir",
                str(tmp_path),
                "--per-class",
                "6",
                "--epochs",
                "1",
                "--no-serve",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Query " in out and "%" in out
    assert (tmp_path / "triplet_base_final.pt").is_file()


def test_search_threshold_from_the_config_file_unless_given(
    trained_workdir: Path, shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """[search] threshold is the cutoff when --threshold is not given (it was never read)."""
    query = ["search", str(shapes_dir / "circle_00003.png"), "-k", "40", "--json"]
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[search]\nthreshold = 100.0\nworkdir = "{trained_workdir}"\n')
    assert main(["--config", str(settings), *query]) == 0
    # Only an identical image could reach 100 %: the query itself, at most.
    assert json.loads(capsys.readouterr().out)["total_results"] <= 1
    assert main(["--config", str(settings), *query, "--threshold", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["total_results"] == 40
