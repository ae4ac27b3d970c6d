"""[log]: JSON event lines from every process (the C worker included) and the access log."""

from __future__ import annotations

import json
import re

import httpx
from askrtest import wait_until


def test_json_event_log_from_every_component(config_server):
    server = config_server(workers=1, log={"format": "json"})
    httpx.get(server.url + "/logme.php", params={"m": 'quote " and\nnewline'}, timeout=30)
    server.wait_for_log("askr-log-marker")
    assert server.stop() == 0  # the front logs its drain
    entries = [json.loads(line) for line in server.lines if line.strip()]  # each line is one object
    components = {e["component"] for e in entries}
    assert {"master", "front", "php#0"} <= components
    marker = next(e for e in entries if "askr-log-marker" in e["message"])
    assert marker["component"] == "php#0" and 'quote " and\nnewline' in marker["message"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]) for e in entries)
    assert any("askr ready" in e["message"] for e in entries)


def test_access_log_combined_and_json(config_server, tmp_path):
    log_file = tmp_path / "access.log"
    server = config_server(workers=1, log={"access": "combined", "access_file": str(log_file)})
    with httpx.Client(base_url=server.url, timeout=30) as c:
        c.get("/hello.php?x=1", headers={"User-Agent": "probe/1", "Referer": "http://ref.example/"})
        c.get("/style.css")
    def two_lines():
        lines = log_file.read_text().splitlines() if log_file.exists() else []
        return lines if len(lines) >= 2 else None

    php, static = wait_until(two_lines, what="two access log lines")[:2]
    m = re.fullmatch(r'127\.0\.0\.1 - - \[[^\]]+\] "GET /hello\.php\?x=1 HTTP/1\.1" 200 5 '
                     r'"http://ref\.example/" "probe/1" (\d+\.\d{3}) (\d+)', php)
    assert m, php
    assert int(m.group(2)) > 0  # the PHP worker's pid
    assert re.search(r'"GET /style\.css HTTP/1\.1" 200 \d+ "-" "python-httpx/[^"]+" \d+\.\d{3} -$', static)


def test_access_log_json(config_server, tmp_path):
    log_file = tmp_path / "access.jsonl"
    server = config_server(workers=1, log={"access": "json", "access_file": str(log_file)})
    httpx.get(server.url + "/.env", timeout=30)
    line = wait_until(lambda: log_file.read_text().strip(), what="an access log line")
    entry = json.loads(line.splitlines()[0])
    assert (entry["method"], entry["uri"], entry["protocol"]) == ("GET", "/.env", "HTTP/1.1")
    assert entry["status"] in (403, 404) and entry["worker_pid"] is None and entry["duration_ms"] >= 0
