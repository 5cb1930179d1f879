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


def start(base_dir: Path, shared: Path | None = None, watch_pid: int = 0) -> Iterator[str]:
    """Yield HOST:PORT of a running Milvus server; stop ours afterwards.

    With `shared` (a parallel run, pytest -n N) every worker gets the one server in that
    folder, started by the first worker that needs it (see start_shared).
    """
    if os.environ.get(ENV):
        yield os.environ[ENV]
        return
    if shared is not None:
        yield start_shared(shared, watch_pid)
        return
    server = MilvusTestServer(base_dir)
    address = server.start()
    try:
        yield address
    finally:
        server.stop()


def start_shared(shared: Path, watch_pid: int) -> str:
    """HOST:PORT of the one server of a parallel run: one server, not one per worker.

    The first worker to ask starts it (`python -m tests.milvus_server`, in its own session, its
    data in `shared`); the others wait on the lock and read its address. It outlives that
    worker: stop_shared stops it at the end of the run, and it stops itself once `watch_pid`
    (the run's controller) is gone. A failed start is written down, so each worker says why
    at once instead of trying again.
    """
    import fcntl
    import subprocess
    import sys

    shared.mkdir(parents=True, exist_ok=True)
    ready, failed, log_path = shared / "address", shared / "failed", shared / "server.log"
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if ready.exists():
            return ready.read_text()
        if failed.exists():
            raise ServerFailed(failed.read_text())
        command = [sys.executable, "-m", "tests.milvus_server", "--dir", str(shared / "data")]
        command += ["--ready-file", str(ready), "--watch-pid", str(watch_pid)]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                command, cwd=Path(__file__).resolve().parents[1], stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        (shared / "pid").write_text(str(proc.pid))
        while not ready.exists():  # the server gives up by itself after START_TIMEOUT
            if proc.poll() is not None:
                lines = log_path.read_text(errors="replace").strip().splitlines()
                why = lines[-1] if lines else f"exited ({proc.returncode}) and said nothing"
                failed.write_text(why.removeprefix("error: "))
                raise ServerFailed(failed.read_text())
            time.sleep(0.2)
        return ready.read_text()


def stop_shared(shared: Path, timeout: float = 15.0) -> None:
    """Stop the server start_shared started in `shared`, if one did; wait until it has gone."""
    import signal

    pid_file = shared / "pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _running(pid: int) -> bool:
    """Whether `pid` still runs (not another process's child: no waitpid; a zombie is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


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
    parser.add_argument("--watch-pid", type=int, default=0, help="stop once this process ends")
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
    if not args.watch_pid:
        signal.pause()
    while _running(args.watch_pid):  # a parallel test run's controller (start_shared)
        time.sleep(1)
    server.stop()


if __name__ == "__main__":
    main()
