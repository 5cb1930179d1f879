"""How soon a JPEG copied into a watched folder is in the index (`imgsim watch`'s batches).

Uses the folder, model and index `benchmarks/start_speed.py` builds in --root (4,000 images by
default). Starts a FolderWatcher in this process (as `imgsim watch` does), then --runs times
writes one new JPEG into the folder and waits until the store holds it: the time from the
write to a search that would return it. Prints the median and the worst. The copies are
removed again (through the watcher) at the end. Not a test: figures depend on the machine.

    .venv/bin/python benchmarks/watch_latency.py --root /tmp/start_speed
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from pathlib import Path

from PIL import Image

from imgsim.config import MODEL_FILE, ExtractConfig
from imgsim.watch import FolderWatcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/start_speed"))
    parser.add_argument("--runs", type=int, default=20)
    opts = parser.parse_args()
    data, work = opts.root / "data", opts.root / "work"
    config = ExtractConfig(
        data_dir=str(data), output_dir=str(work), model_path=str(work / MODEL_FILE)
    )
    watcher = FolderWatcher(config)
    watcher.start()
    store = watcher._store
    source = sorted(data.glob("circle_*"))[0]
    blob = io.BytesIO()
    Image.open(source).convert("RGB").save(blob, "JPEG", quality=95)
    seconds, names = [], []
    try:
        for i in range(opts.runs):
            name = f"circle_watch{i:03d}_1.jpg"
            names.append(name)
            start = time.monotonic()
            (data / name).write_bytes(blob.getvalue())
            while not store.contains(name):
                time.sleep(0.01)
            seconds.append(time.monotonic() - start)
            time.sleep(0.3)
        for name in names:
            os.unlink(data / name)
        while any(store.contains(n) for n in names):
            time.sleep(0.05)
    finally:
        watcher.stop()
    print(f"images: {store_count(work)}; load average (1 min): {os.getloadavg()[0]:.2f}")
    print(f"copy → indexed: median {statistics.median(seconds):.2f} s, worst {max(seconds):.2f} s")


def store_count(work: Path) -> int:
    from imgsim.store import open_store

    with open_store(work) as store:
        return store.count()


if __name__ == "__main__":
    main()
