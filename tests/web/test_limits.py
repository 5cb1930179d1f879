"""The request timeout: stalled and trickling uploads get 408 at the deadline, nothing else."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.exceptions import RequestTimeout

from imgsim.web.limits import BodyDeadline, DeadlineInput, Watch, Watchdog

TIMEOUT = 1.0  # seconds: short, so the tests are too
UPLOAD_HEAD = (
    b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
    b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
)


@pytest.fixture
def address(make_app: Callable[..., Flask], live_server) -> tuple[str, int]:
    url = live_server(make_app(request_timeout=TIMEOUT))
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def answer_of(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    return b"".join(iter(lambda: sock.recv(65536), b""))


def health(address: tuple[str, int]) -> bytes:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return answer_of(sock)


def test_stalled_upload_is_408_at_the_deadline(address: tuple[str, int]) -> None:
    start = time.monotonic()
    with socket.create_connection(address) as sock:
        sock.sendall(UPLOAD_HEAD)  # and then nothing more
        answer = answer_of(sock)
    elapsed = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408")
    assert b'{"error":"request timeout: the upload did not arrive within 1 seconds"}' in answer
    assert TIMEOUT * 0.9 < elapsed < TIMEOUT + 1.5
    assert health(address).startswith(b"HTTP/1.1 200")


def trickle(address: tuple[str, int]) -> tuple[bytes, float]:
    """Start an upload, then send a byte every 0.2 s: never a long wait for any single read."""
    start = time.monotonic()
    with socket.create_connection(address) as sock:
        sock.sendall(UPLOAD_HEAD)
        sock.settimeout(0.2)
        answer = b""
        while time.monotonic() - start < 10 and not answer:
            try:
                sock.sendall(b"x")
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # the server closed as we wrote
                break
    return answer, time.monotonic() - start


def test_trickling_upload_is_408_at_the_deadline_too(address: tuple[str, int]) -> None:
    answer, elapsed = trickle(address)
    assert answer.startswith(b"HTTP/1.1 408")
    assert elapsed < TIMEOUT + 1.5


def test_idle_connection_is_closed_by_imgsim_serve(address: tuple[str, int]) -> None:
    start = time.monotonic()
    with socket.create_connection(address) as sock:
        assert answer_of(sock) == b""  # no headers ever sent: closed, no thread held
    assert time.monotonic() - start < TIMEOUT + 1.5


def test_keep_alive_requests_are_left_alone(address: tuple[str, int], query_png: bytes) -> None:
    import http.client

    conn = http.client.HTTPConnection(*address, timeout=10)
    for _ in range(3):  # three requests, one connection: the watchdog leaves it alone
        conn.request("POST", "/search", body=query_png, headers={"Content-Type": "image/png"})
        response = conn.getresponse()
        response.read()
        assert response.status == 400  # a raw body: refused, but answered
    conn.close()


def test_timeout_response_is_json_and_closes_the_connection(
    make_app: Callable[..., Flask], query_png: bytes
) -> None:
    client = make_app(request_timeout=1e-9).test_client()  # over before the body is read
    response = client.post("/search", data={"image": (io.BytesIO(query_png), "q.png")})
    assert response.status_code == 408
    assert response.get_json()["error"].startswith("request timeout")
    assert response.headers["Connection"] == "close"


def test_zero_timeout_turns_the_deadline_off() -> None:
    seen: list[object] = []
    middleware = BodyDeadline(lambda environ, start: seen.append(environ["wsgi.input"]) or [], 0)
    middleware({"wsgi.input": io.BytesIO(b"x")}, lambda *args: None)
    assert isinstance(seen[0], io.BytesIO)


def test_deadline_input_refuses_reads_after_the_deadline() -> None:
    stream = DeadlineInput(io.BytesIO(b"abc"), Watch(None, time.monotonic() + 60), 60)
    assert stream.read(1) == b"a" and stream.readline() == b"bc"
    late = DeadlineInput(io.BytesIO(b"abc"), Watch(None, time.monotonic() - 1), 60)
    with pytest.raises(RequestTimeout):
        late.read()


def test_watchdog_cuts_off_a_blocked_read_at_the_deadline() -> None:
    watchdog = Watchdog()
    server, client = socket.socketpair()
    with server, client:
        start = time.monotonic()
        watch = watchdog.watch(server, start + 0.3)
        assert server.recv(10) == b""  # blocked until the watchdog shut the read side
        assert 0.25 < time.monotonic() - start < 2
        assert watch.expired
        server.sendall(b"the answer can still be written")
        assert client.recv(100) == b"the answer can still be written"


def test_watchdog_leaves_finished_requests_alone() -> None:
    watchdog = Watchdog()
    server, client = socket.socketpair()
    with server, client:
        watch = watchdog.watch(server, time.monotonic() + 0.1)
        watchdog.done(watch)
        time.sleep(0.3)  # past the deadline: the socket may already serve another request
        client.sendall(b"next request")
        assert server.recv(100) == b"next request"
        assert not watch.expired


def test_watchdog_wakes_only_for_a_sooner_deadline() -> None:
    # A wake-up per request cost a thread switch each; only an earlier deadline needs one.
    watchdog = Watchdog()
    wakes = []
    notify = watchdog._cond.notify
    watchdog._cond.notify = lambda n=1: (wakes.append(n), notify(n))  # type: ignore[method-assign]
    server, client = socket.socketpair()
    with server, client:
        now = time.monotonic()
        first = watchdog.watch(server, now + 60)
        later = [watchdog.watch(server, now + 60 + i) for i in range(1, 50)]
        assert len(wakes) == 1
        for watch in [first, *later]:
            watchdog.done(watch)
            assert watch.sock is None  # released at once, though it waits in the heap
        soon = watchdog.watch(server, time.monotonic() + 0.3)
        assert len(wakes) == 2
        assert server.recv(10) == b""  # the sooner deadline still cuts the read off in time
        assert soon.expired


def test_gunicorn_answers_a_trickling_upload_408_too(workdir: Path, tmp_path: Path) -> None:
    # Production runs gunicorn, whose body reads loop until they have what was asked for:
    # only the watchdog's cut-off ends them.
    config = tmp_path / "imgsim.toml"
    config.write_text(f"[search]\nrequest_timeout = {TIMEOUT}\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
    env = {**os.environ, "IMGSIM_WORKDIR": str(workdir), "IMGSIM_CONFIG": str(config)}
    bind = f"127.0.0.1:{address[1]}"
    command = [sys.executable, "-m", "gunicorn", "-w", "1", "--threads", "2", "-b", bind,
               "--log-level", "warning", "imgsim.web:create_app()"]  # fmt: skip
    server = subprocess.Popen(command, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not health_or_none(address):
            assert time.monotonic() < deadline and server.poll() is None, "gunicorn did not start"
            time.sleep(0.2)
        answer, elapsed = trickle(address)
        assert answer.startswith(b"HTTP/1.1 408")
        assert elapsed < TIMEOUT + 1.5
        assert health(address).startswith(b"HTTP/1.1 200")
    finally:
        server.terminate()
        server.wait(timeout=30)


def health_or_none(address: tuple[str, int]) -> bytes | None:
    try:
        return health(address)
    except OSError:
        return None
