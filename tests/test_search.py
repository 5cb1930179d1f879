"""Tests for search: results, threshold, similarity formula, missing parts, adding and removing."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from imgsim.core.config import NEAR_COPY_SIMILARITY
from imgsim.core.errors import NotReadyError, UnreadableImageError
from imgsim.search.editor import CollectionEditor, ImageNameError
from imgsim.search.searcher import (
    Searcher,
    results_response,
    search_image,
)


def test_similarity_is_the_cosine_and_confidence_the_calibrated_probability(trained_workdir: Path,
                                                            shapes_dir: Path) -> None:  # fmt: skip
    searcher = Searcher.from_workdir(trained_workdir)
    assert searcher.calibration is not None
    for r in searcher.search(shapes_dir / "square_00003.png", top_k=5, threshold=0):
        expected = 100 * searcher.calibration.probability(r.embedding_distance)
        assert r.confidence == pytest.approx(expected, abs=0.01)  # its own field
        d = r.embedding_distance
        assert r.similarity == pytest.approx(max(0.0, 100 * (1 - d * d / 2)), abs=0.05)


def test_a_model_file_without_calibration_shows_cosine_similarity(
    trained_workdir: Path, shapes_dir: Path, tmp_path: Path
) -> None:
    import shutil

    from imgsim.model.network import update_model_file

    work = tmp_path / "w"
    shutil.copytree(trained_workdir, work)
    update_model_file(work / "triplet_base_final.pt", {"calibration": None})
    searcher = Searcher.from_workdir(work)
    assert searcher.calibration is None
    for r in searcher.search(shapes_dir / "square_00003.png", top_k=5, threshold=0):
        d = r.embedding_distance
        assert r.similarity == pytest.approx(max(0.0, 100 * (1 - d * d / 2)), abs=0.05)


def test_an_indexed_image_finds_itself_first(trained_workdir: Path, shapes_dir: Path) -> None:
    searcher = Searcher.from_workdir(trained_workdir)
    results = searcher.search(shapes_dir / "square_00003.png", top_k=5, threshold=0)
    assert results[0].filename == "square_00003.png"
    assert results[0].embedding_distance == pytest.approx(0.0, abs=1e-3)
    # The score is the calibrated probability of the same category: highest, not always 100.
    assert results[0].similarity == max(r.similarity for r in results) > 50
    distances = [r.embedding_distance for r in results]
    assert distances == sorted(distances) and len(results) == 5
    assert [r.similarity for r in results] == sorted((r.similarity for r in results), reverse=True)
    assert all(r.category == r.filename.split("_")[0] for r in results)


def test_threshold_drops_weak_results(trained_workdir: Path, shapes_dir: Path) -> None:
    searcher = Searcher.from_workdir(trained_workdir)
    everything = searcher.search(shapes_dir / "circle_00001.png", top_k=50, threshold=0)
    cutoff = everything[len(everything) // 2].similarity
    kept = searcher.search(shapes_dir / "circle_00001.png", top_k=50, threshold=cutoff)
    assert 0 < len(kept) < len(everything) and all(r.similarity >= cutoff for r in kept)


def test_response_has_the_originals_shape(trained_workdir: Path, shapes_dir: Path) -> None:
    from imgsim.core.config import SearchConfig

    response = search_image(
        shapes_dir / "circle_00002.png", SearchConfig(workdir=str(trained_workdir)), 3, 0
    )
    assert {"results", "total_results"} <= set(response)  # the original's, and more
    assert response["total_results"] == len(response["results"]) == 3
    for item in response["results"]:
        assert set(item) == {
            "filename", "similarity", "embedding_distance", "category", "confidence"
        }  # fmt: skip
        assert isinstance(item["similarity"], float) and 0 <= item["similarity"] <= 100
    json.dumps(response)  # plain JSON types only


def test_batch_keeps_query_order(trained_workdir: Path, shapes_dir: Path) -> None:
    searcher = Searcher.from_workdir(trained_workdir)
    queries = [shapes_dir / "stripes_00004.png", shapes_dir / "triangle_00004.png"]
    results = searcher.search_batch(queries, top_k=1)
    assert [r[0].filename for r in results] == ["stripes_00004.png", "triangle_00004.png"]


def test_bytes_and_corrupt_queries(trained_workdir: Path, shapes_dir: Path) -> None:
    searcher = Searcher.from_workdir(trained_workdir)
    data = (shapes_dir / "circle_00005.png").read_bytes()
    assert searcher.search(data, top_k=1)[0].filename == "circle_00005.png"
    with pytest.raises(UnreadableImageError):
        searcher.search(b"\x89PNG\r\n\x1a\n broken", top_k=1)


def test_missing_parts_are_reported_with_the_originals_advice(tmp_path: Path) -> None:
    searcher = Searcher.from_workdir(tmp_path)
    assert not searcher.model_loaded and not searcher.embeddings_loaded
    stats = searcher.stats()
    assert stats["model_loaded"] is False and stats["total_images"] == 0
    with pytest.raises(NotReadyError, match="Model not loaded"):
        searcher.search(b"", top_k=1)


def test_missing_embeddings_only(trained_workdir: Path, tmp_path: Path) -> None:
    searcher = Searcher.from_workdir(tmp_path, model_path=trained_workdir / "triplet_base_final.pt")
    assert searcher.model_loaded and not searcher.embeddings_loaded
    with pytest.raises(NotReadyError, match="No embeddings loaded"):
        searcher.search(b"", top_k=1)


def test_stats_keys_and_image_paths(trained_workdir: Path, shapes_dir: Path) -> None:
    searcher = Searcher.from_workdir(trained_workdir)
    stats = searcher.stats()
    assert stats["total_images"] == 96 and stats["embedding_dimension"] == 16
    assert stats["categories"] == {"circle": 24, "square": 24, "stripes": 24, "triangle": 24}
    assert stats["model_type"] == "Triplet Network"
    assert (
        CollectionEditor(searcher).image_path("circle_00001.png") == shapes_dir / "circle_00001.png"
    )
    assert CollectionEditor(searcher).image_path("../circle_00001.png") is None
    assert CollectionEditor(searcher).image_path("/etc/passwd") is None


def test_results_response_of_nothing() -> None:
    assert results_response([]) == {
        "results": [], "total_results": 0, "threshold": 0.0, "hidden": 0
    }  # fmt: skip


@pytest.fixture
def writable(trained_workdir: Path, shapes_dir: Path, tmp_path: Path) -> Path:
    """A workdir of its own (model + index of 12 shape images) that tests may change."""
    import shutil

    from imgsim.core.config import ExtractConfig
    from imgsim.embed.extract import extract

    data = tmp_path / "data"
    data.mkdir()
    for shape in ("circle", "square", "triangle"):
        for path in sorted(shapes_dir.glob(f"{shape}_*"))[:4]:
            shutil.copy(path, data / path.name)
    shutil.copy(trained_workdir / "triplet_base_final.pt", tmp_path)
    model = str(tmp_path / "triplet_base_final.pt")
    config = ExtractConfig(data_dir=str(data), output_dir=str(tmp_path), model_path=model)
    extract(replace(config, workers=1), progress=False)
    return tmp_path


def test_add_images_saves_embeds_and_indexes(writable: Path, shapes_dir: Path) -> None:
    from imgsim.core.config import ExtractConfig
    from imgsim.embed.update import update_index

    searcher = Searcher.from_workdir(writable)
    new = (shapes_dir / "stripes_00001.png").read_bytes()
    assert CollectionEditor(searcher).add_images({"stripes/new_1.png": new}) == [
        "stripes/new_1.png"
    ]
    assert (writable / "data" / "stripes" / "new_1.png").read_bytes() == new
    hit = searcher.search(new, top_k=1)[0]
    assert (hit.filename, hit.category) == ("stripes/new_1.png", "stripes")
    assert hit.embedding_distance == 0
    assert searcher.stats()["total_images"] == 13
    reloaded = Searcher.from_workdir(writable)
    assert reloaded.search(new, top_k=1)[0].filename == "stripes/new_1.png"
    config = ExtractConfig(
        data_dir=str(writable / "data"), output_dir=str(writable), workers=1,
        model_path=str(writable / "triplet_base_final.pt"),
    )  # fmt: skip
    assert update_index(config, progress=False).embedded == 0  # the manifest knows the file


def test_add_replaces_an_image_of_the_same_name(writable: Path, shapes_dir: Path) -> None:
    searcher = Searcher.from_workdir(writable)
    other = (shapes_dir / "triangle_00020.png").read_bytes()
    CollectionEditor(searcher).add_images({"circle_00001.png": other})
    assert searcher.search(other, top_k=1)[0].filename == "circle_00001.png"
    assert searcher.stats()["total_images"] == 12


def test_remove_images_drops_results_and_files(writable: Path, shapes_dir: Path) -> None:
    searcher = Searcher.from_workdir(writable)
    assert CollectionEditor(searcher).remove_images(["square_00002.png", "nothing.png"]) == [
        "square_00002.png"
    ]
    assert not (writable / "data" / "square_00002.png").exists()
    for s in (searcher, Searcher.from_workdir(writable)):
        hits = s.search(shapes_dir / "square_00002.png", top_k=12, threshold=0)
        assert "square_00002.png" not in {h.filename for h in hits} and len(hits) == 11
        assert CollectionEditor(s).image_path("square_00002.png") is None


@pytest.mark.parametrize(
    "name", ["../x.png", "/etc/x.png", ".hidden.png", "a/.b/c.png", "a//b.png", "notes.txt", ""]
)
def test_add_refuses_unsafe_names(writable: Path, shapes_dir: Path, name: str) -> None:
    searcher = Searcher.from_workdir(writable)
    with pytest.raises(ImageNameError):
        CollectionEditor(searcher).add_images(
            {name: (shapes_dir / "circle_00001.png").read_bytes()}
        )
    assert searcher.stats()["total_images"] == 12


def test_add_refuses_an_unreadable_image_and_changes_nothing(writable: Path) -> None:
    searcher = Searcher.from_workdir(writable)
    with pytest.raises(UnreadableImageError):
        CollectionEditor(searcher).add_images({"ok_1.png": b"\x89PNG\r\n\x1a\n broken"})
    assert not (writable / "data" / "ok_1.png").exists()
    assert searcher.stats()["total_images"] == 12


def test_writers_and_searches_in_threads(writable: Path, shapes_dir: Path) -> None:
    import threading

    searcher = Searcher.from_workdir(writable)
    images = {f"stripes_{i:05d}.png": (shapes_dir / f"stripes_{i:05d}.png").read_bytes()
              for i in range(1, 7)}  # fmt: skip
    errors: list[BaseException] = []

    def run(job) -> None:
        try:
            job()
        except BaseException as exc:  # re-raised below: pytest does not see thread errors
            errors.append(exc)

    jobs = [
        lambda n=n, d=d: CollectionEditor(searcher).add_images({n: d}) for n, d in images.items()
    ]
    jobs += [lambda: searcher.search(shapes_dir / "circle_00001.png", top_k=5)] * 6
    jobs.append(lambda: CollectionEditor(searcher).remove_images(["circle_00002.png"]))
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert Searcher.from_workdir(writable).stats()["total_images"] == 12 + 6 - 1


def test_index_from_another_model_is_not_ready(trained_workdir: Path, tmp_path: Path) -> None:
    import numpy as np

    from imgsim.store import open_store
    from imgsim.store.exports import build_collection

    with open_store(tmp_path) as store:
        names = [f"a_{i}.png" for i in range(4)]
        build_collection(store, np.eye(4, 5, dtype=np.float32), names, ".", "x")
    model = trained_workdir / "triplet_base_final.pt"
    searcher = Searcher.from_workdir(tmp_path, model_path=model)
    with pytest.raises(NotReadyError, match="run extraction again"):
        searcher.search(b"", top_k=1)


def test_refused_upload_never_replaces_a_users_image(
    trained_workdir: Path, shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from imgsim.core.config import ExtractConfig
    from imgsim.embed.extract import extract
    from imgsim.store import ConcurrentChangeError

    data = tmp_path / "data"
    data.mkdir()
    for p in sorted(shapes_dir.glob("circle_*"))[:3] + sorted(shapes_dir.glob("square_*"))[:3]:
        shutil.copy(p, data / p.name)
    model = str(trained_workdir / "triplet_base_final.pt")
    extract(ExtractConfig(data_dir=str(data), output_dir=str(tmp_path), model_path=model,
                          workers=1), progress=False)  # fmt: skip
    searcher = Searcher.from_workdir(tmp_path, model_path=model)
    original = (data / "circle_00001.png").read_bytes()

    def refuse(*args, **kwargs):
        raise ConcurrentChangeError("changed on disk")

    monkeypatch.setattr(searcher.store, "add", refuse)
    with pytest.raises(ConcurrentChangeError):
        CollectionEditor(searcher).add_images(
            {"circle_00001.png": (shapes_dir / "square_00009.png").read_bytes()}
        )
    assert (data / "circle_00001.png").read_bytes() == original
    assert sorted(p.name for p in data.iterdir()) == sorted(
        p.name
        for p in [
            *sorted(shapes_dir.glob("circle_*"))[:3],
            *sorted(shapes_dir.glob("square_*"))[:3],
        ]
    )


def test_category_filter_similar_and_unknown_categories(
    trained_workdir: Path, shapes_dir: Path
) -> None:
    from imgsim.search.searcher import ImageNotIndexedError, UnknownCategoryError

    searcher = Searcher.from_workdir(trained_workdir)
    query = shapes_dir / "square_00003.png"
    kept = searcher.search(query, top_k=30, threshold=0, categories=["circle", "stripes"])
    assert len(kept) == 30 and {r.category for r in kept} == {"circle", "stripes"}
    # "More like this" by name: the stored vector, the same answer as the file's upload.
    by_name = searcher.similar("square_00003.png", top_k=5, threshold=0)
    uploaded = searcher.search(query, top_k=5, threshold=0)
    assert [r.filename for r in by_name] == [r.filename for r in uploaded]
    assert by_name[0].embedding_distance < 1e-3
    circles = searcher.similar("square_00003.png", top_k=5, threshold=0, categories=["circle"])
    assert {r.category for r in circles} == {"circle"} and len(circles) == 5
    with pytest.raises(UnknownCategoryError, match=r"unknown category 'hexagon'.*'circle'"):
        searcher.search(query, categories=["circle", "hexagon"])
    with pytest.raises(ImageNotIndexedError, match=r"no indexed image named 'nope_1\.png'"):
        searcher.similar("nope_1.png")


def test_settings_threshold_wins_over_the_models() -> None:
    """search.threshold (0-100) replaces the model's tuned cutoff; below 0 it defers to it."""
    tuned = {"threshold": 40.0}
    assert Searcher(None, None, tuned).default_threshold == 40.0
    assert Searcher(None, None, tuned, threshold=12.5).default_threshold == 12.5
    assert Searcher(None, None, tuned, threshold=0.0).default_threshold == 0.0


def test_the_same_picture_resized_and_reencoded_reads_99_percent(
    trained_workdir: Path, shapes_dir: Path
) -> None:
    searcher = Searcher.from_workdir(trained_workdir)
    picture = Image.open(shapes_dir / "square_00003.png").convert("RGB")
    for copy in (picture, picture.resize((64, 64), Image.Resampling.LANCZOS)):
        encoded = io.BytesIO()
        copy.save(encoded, "JPEG", quality=92)
        first = searcher.search(encoded.getvalue(), top_k=3, threshold=0)[0]
        assert first.filename == "square_00003.png" and first.similarity >= 99


def test_the_default_threshold_says_what_it_hid_and_never_hides_a_near_copy(
    trained_workdir: Path, shapes_dir: Path
) -> None:
    searcher = Searcher.from_workdir(trained_workdir)
    assert 0 < searcher.default_threshold <= NEAR_COPY_SIMILARITY
    results = searcher.search(shapes_dir / "circle_00001.png", top_k=50)
    assert results[0].filename == "circle_00001.png" and results[0].similarity == 100
    assert results.threshold == searcher.default_threshold
    assert len(results) + results.hidden == 50 and results.hidden > 0
    body = results_response(results)
    assert body["hidden"] == results.hidden and body["threshold"] == results.threshold
