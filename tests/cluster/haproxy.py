"""HAProxy for the cluster test bed: its config made from contrib/haproxy.cfg, its stats socket.

Run as a program, it answers one question for contrib/rolling-deploy.sh's ASKR_IN_ROTATION hook:

    python haproxy.py SOCKET BACKEND SERVER    # exit 0 when SERVER is UP in BACKEND, else 1
"""

from __future__ import annotations

import csv
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "contrib" / "haproxy.cfg"
BACKEND = "askr"
PASSTHROUGH_BACKEND = "askr_tls"


class ConfigTemplateError(Exception):
    pass


def _replace(text: str, pattern: str, replacement: str, count: int = 1) -> str:
    """Substitute exactly `count` matches: if contrib/haproxy.cfg changes shape, say so here
    instead of testing some other config."""
    new, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    if found != count:
        raise ConfigTemplateError(f"contrib/haproxy.cfg: expected {count} match(es) of {pattern!r}, "
                                  f"found {found}; update tests/cluster/haproxy.py")
    return new


@dataclass(frozen=True)
class Timings:
    """What the test bed shortens: checks every second, and a request on a vanished host retried
    after 4 s instead of 65 (the shape of every line stays contrib's)."""

    inter: str = "1s"
    fastinter: str = "250ms"
    downinter: str = "1s"
    connect: str = "1s"
    server: str = "4s"
    check: str = "1s"


def passthrough_variant(text: str) -> str:
    """The file's TLS-passthrough alternative used as its comment says: `frontend www` and
    `backend askr` replaced by the commented `mode tcp` frontend and backend."""
    text = _replace(text, r"^frontend www\n(?:.+\n)+\n", "")
    text = _replace(text, r"^backend askr\n(?:.+\n)+\n", "")
    head, marker, tail = text.partition("# frontend www_passthrough\n")
    if not marker:
        raise ConfigTemplateError("contrib/haproxy.cfg: no commented '# frontend www_passthrough' "
                                  "block; update tests/cluster/haproxy.py")
    return head + "frontend www_passthrough\n" + re.sub(r"(?m)^# ?", "", tail)


def config_from_template(servers: list[tuple[str, str]], cert_pem: Path, stats_socket: Path,
                         timings: Timings = Timings(), log: bool = True, passthrough: bool = False) -> str:
    """contrib/haproxy.cfg for `servers` [(name, address)], with a test certificate, a stats
    socket of our own, logs on stderr (with log=False only failed requests: a benchmark's millions
    of lines would cost CPU) and shorter timings. Everything else is the file as shipped.
    passthrough: its TLS-passthrough alternative instead (askr terminates TLS; no certificate)."""
    text = TEMPLATE.read_text()
    if passthrough:
        text = passthrough_variant(text)
    text = _replace(text, r"^    log /dev/log local0$", "    log stderr format raw local0 info")
    if not log:
        text = _replace(text, r"^    option dontlognull$",
                        "    option dontlognull\n    option dontlog-normal")
    text = _replace(text, r"^    daemon\n", "")  # haproxy -W -db: in the foreground, under the test
    text = _replace(text, r"stats socket /run/haproxy/admin\.sock", f"stats socket {stats_socket}")
    if not passthrough:
        text = _replace(text, r"crt /etc/haproxy/certs/site\.pem", f"crt {cert_pem}")
    text = _replace(text, r"^    timeout connect 5s$", f"    timeout connect {timings.connect}")
    text = _replace(text, r"^    timeout server 65s$", f"    timeout server {timings.server}")
    text = _replace(text, r"^    timeout check 2s$", f"    timeout check {timings.check}")
    text = _replace(text, r"^    default-server check port 9000 inter 2s fastinter 500ms downinter 2s ",
                    f"    default-server check port 9000 inter {timings.inter} fastinter {timings.fastinter} "
                    f"downinter {timings.downinter} ")
    shipped = re.findall(r"^    server app\d+ 10\.0\.0\.\d+:(?:8080|8443)$", text, flags=re.MULTILINE)
    if len(shipped) != len(servers):
        raise ConfigTemplateError(f"contrib/haproxy.cfg has {len(shipped)} server lines, the test bed "
                                  f"{len(servers)} hosts")
    for line, (name, address) in zip(shipped, servers, strict=True):
        text = _replace(text, "^" + re.escape(line) + "$", f"    server {name} {address}")
    return text


def command(sock_path: Path | str, line: str, timeout: float = 10.0) -> str:
    """One command on HAProxy's stats socket (it answers and closes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(line.encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def server_stats(sock_path: Path | str, backend: str = BACKEND) -> dict[str, dict[str, str]]:
    """{server: its `show stat` row}: status (UP, DOWN, "UP 1/2" going down, MAINT, ...),
    hrsp_2xx (responses by class), ..."""
    text = command(sock_path, "show stat").lstrip("# ")
    rows = csv.DictReader(text.splitlines())
    return {r["svname"]: r for r in rows
            if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")}


def server_status(sock_path: Path | str, backend: str = BACKEND) -> dict[str, str]:
    return {name: row["status"] for name, row in server_stats(sock_path, backend).items()}


@dataclass
class StatusRecorder:
    """Polls `show stat` on a thread and keeps each server's status transitions, so a test can
    say afterwards that a host went DOWN and came back UP (the poll is every `interval` s, far
    shorter than HAProxy's check interval, so no state HAProxy holds for a check is missed)."""

    sock_path: Path
    backend: str = BACKEND
    interval: float = 0.1
    transitions: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> StatusRecorder:
        self.poll()
        self._thread = threading.Thread(target=self._run, name="haproxy-stats", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.poll()

    def poll(self) -> None:
        now = time.monotonic()
        for server, status in server_status(self.sock_path, self.backend).items():
            seen = self.transitions.setdefault(server, [])
            if not seen or seen[-1][1] != status:
                seen.append((now, status))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def states(self, server: str) -> list[str]:
        return [status for _, status in self.transitions.get(server, [])]


if __name__ == "__main__":
    socket_path, backend_name, server_name = sys.argv[1:4]
    sys.exit(0 if server_status(socket_path, backend_name).get(server_name) == "UP" else 1)
