"""[worker] slowlog_timeout: the PHP backtrace of a request still running is logged (php-fpm's
request_slowlog_timeout layout) while the request goes on undisturbed; a request_timeout kill
logs the backtrace before the worker dies."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
from askrtest import APP, TESTS, wait_until

WORKER_SCRIPT = TESTS / "php" / "worker.php"  # tests/php/app in worker mode
SCRIPT = APP / "nested_sleep.php"
# Each frame with the line it was called from (fpm's layout): sleep() is called on line 3 in
# inner(), inner() on line 5 in Napper::nap(), nap() on line 4 in outer(), outer() on line 6.
FRAMES = [("sleep", 3), ("inner", 5), ("Napper::nap", 4), ("outer", 6)]


def worker_option(mode: str, **keys: object) -> dict[str, object]:
    return {**({"script": str(WORKER_SCRIPT)} if mode == "worker" else {}), **keys}


def slowlogged(server) -> tuple[int, float]:
    """The slowlog count in /api/status and in /metrics."""
    status = httpx.get(server.admin_url + "/api/status", timeout=30).json()
    metrics = httpx.get(server.admin_url + "/metrics", timeout=30).text
    m = re.search(r"^askr_php_slowlogged_requests_total ([\d.]+)$", metrics, re.M)
    assert m, metrics
    return status["slowlogged_requests"], float(m.group(1))


def assert_backtrace(lines: list[str], start: int) -> None:
    """From lines[start] on: script_filename, then the frames in order, on consecutive lines."""
    rest = lines[start + 1:]
    assert rest and rest[0].endswith(f"script_filename = {SCRIPT}"), rest[:3]
    for (name, line), text in zip(FRAMES, rest[1:], strict=False):
        frame = rf"\[0x[0-9a-f]{{16}}\] {re.escape(name)}\(\) {re.escape(str(SCRIPT))}:{line}$"
        assert re.search(frame, text), (name, line, rest[:6])
    assert len(rest) > len(FRAMES)


@pytest.mark.parametrize("mode", ["classic", "worker"])
def test_a_slow_request_logs_its_backtrace_and_completes(config_server, mode):
    """sleep(3) with slowlog_timeout = 1: the backtrace names every frame and line, and sleep()
    still sleeps its 3 s (nothing interrupts PHP: it returns 0, not the seconds left)."""
    # [log] slow_request far above: its slow_requests (response time) stays apart from the slowlog's
    server = config_server(workers=1, worker=worker_option(mode, slowlog_timeout=1), log={"slow_request": 60})
    began = time.monotonic()
    resp = httpx.get(server.url + "/nested_sleep.php?s=3", timeout=30)
    elapsed = time.monotonic() - began
    assert resp.status_code == 200
    assert resp.text == "slept, sleep() returned 0\n"
    assert elapsed >= 3.0
    m = server.wait_for_log(r"WARNING \[php#0\] slow request: GET /nested_sleep\.php\?s=3 running "
                            r"(1\.\d+) s in pid (\d+) \(php#0\); PHP backtrace:")
    assert 1.0 <= float(m.group(1)) < 3.0
    assert_backtrace(server.lines, server.lines.index(m.string))
    # one record per request, and a fast request gets none
    assert httpx.get(server.url + "/hello.php", timeout=30).text == "hello"
    assert sum("slow request:" in line for line in server.lines) == 1
    assert slowlogged(server) == (1, 1)
    # once the front's stats cover both requests (two connections: the second began after the
    # first's response), the response-time count has neither: none took [log] slow_request (60 s)
    status = wait_until(lambda: (st := httpx.get(server.admin_url + "/api/status", timeout=30).json())
                        ["accepted_connections"] >= 2 and st, timeout=30, what="the front's stats")
    assert [w["slowlogged_requests"] for w in status["workers"]] == [1]
    assert status["slow_requests"] == 0


def test_slowlog_file_gets_fpm_layout_records(config_server, tmp_path):
    slowlog = tmp_path / "slow.log"
    server = config_server(workers=1, worker={"slowlog_timeout": 0.5, "slowlog_file": str(slowlog)})
    resp = httpx.get(server.url + "/nested_sleep.php?s=1", timeout=30)
    assert resp.text == "slept, sleep() returned 0\n"
    text = wait_until(lambda: slowlog.exists() and "outer()" in slowlog.read_text() and slowlog.read_text(),
                      timeout=30, what="the slowlog record")
    # fpm: a blank line, "[07-Dec-2026 17:05:01] " and the record
    assert re.match(r"\n\[\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d\] slow request: "
                    r"GET /nested_sleep\.php\?s=1 running 0\.\d+ s in pid \d+ \(php#0\); PHP backtrace:\n",
                    text), text
    lines = text.splitlines()
    assert_backtrace(lines, 1)
    assert "slow request:" not in server.log  # it went to the file, not the error log


@pytest.mark.parametrize("mode", ["classic", "worker"])
def test_request_timeout_logs_the_backtrace_before_the_kill(config_server, mode):
    """A slowlog configured (its watchdog thread takes the backtrace), though too long to fire:
    the 504's log still says where PHP was stuck, before the worker's exit is reported."""
    worker = worker_option(mode, slowlog_timeout=60)
    server = config_server(workers=1, server={"request_timeout": 1}, worker=worker)
    resp = httpx.get(server.url + "/nested_sleep.php?s=30", timeout=30)
    assert resp.status_code == 504
    trace = server.wait_for_log(r"request_timeout: GET /nested_sleep\.php\?s=30 running \d\.\d+ s "
                                r"in pid (\d+) \(php#0\); PHP backtrace:")
    pid = trace.group(1)
    exited = server.wait_for_log(rf"php#0 \(pid {pid}\) killed by signal 9; replacing it")
    lines = server.lines
    assert_backtrace(lines, lines.index(trace.string))
    assert lines.index(trace.string) < lines.index(exited.string)
    assert httpx.get(server.url + "/hello.php", timeout=30).text == "hello"  # replaced


def test_max_execution_time_still_stops_php(config_server):
    """The watchdog thread takes no signal meant for PHP: max_execution_time's SIGPROF still
    reaches the PHP thread and ends a busy request, and a busy frame shows in the slowlog."""
    server = config_server(workers=1, worker={"slowlog_timeout": 0.5, "ini": {"max_execution_time": "2"}})
    resp = httpx.get(server.url + "/spin.php?s=30", timeout=30)
    assert resp.status_code == 500
    server.wait_for_log(r"Maximum execution time of 2 seconds? exceeded")
    m = server.wait_for_log(r"slow request: GET /spin\.php\?s=30 running")
    after = server.lines[server.lines.index(m.string):]
    frame = rf"\] spin\(\) {re.escape(str(APP / 'spin.php'))}:4$"
    assert any(re.search(frame, line) for line in after[:5]), after[:5]
    assert httpx.get(server.url + "/spin.php?s=0.1", timeout=30).text == "spun\n"


def test_the_slow_request_count_outlives_the_worker(config_server):
    """A request slow enough for the slowlog and then for request_timeout: both records, and the
    count stays when its worker is gone."""
    server = config_server(workers=1, server={"request_timeout": 2}, worker={"slowlog_timeout": 0.5})
    assert httpx.get(server.url + "/nested_sleep.php?s=30", timeout=30).status_code == 504
    slow = server.wait_for_log(r"slow request: GET /nested_sleep\.php\?s=30 running 0\.\d+ s in pid (\d+)")
    timeout = server.wait_for_log(r"request_timeout: GET /nested_sleep\.php\?s=30 running")
    assert server.lines.index(slow.string) < server.lines.index(timeout.string)
    server.wait_for_log(rf"php#0 \(pid {slow.group(1)}\) killed by signal 9; replacing it")
    assert httpx.get(server.url + "/hello.php", timeout=30).text == "hello"  # a new worker
    assert slowlogged(server) == (1, 1)


def test_json_logs_carry_the_record_as_one_object(config_server):
    server = config_server(workers=1, worker={"slowlog_timeout": 0.5}, log={"format": "json"})
    assert httpx.get(server.url + "/nested_sleep.php?s=1", timeout=30).status_code == 200
    line = server.wait_for_log(r'"message": ?"slow request: GET /nested_sleep').string
    record = json.loads(line)
    assert record["level"] == "WARNING" and record["component"] == "php#0"
    lines = record["message"].splitlines()
    assert_backtrace(lines, 0)
