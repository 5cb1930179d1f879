"""The demo: sample data → training → extraction → a few searches → the web server."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from ..core.config import MODEL_FILE, ExtractConfig, ModelConfig, TrainConfig
from ..images.data import scan_images

log = logging.getLogger("imgsim")


def prepare_data(directory: Path, per_class: int) -> Path:
    """The demo's image folder, filled with sample images unless it already has some."""
    from ..images.sample import build_sample_dataset

    data = directory / "dataset"
    if data.is_dir() and scan_images(data):
        log.info("Using the existing images in %s", data)
        return data
    source = build_sample_dataset(data, per_class)
    log.info("Wrote %d sample images (%s) to %s", len(scan_images(data)), source, data)
    return data


def sample_searches(directory: Path, data: Path, per_query: int = 5) -> None:
    """Print the top results for one image of each of the first few categories."""
    from ..search.searcher import Searcher

    searcher = Searcher.from_workdir(directory)
    seen: set[str] = set()
    for record in scan_images(data):
        if record.category in seen or len(seen) >= 3:
            continue
        seen.add(record.category or "")
        print(f"\nQuery {record.name}:")
        for r in searcher.search(record.path, top_k=per_query, threshold=0):
            print(f"  {r.similarity:6.2f}%  {r.category:<12} {r.filename}")


def run_demo(
    directory: Path,
    per_class: int = 200,
    epochs: int = 8,
    serve: bool = True,
    host: str = "127.0.0.1",
    port: int = 5000,
) -> int:
    """Run the whole pipeline on sample data in `directory`; returns an exit code."""
    from ..embed.extract import extract
    from ..train.train import train

    directory.mkdir(parents=True, exist_ok=True)
    data = prepare_data(directory, per_class)
    if (directory / MODEL_FILE).is_file():
        log.info("Using the trained model in %s (delete it to train again)", directory)
    else:
        train(
            TrainConfig(data_dir=str(data), output_dir=str(directory), epochs=epochs),
            ModelConfig(image_size=32),  # the sample images are 28-64 px: 32 px loses nothing
        )
    result = extract(
        ExtractConfig(
            data_dir=str(data), output_dir=str(directory), model_path=str(directory / MODEL_FILE)
        )
    )
    log.info("Embedded %d images into %s", result.count, directory)
    sample_searches(directory, data)
    if not serve:
        return 0
    print(f"\nOpen http://{host}:{port} and drop a photo (Ctrl+C stops the server).")
    serve_fresh(directory, host, port)


def serve_fresh(directory: Path, host: str, port: int) -> NoReturn:
    """Become `imgsim serve`: a new program in this process, as if started on its own.

    gunicorn forks its workers from the process that runs it. Forked from this one, they would
    inherit torch's thread pools and exit handlers from training and extraction; on Ctrl+C they
    then abort ("terminate called after throwing ... std::system_error", SIGABRT) and take
    seconds to die. exec keeps the process id, so Ctrl+C and SIGTERM still reach the server.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, "-m", "imgsim.cli", "serve", "--workdir", str(directory)]
    os.execv(sys.executable, [*argv, "--host", host, "--port", str(port)])
