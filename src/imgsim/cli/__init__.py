"""The `imgsim` command: argument parsing, one subcommand per pipeline stage, and the demo.

Layer 11, the top: may import every other package.
"""

from .commands import main

__all__ = ["main"]
