"""sd_notify: under systemd (Type=notify) askr reports READY, RELOADING and STOPPING."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys

import pytest
from askrtest import APP


def receive(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_ready_reloading_stopping_are_notified(askr_server, tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(60)
        server = askr_server("--root", APP, "--workers", "1", env={"NOTIFY_SOCKET": path})
        ready = receive(sock)
        assert ready["READY"] == "1" and "serving http://127.0.0.1:" in ready["STATUS"]
        server.proc.send_signal(signal.SIGHUP)
        reloading = receive(sock)
        assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
        after = receive(sock)
        assert after["READY"] == "1" and after["STATUS"] == "PHP generation 2: last reload complete"
        server.proc.send_signal(signal.SIGTERM)
        assert receive(sock)["STOPPING"] == "1"
        assert server.proc.wait(30) == 0


UNIT = APP.parents[2] / "contrib" / "askr.service"


def test_the_shipped_unit(tmp_path):
    text = UNIT.read_text()
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "KillSignal=SIGTERM", "KillMode=mixed",
                 "Restart=on-failure"):
        assert f"\n{line}\n" in text, line
    timeout = int(text.split("TimeoutStopSec=")[1].split()[0])
    assert timeout > 60  # above graceful_timeout and [queue] stop_timeout defaults
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed: the unit's syntax is not verified")
    unit = tmp_path / "askr.service"
    unit.write_text(text.replace("/opt/askr/.venv/bin/askr", sys.executable))  # an executable that exists
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_type_simple_without_notify_socket(askr_server):
    """No NOTIFY_SOCKET (Type=simple): nothing is sent, reloads and stops work the same."""
    server = askr_server("--root", APP, "--workers", "1", env={"NOTIFY_SOCKET": ""})
    start = len(server.lines)
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for_log("reload complete", start=start)
    assert server.stop() == 0
