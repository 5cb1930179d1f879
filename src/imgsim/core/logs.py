"""How imgsim's messages reach the terminal: one line each on stderr, warnings and errors named."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("imgsim")


class _StderrHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is when a record comes, not as it was when set up."""

    # A stream kept from set-up may be closed or replaced since (a redirect, a test's capture).
    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "warning: " if record.levelno == logging.WARNING else ""
        prefix = "error: " if record.levelno >= logging.ERROR else prefix
        text = prefix + record.getMessage()
        if record.exc_info:  # a bug's traceback (the web app's unhandled errors) is kept
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(quiet: bool) -> None:
    """imgsim's log on stderr: INFO and above, or only warnings and errors when `quiet`."""
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False
