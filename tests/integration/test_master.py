"""The master's supervision of its fronts: several fronts share the listen socket and every PHP
worker (one request queue, a channel from each worker to each front), and a front that dies is
replaced while the listen socket (held by the master) keeps accepting and every worker serves on.

A test puts a connection on one front by stopping the others (SIGSTOP) while it connects: a
stopped front cannot accept, so the kernel's one accept queue hands the connection to the one
that runs."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator

import httpx
from askrtest import Gate
from rawhttp import Conn


def front_pids(server) -> dict[int, int]:
    """Front index -> pid of its newest process."""
    return {int(i): int(pid) for i, pid in re.findall(r"front #(\d+) started \(pid (\d+)\)", server.log)}


@contextlib.contextmanager
def only_front(server, index: int) -> Iterator[None]:
    """While inside, only front `index` accepts connections."""
    others = [pid for i, pid in front_pids(server).items() if i != index]
    for pid in others:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in others:
            os.kill(pid, signal.SIGCONT)


def worker_pids(server) -> list[int]:
    status = httpx.get(server.admin_url + "/api/status", timeout=10).json()
    return sorted(w["pid"] for w in status["workers"])


def test_two_fronts_serve_through_every_worker(config_server):
    server = config_server(workers=2, server={"fronts": 2})
    assert sorted(front_pids(server)) == [0, 1]
    for index in (0, 1):
        seen = set()
        with only_front(server, index), Conn(server.host, server.port, timeout=30) as c:
            for _ in range(20):
                seen.add(c.request("GET", "/pid.php").body)
        assert seen  # served; which workers answered is the kernel queue's choice


def test_more_fronts_than_workers_is_fine(config_server):
    """Every front reaches the one worker: no front is left without PHP."""
    server = config_server(workers=1, server={"fronts": 2})
    for index in (0, 1):
        with only_front(server, index), Conn(server.host, server.port, timeout=30) as c:
            assert c.request("GET", "/hello.php").body == b"hello"


def test_slow_requests_of_one_front_leave_idle_workers_to_the_other(config_server, tmp_path):
    """Fairness: front 1's clients hold two of three workers with slow requests (with workers
    dealt to fronts, front 1 had one worker and the second slow request waited); front 0's
    clients are served at once by the third, while both slow requests still run."""
    server = config_server(workers=3, server={"fronts": 2})
    gate = Gate(tmp_path / "slow")
    slow: list[Conn] = []
    try:
        with only_front(server, 1):
            for _ in range(2):
                slow.append(Conn(server.host, server.port, timeout=60))  # connected to front 1
                slow[-1].send(f"GET {gate.target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            held = gate.wait_started(2)  # both run: front 1 is not confined to a share of workers
        with only_front(server, 0), Conn(server.host, server.port, timeout=30) as fast:
            for _ in range(10):
                resp = fast.request("GET", "/pid.php")
                assert resp.status == 200 and int(resp.body) not in held
        assert gate.pids() == held  # still held: the fast ones did not wait for them
        gate.open()
        for c in slow:
            assert c.read_final_response().json()["released"] is True
    finally:
        gate.open()
        for c in slow:
            c.close()


def test_a_killed_front_costs_only_its_own_connections(config_server):
    server = config_server(workers=2, server={"fronts": 2})
    workers_before = worker_pids(server)
    with only_front(server, 0):
        survivor = Conn(server.host, server.port, timeout=30)
        assert survivor.request("GET", "/hello.php").body == b"hello"
    with only_front(server, 1):
        victim = Conn(server.host, server.port, timeout=30)
        assert victim.request("GET", "/hello.php").body == b"hello"
    mark = len(server.lines)
    os.kill(front_pids(server)[1], signal.SIGKILL)
    server.wait_for_log(r"front #1 \(pid \d+\) exited with -9; restarting it", start=mark)
    server.wait_for_log(r"front #1 started", start=mark)
    assert victim.wait_closed()
    for _ in range(5):  # the other front's keep-alive connection never noticed
        assert survivor.request("GET", "/hello.php").body == b"hello"
    with only_front(server, 1), Conn(server.host, server.port, timeout=30) as c:
        for _ in range(10):  # the new front: the workers reconnected to it
            assert c.request("GET", "/hello.php").body == b"hello"
    assert worker_pids(server) == workers_before  # no PHP worker was replaced
    assert "replacing it" not in "\n".join(server.lines[mark:])
    survivor.close()
    victim.close()
