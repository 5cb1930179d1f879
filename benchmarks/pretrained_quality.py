"""Retrieval quality on a real colour folder: raw pixels, ImageNet features, and trained heads.

The folder is the one benchmarks/colour_folder.py builds from Debian packages: OUT/index/<category>/
is indexed (and trained on), OUT/queries/<category>/ are held-out queries. For each input size
it measures the pretrained network untrained on the folder and `imgsim train`'s default
(a head trained on the frozen network's cached features; validation may keep the features),
both embedded with the product's runtime (onnx) as extraction and the server would. With
--http (the default) each model is also put in a workdir, the index folder embedded there by
`imgsim extract`, and every held-out query POSTed to `imgsim serve` as a user would: P@1 over
HTTP is the share of queries whose first answer (JSON, threshold 0) is of the query's category.

python benchmarks/colour_folder.py /tmp/colour
python benchmarks/pretrained_quality.py /tmp/colour --sizes 128,160,224 --json-out q.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgsim.core.config import MODEL_FILE, ModelConfig, TrainConfig
from imgsim.embed.extract import embed_records
from imgsim.images.data import decode_file, scan_images
from imgsim.model.embedder import Embedder
from imgsim.model.network import ensure_pretrained, load_model, pretrained_model
from imgsim.train.metrics import retrieval_metrics
from imgsim.train.train import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from web_latency import free_port, multipart, wait_ready

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


def imgsim(*args: str) -> list[str]:
    """The command line of one `imgsim` subcommand, run by this Python."""
    return [sys.executable, "-m", "imgsim.cli", "-q", *args]


def http_p_at_1(model_file: Path | None, size: int, index: Path, rq: list, work: Path) -> float:
    """P@1 of the held-out queries POSTed to `imgsim serve` over `index` embedded in `work`.

    model_file None: the untrained pretrained network (as `extract --pretrained` writes it).
    """
    shutil.rmtree(work, ignore_errors=True)  # a rerun's workdir: the benchmark's own output
    work.mkdir(parents=True)
    if model_file is None:
        ensure_pretrained(work / MODEL_FILE, size)
    else:
        shutil.copyfile(model_file, work / MODEL_FILE)
    subprocess.run(imgsim("extract", "--data", str(index), "--workdir", str(work),
                          "--model", str(work / MODEL_FILE)), check=True)  # fmt: skip
    port = free_port()
    command = imgsim("serve", "--workdir", str(work), "--port", str(port))
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        wait_ready(port)
        hits = sum(first_category(port, r.path) == (r.category or "") for r in rq)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return hits / len(rq)


def first_category(port: int, image: Path) -> str | None:
    """The category of POST /search's first answer for one image (None: no answer kept)."""
    body, content_type = multipart(image.read_bytes(), 1)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    # threshold=0: P@1 scores the ranking, as in-process; the model's default threshold would
    # hide a first answer below it (a user sees "nothing similar"), counted as a miss.
    conn.request("POST", "/search?threshold=0", body=body, headers={"Content-Type": content_type})
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    if response.status != 200:
        raise SystemExit(f"POST /search for {image} answered {response.status}: {payload[:300]!r}")
    results = json.loads(payload)["results"]
    return results[0]["category"] if results else None


def measure(
    index: tuple, queries: tuple, size: int, out: Path, http: bool = True
) -> dict[str, Any]:
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
    if http:
        folder = out.parent / "folder"
        row["untrained"]["http_p_at_1"] = http_p_at_1(
            None, size, folder, rq, out / "http_untrained"
        )
        row["trained"]["http_p_at_1"] = http_p_at_1(
            result.model_path, size, folder, rq, out / "http_trained"
        )
    return row


def over_http(metrics: dict) -> str:
    """P@1 over HTTP as a table cell ("" when --no-http)."""
    return f"{metrics['http_p_at_1']:.3f}" if "http_p_at_1" in metrics else ""


def table(raw: dict, rows: list[dict]) -> str:
    lines = [
        "| input | embedding | P@1 | P@1 over HTTP | MAP@R | training | extraction |",
        "|---|---|---:|---:|---:|---:|---:|",
        f"| 32 px | raw pixels | {raw['precision_at_1']:.3f} | | "
        f"{raw['mean_average_precision_at_r']:.3f} | | |",
    ]
    for r in rows:
        u, t = r["untrained"], r["trained"]
        lines.append(
            f"| {r['size']} px | ImageNet features, untrained | {u['precision_at_1']:.3f} | "
            f"{over_http(u)} | {u['mean_average_precision_at_r']:.3f} | | "
            f"{r['extract_images_per_s']:.0f} img/s |"
        )
        lines.append(
            f"| {r['size']} px | `imgsim train` (kept: {r['kept']}) | {t['precision_at_1']:.3f} | "
            f"{over_http(t)} | {t['mean_average_precision_at_r']:.3f} | "
            f"{r['train_seconds']:.0f} s | |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folder", type=Path, help="benchmarks/colour_folder.py's output")
    p.add_argument("--sizes", default="128,160,224")
    p.add_argument("--output-dir", type=Path, default=Path("bench-output/pretrained"))
    p.add_argument("--json-out")
    p.add_argument(
        "--http", action=argparse.BooleanOptionalAction, default=True,
        help="also POST the queries to `imgsim serve` and score its JSON answers (on)",
    )  # fmt: skip
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
        out = args.output_dir / f"size{size}"
        rows.append(measure((ri, yi), (rq, yq), size, out, args.http))
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
