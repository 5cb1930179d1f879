"""Worker processes that die with their parent: PR_SET_PDEATHSIG on Linux, a watchdog anywhere."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger("imgsim")

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
WATCH_INTERVAL_S = 0.5


def bind_to_parent(
    parent_pid: int | None = None, use_prctl: bool = True, interval: float = WATCH_INTERVAL_S
) -> None:
    """Make this process end when `parent_pid` (default: its parent now) ends, even by kill -9.

    On Linux the kernel sends SIGKILL the moment the parent goes (PR_SET_PDEATHSIG). That
    signal follows the parent *thread* that started us, so a daemon thread also watches the
    parent pid and exits when it changes (we were re-parented): the fallback where prctl is
    missing, and a second guard everywhere. Call it first thing in the worker.
    """
    from .interrupt import leave_to_parent

    parent = parent_pid or os.getppid()
    leave_to_parent()  # the parent stops us on Ctrl+C: no traceback of ours, no "crashed" worker
    if use_prctl:
        _set_death_signal(signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)
    watcher = threading.Thread(
        target=_watch, args=(parent, interval), name="imgsim-lifeline", daemon=True
    )
    watcher.start()


def _set_death_signal(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no libc or no prctl: the watchdog alone
        return False


def _watch(parent: int, interval: float) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent:
            os._exit(1)  # no cleanup to run: the parent owns every output file
