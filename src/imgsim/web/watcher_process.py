"""serve --watch under gunicorn: the folder watcher in a process of its own beside the workers.

In a worker, the watcher shared the interpreter lock with the request threads: a batch waited
on searches and searches on the batch. Alone, a file moved out leaves the index in a third of
the time (docs/benchmarks.md, "Watched folder"). gunicorn's master starts this process, starts
it again when it dies (the new one takes the lock and catches up), and stops it with the
workers; it never imports torch or the model itself.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from ..core.config import SearchConfig
from ..core.interrupt import leave_to_parent

log = logging.getLogger("imgsim")

RESTART_SECONDS = 1.0  # at most one start per this long: a watcher that dies at once does not spin
PARENT_CHECK_SECONDS = 1.0  # how often the watcher checks that the server still runs


class WatcherProcess:
    """The master's handle on the watcher process: started, kept alive, stopped."""

    def __init__(self, config: SearchConfig) -> None:
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None
        self._started = 0.0

    def keep_alive(self) -> None:
        """Start the watcher if it is not running (first call, or it died)."""
        if self.process is not None and self.process.poll() is None:
            return
        if time.monotonic() - self._started < RESTART_SECONDS:
            return
        if self.process is not None:
            log.warning("watch: the watcher process ended (%s); starting it again",
                        self.process.returncode)  # fmt: skip
        self._started = time.monotonic()
        self.process = _spawn(self.config)

    def stop(self, grace: float) -> None:
        """End the watcher: SIGTERM, and SIGKILL after `grace` seconds. Every write it makes
        is atomic, so one stopped mid-batch leaves nothing half written (the next catches up)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _spawn(config: SearchConfig) -> subprocess.Popen[bytes]:
    # The settings go through a pipe, not the command line, where `ps` would show the token.
    settings = {
        "config": dataclasses.asdict(config),
        "quiet": log.getEffectiveLevel() > logging.INFO,
        "parent": os.getpid(),
    }
    # -c, not -m: imgsim.web imports this module, so -m would run it a second time.
    command = [sys.executable, "-c", "from imgsim.web.watcher_process import main; main()"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE)
    assert process.stdin is not None
    process.stdin.write(json.dumps(settings).encode())
    process.stdin.close()
    return process


def _leave_with_parent(parent: int) -> None:
    """End this process when the server is gone (killed with -9: nobody would stop us)."""
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(0)


def main() -> None:
    """The watcher process: settings on stdin; watch until the master stops it."""
    from ..core.logs import setup_logging
    from .watching import start_watching_here

    leave_to_parent()  # Ctrl+C reaches the whole group: the master stops us itself
    settings = json.loads(sys.stdin.read())
    setup_logging(settings["quiet"])
    config = SearchConfig(**settings["config"])
    threading.Thread(target=_leave_with_parent, args=(settings["parent"],), daemon=True).start()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal is the master's to handle
    start_watching_here(config)
