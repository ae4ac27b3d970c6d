"""sd_notify: under systemd (Type=notify) askr reports READY, RELOADING and STOPPING."""

from __future__ import annotations

import signal
import socket

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
