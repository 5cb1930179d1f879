"""The tests' own Milvus server: free ports for every listener, and a failed start said at once."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import milvus_server

pytest.importorskip("milvus", reason="no Milvus: pip install -e '.[dev]' (PyPI's milvus)")

# What another etcd or Milvus on the machine holds: etcd's client and peer ports, Milvus's
# metrics/healthz and its gRPC port.
DEFAULT_PORTS = (2379, 2380, 9091, 19530)


def listen(port: int) -> socket.socket | None:
    """A plain listener on 127.0.0.1:`port`; None if something already holds it (as good)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past our own TIME_WAITs
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    sock.listen()
    return sock


@pytest.fixture
def default_ports_taken() -> Iterator[None]:
    held = [sock for port in DEFAULT_PORTS if (sock := listen(port))]
    yield
    for sock in held:
        sock.close()


def test_a_server_starts_beside_another_etcd_and_milvus(
    tmp_path: Path, default_ports_taken: None
) -> None:
    from pymilvus import MilvusClient

    server = milvus_server.MilvusTestServer(tmp_path)
    assert not set(server.ports.values()) & set(DEFAULT_PORTS)
    try:
        address = server.start()
        client = MilvusClient(uri=f"http://{address}")
        try:
            assert client.list_collections() == []  # it answers, and it is ours
        finally:
            client.close()
    finally:
        server.stop()


def test_a_server_that_cannot_start_says_why_at_once(tmp_path: Path) -> None:
    held = listen(0)
    assert held is not None
    port = held.getsockname()[1]
    ports = milvus_server.choose_ports()
    ports["etcd_peer_port"] = port  # the wheel checks its own ports; this one only etcd binds
    server = milvus_server.MilvusTestServer(tmp_path, ports)
    began = time.monotonic()
    try:
        with pytest.raises(milvus_server.ServerFailed, match=f":{port}: bind: address already"):
            server.start()
    finally:
        held.close()
    assert time.monotonic() - began < 60  # not the wheel's 180 s wait for a dead process


def test_a_port_the_wheel_finds_taken_is_named(tmp_path: Path) -> None:
    held = listen(0)
    assert held is not None
    ports = milvus_server.choose_ports()
    ports["proxy_port"] = held.getsockname()[1]
    try:
        with pytest.raises(milvus_server.ServerFailed, match=r"proxy_port=\d+, but bind failed"):
            milvus_server.MilvusTestServer(tmp_path, ports).start()
    finally:
        held.close()
