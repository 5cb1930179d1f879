"""The GPU path end to end: training, resuming, embedding and searching with --device cuda.

Skipped on machines without a CUDA GPU (CI has none); run on a lent GPU machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imgsim.cli.commands import main
from tests.conftest import tiny_model_config, tiny_train_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("mixed_precision", [True, False])
def test_a_model_trained_on_the_gpu_embeds_the_same_on_the_cpu(
    shapes_dir: Path, tmp_path: Path, mixed_precision: bool
) -> None:
    from imgsim.images.data import decode_file, scan_images
    from imgsim.model.embedder import Embedder
    from imgsim.model.network import load_model
    from imgsim.train.train import train

    config = tiny_train_config(
        shapes_dir, tmp_path, device="cuda", mixed_precision=mixed_precision, epochs=4,
        steps_per_epoch=8, augment=True,
    )  # fmt: skip
    result = train(config, tiny_model_config(), progress=False)
    assert all(np.isfinite(h["loss"]) for h in result.history)
    model, info = load_model(result.model_path)  # read back on the CPU
    assert next(model.parameters()).device.type == "cpu"
    assert info["metrics"]["best_val_recall_at_1"] > 0.5  # it learned: four easy categories
    records = scan_images(shapes_dir)[:16]
    arrays = np.stack([decode_file(r.path, 32) for r in records])
    on_cpu = Embedder.from_model(model, "torch").embed(arrays)
    on_gpu = Embedder.from_model(model, "torch", device="cuda").embed(arrays)
    assert np.allclose(on_cpu, on_gpu, atol=1e-3)


class _Interrupt(Exception):
    pass


def test_a_gpu_run_resumes_from_its_checkpoint(
    shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgsim.model.network import load_model
    from imgsim.train.train import train
    from imgsim.train.trainer import Trainer

    real_train_epoch = Trainer.train_epoch

    def dying_train_epoch(self: Trainer, epoch: int) -> dict:
        if epoch == 3:  # die after the epoch-2 checkpoint
            raise _Interrupt
        return real_train_epoch(self, epoch)

    config = tiny_train_config(
        shapes_dir, tmp_path, device="cuda", epochs=4, checkpoint_every=2, steps_per_epoch=3
    )
    monkeypatch.setattr(Trainer, "train_epoch", dying_train_epoch)
    with pytest.raises(_Interrupt):
        train(config, tiny_model_config(), progress=False)
    monkeypatch.setattr(Trainer, "train_epoch", real_train_epoch)
    resumed = train(config, tiny_model_config(), resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    model, _ = load_model(resumed.model_path)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_extract_and_search_on_the_gpu_match_the_cpu(
    trained_workdir: Path, shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    image = str(shapes_dir / "circle_00001.png")
    answers = []
    for device in ("cpu", "cuda"):
        work = tmp_path / device
        work.mkdir()
        model = shutil.copy(trained_workdir / "triplet_base_final.pt", work)
        args = ["extract", "--data", str(shapes_dir), "--model", str(model), "--output-dir",
                str(work), "--device", device, "--runtime", "torch", "--workers", "1"]  # fmt: skip
        assert main(args) == 0
        capsys.readouterr()
        search = ["search", image, "-k", "5", "--json", "--workdir", str(work)]
        assert main([*search, "--device", device, "--runtime", "torch"]) == 0
        answers.append(capsys.readouterr().out)
    assert '"circle_00001.png"' in answers[1]
    assert answers[0].count("circle_") == answers[1].count("circle_")
