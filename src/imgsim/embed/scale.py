"""Bulk embedding beyond one process: Ray Data actors (`--engine ray`) and shards (`--shard K/N`).

Ray Data turns the file list into a dataset, `map_batches` runs a pool of identical embedder
actors (each loads the model file once, decodes its batch and embeds it), and the results
stream back to the caller, which writes them to the store in batches. Locally Ray starts on
this machine's cores; with RAY_ADDRESS set (or `ray start` run beforehand) it joins a cluster.
Ray is an optional extra: `pip install 'imgsim[scale]'`.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ImgsimError
from ..images.data import ImageRecord

log = logging.getLogger("imgsim")

ENGINES = ("local", "ray")


class ShardError(ImgsimError, ValueError):
    """A --shard value that is not K/N with 1 ≤ K ≤ N."""


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """(K, N) of "K/N", or None for no sharding."""
    if not text:
        return None
    k, sep, n = text.partition("/")
    if not (sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise ShardError(f"--shard must be K/N with 1 <= K <= N (e.g. 2/8), not {text!r}")
    return int(k), int(n)


def in_shard(name: str, shard: tuple[int, int] | None) -> bool:
    """Whether shard K of N owns this image: a hash of its name, the same on every machine."""
    if shard is None:
        return True
    digest = int.from_bytes(hashlib.sha1(name.encode("utf-8", "surrogatepass")).digest()[:8])
    return digest % shard[1] == shard[0] - 1


class RayEmbedder:
    """A Ray Data actor: the model loaded once, then one forward pass per batch of files."""

    def __init__(self, model_path: str, image_size: int) -> None:
        import torch

        from ..model.network import load_model

        torch.set_num_threads(1)  # one actor per core: each its own thread
        self.model, _ = load_model(model_path)
        self.model.eval()
        self.size = image_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from ..core.errors import UnreadableImageError
        from ..images.data import decode_file

        arrays, ok = [], []
        for path in batch["path"]:
            try:
                arrays.append(decode_file(Path(str(path)), self.size))
                ok.append(True)
            except (UnreadableImageError, OSError):
                ok.append(False)
        dim = self.model.config.embedding_dim
        vectors = np.zeros((len(ok), dim), dtype=np.float32)
        if arrays:
            with torch.inference_mode():
                vectors[np.array(ok)] = self.model(torch.from_numpy(np.stack(arrays))).numpy()
        return {"row": batch["row"], "ok": np.array(ok), "vector": vectors}


def ray_embed_records(
    model_path: str,
    image_size: int,
    records: list[ImageRecord],
    batch_size: int = 64,
    concurrency: int = 0,
) -> tuple[np.ndarray, list[int]]:
    """Embed `records` on Ray Data: (features N×D float32, indices of the readable ones)."""
    if not records:
        return np.empty((0, 0), dtype=np.float32), []
    ray = _ray()
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    actors = concurrency or max(1, int(ray.available_resources().get("CPU", 1)))
    items = [{"row": i, "path": str(r.path)} for i, r in enumerate(records)]
    dataset = ray.data.from_items(items).map_batches(
        RayEmbedder,
        fn_constructor_kwargs={"model_path": str(model_path), "image_size": image_size},
        batch_size=batch_size,
        concurrency=actors,
        num_cpus=1,
        batch_format="numpy",
    )
    rows: list[int] = []
    parts: list[np.ndarray] = []
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        keep = batch["ok"].astype(bool)
        for row in batch["row"][~keep]:
            log.warning("Skipping unreadable image %s", records[int(row)].name)
        rows += [int(r) for r in batch["row"][keep]]
        parts.append(np.asarray(batch["vector"][keep], dtype=np.float32))
    order = np.argsort(rows, kind="stable")  # the callers expect the records' order
    features = np.concatenate(parts)[order] if rows else np.empty((0, 0), np.float32)
    return features, [rows[i] for i in order]


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise ImgsimError(
            "--engine ray needs Ray Data: pip install 'imgsim[scale]' (or 'ray[data]')"
        ) from None
    return ray
