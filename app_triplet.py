"""The original's `python app_triplet.py`: now `imgsim serve` (same flags: --host, --port, ...)."""

import sys

from imgsim.cli.commands import main

raise SystemExit(main(["serve", *sys.argv[1:]]))
