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

from imgsim.config import ModelConfig, TrainConfig, replace
from imgsim.quality import QualitySettings, run_quality

TRAIN_FLAGS = (
    "epochs", "batch_size", "learning_rate", "lr_schedule", "loss", "margin",
    "mining", "m_per_class", "val_fraction", "augment", "seed", "steps_per_epoch",
    "time_budget_min",
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
