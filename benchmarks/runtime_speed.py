"""Runtime speed: PyTorch eager against onnxruntime, same network, batch 1 and 64, side by side.

Builds the default network (untrained: speed does not depend on the weights), wraps it in
`imgsim.model.embedder.Embedder` once per runtime and times `embed()` on ready uint8 batches. The
runtimes take turns round by round, so both see the same load from the machine's other
users; medians are reported. Also checks that both give the same embeddings. Run it alone on
the machine: timings taken beside other jobs say little. `--write-docs` replaces the
"Runtime speed" section of docs/benchmarks.md. Not a test. `--pretrained`: the bundled
ImageNet network (EfficientNet-Lite0, untrained on any folder, as `extract --pretrained`
writes it) instead, in a section of its own.

    .venv/bin/python benchmarks/runtime_speed.py --write-docs
    .venv/bin/python benchmarks/runtime_speed.py --pretrained --image-size 160 --write-docs
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from docs_section import write_section  # noqa: E402

SECTION = "## Runtime speed (torch against onnx)"
PRETRAINED_SECTION = "## Runtime speed of the pretrained network (torch against onnx)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, default=64, help="input side (64, the default)")
    p.add_argument("--widths", default="", help="channels per stage (default: ModelConfig's)")
    p.add_argument(
        "--test-flip", default="off", choices=("on", "off"),
        help="a network that embeds each image and its mirror (off: as the untrained default)",
    )  # fmt: skip
    p.add_argument(
        "--pretrained", action="store_true",
        help="the bundled ImageNet network (EfficientNet-Lite0) instead of the scratch one",
    )  # fmt: skip
    p.add_argument("--batches", default="1,64", help="batch sizes (1,64)")
    p.add_argument("--threads", default="", help="runtime threads to try (1 and all cores)")
    p.add_argument("--images", type=int, default=2048, help="images per timing at batch ≥ 8")
    p.add_argument("--calls", type=int, default=300, help="calls per timing at batch < 8")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (5)")
    p.add_argument("--write-docs", action="store_true")
    return p.parse_args(argv)


def build_embedders(args: argparse.Namespace, threads: int) -> dict:
    import torch

    from imgsim.core.config import ModelConfig, replace
    from imgsim.model.embedder import Embedder
    from imgsim.model.network import EmbeddingNet, pretrained_model

    torch.manual_seed(0)
    config = ModelConfig(image_size=args.image_size, test_flip=args.test_flip)
    if args.widths:
        widths = tuple(int(w) for w in args.widths.split(","))
        config = replace(config, {"widths": widths, "blocks": (1,) * len(widths)})
    model = pretrained_model(args.image_size) if args.pretrained else EmbeddingNet(config).eval()
    return {
        runtime: Embedder.from_model(model, runtime, threads=threads)
        for runtime in ("torch", "onnx")
    }


def time_rounds(embedders: dict, batch: int, args: argparse.Namespace) -> dict[str, float]:
    """Images/s per runtime: the median over alternating rounds of the same workload."""
    size = args.image_size
    x = np.random.default_rng(0).integers(0, 256, (batch, 3, size, size), dtype=np.uint8)
    calls = args.calls if batch < 8 else max(3, args.images // batch)
    for embedder in embedders.values():
        embedder.embed(x)  # warm-up: kernels are chosen for a shape on first use
    times: dict[str, list[float]] = {name: [] for name in embedders}
    for _ in range(args.rounds):
        for name, embedder in embedders.items():
            start = time.perf_counter()
            for _ in range(calls):
                embedder.embed(x)
            times[name].append(time.perf_counter() - start)
    return {name: calls * batch / statistics.median(t) for name, t in times.items()}


def agreement(embedders: dict, size: int) -> float:
    """The lowest cosine between the runtimes' embeddings of 64 random images."""
    x = np.random.default_rng(1).integers(0, 256, (64, 3, size, size), dtype=np.uint8)
    a, b = embedders["torch"].embed(x), embedders["onnx"].embed(x)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def render(args: argparse.Namespace, rates: dict, cosine: float, load: float, date: str) -> str:
    import onnxruntime
    import torch

    rows = []
    for (threads, batch), r in sorted(rates.items()):
        faster = "onnx" if r["onnx"] > r["torch"] else "torch"
        ratio = max(r.values()) / min(r.values())
        rows.append(
            f"| {threads} | {batch} | {r['torch']:.0f} | {r['onnx']:.0f} | "
            f"{faster} ({ratio:.2f}×) |"
        )
    command = " ".join(["benchmarks/runtime_speed.py", *sys.argv[1:]])
    widths = f", widths {args.widths}" if args.widths else ""
    widths += ", each image and its mirror (test_flip on)" if args.test_flip == "on" else ""
    network = f"the default `ModelConfig` at {args.image_size} px{widths}, untrained"
    if args.pretrained:
        network = (
            f"the bundled ImageNet network (EfficientNet-Lite0, 1280-d features) at "
            f"{args.image_size} px, as `imgsim extract --pretrained` writes it"
        )
    return f"""{PRETRAINED_SECTION if args.pretrained else SECTION}

- Command: `.venv/bin/python {command}`
- Machine: {os.cpu_count()} CPU cores; Python {platform.python_version()}, torch
  {torch.__version__}, onnxruntime {onnxruntime.__version__}; load average (1 min) when it
  began: {load:.2f}
- Date: {date}
- Network: {network};
  `Embedder.embed()` on ready uint8 batches (the call search and extraction make);
  {args.rounds} alternating rounds, medians. Lowest cosine between the two runtimes'
  embeddings: {cosine:.6f}.

| runtime threads | batch | torch images/s | onnx images/s | faster |
|---:|---:|---:|---:|---|
{chr(10).join(rows)}
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
    thread_counts = [int(t) for t in args.threads.split(",")] if args.threads else [1, cores]
    load = os.getloadavg()[0]
    date = subprocess.run(["date"], capture_output=True, text=True).stdout.strip()
    rates, cosine = {}, 1.0
    for threads in dict.fromkeys(thread_counts):
        embedders = build_embedders(args, threads)
        cosine = min(cosine, agreement(embedders, args.image_size))
        for batch in (int(b) for b in args.batches.split(",")):
            rates[(threads, batch)] = time_rounds(embedders, batch, args)
            r = rates[(threads, batch)]
            print(f"threads={threads} batch={batch}: torch {r['torch']:.0f}, "
                  f"onnx {r['onnx']:.0f} images/s", flush=True)  # fmt: skip
    section = render(args, rates, cosine, load, date)
    print(section)
    if args.write_docs:
        write_section(PRETRAINED_SECTION if args.pretrained else SECTION, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
