"""Retrieval quality on Fashion-MNIST in three regimes, at the product's defaults.

Each regime trains on about 30 or 300 images per category, or on all 60,000 training images,
indexes what it trained on, and queries with the 10,000 test images; raw pixels and the
untrained network are measured on the same split in the same run. Prints a Markdown table
(and the figures as JSON with --json-out).

python benchmarks/quality.py                          # the three regimes: 30, 300, all
python benchmarks/quality.py --regimes 30 --loss triplet       # one regime, one flag changed
python benchmarks/quality.py --regimes 300 --test-limit 2000   # quicker look
"""

from __future__ import annotations

import argparse
import dataclasses
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

from imgsim.core.config import PRETRAINED, ModelConfig, TrainConfig, replace
from imgsim.images.sample import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_fashion_mnist
from imgsim.model.network import EmbeddingNet, load_model, pretrained_model
from imgsim.train.autosize import PRETRAINED_SIZE, choose_image_size, resolve_backbone
from imgsim.train.metrics import retrieval_metrics
from imgsim.train.train import train
from imgsim.train.trainset import in_memory

log = logging.getLogger("imgsim")


@dataclass
class QualitySettings:
    """What the benchmark trains and measures."""

    data: str = str(FASHION_MNIST_DIR)
    output_dir: str = "bench-output"
    train_limit: int = 0  # 0 = all 60,000 training images; smaller for a quick check
    test_limit: int = 0  # 0 = all 10,000 test images
    per_class: int = 0  # training images per category (a seeded sample); 0 = all
    model: ModelConfig = field(default_factory=ModelConfig)
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


def _per_class(images: np.ndarray, labels: np.ndarray, per_class: int, seed: int) -> tuple:
    """`per_class` images of every category, a seeded sample kept in file order."""
    if not per_class:
        return images, labels
    rng = np.random.default_rng(seed)
    rows = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
            for c in np.unique(labels)]  # fmt: skip
    rows = np.sort(np.concatenate(rows))
    return images[rows], labels[rows]


def load_splits(settings: QualitySettings) -> tuple[np.ndarray, ...]:
    """(train images, train labels, test images, test labels), subsets when limits are set."""
    tr_x, tr_y = load_fashion_mnist(settings.data, "train")
    te_x, te_y = load_fashion_mnist(settings.data, "test")
    tr_x, tr_y = _subset(tr_x, tr_y, settings.train_limit, 0)
    tr_x, tr_y = _per_class(tr_x, tr_y, settings.per_class, 0)
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
    # As `imgsim train` would on a folder of these 28 px images (backbone and image_size auto).
    native = torch.from_numpy(tr_x[:, None]).expand(-1, 3, -1, -1)  # a view: no copy
    classes = list(FASHION_MNIST_CLASSES)
    backbone = resolve_backbone(
        settings.model.backbone, in_memory(native, torch.from_numpy(tr_y), classes)
    )
    size = settings.model.image_size or (
        PRETRAINED_SIZE if backbone == PRETRAINED else choose_image_size([tr_x.shape[-1]])
    )
    settings.model = replace(settings.model, {"image_size": size, "backbone": backbone})
    tr, te = to_rgb_batch(tr_x, size), to_rgb_batch(te_x, size)
    log.info("Fashion-MNIST: %d training images (index), %d test queries", len(tr), len(te))
    results: dict[str, Any] = {"train_images": len(tr), "test_queries": len(te)}
    if settings.baselines:
        results["raw_pixels"] = pixel_metrics(tr_x, tr_y, te_x, te_y)
        torch.manual_seed(settings.train.seed)
        untrained = (
            pretrained_model(size) if backbone == PRETRAINED else EmbeddingNet(settings.model)
        ).eval()
        results["untrained"], _ = network_metrics(untrained, tr, tr_y, te, te_y)
    data = in_memory(tr, torch.from_numpy(tr_y), classes)
    config = TrainConfig(**{**settings.train.__dict__, "output_dir": settings.output_dir})
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    trained = train(config, settings.model, progress=progress, data=data)
    results["train_seconds"] = time.perf_counter() - start
    model, info = load_model(trained.model_path)
    results["trained"], results["extract_images_per_s"] = network_metrics(model, tr, tr_y, te, te_y)
    results["threshold"] = info.get("threshold")
    results["threshold_info"] = info.get("threshold_info")
    results["calibration"] = info.get("calibration")
    results["epochs_run"] = len(trained.history)
    results["best_epoch"] = info["metrics"].get("best_epoch")  # best validation Recall@1
    results["kept_epoch"] = info["metrics"].get("kept_epoch")
    results["converged"] = info.get("converged")
    results["settings"] = {"model": settings.model.__dict__, "train": config.__dict__}
    return results


SKIP = {"data_dir", "output_dir"}  # the benchmark names these itself
TRAIN_FLAGS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in SKIP)
MODEL_FLAGS = tuple(f.name for f in dataclasses.fields(ModelConfig))
REGIMES = {"30": 30, "300": 300, "all": 0}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--output-dir", default="bench-output")
    p.add_argument("--regimes", default="30,300,all", help="images per category: 30, 300, all")
    p.add_argument("--train-limit", type=int, default=0)
    p.add_argument("--test-limit", type=int, default=0)
    p.add_argument("--json-out", help="also write the figures to this file")
    p.add_argument("--no-baselines", action="store_true", help="skip raw pixels and untrained")
    for flag in TRAIN_FLAGS + MODEL_FLAGS:
        p.add_argument("--" + flag.replace("_", "-"), help="as imgsim train's flag")
    return p.parse_args()


def table(runs: dict[str, dict[str, Any]]) -> str:
    """The Markdown table of docs/benchmarks.md: one block of rows per regime."""
    lines = [
        "| regime | embedding | P@1 | MAP@R | R@10 | training | epochs (kept) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for regime, r in runs.items():
        label = f"{regime} per category ({r['train_images']:,} images)"
        if regime == "all":
            label = f"all ({r['train_images']:,} images)"
        pretrained = r["settings"]["model"]["backbone"] == PRETRAINED
        untrained = "ImageNet features" if pretrained else "untrained"
        rows = [("raw pixels", r.get("raw_pixels")), (untrained, r.get("untrained")),
                ("trained (defaults)", r["trained"])]  # fmt: skip
        for name, m in rows:
            if m is None:
                continue
            trained = name.startswith("trained")
            time_cell = f"{r['train_seconds']:.0f} s" if trained else ""
            epochs = f"{r['epochs_run']} ({r['kept_epoch']})" if trained else ""
            lines.append(
                f"| {label} | {name} | {m['precision_at_1']:.3f} | "
                f"{m['mean_average_precision_at_r']:.3f} | {m['recall_at_10']:.3f} | "
                f"{time_cell} | {epochs} |"
            )
    return "\n".join(lines)


def main() -> int:
    args = parse()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    pick = lambda names: {n: getattr(args, n) for n in names if getattr(args, n) is not None}  # noqa: E731
    runs: dict[str, Any] = {}
    for regime in args.regimes.split(","):
        settings = QualitySettings(
            data=args.data,
            output_dir=f"{args.output_dir}/{regime}",
            train_limit=args.train_limit,
            test_limit=args.test_limit,
            per_class=REGIMES[regime],
            baselines=not args.no_baselines,
            model=replace(ModelConfig(), pick(MODEL_FLAGS)),
            train=replace(TrainConfig(), pick(TRAIN_FLAGS)),
        )
        runs[regime] = run_quality(settings)
    results: dict[str, Any] = {"regimes": runs}
    results["machine"] = f"{os.cpu_count()} cores, {platform.machine()}, torch threads default"
    results["date"] = time.strftime("%Y-%m-%d %H:%M %Z")
    results["command"] = " ".join(["python", *sys.argv])
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(results, indent=2, default=str) + "\n")
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
