"""A real Milvus server for the tests: the one CI started (IMGSIM_TEST_MILVUS), else our own."""

# PyPI's `milvus` package runs Milvus standalone from a wheel (about 10-20 s to start). Without it
# (and without IMGSIM_TEST_MILVUS) the Milvus half of the store tests is skipped, saying why.
# Every listener of our server, its embedded etcd and its metrics port included, gets a free
# port: the wheel's defaults (2379, 2380, 9091, 19530, ...) may belong to another etcd or Milvus.

from __future__ import annotations

import os
import re
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

ENV = "IMGSIM_TEST_MILVUS"  # HOST:PORT of a running server
START_TIMEOUT = 300.0  # seconds; a busy machine once took over 3 minutes
# Ours, beside the wheel's own *_port settings (etcd_port is etcd's client port).
EXTRA_PORTS = ("etcd_peer_port", "metrics_port")
ETCD_ANCHOR = "  use:\n    embed: true"  # in the wheel's milvus.yaml template, under etcd:


class ServerFailed(RuntimeError):
    """Our Milvus server did not come up; the message says why."""

    reported = False  # set by the fixture that reported it, so later tests only skip


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that nothing listens on, on any address."""
    sockets = []
    try:
        for _ in range(count):  # all open at once, so the kernel hands out distinct ports
            sock = socket.socket()
            sock.bind(("", 0))  # Milvus binds most listeners on every address
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def choose_ports() -> dict[str, int]:
    """A free port for every listener: the wheel's *_port settings and EXTRA_PORTS."""
    from milvus import MilvusServerConfig  # ImportError: the caller skips

    keys = [key for key in MilvusServerConfig().configurable_items if key.endswith("_port")]
    keys += EXTRA_PORTS
    return dict(zip(keys, free_ports(len(keys)), strict=True))


class MilvusTestServer:
    """PyPI's standalone Milvus with every listener on the port `ports` gives it."""

    def __init__(self, base_dir: Path, ports: dict[str, int] | None = None) -> None:
        from milvus import MilvusServer, MilvusServerConfig  # ImportError: the caller skips

        self.base_dir = Path(base_dir).absolute()
        self.ports = ports or choose_ports()
        wheel = MilvusServerConfig()  # the wheel's own template and glog.conf
        template = self._write_configs(Path(wheel.template_file))
        settings = {key: port for key, port in self.ports.items() if key not in EXTRA_PORTS}
        config = MilvusServerConfig(template=str(template))
        config.glog_conf_file = wheel.glog_conf_file  # set only for the wheel's own template
        config.update(data_dir=str(self.base_dir), **settings)
        self._server = MilvusServer(config, wait_for_started=False)  # we watch it ourselves
        self._server.webservice_port = self.ports["metrics_port"]  # the wheel's 9091

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ports['proxy_port']}"

    def _write_configs(self, wheel_template: Path) -> Path:
        """An etcd config on our ports, and the wheel's milvus.yaml template pointing at it."""
        # The embedded etcd ignores etcd.endpoints: without a config file of its own it
        # listens on 2379 and 2380 whatever the wheel sets.
        configs = self.base_dir / "configs"
        configs.mkdir(parents=True, exist_ok=True)
        client = f"http://127.0.0.1:{self.ports['etcd_port']}"
        peer = f"http://127.0.0.1:{self.ports['etcd_peer_port']}"
        etcd = configs / "etcd.yaml"
        etcd.write_text(
            f"name: default\nlisten-client-urls: {client}\nadvertise-client-urls: {client}\n"
            f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
            f"initial-cluster: default={peer}\n"
        )
        text = wheel_template.read_text()
        if ETCD_ANCHOR not in text:
            raise ServerFailed("the milvus wheel's config template changed: no etcd.use.embed")
        template = configs / "milvus.yaml.template"
        template.write_text(
            text.replace(ETCD_ANCHOR, f"{ETCD_ANCHOR}\n  config:\n    path: {etcd}")
        )
        return template

    def start(self, timeout: float = START_TIMEOUT) -> str:
        """Start the server and return HOST:PORT once it answers; ServerFailed says why not."""
        try:
            self._server.start()
        except RuntimeError as error:  # the wheel found one of our ports taken
            self._server.config.cleanup_listen_ports()
            raise ServerFailed(f"Milvus did not start: {error}") from error
        deadline = time.monotonic() + timeout
        while not self._healthy():
            code = self._server.server_proc.poll()
            if code is not None:  # the wheel itself would wait out its 180 s here
                self.stop()
                raise ServerFailed(f"Milvus exited ({code}) before it answered: {self.reason()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerFailed(f"Milvus did not answer in {timeout:.0f} s: {self.reason()}")
            time.sleep(0.2)
        time.sleep(1)  # as the wheel does: healthz says OK a moment before all is ready
        return self.address

    def _healthy(self) -> bool:
        url = f"http://127.0.0.1:{self._server.webservice_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return b"OK" in response.read()
        except OSError:  # refused, reset, HTTP errors: not yet
            return False

    def reason(self) -> str:
        """The first error Milvus logged (its panics hide it), else where its logs are."""
        logs = self.base_dir / "logs"
        log = logs / "milvus-stdout.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        for line in lines:
            if "[ERROR]" in line or "[FATAL]" in line:
                return re.sub(r" \[stack=.*", "", line.split("] ", 1)[-1])[:500]
        return f"no error logged; see {logs}"

    def stop(self) -> None:
        self._server.stop()


def start(base_dir: Path) -> Iterator[str]:
    """Yield HOST:PORT of a running Milvus server; stop ours afterwards."""
    if os.environ.get(ENV):
        yield os.environ[ENV]
        return
    server = MilvusTestServer(base_dir)
    address = server.start()
    try:
        yield address
    finally:
        server.stop()


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
    import sys
    import tempfile

    parser = argparse.ArgumentParser(description="A Milvus standalone server for the tests")
    parser.add_argument("--port", type=int, default=0, help="(a free one)")
    parser.add_argument("--dir", help="data folder (a new temporary one)")
    parser.add_argument("--ready-file", help="write HOST:PORT here once it answers")
    args = parser.parse_args()
    ports = choose_ports()
    if args.port:
        ports["proxy_port"] = args.port
    server = MilvusTestServer(Path(args.dir or tempfile.mkdtemp(prefix="imgsim-milvus-")), ports)
    try:
        address = server.start()
    except ServerFailed as failure:
        sys.exit(f"error: {failure}")
    if args.ready_file:  # whole or not at all: CI reads it as soon as it is not empty
        partial = Path(f"{args.ready_file}.part")
        partial.write_text(address)
        partial.rename(args.ready_file)
    print(f"Milvus ready on {address}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (server.stop(), os._exit(0)))
    signal.pause()


if __name__ == "__main__":
    main()
