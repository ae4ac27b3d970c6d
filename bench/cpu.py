"""Where the CPU goes: per-process-kind CPU time from /proc, and what it projects for big machines.

Each server the bench starts leads a process group of its own (run.start), so the processes of a
target are those whose process group id is that server's pid. Each process is classed by its command
line (a front, a PHP worker, nginx's worker, a php-fpm child, ...), and its user + system time is
read from /proc/<pid>/stat before and after a load. Divided by the requests served, that is CPU
µs per request for each kind of process, the cost model the projection table uses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")

# (kind, a substring of its command line), first match wins
KINDS = (
    ("askr front", "askr.front"),
    ("askr PHP worker", "askr-php"),
    ("askr master", "askr serve"),
    ("nginx worker", "nginx: worker"),
    ("php-fpm child", "php-fpm: pool"),
    ("nginx master", "nginx: master"),
    ("php-fpm master", "php-fpm: master"),
)


def _stat(pid: int) -> tuple[int, int] | None:
    """(process group id, utime + stime ticks) of `pid`, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state is fields[0]
    return int(fields[2]), int(fields[11]) + int(fields[12])


def kind_of(pid: int) -> str | None:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    return next((kind for kind, needle in KINDS if needle in cmdline), None)


def processes(groups: set[int]) -> dict[int, str]:
    """pid -> kind, for every classed process of those groups."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            pid = int(entry)
            stat = _stat(pid)
            if stat and stat[0] in groups and (kind := kind_of(pid)):
                out[pid] = kind
    return out


def pin(groups: set[int], kind: str, cpus: set[int]) -> list[int]:
    """Pin every process of `kind` in `groups` to `cpus` (taskset); the pids pinned."""
    pids = [pid for pid, k in processes(groups).items() if k == kind]
    for pid in pids:
        os.sched_setaffinity(pid, cpus)
    return pids


class Meter:
    """CPU seconds per kind spent by the processes of `groups` between start() and stop()."""

    def __init__(self, groups: set[int]):
        self.groups = groups
        self.before: dict[int, tuple[str, int]] = {}

    def start(self) -> None:
        self.before = {}
        for pid, kind in processes(self.groups).items():
            stat = _stat(pid)
            if stat:
                self.before[pid] = (kind, stat[1])

    def stop(self) -> dict[str, float]:
        spent: dict[str, float] = {}
        for pid, (kind, ticks) in self.before.items():
            stat = _stat(pid)
            if stat:  # a process that exited meanwhile is not counted (none should)
                spent[kind] = spent.get(kind, 0.0) + (stat[1] - ticks) / TICKS
        return spent


@dataclass
class Cost:
    """CPU µs per request, by process kind, for one target and URL."""

    by_kind: dict[str, float]

    @classmethod
    def of(cls, spent: dict[str, float], requests: int) -> Cost:
        return cls({k: s * 1e6 / requests for k, s in spent.items()} if requests else {})

    @property
    def total(self) -> float:
        return sum(self.by_kind.values())

    def get(self, *kinds: str) -> float:
        return sum(self.by_kind.get(k, 0.0) for k in kinds)


def project_askr(cost: Cost, cores: int, fronts: int) -> float:
    """req/s on `cores` cores: all of them busy with askr's processes (the load generator
    elsewhere), unless the fronts saturate first (each front is one process: one core at most)."""
    total = cost.total
    front = cost.get("askr front")
    if not total:
        return 0.0
    limits = [cores * 1e6 / total]
    if front:
        limits.append(fronts * 1e6 / front)
    return min(limits)


def project_nginx(cost: Cost, cores: int) -> float:
    """nginx `worker_processes auto` (one per core) and php-fpm with a child per core."""
    total = cost.total
    return cores * 1e6 / total if total else 0.0
