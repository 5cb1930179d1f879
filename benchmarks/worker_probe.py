"""Which gunicorn worker answered a request: the one holding the connection's socket (Linux /proc).

The kernel hands each new connection to one worker, and a kept-alive connection stays in that
worker after its answer; so after a request, /proc/net/tcp gives the server end's inode and
/proc/PID/fd the worker that holds it. Used by benchmarks/watch_latency.py and by
tests/test_watch_workers.py to show that every worker, not just one, sees a change.
"""

from __future__ import annotations

import http.client
import os
from pathlib import Path

WATCHER_MODULE = "imgsim.web.watcher_process"  # serve --watch's watcher: a child, not a worker


def worker_pids(master: int) -> list[int]:
    """The pids of gunicorn's worker processes: the children of its master `master` (the
    folder watcher's process left out)."""
    return [pid for pid in _children(master) if WATCHER_MODULE not in _command(pid)]


def watcher_pids(master: int) -> list[int]:
    """The pid of serve --watch's watcher process, a child of `master` ([] while none runs)."""
    return [pid for pid in _children(master) if WATCHER_MODULE in _command(pid)]


def _children(master: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # ended meanwhile
        # The command name (in parentheses) may hold spaces: the fields after it are fixed.
        if int(stat.rsplit(")", 1)[1].split()[1]) == master:
            found.append(int(entry))
    return sorted(found)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _socket_inode(server_port: int, client_port: int) -> str:
    """The inode of the server's end of the loopback TCP connection from `client_port`."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
        if int(local, 16) == server_port and int(remote, 16) == client_port:
            return fields[9]
    return ""


def connection_owner(conn: http.client.HTTPConnection, pids: list[int]) -> int | None:
    """Which of `pids` holds the server end of `conn` (after a kept-alive answer); None: none."""
    if conn.sock is None:
        return None
    inode = _socket_inode(conn.port, conn.sock.getsockname()[1])
    if not inode or inode == "0":
        return None
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None
