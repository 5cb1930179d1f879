"""Retrieval quality on Fashion-MNIST: prints raw-pixel, untrained and trained figures as JSON.

python benchmarks/quality.py                      # full: 60k index, 10k queries
python benchmarks/quality.py --train-limit 5000 --test-limit 1000 --epochs 3   # quick look
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from imgsim.config import ModelConfig, TrainConfig, replace
from imgsim.metrics import retrieval_metrics
from imgsim.model import EmbeddingNet, load_model
from imgsim.sample import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_fashion_mnist
from imgsim.train import train
from imgsim.trainset import in_memory

log = logging.getLogger("imgsim")


@dataclass
class QualitySettings:
    """What the benchmark trains and measures."""

    data: str = str(FASHION_MNIST_DIR)
    output_dir: str = "bench-output"
    train_limit: int = 0  # 0 = all 60,000 training images; smaller for a quick check
    test_limit: int = 0  # 0 = all 10,000 test images
    model: ModelConfig = field(default_factory=lambda: ModelConfig(image_size=32))
    train: TrainConfig = field(default_factory=TrainConfig)
    baselines: bool = True  # raw pixels and the untrained network, in the same run


def to_rgb_batch(images: np.ndarray, size: int) -> torch.Tensor:
    """28×28 grey images → uint8 N×3×size×size, as the folder pipeline would decode them."""
    x = torch.from_numpy(images.copy())  # idx arrays are read-only views
    x = x.unsqueeze(1).float()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()


def _subset(images: np.ndarray, labels: np.ndarray, limit: int, seed: int) -> tuple:
    if not limit or limit >= len(labels):
        return images, labels
    rows = np.sort(np.random.default_rng(seed).choice(len(labels), limit, replace=False))
    return images[rows], labels[rows]


def load_splits(settings: QualitySettings) -> tuple[np.ndarray, ...]:
    """(train images, train labels, test images, test labels), subsets when limits are set."""
    tr_x, tr_y = load_fashion_mnist(settings.data, "train")
    te_x, te_y = load_fashion_mnist(settings.data, "test")
    tr_x, tr_y = _subset(tr_x, tr_y, settings.train_limit, 0)
    te_x, te_y = _subset(te_x, te_y, settings.test_limit, 1)
    return tr_x, tr_y.astype(np.int64), te_x, te_y.astype(np.int64)


def pixel_metrics(tr_x: np.ndarray, tr_y: np.ndarray, te_x: np.ndarray, te_y: np.ndarray) -> dict:
    """The floor: nearest neighbours by Euclidean distance between raw pixel vectors."""
    flat = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0  # noqa: E731
    return retrieval_metrics(flat(te_x), te_y, flat(tr_x), tr_y)


@torch.inference_mode()
def embed_all(model: EmbeddingNet, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    """Embeddings of uint8 images already in memory, in eval mode."""
    model.eval()
    return torch.cat([model(images[i : i + batch]) for i in range(0, len(images), batch)]).numpy()


def network_metrics(
    model: EmbeddingNet, tr: torch.Tensor, tr_y: np.ndarray, te: torch.Tensor, te_y: np.ndarray
) -> tuple[dict, float]:
    """Metrics of a network's embeddings, and its extraction speed in images/s."""
    start = time.perf_counter()
    ref = embed_all(model, tr)
    seconds = time.perf_counter() - start
    query = embed_all(model, te)
    return retrieval_metrics(query, te_y, ref, tr_y), len(tr) / seconds


def run_quality(settings: QualitySettings, progress: bool = True) -> dict[str, Any]:
    """Train on the training split, index it, query with the test split; all figures as a dict."""
    tr_x, tr_y, te_x, te_y = load_splits(settings)
    size = settings.model.image_size
    tr, te = to_rgb_batch(tr_x, size), to_rgb_batch(te_x, size)
    log.info("Fashion-MNIST: %d training images (index), %d test queries", len(tr), len(te))
    results: dict[str, Any] = {"train_images": len(tr), "test_queries": len(te)}
    if settings.baselines:
        results["raw_pixels"] = pixel_metrics(tr_x, tr_y, te_x, te_y)
        torch.manual_seed(settings.train.seed)
        untrained = EmbeddingNet(settings.model).eval()
        results["untrained"], _ = network_metrics(untrained, tr, tr_y, te, te_y)
    data = in_memory(tr, torch.from_numpy(tr_y), list(FASHION_MNIST_CLASSES))
    config = TrainConfig(**{**settings.train.__dict__, "output_dir": settings.output_dir})
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    trained = train(config, settings.model, progress=progress, data=data)
    results["train_seconds"] = time.perf_counter() - start
    model, info = load_model(trained.model_path)
    results["trained"], results["extract_images_per_s"] = network_metrics(model, tr, tr_y, te, te_y)
    results["threshold"] = info.get("threshold")
    results["settings"] = {"model": settings.model.__dict__, "train": config.__dict__}
    return results


TRAIN_FLAGS = (
    "epochs", "batch_size", "learning_rate", "lr_schedule", "loss", "margin",
    "mining", "m_per_class", "val_fraction", "augment", "seed", "steps_per_epoch",
    "time_budget_min", "device",
)  # fmt: skip
MODEL_FLAGS = ("image_size", "widths", "blocks", "head_hidden", "embedding_dim")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--output-dir", default="bench-output")
    p.add_argument("--train-limit", type=int, default=0)
    p.add_argument("--test-limit", type=int, default=0)
    p.add_argument("--json-out", help="also write the figures to this file")
    p.add_argument("--no-baselines", action="store_true", help="skip raw pixels and untrained")
    for flag in TRAIN_FLAGS + MODEL_FLAGS:
        p.add_argument("--" + flag.replace("_", "-"))
    return p.parse_args()


def main() -> int:
    args = parse()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    pick = lambda names: {n: getattr(args, n) for n in names if getattr(args, n) is not None}  # noqa: E731
    settings = QualitySettings(
        data=args.data,
        output_dir=args.output_dir,
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        baselines=not args.no_baselines,
        model=replace(ModelConfig(image_size=32), pick(MODEL_FLAGS)),
        train=replace(TrainConfig(val_fraction=0.05), pick(TRAIN_FLAGS)),
    )
    results = run_quality(settings)
    results["machine"] = f"{os.cpu_count()} cores, {platform.machine()}, torch threads default"
    results["date"] = time.strftime("%Y-%m-%d %H:%M %Z")
    results["command"] = " ".join(["python", *sys.argv])
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
