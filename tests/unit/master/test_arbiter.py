"""The master's loop driven by hand: fake zygotes and fronts, events fed one at a time.

No process starts. The test plays every other actor: it answers the arbiter's spawn commands
with the zygote's "spawned" and "exited" lines and the front's WorkerReady/WorkerQuota events,
steps a fake clock through backoff delays, and fires timers (ROLL_TIMEOUT, canary_seconds) by
posting their events. Each scenario runs in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import mmap
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from askr import config
from askr.bridge.events import RequestTimeout, WorkerBootFailed, WorkerGone, WorkerQuota, WorkerReady
from askr.bridge.scoreboard import SLOT, Scoreboard
from askr.master import workers
from askr.master.arbiter import Arbiter
from askr.master.events import (
    CanaryDue,
    DrainDelayOver,
    FrontEvent,
    GiveUp,
    KillDue,
    RollTimeout,
    Signal,
    Wake,
    ZygoteLine,
)
from askr.master.fronts import FrontHandle
from askr.master.reload import Phase

Scenario = Callable[["World"], Coroutine[Any, Any, None]]


class FakeZygote:
    """Records spawn commands; the test decides what becomes of each worker."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.writer: object | None = object()
        self.proc = None
        self.pid = 9000 + generation
        self.spawned: list[tuple[int, int, int]] = []  # (worker_id, quota, position)
        self.channel_paths: list[str] = []
        self.closed = False
        self.sandbox = {"landlock_abi": 7, "seccomp": True}  # what a real one reports before `ready`

    async def start(self) -> None:
        pass

    def spawn(self, worker_id: int, channel_path: str, max_requests: int, queue_fd: int,
              position: int) -> None:
        self.spawned.append((worker_id, max_requests, position))
        self.channel_paths.append(channel_path)

    def close(self) -> None:
        self.closed = True
        self.writer = None

    def stop_reading(self) -> None:
        pass


class FakeControl:
    """A front's control socket: the commands the master sends it."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.lines.append(data)

    def is_closing(self) -> bool:
        return False


class World:
    def __init__(self, arbiter: Arbiter) -> None:
        self.arbiter = arbiter
        self.zygotes: list[FakeZygote] = []
        self.now = 1000.0
        self.next_pid = 100
        self.signals: list[tuple[int, int]] = []
        self.control = FakeControl()
        arbiter.clock = lambda: self.now
        arbiter.send_signal = lambda pid, sig: self.signals.append((pid, sig))
        arbiter.gens.make = self._make
        arbiter.fronts.queue_workers.close()
        arbiter.fronts.queue_workers = _FakeSocket()  # type: ignore[assignment]
        self.controls = [self.control] + [FakeControl() for _ in range(arbiter.config.server.fronts - 1)]
        arbiter.fronts.handles = [FrontHandle(i, None, f"front-{i}.sock", control=c)  # type: ignore[arg-type]
                                  for i, c in enumerate(self.controls)]

    def _make(self, generation: int) -> FakeZygote:
        zygote = FakeZygote(generation)
        self.zygotes.append(zygote)
        return zygote

    async def boot(self) -> None:
        """As `Arbiter.run` starts: the first generation, then every slot's worker, all ready."""
        self.arbiter.gens.promote(await self.arbiter.gens.start_next())  # type: ignore[arg-type]
        self.arbiter.reconcile()
        for worker_id in self.starting():
            self.ready(worker_id)

    def step(self, event: Any) -> None:
        self.arbiter.step(event)

    async def settle(self) -> None:
        """Let the arbiter's tasks run and feed it what they posted."""
        for _ in range(5):
            await asyncio.sleep(0)
            while not self.arbiter.events.empty():
                self.step(self.arbiter.events.get_nowait())

    def zygote_of(self, generation: int) -> FakeZygote:
        return next(z for z in self.zygotes if z.generation == generation)

    def starting(self) -> list[int]:
        """Worker ids spawned but not yet reported: gives each a pid, as the zygote does."""
        out = []
        for proc in list(self.arbiter.procs.values()):
            if proc.pid == 0:
                self.next_pid += 1
                self.step(ZygoteLine(self.zygote_of(proc.generation), ["spawned", str(proc.worker_id),
                                                                           str(self.next_pid)]))  # type: ignore[arg-type]
                out.append(proc.worker_id)
        return out

    def pid(self, worker_id: int) -> int:
        return self.arbiter.procs[worker_id].pid

    def ready(self, worker_id: int) -> None:
        proc = self.arbiter.procs[worker_id]
        self.step(FrontEvent(WorkerReady(worker_id, proc.pid, proc.generation)))

    def exits(self, worker_id: int, code: int = 0, sig: int = 0) -> None:
        proc = self.arbiter.procs[worker_id]
        zygote = self.zygote_of(proc.generation)
        self.step(ZygoteLine(zygote, ["exited", str(worker_id), str(proc.pid), str(code), str(sig)]))  # type: ignore[arg-type]

    def generations(self) -> list[int | None]:
        """The generation each slot's current worker runs."""
        return [s.current.generation if s.current else None for s in self.arbiter.slots.values()]

    def retired(self, front: int = 0) -> list[int]:
        """Pids the front was told to retire."""
        return [json.loads(line)["pid"] for line in self.controls[front].lines if b'"retire"' in line]


class _FakeSocket:
    def fileno(self) -> int:
        return -1


def make_arbiter(tmp_path: Path, toml: str = "") -> Arbiter:
    (tmp_path / "public").mkdir(exist_ok=True)
    path = tmp_path / "askr.toml"
    path.write_text('[server]\nroot = "public"\n' + toml)
    return Arbiter(config.load(path))


def run(tmp_path: Path, scenario: Scenario, toml: str = "workers = 3\n") -> World:
    async def main() -> World:
        world = World(make_arbiter(tmp_path, toml))
        await world.boot()
        await scenario(world)
        world.arbiter.cleanup()
        return world
    return asyncio.run(asyncio.wait_for(main(), 10))


def test_first_workers_start_with_staggered_quotas(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        assert [(wid, pos) for wid, _, pos in world.zygotes[0].spawned] == [(0, 0), (1, 1), (2, 2)]
        assert [quota for _, quota, _ in world.zygotes[0].spawned] == [850, 1000, 1150]
        assert world.arbiter.announced_ready
    run(tmp_path, scenario, "workers = 3\nmax_requests = 1000\n")


def test_quota_starts_the_successor_first_and_retires_the_old_worker_once_it_is_ready(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        arbiter = world.arbiter
        old_pid = world.pid(1)
        world.step(FrontEvent(WorkerQuota(1, old_pid)))
        assert world.zygotes[0].spawned[-1][0] == 1 + 3  # the slot's other worker id
        assert world.starting() == [4]
        assert world.retired() == []  # capacity never dips: the old one serves until then
        world.ready(4)
        assert world.retired() == [old_pid]
        slot = arbiter.slots[1]
        assert slot.current is not None and slot.current.worker_id == 4 and slot.successor is None
        world.exits(1)  # the retired worker leaves after its last request
        assert 1 not in arbiter.procs and world.starting() == []  # nothing else started
        world.step(FrontEvent(WorkerQuota(4, world.pid(4))))  # the next recycle uses id 1 again
        assert world.starting() == [1]
    run(tmp_path, scenario, "workers = 3\nmax_requests = 10\n")


def test_max_memory_recycles_like_a_quota_and_is_counted_by_reason(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        arbiter = world.arbiter
        old_pid = world.pid(0)
        world.step(FrontEvent(WorkerQuota(0, old_pid, "max_memory", 300 * 2**20)))
        world.step(FrontEvent(WorkerQuota(0, old_pid, "max_memory", 301 * 2**20)))  # counted once
        assert world.starting() == [2] and world.retired() == []  # successor first
        world.ready(2)
        assert world.retired() == [old_pid]
        assert arbiter.status()["recycled"] == {"max_requests": 0, "max_memory": 1}
        world.step(FrontEvent(WorkerQuota(1, world.pid(1))))  # max_requests, the default reason
        assert arbiter.status()["recycled"] == {"max_requests": 1, "max_memory": 1}
        metrics = arbiter.metrics.render().decode()
        assert 'askr_php_workers_recycled_total{reason="max_memory"} 1.0' in metrics
        assert 'askr_php_workers_recycled_total{reason="max_requests"} 1.0' in metrics
    run(tmp_path, scenario, 'workers = 2\nmax_requests = 10\n[worker]\nmax_memory = "256M"\n')


def test_request_timeout_asks_for_the_backtrace_then_kills_after_the_grace(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        pid = world.pid(0)
        world.step(FrontEvent(RequestTimeout(0, pid, "/slow")))
        assert world.signals == [(pid, workers.TRACE_SIGNAL)]  # no SIGKILL yet
        assert world.arbiter.procs[0].state == "killed"
        world.step(KillDue(0, pid))  # TRACE_GRACE later, still there: killed
        assert world.signals[-1] == (pid, signal.SIGKILL)
        world.exits(0, sig=signal.SIGKILL)
        assert world.arbiter.slots[0].failures == 0 and world.starting() == [1]  # on purpose
        new_pid = world.pid(1)  # (the slot's other worker id: worker_ids)
        world.ready(1)
        world.step(FrontEvent(RequestTimeout(1, new_pid, "/slow")))
        world.exits(1, sig=signal.SIGKILL)  # it logged its backtrace and left by itself
        signals = len(world.signals)
        world.step(KillDue(1, new_pid))
        assert len(world.signals) == signals  # nothing left to kill
    run(tmp_path, scenario, "workers = 1\n[worker]\nslowlog_timeout = 60\n")


def test_request_timeout_without_a_slowlog_kills_at_once(tmp_path: Path) -> None:
    """No [worker] slowlog_timeout: no watchdog thread in the worker to log a backtrace, so
    SIGKILL straight away (TRACE_SIGNAL would only wait out the grace)."""
    async def scenario(world: World) -> None:
        pid = world.pid(0)
        world.step(FrontEvent(RequestTimeout(0, pid, "/slow")))
        assert world.signals == [(pid, signal.SIGKILL)]
    run(tmp_path, scenario, "workers = 1\n")


def test_a_successor_waits_for_the_worker_id_the_retiring_worker_still_holds(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        world.step(FrontEvent(WorkerQuota(0, world.pid(0))))
        world.starting()
        world.ready(1)  # slot 0 now runs id 1, id 0 is still retiring
        world.step(FrontEvent(WorkerQuota(1, world.pid(1))))
        assert world.starting() == []  # both ids in use
        world.exits(0)
        assert world.starting() == [0]
    run(tmp_path, scenario, "workers = 1\nmax_requests = 10\n")


def test_a_crash_loop_backs_off_then_opens_the_circuit_and_a_ready_worker_closes_it(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        slot = world.arbiter.slots[0]
        world.now += workers.QUICK_DEATH
        world.exits(0, sig=signal.SIGSEGV)  # a crash after a long life: replaced at once
        assert slot.failures == 0 and world.starting() == [1]  # on the slot's other worker id
        delays, ids = [], []
        current = 1
        for _ in range(6):  # each new worker dies at once
            world.exits(current, sig=signal.SIGKILL)
            delays.append(round(slot.not_before - world.now, 3))
            world.step(Wake())
            assert world.starting() == []  # not before its delay
            world.now = slot.not_before
            world.step(Wake())
            (current,) = world.starting()
            ids.append(current)
        assert delays == [0.1, 0.2, 0.4, 0.8, 10.0, 10.0]
        assert ids == [0, 1, 0, 1, 0, 1]  # a dead worker's scoreboard entry is never reused at once
        assert slot.circuit_open and world.arbiter.status()["failing"]["php#0"]["circuit"] == "open"
        world.ready(current)
        assert not slot.circuit_open and slot.failures == 0
        assert world.arbiter.status()["failing"] == {}
    run(tmp_path, scenario, "workers = 1\n")


def test_killed_on_purpose_is_no_failure(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        world.arbiter.kill(world.arbiter.procs[0])
        assert world.signals == [(world.pid(0), signal.SIGKILL)]
        world.exits(0, sig=signal.SIGKILL)
        assert world.arbiter.slots[0].failures == 0 and world.starting() == [1]
        assert world.arbiter.metrics.worker_crashes == 0
    run(tmp_path, scenario, "workers = 1\n")


def test_rolling_reload_replaces_one_slot_at_a_time(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        arbiter = world.arbiter
        assert arbiter.reload_from("test") == {"reload": "started", "generation": 1, "canary": False}
        await world.settle()
        assert arbiter.gens.number == 2 and b'{"cmd": "reload"}\n' in world.control.lines
        for position, expected in enumerate([[2, 1, 1], [2, 2, 1], [2, 2, 2]]):
            new = world.starting()
            assert len(new) == 1 and arbiter.procs[new[0]].position == position  # one at a time
            world.ready(new[0])
            assert world.generations() == expected
        assert arbiter.reloads.current is None
        assert arbiter.status()["last_reload"]["outcome"] == "complete"
        for worker_id in (0, 1, 2):
            world.exits(worker_id)  # the retired generation-1 workers leave
        assert world.zygote_of(1).closed and not world.zygote_of(2).closed
    run(tmp_path, scenario)


def test_a_reload_asked_for_during_one_runs_next(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        arbiter = world.arbiter
        arbiter.reload_from("first")
        assert arbiter.reload_from("second")["reload"] == "queued"
        await world.settle()
        world.ready(world.starting()[0])
        await world.settle()
        assert arbiter.reloads.current is not None and arbiter.reloads.current.why == "second"
        assert arbiter.reloads.last is not None and arbiter.reloads.last["outcome"] == "complete"
        await world.settle()
        assert arbiter.gens.number == 3
        assert world.starting() == []  # worker id 0 is still held by the retiring first worker
        world.exits(0)
        world.ready(world.starting()[0])
        assert world.generations() == [3] and arbiter.reloads.current is None
    run(tmp_path, scenario, "workers = 1\n")


def test_new_code_that_cannot_boot_rolls_everything_back(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        arbiter = world.arbiter
        arbiter.reload_from("test")
        await world.settle()
        world.ready(world.starting()[0])  # slot 0 got generation 2
        assert world.generations() == [2, 1, 1]
        world.exits(0)  # its generation-1 worker, retired
        for _ in range(workers.BOOT_ATTEMPTS):  # slot 1's replacement dies before it is ready
            (worker_id,) = world.starting()
            world.exits(worker_id, code=255)
            world.now += 60
            world.step(Wake())
        assert arbiter.gens.number == 1  # rolled back: new workers run the old code again
        outcome = arbiter.status()["last_reload"]["outcome"]
        assert outcome.startswith("rolled back: generation 2 did not start")
        (worker_id,) = world.starting()  # slot 0 is rolled back the same way (id 0 is free again)
        assert arbiter.procs[worker_id].generation == 1 and arbiter.procs[worker_id].position == 0
        world.ready(worker_id)
        assert world.generations() == [1, 1, 1] and arbiter.reloads.current is None
        world.exits(3)  # the generation-2 worker, retired
        assert world.zygote_of(2).closed and not world.zygote_of(1).closed
    run(tmp_path, scenario)


def test_a_replacement_that_never_gets_ready_is_killed_after_roll_timeout(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        arbiter = world.arbiter
        arbiter.reload_from("test")
        await world.settle()
        (worker_id,) = world.starting()
        reload = arbiter.reloads.current
        assert reload is not None
        world.step(RollTimeout(reload.attempt - 1))  # a stale timer changes nothing
        assert reload.phase is Phase.ROLLING
        world.step(RollTimeout(reload.attempt))
        assert (world.pid(worker_id), signal.SIGKILL) in world.signals
        assert arbiter.gens.number == 1
        assert arbiter.reloads.current is not None  # until the killed replacement is gone
        world.exits(worker_id, sig=signal.SIGKILL)
        assert arbiter.reloads.current is None and world.starting() == []
        assert arbiter.reloads.last is not None and arbiter.reloads.last["outcome"].startswith("rolled back")
    run(tmp_path, scenario, "workers = 2\n")


def test_a_canary_that_answers_5xx_is_judged_unhealthy(tmp_path: Path, board: mmap.mmap) -> None:
    def served(worker_id: int, pid: int, n: int, errors: int) -> None:
        SLOT.pack_into(board, worker_id * SLOT.size, 0, pid, 0, n, errors, 0, b"", 0, 0, 0, 0, 0)

    async def scenario(world: World) -> None:
        arbiter = world.arbiter
        arbiter.scoreboard = Scoreboard(board)
        for worker_id in (0, 1):
            served(worker_id, world.pid(worker_id), 10, 0)
        arbiter.reload_from("test", canary=True)
        await world.settle()
        reload = arbiter.reloads.current
        assert reload is not None and reload.phase is Phase.CANARY
        (canary_id,) = world.starting()
        assert canary_id == 2 and arbiter.procs[2].position == 0  # only the first slot rolls
        world.ready(canary_id)
        assert reload.phase is Phase.WATCH and world.starting() == []
        served(2, world.pid(2), 10, 8)  # the canary: 8 of 10 failed
        served(1, world.pid(1), 30, 1)  # the old worker meanwhile: 1 of 20
        world.step(CanaryDue(reload.id))
        assert arbiter.metrics.canaries == {"healthy": 0, "unhealthy": 1}
        assert reload.report["outcome"] == "canary unhealthy: 8 of its 10 responses were 5xx; the old " \
                                           "generation's: 1 of 20"
        world.exits(0)  # the worker the canary replaced, retired
        (back,) = world.starting()  # the canary's slot returns to generation 1
        assert arbiter.procs[back].generation == 1
        world.ready(back)
        assert world.generations() == [1, 1] and arbiter.reloads.current is None
    run(tmp_path, scenario, "workers = 2\n")


def test_a_healthy_canary_rolls_the_rest(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        arbiter = world.arbiter
        arbiter.reload_from("test", canary=True)
        await world.settle()
        world.ready(world.starting()[0])
        reload = arbiter.reloads.current
        assert reload is not None
        world.step(CanaryDue(reload.id))
        assert reload.phase is Phase.ROLLING
        world.ready(world.starting()[0])
        assert world.generations() == [2, 2] and reload.report["outcome"] == "complete"
        assert arbiter.metrics.canaries == {"healthy": 1, "unhealthy": 0}
    run(tmp_path, scenario, "workers = 2\n")


def test_a_canary_that_exits_while_watched_aborts_the_reload(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        arbiter = world.arbiter
        arbiter.reload_from("test", canary=True)
        await world.settle()
        (canary_id,) = world.starting()
        world.ready(canary_id)
        world.exits(canary_id, sig=signal.SIGSEGV)
        assert arbiter.gens.number == 1
        assert arbiter.status()["last_reload"]["outcome"] == "canary unhealthy: the canary worker exited"
    run(tmp_path, scenario, "workers = 2\n")


async def _boot_fails_every_time(tmp_path: Path) -> tuple[World, int]:
    """One slot whose every start fails at boot, with no error relayed yet; the last pid."""
    world = World(make_arbiter(tmp_path, "workers = 1\n"))
    arbiter = world.arbiter
    arbiter.gens.promote(await arbiter.gens.start_next())  # type: ignore[arg-type]
    arbiter.reconcile()
    pid = 0
    for _ in range(workers.BOOT_ATTEMPTS):
        (worker_id,) = world.starting()
        pid = world.pid(worker_id)
        world.exits(worker_id, code=workers.EXIT_BOOT_FAILED)
        world.now += 60
        world.step(Wake())
    return world, pid


def test_no_worker_ever_booting_stops_the_server(tmp_path: Path, caplog) -> None:
    async def main() -> None:
        world, _ = await _boot_fails_every_time(tmp_path)
        arbiter = world.arbiter
        # the PHP error a front relays may come after the zygote's exit report: wait for it,
        # starting nothing meanwhile
        assert not arbiter.stopping and arbiter.procs == {}
        world.step(GiveUp())  # ... but not forever
        assert arbiter.stopping and arbiter.exit_code == 1
        assert "the worker script failed; see the PHP errors above" in caplog.text
        arbiter.cleanup()
    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_boot_error_arriving_after_the_exit_is_the_reason_given(tmp_path: Path, caplog) -> None:
    async def main() -> None:
        world, pid = await _boot_fails_every_time(tmp_path)
        arbiter = world.arbiter
        world.step(FrontEvent(WorkerBootFailed(0, pid, "PHP Fatal error:  boom\nStack trace:")))
        assert arbiter.stopping and arbiter.exit_code == 1
        assert "no PHP worker could boot (3 attempts): PHP Fatal error:  boom" in caplog.text
        world.step(GiveUp())  # the grace timer firing later changes nothing
        assert caplog.text.count("no PHP worker could boot") == 1
        arbiter.cleanup()
    asyncio.run(asyncio.wait_for(main(), 10))


def test_sigterm_abandons_a_reload_and_starts_nothing(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        arbiter = world.arbiter
        arbiter.reload_from("test")
        await world.settle()
        world.step(Signal(signal.SIGTERM))
        assert arbiter.stopping and arbiter.reloads.current is None
        assert arbiter.reload_from("late") == {"reload": "refused", "reason": "askr is stopping"}
        world.exits(0, sig=signal.SIGKILL)
        assert world.starting() == [2]  # only the replacement spawned before the signal
    run(tmp_path, scenario, "workers = 2\n")


@pytest.mark.parametrize(("failures", "delay"), [(0, 0.0), (1, 0.1), (4, 0.8), (5, 10.0), (9, 10.0)])
def test_slot_backoff(failures: int, delay: float) -> None:
    assert workers.WorkerSlot(0, failures=failures).backoff() == delay


def test_quota_spread() -> None:
    assert [workers.quota(100, p, 5) for p in range(5)] == [85, 92, 100, 108, 115]
    assert workers.quota(100, 0, 1) == 100 and workers.quota(0, 3, 5) == 0


def test_with_two_fronts_every_worker_serves_both(tmp_path: Path) -> None:
    """One queue, and each worker connects to every front; a retire reaches every front (any
    one may be restarting), and a front that dies costs no worker."""
    async def scenario(world: World) -> None:
        arbiter = world.arbiter
        zygote = world.zygotes[0]
        assert len(zygote.spawned) == 3
        assert set(zygote.channel_paths) == {"front-0.sock,front-1.sock"}
        old_pid = world.pid(1)
        world.step(FrontEvent(WorkerQuota(1, old_pid)))
        world.starting()
        world.ready(4)
        world.step(FrontEvent(WorkerReady(4, world.pid(4), 1)))  # the other front's HELLO too: no-op
        assert world.retired(0) == world.retired(1) == [old_pid]
        restarted: list[int] = []
        arbiter.fronts.start = lambda front: restarted.append(front.index)  # type: ignore[method-assign]
        arbiter.replace_front(arbiter.fronts.handles[1])
        assert restarted == [1] and world.signals == []  # nothing killed
        assert all(p.state in ("ready", "retiring") for p in arbiter.procs.values())
    run(tmp_path, scenario, "workers = 3\nfronts = 2\nmax_requests = 1000\n")


def test_a_late_report_of_a_slots_previous_worker_is_not_taken_for_the_next(tmp_path: Path) -> None:
    """Every front reports a worker's exit; the second report may come when a later worker on
    the same worker id is spawned but its pid not yet known. It must not lend the new worker its
    pid: the new worker's own exit would then go unrecognised, and never be replaced."""
    async def scenario(world: World) -> None:
        arbiter = world.arbiter
        first = world.pid(0)
        world.now += 60  # a long-lived worker: no backoff
        world.step(FrontEvent(WorkerGone(0, first)))  # front 0's report
        world.exits(0)
        assert world.starting() == [1]  # its replacement takes the slot's other id ...
        world.ready(1)
        world.now += 60
        world.exits(1)
        assert arbiter.procs[0].pid == 0  # ... and the next one id 0 again: spawned
        world.step(FrontEvent(WorkerGone(0, first)))  # front 1's report of the first, late
        assert arbiter.procs[0].pid == 0
        world.starting()
        third = world.pid(0)
        assert third not in (0, first)
        world.ready(0)
        world.now += 60
        world.exits(0)
        assert 1 in arbiter.procs and arbiter.procs[1].pid == 0  # replaced again
    run(tmp_path, scenario, "workers = 1\nfronts = 2\n")


def told_readiness(world: World, front: int = 0) -> list[str]:
    """The readiness states the master sent a front, in order ([server] health_path)."""
    return [json.loads(line)["state"] for line in world.controls[front].lines if b'"readiness"' in line]


def test_readiness_follows_the_workers_and_drain_and_every_front_is_told(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        arbiter = world.arbiter
        assert arbiter.readiness().state == "ready"
        assert told_readiness(world, 0) == told_readiness(world, 1) == ["ready"]
        assert arbiter.drain_from(True) == {"state": "draining", "ready": False, "draining": True}
        world.exits(0, sig=signal.SIGSEGV)  # a crash while drained: draining still wins
        assert arbiter.health("ready") == (False, {"status": "not ready", "reason": "draining"})
        assert arbiter.drain_from(False)["state"] == "no ready workers"  # the replacement is due
        world.now += 1
        world.step(Wake())  # its backoff is over
        world.ready(world.starting()[0])
        assert told_readiness(world, 1) == ["ready", "draining", "no ready workers", "ready"]
    run(tmp_path, scenario, "workers = 1\nfronts = 2\n")


def test_readiness_says_booting_until_a_first_worker_is_ready(tmp_path: Path) -> None:
    async def main() -> None:
        world = World(make_arbiter(tmp_path, "workers = 2\n"))
        arbiter = world.arbiter
        arbiter.gens.promote(await arbiter.gens.start_next())  # type: ignore[arg-type]
        arbiter.reconcile()
        first, _ = world.starting()
        assert arbiter.health("ready") == (False, {"status": "not ready", "reason": "booting"})
        assert arbiter.fronts.readiness == "booting"  # what a front is told as it connects
        world.ready(first)
        assert arbiter.readiness().state == "ready"  # one ready worker is enough to take traffic
        world.exits(first, code=1)
        assert arbiter.readiness().state == "no ready workers"  # it had been ready once
        assert told_readiness(world) == ["ready", "no ready workers"]
        arbiter.cleanup()
    asyncio.run(asyncio.wait_for(main(), 10))


def test_sigterm_with_drain_delay_says_stopping_and_keeps_serving_until_the_timer(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        arbiter = world.arbiter
        world.step(Signal(signal.SIGTERM))
        assert arbiter.readiness().state == "stopping" and told_readiness(world)[-1] == "stopping"
        assert not arbiter.stopping and len(arbiter._timers) == 1  # DrainDelayOver is armed, no sleep
        world.exits(0, sig=signal.SIGSEGV)
        world.now += 1
        world.step(Wake())
        assert len(world.starting()) == 1  # serving normally: a crashed worker is still replaced
        world.step(Signal(signal.SIGHUP))
        assert arbiter.reloads.current is None  # no reload on the way out
        assert arbiter.reload_from("admin")["reload"] == "refused"
        world.step(DrainDelayOver())
        assert arbiter.stopping and not arbiter._timers
        assert arbiter.readiness().state == "stopping"
    run(tmp_path, scenario, 'workers = 2\ndrain_delay = "4s"\n')


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_a_second_signal_during_drain_delay_proceeds_at_once(tmp_path: Path, second: int) -> None:
    async def scenario(world: World) -> None:
        arbiter = world.arbiter
        world.step(Signal(signal.SIGTERM))
        assert not arbiter.stopping
        world.step(Signal(second))
        assert arbiter.stopping and not arbiter._timers  # the delay's timer is gone with it
        assert arbiter.stopping_now == (second != signal.SIGTERM)
    run(tmp_path, scenario, 'workers = 1\ndrain_delay = "60s"\n')


def test_sigterm_without_drain_delay_drains_at_once(tmp_path: Path) -> None:
    async def scenario(world: World) -> None:
        world.step(Signal(signal.SIGTERM))
        assert world.arbiter.stopping and told_readiness(world)[-1] == "stopping"
    run(tmp_path, scenario, "workers = 1\n")
