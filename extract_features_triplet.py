"""The original's `python extract_features_triplet.py`: a thin shim over `imgsim extract`."""

import sys
from pathlib import Path

# Lets the script work from a checkout that was never pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from imgsim.cli.commands import main

if __name__ == "__main__":
    raise SystemExit(main(["extract", *sys.argv[1:]]))
