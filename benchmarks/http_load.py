"""A cheap load client: one thread driving non-blocking keep-alive sockets, requests pre-encoded.

The load test's client runs on the same cores as the server, so every CPU millisecond it
spends is one the server does not get. One Python thread per client, each with http.client,
costs GIL hand-offs and header parsing in Python on every request; here one thread drives all
connections through `selectors`: each request is encoded once, up front (request line,
headers and multipart body in one bytes object), and an answer is read only as far as its
status line and Content-Length.
"""

from __future__ import annotations

import random
import selectors
import socket
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Call:
    """One kind of request in the mix and the status it must get."""

    name: str
    method: str
    path: str
    body: bytes | None = None
    content_type: str | None = None
    expect: int = 200

    def encoded(self, port: int) -> bytes:
        """The whole HTTP/1.1 request, ready to send on a keep-alive connection."""
        head = [f"{self.method} {self.path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        if self.content_type:
            head.append(f"Content-Type: {self.content_type}")
        if self.body is not None or self.method == "POST":
            head.append(f"Content-Length: {len(self.body or b'')}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + (self.body or b"")


@dataclass
class Tally:
    """What the clients saw: latencies (s) by call name, statuses, errors."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


class _Conn:
    """One client: its socket, the request in flight, what has come back of the answer."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.call: Call | None = None
        self.out = memoryview(b"")
        self.buf = bytearray()
        self.started = 0.0

    def start(self, call: Call, request: bytes) -> None:
        self.call, self.out, self.buf = call, memoryview(request), bytearray()
        self.started = time.perf_counter()

    def answer(self) -> tuple[int, bytes, bool] | None:
        """(status, body, server closes) once the whole answer is in, else None."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buf[:end]).lower()
        at, length = head.find(b"content-length:"), 0
        if at >= 0:
            stop = head.find(b"\r\n", at)
            length = int(head[at + 15 : stop if stop >= 0 else len(head)])
        if len(self.buf) < end + 4 + length:
            return None
        status = int(head[9:12])
        return status, bytes(self.buf[end + 4 : end + 4 + length]), b"connection: close" in head


def drive(
    port: int, mix: list[tuple[Call, int]], clients: int, seconds: float, seed: int = 0
) -> Tally:
    """`clients` connections sending requests from the mix back to back for `seconds`.

    Each connection has one request in flight at a time, as a browser tab or a script would;
    a request started before the end is waited for. A refused or dropped connection is an
    error and the connection is opened again.
    """
    rng = random.Random(seed)
    calls, weights = zip(*mix, strict=True)
    encoded = {call: call.encoded(port) for call in calls}
    tally = Tally()
    sel = selectors.DefaultSelector()
    until = time.monotonic() + seconds

    def begin(conn: _Conn) -> None:
        call = rng.choices(calls, weights)[0]
        conn.start(call, encoded[call])
        sel.register(conn.sock, selectors.EVENT_WRITE, conn)

    def reopen(conn: _Conn) -> None:
        sel.unregister(conn.sock)
        conn.sock.close()
        if time.monotonic() < until:
            try:
                begin(_Conn(port))
            except OSError as exc:  # the server is gone: this client stops
                tally.errors.append(f"connect: {exc!r}")

    for _ in range(clients):
        begin(_Conn(port))
    while sel.get_map():
        for key, events in sel.select(timeout=60) or _timeout(tally, sel):
            conn: _Conn = key.data
            try:
                if events & selectors.EVENT_WRITE:
                    conn.out = conn.out[conn.sock.send(conn.out) :]
                    if not conn.out:
                        sel.modify(conn.sock, selectors.EVENT_READ, conn)
                    continue
                data = conn.sock.recv(262144)
            except OSError as exc:
                tally.errors.append(f"{conn.call.name if conn.call else '?'}: {exc!r}")
                reopen(conn)
                continue
            if not data:
                tally.errors.append(f"{conn.call.name if conn.call else '?'}: connection closed")
                reopen(conn)
                continue
            conn.buf += data
            got = conn.answer()
            if got is None:
                continue
            _record(tally, conn, *got[:2])
            if got[2]:
                reopen(conn)
            elif time.monotonic() < until:
                sel.modify(conn.sock, selectors.EVENT_WRITE, conn)
                call = rng.choices(calls, weights)[0]
                conn.start(call, encoded[call])
            else:
                sel.unregister(conn.sock)
                conn.sock.close()
    sel.close()
    return tally


def _record(tally: Tally, conn: _Conn, status: int, body: bytes) -> None:
    call = conn.call
    assert call is not None
    tally.latencies.setdefault(call.name, []).append(time.perf_counter() - conn.started)
    tally.statuses[(call.name, status)] += 1
    if status != call.expect:
        tally.errors.append(f"{call.name}: HTTP {status} {body[:200]!r}")


def _timeout(tally: Tally, sel: selectors.BaseSelector) -> list:
    """No answer for 60 s: every open request is an error; stop."""
    for key in list(sel.get_map().values()):
        tally.errors.append(f"{key.data.call.name}: no answer in 60 s")
        sel.unregister(key.fileobj)
        key.fileobj.close()
    return []
