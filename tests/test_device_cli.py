"""--device on the inference commands: cpu and auto work here, a missing GPU is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgsim.cli.commands import main


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_search_runs_on_the_cpu_or_what_auto_finds(
    trained_workdir: Path, shapes_dir: Path, device: str, capsys
) -> None:
    image = str(shapes_dir / "circle_00001.png")
    args = ["search", image, "-k", "1", "--json", "--workdir", str(trained_workdir)]
    assert main([*args, "--device", device]) == 0
    assert '"circle_00001.png"' in capsys.readouterr().out


@pytest.mark.parametrize("command", ["search", "extract", "index", "train"])
def test_a_gpu_this_machine_lacks_is_named(
    trained_workdir: Path, shapes_dir: Path, tmp_path: Path, command: str, capsys
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    model, image = (
        str(trained_workdir / "triplet_base_final.pt"),
        str(shapes_dir / "circle_00001.png"),
    )
    args = {
        "search": ["search", image, "--workdir", str(trained_workdir)],
        "extract": ["extract", "--data", str(shapes_dir), "--model", model,
                    "--output-dir", str(tmp_path)],
        "index": ["index", "--data", str(shapes_dir), "--model", model, "--workdir", str(tmp_path)],
        "train": ["train", "--data", str(shapes_dir), "--output-dir", str(tmp_path / "run"),
                  "--epochs", "1", "--workers", "1"],
    }[command]  # fmt: skip
    assert main([*args, "--device", "cuda"]) == 1
    assert "--device cuda: no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "triplet_manifest.sqlite").exists()  # nothing was written
    assert not (tmp_path / "run").exists()


def test_auto_on_a_gpu_without_onnxruntime_gpu_searches_on_the_cpu(
    trained_workdir: Path, shapes_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import torch

    from imgsim.model import device as device_mod

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU torch can use...
    monkeypatch.setattr(device_mod, "_onnx_has_cuda", lambda: False)  # ...the CPU onnxruntime
    image = str(shapes_dir / "circle_00001.png")
    args = ["search", image, "-k", "1", "--json", "--workdir", str(trained_workdir)]
    assert main([*args, "--runtime", "onnx", "--device", "auto"]) == 0
    assert '"circle_00001.png"' in capsys.readouterr().out


def test_a_gpu_with_the_ray_engine_is_refused_not_ignored(
    trained_workdir: Path, shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    model = str(trained_workdir / "triplet_base_final.pt")
    args = ["index", "--data", str(shapes_dir), "--model", model, "--workdir", str(tmp_path)]
    assert main([*args, "--engine", "ray", "--device", "cuda"]) == 1
    assert "--engine ray embeds on the Ray actors' CPUs" in capsys.readouterr().err
    assert not (tmp_path / "triplet_manifest.sqlite").exists()
