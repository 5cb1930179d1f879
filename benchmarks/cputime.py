"""CPU time of processes (this one, its children, a server's tree): valid on a shared machine.

Wall-clock rates depend on what else the machine runs; the CPU seconds a piece of work takes
hardly do, so benchmarks report them beside the rates.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def children(parent: int) -> list[int]:
    """The processes whose parent is `parent`, found through /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == parent:  # field 4 of stat, the parent pid
            pids.append(int(stat.parent.name))
    return sorted(pids)


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) used so far by `root` and its children (gunicorn's workers).

    Valid on a busy machine, unlike wall-clock rates: time other processes hold a core is not
    counted.
    """
    return sum(_cpu(pid) for pid in [root, *children(root)])


def own_cpu() -> float:
    """CPU seconds used so far by this process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def family_cpu() -> float:
    """CPU seconds of this process, its ended children (waited for) and its live children.

    A process pool's workers count while they run (from /proc) and after they end (getrusage
    of the children), so a pool started and shut down inside a measured span is counted whole.
    """
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own_cpu() + ended.ru_utime + ended.ru_stime + sum(_cpu(p) for p in children(os.getpid()))


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15 of stat)
