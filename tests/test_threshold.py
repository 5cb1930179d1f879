"""Tests for automatic threshold tuning."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from imgsim.cli.commands import main
from imgsim.core.config import NEAR_COPY_SIMILARITY
from imgsim.model.calibration import cosine_percent, fit, similarity_percent, tuned_threshold
from imgsim.model.network import load_model
from imgsim.search.searcher import Searcher
from imgsim.train.threshold import choose_threshold, precision_cutoff


def test_precision_cutoff_keeps_the_largest_prefix_that_meets_the_target() -> None:
    scores = np.array([90.0, 80.0, 70.0, 60.0, 50.0])
    right = np.array([True, True, False, True, False])
    # Prefix precisions 1, 1, .67, .75, .6: the target .7 is met up to 4 results.
    assert precision_cutoff(scores, right, 0.7) == 4
    assert precision_cutoff(scores, right, 1.0) == 2
    # Unreachable: the best prefix, at least one result.
    assert precision_cutoff(scores, np.array([False] * 5), 0.9) == 1


def _clusters(n: int, spread: float, seed: int = 0, dims: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(dims)[:4]
    labels = np.arange(n) % 4
    emb = centres[labels] + rng.normal(0, spread, (n, dims))
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), labels


def similarity_shown(distance: np.ndarray) -> np.ndarray:
    """The similarity search shows and compares with the threshold: the cosine in percent."""
    return np.vectorize(lambda x: round(cosine_percent(x), 2))(distance)


def test_threshold_keeps_top_k_results_at_the_target_precision() -> None:
    # 8 dimensions: the cutoff that reaches 90 % lies below the near-copy cap (75 %).
    queries, q_labels = _clusters(200, 0.35, seed=1, dims=8)
    refs, r_labels = _clusters(400, 0.35, seed=2, dims=8)
    tuning = choose_threshold(queries, q_labels, refs, r_labels, target=0.9, top_k=10)
    assert tuning is not None
    choice = tuning.choice
    assert choice.similarity < NEAR_COPY_SIMILARITY and choice.criterion.endswith("90% right")
    assert tuned_threshold(choice.distance) == choice.similarity  # what search will use
    # (the score is floored to 0.01 %: results tied with the last kept one come along)
    assert choice.precision >= 0.89 and 0 < choice.kept < 1
    # Checked independently: the top-10 results scoring at least the threshold are 90 % right.
    d = np.linalg.norm(queries[:, None] - refs[None], axis=2)
    top = np.argsort(d, axis=1)[:, :10]
    scores = similarity_shown(np.take_along_axis(d, top, 1))  # search's scale
    right = r_labels[top] == q_labels[:, None]
    shown = scores >= choice.similarity
    assert right[shown].mean() >= 0.89 and shown.mean() == pytest.approx(choice.kept, abs=0.01)


def test_the_threshold_is_never_above_a_near_copys_similarity() -> None:
    # 4 dimensions: 90 % right needs a cosine above 90 %, which would hide near copies.
    queries, q_labels = _clusters(200, 0.4, seed=1)
    refs, r_labels = _clusters(400, 0.4, seed=2)
    tuning = choose_threshold(queries, q_labels, refs, r_labels, target=0.9, top_k=10)
    assert tuning is not None
    choice = tuning.choice
    assert choice.similarity == NEAR_COPY_SIMILARITY == tuned_threshold(choice.distance)
    assert choice.criterion.endswith(
        f"lowered to {NEAR_COPY_SIMILARITY:.0f}% so that a near copy always shows"
    )
    # What it keeps is said as search keeps it: at the cap, less precise than asked.
    d = np.linalg.norm(queries[:, None] - refs[None], axis=2)
    top = np.argsort(d, axis=1)[:, :10]
    shown = similarity_shown(np.take_along_axis(d, top, 1)) >= choice.similarity
    right = r_labels[top] == q_labels[:, None]
    assert shown.mean() == pytest.approx(choice.kept, abs=0.01)
    assert right[shown].mean() == pytest.approx(choice.precision, abs=0.01)
    assert choice.precision < 0.9


def test_separable_clusters_keep_every_result() -> None:
    queries, q_labels = _clusters(100, 0.05)
    tuning = choose_threshold(queries, q_labels, target=0.9, top_k=5)
    assert tuning is not None and tuning.choice.kept == 1.0 and tuning.choice.precision == 1.0


def test_calibrated_scores_match_how_often_pairs_share_a_category() -> None:
    queries, q_labels = _clusters(300, 0.3, seed=3)
    refs, r_labels = _clusters(300, 0.3, seed=4)
    tuning = choose_threshold(queries, q_labels, refs, r_labels)
    assert tuning is not None
    cal = tuning.calibration
    assert cal.expected_error < 0.05 and cal.brier < 0.2
    # Orthogonal embeddings (another category's centre) score near 0, identical ones high.
    assert cal.probability(np.sqrt(2.0)) < 0.1 < 0.9 < cal.probability(0.0)
    predicted = cal.probability(tuning.distances)
    assert predicted.mean() == pytest.approx(tuning.same.mean(), abs=0.02)


def test_no_calibration_without_both_kinds_of_pairs() -> None:
    assert fit(np.array([0.1, 0.2] * 20), np.array([True, True] * 20)) is None
    emb = np.eye(3)
    assert choose_threshold(emb, np.array([0, 0, 0])) is None


def test_cosine_similarity_without_a_calibration() -> None:
    assert similarity_percent(0.0, None) == 100.0
    assert similarity_percent(np.sqrt(2.0), None) == pytest.approx(0.0, abs=1e-9)
    assert similarity_percent(1.0, None) == pytest.approx(50.0)
    assert similarity_percent(2.0, None) == 0.0


def test_training_stores_a_threshold_that_search_uses(
    trained_workdir: Path, shapes_dir: Path
) -> None:
    _, info = load_model(trained_workdir / "triplet_base_final.pt")
    assert 0 < info["threshold"] <= 100
    assert info["threshold_info"]["criterion"].startswith("lowest score at which the top-10")
    assert info["calibration"]["method"] == "platt"
    assert (trained_workdir / "similarity_calibration.png").stat().st_size > 0
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
    assert new_info["calibration"] == pytest.approx(info["calibration"])


def test_the_model_file_names_its_validation_images(trained_workdir: Path) -> None:
    from imgsim.train.trainset import scan_collection, stratified_split

    _, info = load_model(trained_workdir / "triplet_base_final.pt")
    data = scan_collection(info["train_config"]["data_dir"], workers=1)
    _, val_rows = stratified_split(data.labels, 0.2, 0)
    assert info["validation"]["names"] == [data.name(i) for i in val_rows.tolist()]
    train_rows = len(data) - len(val_rows)
    assert info["threshold_info"]["pairs"] == len(val_rows) * train_rows


def test_tune_threshold_needs_images_besides_the_held_out_ones(
    trained_workdir: Path, shapes_dir: Path, tmp_path: Path
) -> None:
    model = tmp_path / "m.pt"
    shutil.copy(trained_workdir / "triplet_base_final.pt", model)
    _, info = load_model(model)
    held_out = tmp_path / "held_out"  # the validation images alone: nothing to search among
    held_out.mkdir()
    for name in info["validation"]["names"]:
        shutil.copy(shapes_dir / name, held_out / name)
    assert main(["tune-threshold", "--model", str(model), "--data", str(held_out)]) == 1
    assert load_model(model)[1]["threshold"] == info["threshold"]


def test_model_type_names_the_loss() -> None:
    from imgsim.model.network import model_type

    assert model_type({"train_config": {"loss": "triplet"}}) == "Triplet Network"
    assert model_type({"train_config": {"loss": "multisimilarity"}}) == "Multi-Similarity Network"
    assert model_type({"train_config": {"loss": "proxyanchor"}}) == "Proxy-Anchor Network"
    assert model_type({"train_config": {"loss": "arcface"}}) == "ArcFace Network"
    assert model_type({}) == "Embedding Network"


def test_an_older_model_file_without_a_stored_split_redoes_it(
    trained_workdir: Path, shapes_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from imgsim.model.network import update_model_file

    model = tmp_path / "m.pt"
    shutil.copy(trained_workdir / "triplet_base_final.pt", model)
    threshold = load_model(model)[1]["threshold"]
    update_model_file(model, {"validation": None})  # as files written before the split was kept
    assert main(["tune-threshold", "--model", str(model), "--data", str(shapes_dir)]) == 0
    assert "predates stored validation splits" in capsys.readouterr().err
    assert load_model(model)[1]["threshold"] == pytest.approx(threshold)


def test_a_weak_model_still_shows_half_the_searches_their_best_result() -> None:
    # Barely separated clusters: 90 % precision needs a cutoff above most queries' best score.
    queries, q_labels = _clusters(200, 1.5, seed=5)
    refs, r_labels = _clusters(400, 1.5, seed=6)
    tuning = choose_threshold(queries, q_labels, refs, r_labels, target=0.9, top_k=10)
    assert tuning is not None
    d = np.linalg.norm(queries[:, None] - refs[None], axis=2)
    best = similarity_shown(d.min(axis=1))
    assert (best >= tuning.choice.similarity).mean() >= 0.5
