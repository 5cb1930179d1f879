"""Training speed of `imgsim train` on the CPU and, where there is one, a GPU (images/s).

Trains the default network at the default image size on generated pictures already in memory
(so decoding does not count), for a fixed number of steps per device, and prints a table.

python benchmarks/train_speed.py                          # cpu, and cuda when available
python benchmarks/train_speed.py --devices cpu --steps 3 --images 256    # a quick look
python benchmarks/train_speed.py --write-docs             # also update docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docs_section import write_section

from imgsim.core.config import DEFAULT_IMAGE_SIZE, ModelConfig, TrainConfig
from imgsim.images.sample import SHAPES, draw_shape
from imgsim.model.device import autocast_dtype, describe, resolve_device
from imgsim.train.train import train
from imgsim.train.trainset import in_memory

TITLE = "## Training speed by device"


def shapes_in_memory(count: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` generated pictures (uint8 N×3×S×S) in len(SHAPES) categories, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(SHAPES)
    arrays = [np.asarray(draw_shape(SHAPES[c], size, rng)).transpose(2, 0, 1) for c in labels]
    return torch.from_numpy(np.stack(arrays)), torch.from_numpy(labels)


def measure(
    name: str, args: argparse.Namespace, images: torch.Tensor, labels: torch.Tensor
) -> dict:
    device = resolve_device(name)
    config = TrainConfig(epochs=2, steps_per_epoch=args.steps, batch_size=args.batch,
                         device=name, val_fraction=0.05, threads=args.threads)  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        config.output_dir = out
        start = time.perf_counter()
        result = train(config, ModelConfig(image_size=args.size),
                       data=in_memory(images, labels, list(SHAPES)), progress=False)  # fmt: skip
        seconds = time.perf_counter() - start
    # Epoch 1 pays one-off costs (cuDNN autotuning, allocator warm-up): epoch 2 is the speed.
    return {"device": describe(device, autocast_dtype(device)),
            "images_per_s": result.history[-1]["images_per_s"], "seconds": seconds}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    default = "cpu,cuda" if torch.cuda.is_available() else "cpu"
    p.add_argument("--devices", default=default, help=f"comma-separated ({default})")
    p.add_argument("--images", type=int, default=4096, help="generated pictures in memory")
    p.add_argument("--size", type=int, default=DEFAULT_IMAGE_SIZE, help="image side")
    p.add_argument("--batch", type=int, default=TrainConfig().batch_size)
    p.add_argument("--steps", type=int, default=30, help="training steps per epoch (2 epochs)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    p.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = p.parse_args()
    images, labels = shapes_in_memory(args.images, args.size)
    rows = [measure(name, args, images, labels) for name in args.devices.split(",")]
    base = rows[0]["images_per_s"]
    lines = ["| device | images/s (2nd epoch) | speed-up | wall time (s) |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['device']} | {r['images_per_s']:.0f} | "
                     f"{r['images_per_s'] / base:.1f}× | {r['seconds']:.0f} |")  # fmt: skip
    command = " ".join(["python", "benchmarks/train_speed.py", *sys.argv[1:]])
    section = (
        f"{TITLE}\n\n`{command}` — {os.cpu_count()} cores, {platform.machine()}, "
        f"{time.strftime('%Y-%m-%d')}; default network at {args.size} px, batch {args.batch}, "
        f"{args.steps} steps per epoch, images in memory.\n\n" + "\n".join(lines) + "\n"
    )
    print(section)
    if args.write_docs:
        write_section(TITLE, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
