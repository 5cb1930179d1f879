"""Tests for automatic threshold tuning."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from imgsim.cli import main
from imgsim.model import load_model
from imgsim.search import Searcher, similarity_from_distance
from imgsim.threshold import best_f1_threshold, pair_distances


def test_separable_pairs_cut_between_the_groups() -> None:
    choice = best_f1_threshold(np.array([0.1, 0.2, 0.3]), np.array([0.9, 1.0, 1.2, 1.4]))
    assert choice.distance == pytest.approx(0.3)
    assert choice.f1 == choice.precision == choice.recall == 1.0
    assert choice.similarity == pytest.approx(85.0)


def test_overlapping_pairs_hand_computed() -> None:
    # Cutoffs: 0.1 → F1 .5; 0.2 → .8; 0.25 → .667; 0.3 → 6/7; 0.5 → .75; 0.6 → .667.
    choice = best_f1_threshold(np.array([0.1, 0.2, 0.3]), np.array([0.5, 0.6, 0.25]))
    assert choice.distance == pytest.approx(0.3)
    assert choice.f1 == pytest.approx(6 / 7)
    assert (choice.precision, choice.recall) == (pytest.approx(0.75), 1.0)


def test_ties_count_together() -> None:
    # At 0.5 a same and a different pair tie: the cutoff takes both or neither.
    # 0.1 → P 1, R .5, F1 .667; 0.5 (both tied pairs) → P 2/3, R 1, F1 .8; 0.9 → F1 .667.
    choice = best_f1_threshold(np.array([0.1, 0.5]), np.array([0.5, 0.9]))
    assert choice.distance == pytest.approx(0.5) and choice.f1 == pytest.approx(0.8)
    assert choice.precision == pytest.approx(2 / 3) and choice.pairs == 4


def test_needs_both_kinds_of_pairs() -> None:
    with pytest.raises(ValueError, match="both"):
        best_f1_threshold(np.array([0.1]), np.array([]))


def test_pair_distances_split_by_label() -> None:
    q = np.array([[1.0, 0.0]])
    r = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    same, different = pair_distances(q, np.array([0]), r, np.array([0, 1, 0]))
    assert np.allclose(sorted(same), [0.0, 2.0]) and np.allclose(different, [np.sqrt(2)])


def test_training_stores_a_threshold_that_search_uses(
    trained_workdir: Path, shapes_dir: Path
) -> None:
    _, info = load_model(trained_workdir / "triplet_base_final.pt")
    assert 0 < info["threshold"] <= 100
    assert info["threshold_info"]["criterion"].startswith("best F1")
    searcher = Searcher.from_workdir(trained_workdir)
    assert searcher.default_threshold == info["threshold"]
    results = searcher.search(shapes_dir / "circle_00001.png", top_k=96)
    assert results and all(r.similarity >= info["threshold"] for r in results)
    assert len(searcher.search(shapes_dir / "circle_00001.png", top_k=96, threshold=0)) == 96


def test_tune_threshold_command_rewrites_the_model(
    trained_workdir: Path, shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model = tmp_path / "m.pt"
    shutil.copy(trained_workdir / "triplet_base_final.pt", model)
    _, info = load_model(model)
    assert main(["tune-threshold", "--model", str(model), "--data", str(shapes_dir)]) == 0
    assert "Default similarity threshold" in capsys.readouterr().out
    _, new_info = load_model(model)
    assert new_info["threshold"] == pytest.approx(info["threshold"])  # same data, same split
    assert new_info["model_id"] == info["model_id"]
    assert new_info["threshold"] == pytest.approx(
        similarity_from_distance(new_info["threshold_info"]["distance"]), abs=0.01
    )


def test_the_model_file_names_its_validation_images(trained_workdir: Path) -> None:
    from imgsim.trainset import scan_collection, stratified_split

    _, info = load_model(trained_workdir / "triplet_base_final.pt")
    data = scan_collection(info["train_config"]["data_dir"], workers=1)
    _, val_rows = stratified_split(data.labels, 0.2, 0)
    assert info["validation"]["names"] == [data.name(i) for i in val_rows.tolist()]
    assert info["threshold_info"]["pairs"] == len(val_rows) * (len(val_rows) - 1) // 2


def test_tune_threshold_reads_validation_images_only(
    trained_workdir: Path, shapes_dir: Path, tmp_path: Path
) -> None:
    model = tmp_path / "m.pt"
    shutil.copy(trained_workdir / "triplet_base_final.pt", model)
    _, info = load_model(model)
    held_out = tmp_path / "held_out"  # the validation images alone: training ones are not read
    held_out.mkdir()
    for name in info["validation"]["names"]:
        shutil.copy(shapes_dir / name, held_out / name)
    assert main(["tune-threshold", "--model", str(model), "--data", str(held_out)]) == 0
    assert load_model(model)[1]["threshold"] == pytest.approx(info["threshold"])


def test_within_pairs_counts_each_pair_once() -> None:
    from imgsim.threshold import within_pairs

    emb = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    same, different = within_pairs(emb, np.array([0, 0, 1]))
    assert np.allclose(same, [5.0]) and np.allclose(sorted(different), [1.0, np.sqrt(18)])


def test_model_type_names_the_loss() -> None:
    from imgsim.model import model_type

    assert model_type({"train_config": {"loss": "triplet"}}) == "Triplet Network"
    assert model_type({"train_config": {"loss": "multisimilarity"}}) == "Multi-Similarity Network"
    assert model_type({}) == "Embedding Network"


def test_an_older_model_file_without_a_stored_split_redoes_it(
    trained_workdir: Path, shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from imgsim.model import update_model_file

    model = tmp_path / "m.pt"
    shutil.copy(trained_workdir / "triplet_base_final.pt", model)
    threshold = load_model(model)[1]["threshold"]
    update_model_file(model, {"validation": None})  # as files written before the split was kept
    assert main(["tune-threshold", "--model", str(model), "--data", str(shapes_dir)]) == 0
    assert "predates stored validation splits" in capsys.readouterr().err
    assert load_model(model)[1]["threshold"] == pytest.approx(threshold)
