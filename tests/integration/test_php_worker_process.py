"""What the PHP worker processes share and report: one OPcache per generation (the zygote did
module startup once, then forked), and PHP's own log lines in askr's log with the worker id."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from rawhttp import Conn, request_bytes


def get(server, target: str):
    with Conn(server.host, server.port, timeout=30) as c:
        return c.request("GET", target)


def test_php_log_lines_reach_askr_log_with_worker_id(php_app):
    marker = uuid.uuid4().hex
    assert get(php_app, f"/logme.php?m={marker}").body == b"logged"
    php_app.wait_for_log(rf"\[php#\d+\] askr-log-marker {marker}")


def test_opcache_is_shared_by_the_workers_of_a_generation(config_server, docroot, tmp_path):
    from askrtest import Gate

    server = config_server(root=docroot, workers=2)
    script = docroot / f"fresh_{uuid.uuid4().hex}.php"
    script.write_text("<?php echo getmypid();")
    past = time.time() - 600  # OPcache skips files changed in the last 2 s (file_update_protection)
    os.utime(script, (past, past))

    # Each step leaves exactly one idle worker, so where each request runs is certain.
    first, second = Gate(tmp_path / "a"), Gate(tmp_path / "b")
    conns = [Conn(server.host, server.port, timeout=30) for _ in range(2)]
    try:
        conns[0].send(request_bytes("GET", first.target))
        (worker_a,) = first.wait_started(1)
        worker_b = int(get(server, f"/{script.name}").body)  # B compiles the new script
        assert worker_b != worker_a
        conns[1].send(request_bytes("GET", second.target))
        assert second.wait_started(1) == [worker_b]
        first.open()
        assert conns[0].read_final_response().status == 200
        seen = json.loads(get(server, "/opstatus.php").body)  # runs on A, which never ran it
        assert seen["pid"] == worker_a
        assert str(script) in seen["scripts"]
        second.open()
        assert conns[1].read_final_response().status == 200
    finally:
        first.open()
        second.open()
        for c in conns:
            c.close()


def voluntary_switches(pid: int) -> int:
    """How often the process's main thread went to sleep and was woken (the watchdog thread,
    a task of its own, is not counted)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])


def test_a_request_wakes_one_idle_worker_not_all_of_them(config_server, docroot):
    from askrtest import admin_status

    workers = 6
    server = config_server(root=docroot, workers=workers)
    pids = [w["pid"] for w in admin_status(server)["workers"]]
    assert len(pids) == workers
    requests = 60
    with Conn(server.host, server.port, timeout=30) as c:
        assert c.request("GET", "/index.php").status == 200  # every worker is idle from here
        before = sum(voluntary_switches(p) for p in pids)
        started = time.monotonic()
        for _ in range(requests):  # one at a time: five or six workers idle at each
            assert c.request("GET", "/index.php").status == 200
        elapsed = time.monotonic() - started
        woken = sum(voluntary_switches(p) for p in pids) - before
    # One wake-up per request, for the worker that takes it, plus each idle worker's look at the
    # queue once a second. Waiting in poll() on the shared queue woke all six per request (a
    # herd of 360 here), five of them to find it empty.
    allowed = requests * 1.5 + workers * (elapsed + 1)
    assert requests <= woken < allowed < requests * workers, (woken, allowed)
