"""Start-up cost of the CLI: a no-op `imgsim index --update` and one `imgsim search`, cold.

Builds (once) a folder of 4,000 generated 64 px pictures, a model file of the default
scratch shape (untrained: start-up does not depend on what it learnt) and its index, in
--root. Then runs each command --runs times in a fresh process under /usr/bin/time -v and
prints the medians of wall time, CPU time and peak RSS, and whether torch was imported (python -X
importtime); one unmeasured run before them writes the bytecode (as an install has it). Not a
test: figures depend on the machine.

    .venv/bin/python benchmarks/start_speed.py --root /tmp/start_speed
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def build(root: Path, images: int) -> None:
    """The image folder, model file and index, unless they are there already."""
    if (root / "work" / "triplet_manifest.sqlite").exists():
        return
    import torch

    from imgsim.core.config import ModelConfig
    from imgsim.images.sample import generate_shapes
    from imgsim.model.network import EmbeddingNet, save_model

    shapes = ("circle", "square", "triangle", "stripes")
    generate_shapes(root / "data", per_class=images // 4, size=64, seed=1, shapes=shapes)
    torch.manual_seed(0)
    (root / "work").mkdir(parents=True, exist_ok=True)
    model = EmbeddingNet(ModelConfig(image_size=64, backbone="scratch")).eval()
    save_model(root / "work" / "triplet_base_final.pt", model, list(shapes))
    _imgsim(["index", "--data", str(root / "data"), "--workdir", str(root / "work")])


def _env() -> dict[str, str]:
    # As installed: pip compiles the bytecode once. PYTHONDONTWRITEBYTECODE (set in some
    # sandboxes) would make every run compile imgsim's sources again (about 0.05 s).
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _imgsim(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "imgsim.cli", "-q", *args], check=True, env=_env())


def measure(args: list[str], runs: int) -> tuple[float, float, float, bool]:
    """Median wall seconds, CPU seconds, peak RSS in MB, and whether torch was imported."""
    walls, cpus, rss = [], [], []
    # One run first, unmeasured: it writes the bytecode, as an install would have.
    subprocess.run([sys.executable, "-m", "imgsim.cli", "-q", *args], env=_env(), check=True,
                   capture_output=True)  # fmt: skip
    for _ in range(runs):
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "imgsim.cli", "-q", *args]
        out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=True)
        clock = re.search(r"Elapsed \(wall clock\) time .*: (\S+)", out.stderr)
        peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
        user = re.search(r"User time \(seconds\): (\S+)", out.stderr)
        system = re.search(r"System time \(seconds\): (\S+)", out.stderr)
        assert clock and peak and user and system, out.stderr
        cpus.append(float(user.group(1)) + float(system.group(1)))
        minutes, seconds = clock.group(1).rsplit(":", 1)
        walls.append(float(minutes) * 60 + float(seconds))
        rss.append(int(peak.group(1)) / 1024)
    cmd = [sys.executable, "-X", "importtime", "-m", "imgsim.cli", "-q", *args]
    trace = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=True).stderr
    torch = re.search(r"\|\s+torch$", trace, re.MULTILINE) is not None
    median = statistics.median
    return median(walls), median(cpus), median(rss), torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/start_speed"))
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    build(opts.root, opts.images)
    data, work = str(opts.root / "data"), str(opts.root / "work")
    query = str(next(iter(sorted((opts.root / "data").iterdir()))))
    cases = {
        "index --update (no change)": ["index", "--update", "--data", data, "--workdir", work],
        "search (one image)": ["search", query, "--workdir", work, "--json"],
    }
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
    print("| command | wall s | CPU s (user+sys) | peak RSS MB | torch imported |")
    print("|---|---:|---:|---:|---|")
    for name, args in cases.items():
        wall, cpu, rss, torch = measure(args, opts.runs)
        used = "yes" if torch else "no"
        print(f"| `imgsim {name}` | {wall:.2f} | {cpu:.2f} | {rss:.0f} | {used} |")


if __name__ == "__main__":
    main()
