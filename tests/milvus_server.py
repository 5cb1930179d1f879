"""A real Milvus server for the tests: the one CI started (IMGSIM_TEST_MILVUS), else our own.

PyPI's `milvus` package runs Milvus standalone from a wheel (about 20 s to start). Without it
(and without IMGSIM_TEST_MILVUS) the Milvus half of the store tests is skipped, saying why.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

ENV = "IMGSIM_TEST_MILVUS"  # HOST:PORT of a running server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(base_dir: Path) -> Iterator[str]:
    """Yield HOST:PORT of a running Milvus server; stop ours afterwards."""
    if os.environ.get(ENV):
        yield os.environ[ENV]
        return
    from milvus import default_server  # ImportError: the caller skips

    default_server.set_base_dir(str(base_dir))
    default_server.listen_port = free_port()
    default_server.start()
    try:
        yield f"127.0.0.1:{default_server.listen_port}"
    finally:
        default_server.stop()


def unique_spec(address: str) -> str:
    """A store address whose collections no other test uses."""
    return f"milvus://{address}/t{uuid.uuid4().hex[:12]}"


def drop_prefix(address: str, spec: str) -> None:
    """Drop every collection and alias a test made under its prefix."""
    from pymilvus import MilvusClient

    prefix = spec.rsplit("/", 1)[1]
    client = MilvusClient(uri=f"http://{address}")
    try:
        for name in client.list_collections():
            if name.startswith(prefix):
                for alias in client.list_aliases(name).get("aliases", []):
                    client.drop_alias(alias)
                client.drop_collection(name)
    finally:
        client.close()


def main() -> None:
    """Run a server until killed (.ci/run starts one for the whole test run)."""
    import argparse
    import signal
    import tempfile

    parser = argparse.ArgumentParser(description="A Milvus standalone server for the tests")
    parser.add_argument("--port", type=int, default=0, help="(a free one)")
    parser.add_argument("--dir", help="data folder (a new temporary one)")
    parser.add_argument("--ready-file", help="write HOST:PORT here once it answers")
    args = parser.parse_args()
    from milvus import default_server

    default_server.set_base_dir(args.dir or tempfile.mkdtemp(prefix="imgsim-milvus-"))
    default_server.listen_port = args.port or free_port()
    default_server.start()
    address = f"127.0.0.1:{default_server.listen_port}"
    if args.ready_file:
        Path(args.ready_file).write_text(address)
    print(f"Milvus ready on {address}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (default_server.stop(), os._exit(0)))
    signal.pause()


if __name__ == "__main__":
    main()
