"""The master's supervision of its fronts: several fronts share every PHP worker (one request
queue, a channel from each worker to each front), each accepts on its own listen socket per
address (SO_REUSEPORT: the kernel spreads connections), and a front that dies is replaced on the
same sockets while every worker serves on.

A test puts a connection on one front by connecting until the kernel hands one to that front
(found in /proc: which front's descriptors hold the server side of the connection)."""

from __future__ import annotations

import os
import signal

import httpx
from askrtest import Gate, front_pids, run_askr, serving_pid, write_config
from rawhttp import Conn


def conn_on_front(server, index: int, attempts: int = 64) -> Conn:
    """A keep-alive connection the kernel gave to front `index` (one request served on it)."""
    pids = front_pids(server)
    for _ in range(attempts):
        c = Conn(server.host, server.port, timeout=30)
        assert c.request("GET", "/hello.php").body == b"hello"  # accepted: it has its front now
        if serving_pid(server.port, c.local_port, pids.values()) == pids[index]:
            return c
        c.close()
    raise AssertionError(f"no connection of {attempts} landed on front #{index}")


def worker_pids(server) -> list[int]:
    status = httpx.get(server.admin_url + "/api/status", timeout=10).json()
    return sorted(w["pid"] for w in status["workers"])


def test_two_fronts_serve_through_every_worker(config_server):
    server = config_server(workers=2, server={"fronts": 2})
    assert sorted(front_pids(server)) == [0, 1]
    for index in (0, 1):
        seen = set()
        with conn_on_front(server, index) as c:
            for _ in range(20):
                seen.add(c.request("GET", "/pid.php").body)
        assert seen  # served; which workers answered is the kernel queue's choice


def test_a_burst_of_connections_is_spread_over_the_fronts(config_server):
    """32 connections opened at once (wrk's start, a balancer's pool reconnecting): the kernel
    spreads them over the fronts' own listen sockets. With one shared socket, the front that woke
    first took all of them in some runs. (A front gets fewer than 4 of 32 with p = 2.4e-6.)"""
    server = config_server(workers=2, server={"fronts": 2})
    pids = front_pids(server)
    conns = [Conn(server.host, server.port, timeout=30) for _ in range(32)]
    try:
        for c in conns:
            c.send(b"GET /hello.php HTTP/1.1\r\nHost: x\r\n\r\n")
        for c in conns:
            assert c.read_response().body == b"hello"
        owners = [serving_pid(server.port, c.local_port, pids.values()) for c in conns]
    finally:
        for c in conns:
            c.close()
    assert all(owners.count(pid) >= 4 for pid in pids.values()), owners


def test_a_second_server_on_the_same_port_is_refused(config_server, tmp_path):
    """SO_REUSEPORT would let a second askr join the port and take part of its traffic; it is
    refused as any busy port is: exit 2 naming [server] listen."""
    server = config_server(workers=1, server={"fronts": 2})
    other = tmp_path / "other"
    other.mkdir()
    path = write_config(other, workers=1, server={"fronts": 2, "listen": f"127.0.0.1:{server.port}"})
    code, out = run_askr(["serve", "--config", str(path)])
    assert code == 2, out
    assert "[server] listen" in out and "cannot listen there" in out, out
    assert httpx.get(f"http://127.0.0.1:{server.port}/hello.php", timeout=30).text == "hello"


def test_more_fronts_than_workers_is_fine(config_server):
    """Every front reaches the one worker: no front is left without PHP."""
    server = config_server(workers=1, server={"fronts": 2})
    for index in (0, 1):
        with conn_on_front(server, index) as c:
            assert c.request("GET", "/hello.php").body == b"hello"


def test_slow_requests_of_one_front_leave_idle_workers_to_the_other(config_server, tmp_path):
    """Fairness: front 1's clients hold two of three workers with slow requests (with workers
    dealt to fronts, front 1 had one worker and the second slow request waited); front 0's
    clients are served at once by the third, while both slow requests still run."""
    server = config_server(workers=3, server={"fronts": 2})
    gate = Gate(tmp_path / "slow")
    slow: list[Conn] = []
    try:
        for _ in range(2):
            slow.append(conn_on_front(server, 1))
            slow[-1].send(f"GET {gate.target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        held = gate.wait_started(2)  # both run: front 1 is not confined to a share of workers
        with conn_on_front(server, 0) as fast:
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
    survivor = conn_on_front(server, 0)
    victim = conn_on_front(server, 1)
    mark = len(server.lines)
    os.kill(front_pids(server)[1], signal.SIGKILL)
    server.wait_for_log(r"front #1 \(pid \d+\) exited with -9; restarting it", start=mark)
    server.wait_for_log(r"front #1 started", start=mark)
    assert victim.wait_closed()
    for _ in range(5):  # the other front's keep-alive connection never noticed
        assert survivor.request("GET", "/hello.php").body == b"hello"
    with conn_on_front(server, 1) as c:
        for _ in range(10):  # the new front: the workers reconnected to it
            assert c.request("GET", "/hello.php").body == b"hello"
    assert worker_pids(server) == workers_before  # no PHP worker was replaced
    assert "replacing it" not in "\n".join(server.lines[mark:])
    survivor.close()
    victim.close()


def test_fronts_run_sched_batch_at_nice_minus_5_unless_asked_otherwise(config_server):
    """[server] front_scheduling and front_priority: by default a woken front does not preempt
    (SCHED_BATCH) and has a higher weight than PHP (nice -5, which needs root: the suite's askr
    starts as root, as under systemd); "normal" and 0 keep what the master has. The PHP workers
    are SCHED_BATCH at the master's nice either way."""

    def fronts(server) -> list[int]:
        # askr is ready once the workers' channels are accepted, which the kernel does for a
        # front still starting: a request served by each front says both have set theirs
        for index in (0, 1):
            conn_on_front(server, index).close()
        return list(front_pids(server).values())

    def scheduled(pids: list[int]) -> set[tuple[int, int]]:
        return {(os.sched_getscheduler(pid), os.getpriority(os.PRIO_PROCESS, pid)) for pid in pids}

    own_nice = os.getpriority(os.PRIO_PROCESS, 0)
    raised = -5 if os.geteuid() == 0 else own_nice  # not root: the fronts say why at info level
    default = config_server(workers=1, server={"fronts": 2})
    assert scheduled(fronts(default)) == {(os.SCHED_BATCH, raised)}
    assert scheduled(worker_pids(default)) == {(os.SCHED_BATCH, own_nice)}
    normal = config_server(workers=1, server={"fronts": 2, "front_scheduling": "normal", "front_priority": 0})
    assert scheduled(fronts(normal)) == {(os.SCHED_OTHER, 0)}
