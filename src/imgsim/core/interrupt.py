"""A clean stop: SIGTERM stops a command as Ctrl+C does, and the command says how to continue."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

_next_step: list[str] = []  # what to run to continue, set by the command as it learns it


class Stopped(KeyboardInterrupt):
    """Ctrl+C or SIGTERM reached the command; `signum` says which."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_on_sigterm() -> None:
    """Make SIGTERM (docker stop, systemd, kill) raise Stopped in the main thread, so it takes
    the path Ctrl+C takes: `finally` blocks run and nothing is left half written."""
    signal.signal(signal.SIGTERM, _raise_stopped)


def ignore_more() -> None:
    """Once a stop is under way, a second Ctrl+C or SIGTERM (an impatient user) is ignored:
    it would break the clean-up with a traceback, and the process ends within seconds anyway."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _exit_quietly(_signum: int, _frame: object) -> None:
    os._exit(0)  # no clean-up to run: the parent owns every output file


def _raise_stopped(signum: int, _frame: object) -> None:
    # A second SIGTERM while the first unwinds would interrupt the clean-up itself.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stopped(signum)


def leave_to_parent() -> None:
    """In a worker process: ignore the terminal's Ctrl+C, and end quietly on SIGTERM.

    The parent stops its workers itself. A worker stopped by Ctrl+C directly would print its
    own traceback, and one killed by a signal is reported by the pool as crashed while the
    parent stops cleanly. SIGTERM (the pool's own way to end a worker, or one sent to the
    whole group) ends it at once with status 0, which the pools take as a normal exit.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_quietly)
    if hasattr(signal, "pthread_sigmask"):  # held back while we started (signals_held)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    sys.excepthook = _quiet_when_parent_left
    threading.excepthook = lambda a: _quiet_when_parent_left(
        a.exc_type, a.exc_value, a.exc_traceback
    )


_PARENT_LEFT = (BrokenPipeError, ConnectionResetError, EOFError)


def _quiet_when_parent_left(kind: type[BaseException], value: BaseException, tb: object) -> None:
    # A worker's helper thread (multiprocessing's resource sharer, which hands tensors to the
    # parent, reports through sys.excepthook) meets a closed pipe when the parent stops
    # mid-transfer: the parent is going and ends this process too; the traceback would read
    # as a crash.
    if issubclass(kind, _PARENT_LEFT):
        return
    sys.__excepthook__(kind, value, tb)  # type: ignore[arg-type]


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl+C and SIGTERM back (acted on when leaving, not lost) while workers start.

    A worker spawned meanwhile inherits the blocked mask, so a signal sent to the whole group
    while it is still importing never reaches it half started (Ctrl+C would print a traceback
    from its start-up code), and this process never stops between starting a worker and
    handing it its start-up data (the worker would print "EOFError: Ran out of input").
    The worker then takes the signals its own way (leave_to_parent).
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "pthread_sigmask"
    ):
        yield  # only the main thread may set handlers (and runs them); Windows has no mask
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    # The mask alone would not do: another thread takes the signal, and Python runs the
    # handler in this thread at once. The handlers only note it until the workers are up.
    handlers = {s: signal.signal(s, lambda signum, _frame: caught.append(signum)) for s in held}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if caught:
            _act_on(caught[0], handlers[caught[0]])


def _act_on(signum: int, handler: object) -> None:
    """Do what `handler`, the signal's own, does with `signum`."""
    if callable(handler):
        handler(signum, None)  # Ctrl+C: raises KeyboardInterrupt; SIGTERM: raises Stopped
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)


def continue_with(command: str) -> None:
    """Say what to run to continue when this command is stopped (replaces the default)."""
    _next_step[:] = [command]


def exit_status(stop: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a program the signal ended: 130, 143."""
    return 128 + int(getattr(stop, "signum", signal.SIGINT))


def report(argv: Sequence[str]) -> None:
    """The one line a stopped command ends with: what to run to continue."""
    command = _next_step[0] if _next_step else "imgsim " + shlex.join(argv)
    print(f"\nStopped. To continue: {command}", file=sys.stderr, flush=True)
