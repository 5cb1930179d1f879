"""Inference: uint8 image arrays → unit embeddings, in PyTorch or onnxruntime, batched or not."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..core.config import RUNTIMES, SearchConfig
from ..core.errors import ConfigError, OnnxError
from .model_handle import ModelFile

log = logging.getLogger("imgsim")


def check_runtime(runtime: str) -> str:
    """`runtime` if imgsim can run the network with it, else a ConfigError naming the choices."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    return runtime


@dataclass(frozen=True)
class EmbedderSpec:
    """Everything a worker process needs to rebuild an Embedder: plain, picklable data."""

    runtime: str
    image_size: int
    kind: str  # "onnx" (ONNX bytes) | "imgsim" (EmbeddingNet config + weights) | "torchscript"
    payload: Any = field(repr=False)
    device: str = "cpu"


class _TorchBackend:
    """PyTorch eager (or TorchScript) on one device; one forward pass at a time."""

    def __init__(self, module: Any, device: str, threads: int | None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)  # process-wide: only set where we own the process
        self.device = torch.device(device)
        # Channels-last is what oneDNN's CPU convolutions prefer (docs/benchmarks.md).
        self.module = module.eval().to(self.device, memory_format=torch.channels_last)
        self.lock = threading.Lock()

    def __call__(self, arrays: np.ndarray) -> np.ndarray:
        import torch

        batch = torch.from_numpy(arrays).to(self.device)
        batch = batch.contiguous(memory_format=torch.channels_last)
        with self.lock, torch.inference_mode():
            return self.module(batch).float().cpu().numpy()


class _OnnxBackend:
    """An onnxruntime session; CUDA's provider for a cuda device, else the CPU's."""

    def __init__(self, data: bytes, device: str, threads: int | None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            from .export import INSTALL_HELP

            raise OnnxError(f"the onnx runtime needs onnxruntime; {INSTALL_HELP}") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: onnxruntime's choice (all cores)
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise OnnxError(f"device {device}: this onnxruntime has no CUDA provider")
            providers.insert(0, "CUDAExecutionProvider")
        elif device != "cpu":
            raise ConfigError(f"the onnx runtime runs on cpu or cuda, not {device!r}")
        try:
            self.session = ort.InferenceSession(data, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise OnnxError(f"onnxruntime cannot load the model: {exc}") from None
        self.input = self.session.get_inputs()[0].name
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.lock = threading.Lock()

    def __call__(self, arrays: np.ndarray) -> np.ndarray:
        with self.lock:  # one pass at a time: two would only fight over the same cores
            return self.session.run(None, {self.input: arrays})[0]


class Embedder:
    """Owns the network for inference: `embed(uint8 N×3×S×S) -> float32 N×D`, L2-normalised."""

    def __init__(self, backend: Any, runtime: str, image_size: int, device: str, source: Any):
        self._backend = backend
        self._source = source  # ONNX bytes, a torch module, or a spec: what spec() is made of
        self.runtime = runtime
        self.image_size = image_size
        self.device = device
        self.embedding_dim: int | None = getattr(
            getattr(source, "config", None), "embedding_dim", None
        )

    @classmethod
    def from_model(
        cls,
        model: Any,
        runtime: str = "torch",
        *,
        image_size: int | None = None,
        model_id: str = "",
        model_path: str | Path | None = None,
        device: str = "cpu",
        threads: int | None = None,
    ) -> Embedder:
        """An Embedder for a torch module (an EmbeddingNet or any module with uint8 input).

        For onnx the network is exported, or read from the export beside `model_path` when
        that holds the same model. `device` (cpu, cuda, cuda:N) may come from a device helper.
        """
        check_runtime(runtime)
        size = image_size or model.config.image_size
        if runtime == "onnx":
            from .export import onnx_for

            data = onnx_for(model, size, model_id, model_path)
            embedder = cls(_OnnxBackend(data, device, threads), "onnx", size, device, data)
        else:
            embedder = cls(_TorchBackend(model, device, threads), "torch", size, device, model)
        embedder.embedding_dim = getattr(getattr(model, "config", None), "embedding_dim", None)
        return embedder

    @classmethod
    def from_file(
        cls,
        model: ModelFile,
        runtime: str = "onnx",
        device: str = "cpu",
        threads: int | None = None,
    ) -> Embedder:
        """An Embedder for a model file: with onnx, its kept export runs without torch.

        Only a missing or stale export (another model id or size) loads the network, exports
        it and keeps the file for the next start.
        """
        check_runtime(runtime)
        size = model.config.image_size
        backend = _kept_onnx(model, device, threads) if runtime == "onnx" else None
        if backend is None:
            return cls.from_model(
                model.network(), runtime, model_id=model.model_id, model_path=model.path,
                device=device, threads=threads,
            )  # fmt: skip
        embedder = cls(backend[0], "onnx", size, device, backend[1])
        embedder.embedding_dim = model.config.embedding_dim
        return embedder

    @classmethod
    def from_spec(cls, spec: EmbedderSpec, threads: int | None = None) -> Embedder:
        """Rebuild an Embedder from its spec (in a worker process); `threads` for its runtime."""
        if spec.kind == "onnx":
            backend: Any = _OnnxBackend(spec.payload, spec.device, threads)
        else:
            backend = _TorchBackend(_torch_module(spec), spec.device, threads)
        return cls(backend, spec.runtime, spec.image_size, spec.device, spec)

    def spec(self) -> EmbedderSpec:
        """What a worker process needs to build the same Embedder."""
        if isinstance(self._source, EmbedderSpec):
            return self._source
        if isinstance(self._source, bytes):
            spec = EmbedderSpec("onnx", self.image_size, "onnx", self._source, self.device)
        else:
            spec = _torch_spec(self._source, self.image_size, self.device)
        self._source = spec  # made once: tracing a foreign module takes a moment
        return spec

    def embed(self, arrays: np.ndarray) -> np.ndarray:
        """Embeddings of a uint8 N×3×S×S batch of RGB images, in the same order."""
        if arrays.ndim != 4 or arrays.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(
                f"expected N×3×{self.image_size}×{self.image_size} images, got {arrays.shape}"
            )
        out = self._backend(np.ascontiguousarray(arrays, dtype=np.uint8))
        return np.asarray(out, dtype=np.float32)

    @contextlib.contextmanager
    def pending(self) -> Iterator[None]:
        """A request on its way (decoding); only a BatchingEmbedder waits for it."""
        yield


def _kept_onnx(
    model: ModelFile, device: str, threads: int | None
) -> tuple[_OnnxBackend, bytes] | None:
    """A session on the export kept beside the model file, if it was made from this model."""
    from .export import default_onnx_path

    path = default_onnx_path(model.path)
    try:
        data = path.read_bytes()
        backend = _OnnxBackend(data, device, threads)
    except (OSError, OnnxError):  # none yet, unreadable or damaged: export again
        return None
    meta = backend.metadata
    if meta.get("imgsim.model_id") != model.model_id or model.model_id == "":
        return None
    if meta.get("imgsim.image_size") != str(model.config.image_size):
        return None
    return backend, data


def _torch_spec(model: Any, image_size: int, device: str) -> EmbedderSpec:
    import torch

    from ..core.config import to_dict
    from .network import EmbeddingNet

    if isinstance(model, EmbeddingNet):
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        payload = {"config": to_dict(model.config), "state": state}
        return EmbedderSpec("torch", image_size, "imgsim", payload, device)
    # Any other module (the reference extractor, a test's): TorchScript, so it pickles.
    example = torch.zeros((1, 3, image_size, image_size), dtype=torch.uint8)
    with torch.inference_mode():
        traced = torch.jit.trace(model.eval().cpu(), example, check_trace=False)
    return EmbedderSpec("torch", image_size, "torchscript", traced.save_to_buffer(), device)


def _torch_module(spec: EmbedderSpec) -> Any:
    import torch

    from ..core.config import ModelConfig, from_dict
    from .network import EmbeddingNet

    if spec.kind == "torchscript":
        return torch.jit.load(io.BytesIO(spec.payload), map_location="cpu")
    module = EmbeddingNet(from_dict(ModelConfig, spec.payload["config"]))
    module.load_state_dict(spec.payload["state"])
    return module


class EmbedsArrays(Protocol):
    """What a BatchingEmbedder wraps: an Embedder, or a test's stand-in."""

    image_size: int

    def embed(self, arrays: np.ndarray) -> np.ndarray: ...


@dataclass
class _Request:
    arrays: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class BatchingEmbedder:
    """Embeds concurrent requests of one process together, in single forward passes.

    Callers decode in their own threads, in parallel, then queue their arrays; one background
    thread drains the queue into passes of at most `max_size` images. A pass waits up to
    `max_wait_ms` for requests announced with `pending()` (still decoding), never for ones that
    may not come, so a lone client is not slowed down. A request's images stay together; one
    larger than `max_size` runs alone. A failing pass is retried request by request, so one bad
    request gets its own error and the others their results.
    """

    def __init__(self, embedder: EmbedsArrays, max_size: int = 32, max_wait_ms: float = 2.0):
        if max_size < 1 or max_wait_ms < 0:
            raise ConfigError("batch_max_size must be ≥ 1 and batch_max_wait_ms ≥ 0")
        self.embedder = embedder
        self.max_size = max_size
        self.max_wait = max_wait_ms / 1000.0
        self.image_size = embedder.image_size
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._decoding = 0  # requests announced by pending() and not queued yet
        self._local = threading.local()
        self._pid: int | None = None
        self._closed = False

    def __getattr__(self, name: str) -> Any:  # runtime, device, embedding_dim, spec(), ...
        return getattr(self.embedder, name)

    @contextlib.contextmanager
    def pending(self) -> Iterator[None]:
        """Announce a request that is being decoded, so a pass about to start waits for it."""
        with self._cond:
            self._decoding += 1
        self._local.announced = True
        try:
            yield
        finally:
            if getattr(self._local, "announced", False):  # it never queued (decode failed)
                self._local.announced = False
                with self._cond:
                    self._decoding -= 1
                    self._cond.notify_all()

    def embed(self, arrays: np.ndarray) -> np.ndarray:
        """Embeddings of `arrays`, computed in a pass shared with concurrent requests."""
        request = _Request(arrays)
        with self._cond:
            self._ensure_thread()
            if getattr(self._local, "announced", False):
                self._local.announced = False
                self._decoding -= 1
            self._queue.append(request)
            self._cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def close(self) -> None:
        """Stop the background thread once the queue is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _ensure_thread(self) -> None:
        # A forked process (gunicorn --preload) inherits no threads: start one per process.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._queue.clear()  # requests of the parent process belong to it
            threading.Thread(target=self._drain, name="imgsim-batcher", daemon=True).start()

    def _drain(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _next_batch(self) -> list[_Request] | None:
        """Wait for a request, then for announced ones up to the deadline; take what fits."""
        while not self._queue:
            if self._closed:
                return None
            self._cond.wait()
        deadline = time.monotonic() + self.max_wait
        while self._decoding > 0 and self._queued_images() < self.max_size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(left)
        batch, total = [], 0
        while self._queue and (not batch or total + len(self._queue[0].arrays) <= self.max_size):
            request = self._queue.pop(0)
            batch.append(request)
            total += len(request.arrays)
        return batch

    def _queued_images(self) -> int:
        return sum(len(r.arrays) for r in self._queue)

    def _run(self, batch: list[_Request]) -> None:
        try:
            out = self.embedder.embed(np.concatenate([r.arrays for r in batch]))
        except BaseException as exc:
            if len(batch) > 1:  # find the request that fails; the others get their results
                for request in batch:
                    self._run([request])
                return
            batch[0].error = exc
            batch[0].done.set()
            return
        start = 0
        for request in batch:
            request.result = out[start : start + len(request.arrays)]
            start += len(request.arrays)
            request.done.set()


def search_embedder(
    model: Any,
    config: SearchConfig,
    model_id: str = "",
    model_path: str | Path | None = None,
    device: str = "cpu",
) -> Embedder | BatchingEmbedder:
    """The Embedder a search process uses: `config.runtime`, batched unless batch_max_size 1.

    `model` is a ModelFile (its kept ONNX export spares loading torch) or a network.
    """
    threads = config.runtime_threads or None
    if isinstance(model, ModelFile):
        embedder = Embedder.from_file(model, config.runtime, device, threads)
    else:
        embedder = Embedder.from_model(
            model, config.runtime, model_id=model_id, model_path=model_path, device=device,
            threads=threads,
        )  # fmt: skip
    if config.batch_max_size <= 1:
        return embedder
    return BatchingEmbedder(embedder, config.batch_max_size, config.batch_max_wait_ms)
