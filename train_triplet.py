"""The original's `python train_triplet.py`, kept as a thin shim over `imgsim train`."""

import sys
from pathlib import Path

# Lets the script work from a checkout that was never pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from imgsim.cli.commands import main

if __name__ == "__main__":
    raise SystemExit(main(["train", *sys.argv[1:]]))
