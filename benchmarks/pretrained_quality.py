"""Retrieval quality on a real colour folder: raw pixels, ImageNet features, and trained heads.

The folder is the one benchmarks/colour_folder.py builds from Debian packages: OUT/index/<category>/
is indexed (and trained on), OUT/queries/<category>/ are held-out queries. For each input size
it measures the pretrained network untrained on the folder and `imgsim train`'s default
(a head trained on the frozen network's cached features; validation may keep the features),
both embedded with the product's runtime (onnx) as extraction and the server would.

python benchmarks/colour_folder.py /tmp/colour
python benchmarks/pretrained_quality.py /tmp/colour --sizes 128,160,224 --json-out q.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgsim.config import ModelConfig, TrainConfig
from imgsim.data import decode_file, scan_images
from imgsim.embedder import Embedder
from imgsim.extract import embed_records
from imgsim.metrics import retrieval_metrics
from imgsim.model import load_model, pretrained_model
from imgsim.train import train

log = logging.getLogger("imgsim")


def records(folder: Path) -> tuple[list, np.ndarray, list[str]]:
    """The folder's images and integer labels (its sub-folders are the categories)."""
    found = scan_images(folder)
    names = sorted({r.category or "" for r in found})
    return found, np.array([names.index(r.category or "") for r in found]), names


def raw_pixels(index: list, queries: list) -> tuple[np.ndarray, np.ndarray]:
    """The floor: 32×32 pixel vectors."""
    flat = lambda rs: np.stack([decode_file(r.path, 32).reshape(-1) for r in rs]) / 255.0  # noqa: E731
    return flat(index).astype(np.float32), flat(queries).astype(np.float32)


def embedded(model: torch.nn.Module, size: int, rs: list) -> tuple[np.ndarray, float]:
    """Embeddings with the onnx runtime, as `imgsim extract` makes them; and images/s."""
    embedder = Embedder.from_model(model, "onnx", image_size=size)
    start = time.perf_counter()
    feats, done = embed_records(embedder, size, rs, progress=False)
    assert len(done) == len(rs), "every benchmark image must be readable"
    return feats, len(rs) / (time.perf_counter() - start)


def measure(index: tuple, queries: tuple, size: int, out: Path) -> dict[str, Any]:
    """The untrained network and a default `imgsim train` at one input size."""
    (ri, yi), (rq, yq) = index, queries
    row: dict[str, Any] = {"size": size}
    ref, speed = embedded(pretrained_model(size), size, ri)
    query, _ = embedded(pretrained_model(size), size, rq)
    row["untrained"] = retrieval_metrics(query, yq, ref, yi)
    row["extract_images_per_s"] = speed
    config = TrainConfig(data_dir=str(out.parent / "folder"), output_dir=str(out))
    start = time.perf_counter()
    result = train(config, ModelConfig(image_size=size), progress=False)
    row["train_seconds"] = time.perf_counter() - start
    model, info = load_model(result.model_path)
    row["kept"] = "trained head" if model.config.head_hidden else "ImageNet features"
    ref, _ = embedded(model, size, ri)
    query, _ = embedded(model, size, rq)
    row["trained"] = retrieval_metrics(query, yq, ref, yi)
    row["val_recall_at_1"] = info["metrics"].get("final", {}).get("val_recall_at_1")
    return row


def table(raw: dict, rows: list[dict]) -> str:
    lines = [
        "| input | embedding | P@1 | MAP@R | training | extraction |",
        "|---|---|---:|---:|---:|---:|",
        f"| 32 px | raw pixels | {raw['precision_at_1']:.3f} | "
        f"{raw['mean_average_precision_at_r']:.3f} | | |",
    ]
    for r in rows:
        u, t = r["untrained"], r["trained"]
        lines.append(
            f"| {r['size']} px | ImageNet features, untrained | {u['precision_at_1']:.3f} | "
            f"{u['mean_average_precision_at_r']:.3f} | | {r['extract_images_per_s']:.0f} img/s |"
        )
        lines.append(
            f"| {r['size']} px | `imgsim train` (kept: {r['kept']}) | {t['precision_at_1']:.3f} | "
            f"{t['mean_average_precision_at_r']:.3f} | {r['train_seconds']:.0f} s | |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folder", type=Path, help="benchmarks/colour_folder.py's output")
    p.add_argument("--sizes", default="128,160,224")
    p.add_argument("--output-dir", type=Path, default=Path("bench-output/pretrained"))
    p.add_argument("--json-out")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    ri, yi, names = records(args.folder / "index")
    rq = scan_images(args.folder / "queries")
    yq = np.array([names.index(r.category or "") for r in rq])
    raw_ref, raw_query = raw_pixels(ri, rq)
    raw = retrieval_metrics(raw_query, yq, raw_ref, yi)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    folder = args.output_dir / "folder"
    if not folder.exists():  # train reads the index folder by path
        folder.symlink_to((args.folder / "index").resolve(), target_is_directory=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows.append(measure((ri, yi), (rq, yq), size, args.output_dir / f"size{size}"))
        print(table(raw, rows), flush=True)
    machine = f"{os.cpu_count()} cores, {platform.machine()}"
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    results = {"raw_pixels": raw, "rows": rows, "images": len(ri), "queries": len(rq),
               "categories": len(names), "machine": machine, "date": when,
               "command": " ".join(sys.argv)}  # fmt: skip
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
