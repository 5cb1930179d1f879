"""Tests for the Embedder (torch and onnx give the same embeddings) and the BatchingEmbedder."""

from __future__ import annotations

import pickle
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from imgsim.core.config import ONNX_FILE, SearchConfig
from imgsim.core.errors import ConfigError
from imgsim.images.data import decode_file, scan_images
from imgsim.model.embedder import BatchingEmbedder, Embedder, search_embedder
from imgsim.model.export import export_onnx, onnx_metadata
from imgsim.model.network import load_model


@pytest.fixture(scope="module")
def model_and_id(trained_workdir: Path):
    model, info = load_model(trained_workdir / "triplet_base_final.pt")
    return model, info["model_id"]


def _folder_arrays(folder: Path, size: int) -> np.ndarray:
    return np.stack([decode_file(r.path, size) for r in scan_images(folder)])


def test_onnx_gives_the_same_embeddings_for_every_image(
    model_and_id, shapes_dir: Path, shapes_queries: Path
) -> None:
    model, mid = model_and_id
    size = model.config.image_size
    arrays = np.concatenate(
        [_folder_arrays(shapes_dir, size), _folder_arrays(shapes_queries, size)]
    )
    torch_out = Embedder.from_model(model, "torch").embed(arrays)
    onnx_out = Embedder.from_model(model, "onnx", model_id=mid).embed(arrays)
    assert torch_out.shape == onnx_out.shape == (len(arrays), model.config.embedding_dim)
    cosine = (torch_out * onnx_out).sum(axis=1) / (
        np.linalg.norm(torch_out, axis=1) * np.linalg.norm(onnx_out, axis=1)
    )
    assert cosine.min() >= 0.9999, cosine.min()
    # Batch 1 through the dynamic batch axis gives the same as inside a batch.
    one = Embedder.from_model(model, "onnx").embed(arrays[3:4])
    assert np.allclose(one, onnx_out[3:4], atol=1e-5)


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_a_spec_rebuilds_the_same_embedder_in_another_process(model_and_id, runtime: str) -> None:
    model, _ = model_and_id
    size = model.config.image_size
    arrays = np.random.default_rng(0).integers(0, 256, (4, 3, size, size), dtype=np.uint8)
    embedder = Embedder.from_model(model, runtime)
    rebuilt = Embedder.from_spec(pickle.loads(pickle.dumps(embedder.spec())), threads=1)
    assert rebuilt.runtime == runtime and rebuilt.image_size == size
    assert np.allclose(rebuilt.embed(arrays), embedder.embed(arrays), atol=1e-6)


def test_bad_runtime_and_bad_shapes_are_refused(model_and_id) -> None:
    model, _ = model_and_id
    with pytest.raises(ConfigError, match="unknown runtime 'tensorflow'"):
        Embedder.from_model(model, "tensorflow")
    with pytest.raises(ValueError, match="expected N×3×32×32"):
        Embedder.from_model(model).embed(np.zeros((1, 3, 16, 16), dtype=np.uint8))


def test_export_writes_a_self_describing_file_that_onnx_uses(
    trained_workdir: Path, model_and_id, tmp_path: Path
) -> None:
    model, mid = model_and_id
    out = export_onnx(trained_workdir / "triplet_base_final.pt", tmp_path / "net.onnx")
    meta = onnx_metadata(out.read_bytes())
    assert meta["imgsim.model_id"] == mid and meta["imgsim.image_size"] == "32"
    # Beside the model file it is used as it is; one from other weights is not.
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / ONNX_FILE).write_bytes(out.read_bytes())
    embedder = Embedder.from_model(model, "onnx", model_id=mid, model_path=workdir / "m.pt")
    assert embedder.spec().payload == out.read_bytes()
    other = Embedder.from_model(model, "onnx", model_id="0" * 16, model_path=workdir / "m.pt")
    assert onnx_metadata(other.spec().payload)["imgsim.model_id"] == "0" * 16


def test_search_embedder_batches_unless_told_not_to(model_and_id) -> None:
    model, _ = model_and_id
    assert isinstance(search_embedder(model, SearchConfig()), BatchingEmbedder)
    plain = search_embedder(model, SearchConfig(batch_max_size=1, runtime="onnx"))
    assert isinstance(plain, Embedder) and plain.runtime == "onnx"


class _Recorder:
    """A stand-in network: embedding = the first pixel of each image; records pass sizes."""

    image_size = 2

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.sizes: list[int] = []

    def embed(self, arrays: np.ndarray) -> np.ndarray:
        self.sizes.append(len(arrays))
        time.sleep(self.delay)
        if (arrays == 255).any():
            raise RuntimeError("poisoned request")
        return arrays[:, :1, 0, 0].astype(np.float32)


def _images(*values: int) -> np.ndarray:
    return np.stack([np.full((3, 2, 2), v, dtype=np.uint8) for v in values])


def _concurrently(fn, count: int) -> list:
    results: list = [None] * count

    def run(i: int) -> None:
        try:
            results[i] = fn(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return results


def test_every_concurrent_request_gets_its_own_results_in_order() -> None:
    recorder = _Recorder(delay=0.01)
    batcher = BatchingEmbedder(recorder, max_size=8, max_wait_ms=5)

    def request(i: int) -> np.ndarray:
        with batcher.pending():
            values = (i, (i + 100) % 250) if i % 3 == 0 else (i,)
            return batcher.embed(_images(*values))

    results = _concurrently(request, 40)
    for i, out in enumerate(results):
        expected = [i, (i + 100) % 250] if i % 3 == 0 else [i]
        assert out[:, 0].tolist() == expected
    assert sum(recorder.sizes) == 40 + 14
    assert max(recorder.sizes) <= 8 and max(recorder.sizes) > 1  # batched, within the limit
    batcher.close()


def test_an_error_stays_with_its_own_request() -> None:
    recorder = _Recorder(delay=0.01)
    batcher = BatchingEmbedder(recorder, max_size=16, max_wait_ms=5)
    results = _concurrently(lambda i: batcher.embed(_images(255 if i == 5 else i)), 12)
    assert isinstance(results[5], RuntimeError) and "poisoned" in str(results[5])
    for i, out in enumerate(results):
        if i != 5:
            assert out[:, 0].tolist() == [i]
    batcher.close()


def test_a_request_larger_than_the_maximum_runs_alone() -> None:
    recorder = _Recorder()
    batcher = BatchingEmbedder(recorder, max_size=4)
    out = batcher.embed(_images(*range(10)))
    assert out[:, 0].tolist() == list(range(10)) and recorder.sizes == [10]
    batcher.close()


def test_a_lone_request_never_waits() -> None:
    batcher = BatchingEmbedder(_Recorder(), max_size=8, max_wait_ms=2000)
    start = time.monotonic()
    with batcher.pending():
        batcher.embed(_images(1))
    assert time.monotonic() - start < 1.0
    batcher.close()


def test_a_pass_waits_for_a_decoding_request_but_no_longer_than_the_maximum() -> None:
    recorder = _Recorder()
    batcher = BatchingEmbedder(recorder, max_size=8, max_wait_ms=300)
    release = threading.Event()

    def slow_decoder() -> None:
        with batcher.pending():
            release.wait(5)
            batcher.embed(_images(2))

    helper = threading.Thread(target=slow_decoder)
    helper.start()
    time.sleep(0.05)
    start = time.monotonic()
    batcher.embed(_images(1))  # waits for the announced request, up to 300 ms
    waited = time.monotonic() - start
    assert 0.25 <= waited < 2.0, waited
    release.set()
    helper.join(5)
    assert recorder.sizes == [1, 1]

    # Announced and arriving within the wait: one pass for both.
    recorder.sizes.clear()
    release.clear()
    helper = threading.Thread(target=slow_decoder)
    helper.start()
    time.sleep(0.05)
    threading.Timer(0.05, release.set).start()
    batcher.embed(_images(1))
    helper.join(5)
    assert recorder.sizes == [2]
    batcher.close()


def test_a_failed_decode_does_not_hold_up_the_pass() -> None:
    batcher = BatchingEmbedder(_Recorder(), max_size=8, max_wait_ms=2000)

    def bad_request() -> None:
        with batcher.pending():
            raise ValueError("unreadable")

    with pytest.raises(ValueError):
        bad_request()
    start = time.monotonic()
    assert batcher.embed(_images(7))[:, 0].tolist() == [7]
    assert time.monotonic() - start < 1.0
    batcher.close()


def test_concurrent_searches_through_the_batcher_match_one_at_a_time(
    trained_workdir: Path, shapes_queries: Path
) -> None:
    from imgsim.search.searcher import Searcher

    queries = sorted(shapes_queries.glob("*.png"))[:12]
    alone = Searcher.from_workdir(trained_workdir, config=SearchConfig(batch_max_size=1))
    batched = Searcher.from_workdir(trained_workdir, config=SearchConfig(batch_max_wait_ms=20))
    assert isinstance(batched.embedder, BatchingEmbedder)
    expected = [alone.search(q, 3) for q in queries]
    passes: list[int] = []
    inner = batched.embedder.embedder.embed
    batched.embedder.embedder.embed = lambda arrays: passes.append(len(arrays)) or inner(arrays)
    results = _concurrently(lambda i: batched.search(queries[i % 12], 3), 36)
    for i, found in enumerate(results):
        got = [(r.filename, r.similarity) for r in found]
        want = [(r.filename, r.similarity) for r in expected[i % 12]]
        assert [g[0] for g in got] == [w[0] for w in want]
        assert np.allclose([g[1] for g in got], [w[1] for w in want], atol=0.02)
    assert sum(passes) == 36 and len(passes) < 36  # fewer passes than requests: batched


def test_any_torch_module_travels_to_a_worker_as_torchscript() -> None:
    import torch

    class Pool(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(x.float(), 2).flatten(1)

    arrays = np.random.default_rng(2).integers(0, 256, (3, 3, 8, 8), dtype=np.uint8)
    embedder = Embedder.from_model(Pool(), image_size=8)
    spec = pickle.loads(pickle.dumps(embedder.spec()))
    assert spec.kind == "torchscript"
    assert np.allclose(Embedder.from_spec(spec).embed(arrays), embedder.embed(arrays))
