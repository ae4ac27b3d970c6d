"""The PHP worker table: one slot per configured worker, and the exit policy of a slot.

A slot holds the process serving it and, while one boots, its replacement (a replacement starts
first, so capacity never dips). When a worker exits, its slot counts the exit as a failure or
not, and says how long to wait before the next start: exponential backoff, then an open circuit
(a slow, steady retry) once starts keep failing. Pure state, no I/O: the arbiter acts on it.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import Enum

BACKOFF_START = 0.1
BACKOFF_MAX = 10.0
QUICK_DEATH = 2.0  # a worker that dies sooner than this after starting counts as a failure
EXIT_BOOT_FAILED = 3  # csrc/askr_chan.h: the worker script never reached askr_handle_request()
BOOT_ATTEMPTS = 3  # boot failures in a row, with no worker ever ready, before askr gives up
RECYCLE_REASONS = ("max_requests", "max_memory")  # why a worker is replaced while healthy
TRACE_SIGNAL = signal.SIGRTMIN + 3  # csrc/askr.h: log your PHP backtrace, then exit (request_timeout)
TRACE_GRACE = 1.0  # seconds a worker gets for that before SIGKILL
CIRCUIT_FAILURES = 5  # failed starts in a row that open a slot's circuit (then retry every BACKOFF_MAX)


@dataclass
class WorkerProc:
    """One PHP worker process."""

    worker_id: int  # its scoreboard slot: unique among live workers (see worker_ids)
    position: int
    pid: int = 0
    generation: int = 0
    state: str = "starting"  # starting -> ready -> (retiring) -> exited; killed: on purpose
    started_at: float = 0.0


class ExitKind(Enum):
    ON_PURPOSE = "on purpose"  # askr killed it (request timeout, its front replaced)
    BOOT_FAILED = "boot failed"  # worker mode: the script ended before askr_handle_request()
    CLEAN = "clean"  # exit code 0
    CRASH = "crash"  # any other code, or a signal


def classify(proc: WorkerProc, code: int, sig: int) -> ExitKind:
    if proc.state == "killed":
        return ExitKind.ON_PURPOSE
    if code == EXIT_BOOT_FAILED and not sig:
        return ExitKind.BOOT_FAILED
    if not sig and code == 0:
        return ExitKind.CLEAN
    return ExitKind.CRASH


@dataclass
class WorkerSlot:
    """One of the configured workers."""

    position: int
    current: WorkerProc | None = None
    successor: WorkerProc | None = None
    quota_reached: bool = False  # the current worker asked to be replaced (max_requests)
    failures: int = 0  # consecutive failed starts, for backoff
    not_before: float = 0.0  # monotonic time before which nothing starts here (backoff)
    restarts: int = 0
    last_error: str = ""
    circuit_open: bool = False  # CIRCUIT_FAILURES failed starts in a row: retried slowly
    last_worker_id: int = -1  # the id its latest worker got; the next takes the other (worker_ids)

    def needs_successor(self, generation: int) -> bool:
        """Its worker must be replaced: it reached its quota, or runs another generation's code."""
        current = self.current
        return current is not None and (self.quota_reached or current.generation != generation)

    def remove(self, proc: WorkerProc) -> bool:
        """`proc` exited: take it out of the slot; True if it was the replacement booting."""
        if self.successor is proc:
            self.successor = None
            return True
        if self.current is proc:
            self.current = None
            self.quota_reached = False
        return False

    def count_exit(self, kind: ExitKind, lived: float, booted: bool) -> None:
        """A crash counts as a failed start if it came soon after the start (or before ready);
        a crash after a long life starts the count again."""
        if kind is ExitKind.BOOT_FAILED:
            self.failures += 1
        elif kind is ExitKind.CLEAN:
            self.failures = 0
        elif kind is ExitKind.CRASH:
            self.failures = self.failures + 1 if lived < QUICK_DEATH or not booted else 0

    def backoff(self) -> float:
        """Seconds before the next start: 0, then doubling from BACKOFF_START up to BACKOFF_MAX;
        with the circuit open, always BACKOFF_MAX."""
        if self.failures >= CIRCUIT_FAILURES:
            return BACKOFF_MAX
        return 0.0 if self.failures == 0 else min(BACKOFF_START * 2 ** (self.failures - 1), BACKOFF_MAX)

    def open_circuit(self) -> bool:
        """True when this failure opens the circuit (it was closed)."""
        if self.failures < CIRCUIT_FAILURES or self.circuit_open:
            return False
        self.circuit_open = True
        return True

    def started(self) -> bool:
        """A worker got ready: failures are forgotten; True if that closes an open circuit."""
        was_open = self.circuit_open
        self.circuit_open = False
        self.failures = 0
        self.not_before = 0.0
        self.last_error = ""
        return was_open


def worker_ids(position: int, slots: int) -> tuple[int, int]:
    """Slot p uses worker ids p and p + N in turn, so a replacement and the worker it replaces
    never share a scoreboard entry: not while both live (quota, reload), and not after a crash
    either, when a front may not yet have read which request the dead worker held (a new worker
    clears its entry as it starts)."""
    return position, position + slots


def quota(max_requests: int, position: int, slots: int) -> int:
    """max_requests, spread ±15% across workers so they never all recycle at once."""
    if not max_requests or slots == 1:
        return max_requests
    spread = 0.30 * max_requests * position / (slots - 1) - 0.15 * max_requests
    return max(1, round(max_requests + spread))
