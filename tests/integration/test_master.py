"""The master's supervision of its fronts: several fronts share the listen socket, and a front
that dies is replaced while the listen socket (held by the master) keeps accepting."""

from __future__ import annotations

import os
import re
import signal

from askrtest import run_askr, write_config
from rawhttp import Conn


def test_two_fronts_each_get_their_workers_and_serve(config_server):
    server = config_server(workers=2, server={"fronts": 2})
    started = re.findall(r"front #(\d) started \(pid (\d+)\)", server.log)
    assert sorted(i for i, _ in started) == ["0", "1"]
    # ready means every worker connected to its own front (worker 0 -> front 0, 1 -> front 1)
    for _ in range(20):
        with Conn(server.host, server.port, timeout=30) as c:
            assert c.request("GET", "/hello.php").body == b"hello"


def test_killed_front_is_restarted_and_service_continues(config_server):
    server = config_server(workers=2, server={"fronts": 2})
    pids = dict(re.findall(r"front #(\d) started \(pid (\d+)\)", server.log))
    mark = len(server.lines)
    os.kill(int(pids["1"]), signal.SIGKILL)
    server.wait_for_log(r"front #1 \(pid \d+\) exited with -9; restarting it", start=mark)
    server.wait_for_log(r"front #1 started", start=mark)
    # its workers are replaced too (they belonged to the dead front; killed by the master, or
    # gone on their own when their channel hit EOF first); the new ones connect to the new front
    server.wait_for_log(r"php#1 \(pid \d+\) (killed by signal 9|exited with code 0); replacing it",
                        start=mark)
    for _ in range(20):
        with Conn(server.host, server.port, timeout=30) as c:
            assert c.request("GET", "/hello.php").body == b"hello"


def test_more_fronts_than_workers_is_a_config_error(tmp_path):
    config = write_config(tmp_path, workers=1, server={"fronts": 2})
    code, output = run_askr(["serve", "--config", str(config)])
    assert code == 2
    assert "[server] fronts = 2 is more than workers = 1" in output
