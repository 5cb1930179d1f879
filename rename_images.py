"""The original's rename_images.py, kept as a shim: same as `imgsim rename [FOLDER] [options]`."""

import sys
from pathlib import Path

# Lets `python rename_images.py` work from a checkout that was never pip-installed.
sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from imgsim.cli.commands import main

if __name__ == "__main__":
    raise SystemExit(main(["rename", *sys.argv[1:]]))
