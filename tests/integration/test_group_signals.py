"""Signals sent to every askr process at once: systemd's default KillMode=control-group, `kill
-TERM -PGID`, some container runtimes, a terminal's Ctrl-C. SIGTERM to the whole tree must drain
exactly as SIGTERM to the master alone does; SIGINT must stop fast, with no 502s and no orphan.

askr runs in its own process group here (new_session), and the test signals that group.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from askrtest import APP, TESTS, wait_until, write_config
from h2client import H2Client
from laravel_fixture import make_laravel_app
from test_jobs import QUEUE_SCRIPT, QUICK_POLL, db_rows, dispatch

WORKER_SCRIPT = TESTS / "php" / "worker.php"


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is `pgid`."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(entry))
    return out


def busy_workers(server) -> int:
    workers = httpx.get(server.admin_url + "/api/status", timeout=10).json()["workers"]
    return sum(1 for w in workers if w.get("busy"))


class InFlight:
    """A request on its own thread; `.result` is (status, body) or the exception it raised."""

    def __init__(self, call) -> None:
        self.result: object = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call) -> None:
        try:
            self.result = call()
        except Exception as e:  # the test looks at what happened
            self.result = e

    def join(self) -> object:
        self._thread.join(60)
        assert not self._thread.is_alive(), "the request never ended"
        return self.result


def http1_sleep(server, ms: int):
    def call():
        r = httpx.get(f"{server.url}/sleep.php", params={"ms": ms}, timeout=60)
        return r.status_code, r.json()["slept_ms"]
    return call


def http2_sleep(server, ms: int):
    def call():
        client = H2Client(server.host, server.port, tls=False)
        try:
            resp = client.get(f"/sleep.php?ms={ms}")
            return resp.status, json.loads(bytes(resp.data))["slept_ms"]
        finally:
            client.close()
    return call


@pytest.fixture
def group_server(askr_server, tmp_path):
    def start(mode: str, **kw):
        worker = {"script": str(WORKER_SCRIPT)} if mode == "worker" else None
        config = write_config(tmp_path, root=kw.pop("root", APP), worker=worker,
                              server={"h2c": True}, **kw)
        return askr_server("--config", config, new_session=True)
    return start


@pytest.mark.parametrize("mode", ["classic", "worker"])
def test_sigterm_to_the_whole_tree_drains_like_sigterm_to_the_master(group_server, mode: str) -> None:
    server = group_server(mode)
    pgid = server.proc.pid
    assert len(group_members(pgid)) >= 4  # master, front, zygote, workers
    requests = [InFlight(http1_sleep(server, 2000)), InFlight(http2_sleep(server, 2000))]
    wait_until(lambda: busy_workers(server) == 2, what="both requests to reach a PHP worker")
    os.killpg(pgid, signal.SIGTERM)
    assert [r.join() for r in requests] == [(200, 2000), (200, 2000)]
    assert server.proc.wait(60) == 0, server.log
    wait_until(lambda: not group_members(pgid), what="every askr process to exit")
    log = server.log
    assert "SIGTERM: draining" in log
    for bad in ("answering 502", "exited unexpectedly", "killed by signal", "still running a request"):
        assert bad not in log, log


def test_sigint_to_the_whole_tree_stops_at_once_without_502s(group_server, tmp_path: Path) -> None:
    """Ctrl-C: no drain. Connections close, busy workers are killed (not left running their
    30 s request), nothing answers 502, nothing is left behind."""
    server = group_server("classic")
    pgid = server.proc.pid
    gate = tmp_path / "never"
    hold = f"{server.url}/hold.php?max=30&dir={tmp_path}&gate={gate}"

    def call():
        return httpx.get(hold, timeout=60).status_code

    requests = [InFlight(call) for _ in range(2)]
    wait_until(lambda: busy_workers(server) == 2, what="both requests to hold a worker")
    started = time.monotonic()
    os.killpg(pgid, signal.SIGINT)
    assert server.proc.wait(20) == 0, server.log
    wait_until(lambda: not group_members(pgid), timeout=20, what="every askr process to exit")
    assert time.monotonic() - started < 20  # the held requests (30 s) did not run on
    for request in requests:
        result = request.join()
        assert isinstance(result, httpx.HTTPError), result  # the connection closed: no 502
    assert "SIGINT: stopping now" in server.log
    assert "answering 502" not in server.log


def test_sigterm_to_the_whole_tree_lets_a_queue_job_finish(group_server, tmp_path: Path) -> None:
    app = make_laravel_app(tmp_path / "app")
    server = group_server("classic", root=app / "public", workers=1,
                          queue={"script": str(QUEUE_SCRIPT), "workers": 1, "args": QUICK_POLL})
    pgid = server.proc.pid
    dispatch(server, "long", seconds=3)
    wait_until(lambda: db_rows(app, "SELECT id FROM job_runs WHERE job_key = 'long'"),
               what="the job to start")
    queue_pid = httpx.get(server.admin_url + "/api/status", timeout=10).json()["queue_workers"][0]["pid"]
    os.killpg(pgid, signal.SIGTERM)
    assert server.proc.wait(60) == 0, server.log
    rows = db_rows(app, "SELECT started_at, finished_at FROM job_runs WHERE job_key = 'long'")
    assert len(rows) == 1 and rows[0][1] is not None and rows[0][1] - rows[0][0] >= 3
    assert db_rows(app, "SELECT count(*) FROM jobs") == [(0,)]
    wait_until(lambda: not group_members(pgid), what="every askr process to exit")
    wait_until(lambda: not group_members(queue_pid), what="the queue worker (its own group) to exit")
