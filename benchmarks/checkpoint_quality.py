"""Test-split quality of saved checkpoints, with and without the mirror image at test time.

Reads checkpoints (`epoch_NNNN.pt`) or model files that `benchmarks/quality.py` left in its
output folder and measures each on the same Fashion-MNIST split as that regime: the training
images (or their per-category sample) are indexed, the 10,000 test images query them. Answers
which epoch a run should keep and what `test_flip` adds, without training again. Not a test.

    .venv/bin/python benchmarks/checkpoint_quality.py --per-class 300 \\
        /tmp/bq/300/checkpoints/run_0001/epoch_0100.pt /tmp/bq/300/triplet_base_final.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from quality import QualitySettings, embed_all, load_splits, to_rgb_batch  # noqa: E402

from imgsim.core.config import ModelConfig, from_dict  # noqa: E402
from imgsim.model.network import EmbeddingNet  # noqa: E402
from imgsim.train.metrics import retrieval_metrics  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path, help="checkpoints or model files")
    p.add_argument("--per-class", type=int, default=0, help="the regime: 30, 300 or 0 (all)")
    p.add_argument("--test-limit", type=int, default=0, help="test queries (0 = all 10,000)")
    return p.parse_args(argv)


def network(payload: dict, test_flip: str) -> EmbeddingNet:
    """The saved network, embedding with its mirror image or without."""
    config = from_dict(ModelConfig, {**payload["model_config"], "test_flip": test_flip})
    model = EmbeddingNet(config)
    model.load_state_dict(payload.get("model_state") or payload["state_dict"])
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = QualitySettings(per_class=args.per_class, test_limit=args.test_limit)
    tr_x, tr_y, te_x, te_y = load_splits(settings)
    print("| file | test flip | P@1 | MAP@R |\n|---|---|---:|---:|")
    for path in args.files:
        payload = torch.load(path, weights_only=True, map_location="cpu")
        size = payload["model_config"]["image_size"]
        tr, te = to_rgb_batch(tr_x, size), to_rgb_batch(te_x, size)
        for flip in ("off", "on"):
            model = network(payload, flip)
            m = retrieval_metrics(embed_all(model, te), te_y, embed_all(model, tr), tr_y)
            p1, mapr = m["precision_at_1"], m["mean_average_precision_at_r"]
            print(f"| {path.name} | {flip} | {p1:.4f} | {mapr:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
