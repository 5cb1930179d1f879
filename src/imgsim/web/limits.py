"""The request timeout: each request body must arrive within `request_timeout` seconds (408).

The byte, pixel and file-count limits bound how much work a request can ask for; this bounds
how long a slow, or deliberately trickling, client can hold one of the server's threads.
A socket timeout alone cannot: it limits each wait, and a client sending a byte a second never
waits long. So one watchdog thread per process shuts the reading side of a connection whose
deadline has passed; the blocked read returns at once and the request is answered 408.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from werkzeug.exceptions import RequestTimeout
from werkzeug.serving import WSGIRequestHandler

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# Where each server puts the client's socket in the WSGI environ (gunicorn, werkzeug).
SOCKET_KEYS = ("gunicorn.socket", "werkzeug.socket")


def timeout_message(seconds: float) -> str:
    """The 408 message."""
    return f"request timeout: the upload did not arrive within {seconds:g} seconds"


@dataclass(eq=False)
class Watch:
    """One request's deadline; `expired` once the watchdog has cut its body off."""

    sock: socket.socket | None
    deadline: float
    active: bool = True
    expired: bool = field(default=False)


class Watchdog:
    """A thread that shuts the read side of sockets whose request deadline has passed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._pid: int | None = None

    def watch(self, sock: socket.socket | None, deadline: float) -> Watch:
        """Start watching a request; without a socket only the read-time check applies."""
        watch = Watch(sock, deadline)
        if sock is None:
            return watch
        with self._cond:
            self._start()
            # The thread sleeps until the earliest deadline; wake it only if this one comes
            # sooner. Deadlines are arrival + the same timeout, so that is rare: a wake-up on
            # every request cost a thread switch each, for nothing.
            sooner = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, next(self._order), watch))
            if sooner:
                self._cond.notify()
        return watch

    def done(self, watch: Watch) -> None:
        """The request is over: its socket must not be touched any more (it may be reused)."""
        with self._cond:
            # It stays in the heap until its deadline comes round: drop the socket now.
            watch.active, watch.sock = False, None

    def _start(self) -> None:
        # Started on first use in each process: a gunicorn worker is forked without threads.
        if self._pid != os.getpid():
            self._pid, self._heap = os.getpid(), []
            threading.Thread(target=self._run, name="imgsim-watchdog", daemon=True).start()

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and not self._heap[0][2].active:
                    heapq.heappop(self._heap)
                wait = self._heap[0][0] - time.monotonic() if self._heap else None
                if wait is None or wait > 0:
                    self._cond.wait(wait)
                    continue
                watch = heapq.heappop(self._heap)[2]
                watch.active, watch.expired = False, True
                _shut_reading(watch.sock)


def _shut_reading(sock: socket.socket | None) -> None:
    # A blocked recv() returns b"" at once; the response can still be written.
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RD)
    except OSError:  # already closed by the client
        pass


WATCHDOG = Watchdog()


class DeadlineInput:
    """A `wsgi.input` whose reads fail with 408 once the request's deadline has passed."""

    def __init__(self, stream: IO[bytes], watch: Watch, seconds: float) -> None:
        self._stream = stream
        self._watch = watch
        self._seconds = seconds

    def read(self, size: int = -1) -> bytes:
        return self._guarded(self._stream.read, size)

    def readline(self, size: int = -1) -> bytes:
        return self._guarded(self._stream.readline, size)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def _guarded(self, read: Callable[[int], bytes], size: int) -> bytes:
        self._check()
        try:
            data = read(size)
        except OSError:
            self._check()  # a read cut off by the watchdog may also fail outright
            raise
        self._check()  # short data after the cut-off is a timeout, not a hang-up
        return data

    def _check(self) -> None:
        if self._watch.expired or time.monotonic() > self._watch.deadline:
            raise RequestTimeout(timeout_message(self._seconds))


class BodyDeadline:
    """WSGI middleware: every request body must arrive within `seconds` of the request."""

    def __init__(self, app: WSGIApp, seconds: float, watchdog: Watchdog = WATCHDOG) -> None:
        self.app = app
        self.seconds = seconds
        self.watchdog = watchdog

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.seconds <= 0 or "wsgi.input" not in environ:
            return self.app(environ, start_response)
        sock = next((environ[k] for k in SOCKET_KEYS if k in environ), None)
        watch = self.watchdog.watch(sock, time.monotonic() + self.seconds)
        environ["wsgi.input"] = DeadlineInput(environ["wsgi.input"], watch, self.seconds)
        try:
            # The views read the whole body before they return: after this, nothing waits.
            return self.app(environ, start_response)
        finally:
            self.watchdog.done(watch)


def request_handler(seconds: float) -> type[WSGIRequestHandler]:
    """Werkzeug's handler for `imgsim serve`, with an idle timeout on every socket wait.

    It covers what the WSGI app never sees: a client that opens a connection and sends its
    headers slowly, or never. (Under gunicorn, that is the reverse proxy's job.)
    """
    return type("TimeoutRequestHandler", (WSGIRequestHandler,), {"timeout": seconds or None})


__all__ = [
    "WATCHDOG",
    "BodyDeadline",
    "DeadlineInput",
    "Watchdog",
    "request_handler",
    "timeout_message",
]
