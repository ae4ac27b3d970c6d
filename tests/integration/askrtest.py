"""Shared helpers for the integration suite: paths, config files, a prepared docroot, gates."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest

TESTS = Path(__file__).resolve().parent.parent
APP = TESTS / "php" / "app"
WORKER_APP = TESTS / "php" / "workers" / "app.php"  # a worker-mode app driven by ?do=
REPO = TESTS.parent
VERSION = re.search(r'__version__\s*=\s*"([^"]+)"', (REPO / "askr" / "__init__.py").read_text()).group(1)

SECRET = "ASKR_SECRET_DO_NOT_SERVE"
DATA_SIZE = 100 * 1024
BIG_SIZE = 3 * 1024 * 1024


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(v)


def toml_text(sections: dict[str, dict[str, object]]) -> str:
    out = []
    for name, keys in sections.items():
        out.append(f"[{name}]")
        for k, v in keys.items():
            if isinstance(v, dict):
                continue
            out.append(f"{k} = {toml_value(v)}")
        out.append("")
        for k, v in keys.items():
            if isinstance(v, dict):
                out.append(f"[{name}.{k}]")
                out.extend(f'"{ik}" = {toml_value(iv)}' for ik, iv in v.items())
                out.append("")
    return "\n".join(out)


def write_config(
    directory: Path,
    root: Path | str = APP,
    workers: int | str = 2,
    limits: dict[str, object] | None = None,
    server: dict[str, object] | None = None,
    worker: dict[str, object] | None = None,
    admin: dict[str, object] | None = None,
    reload: dict[str, object] | None = None,
    queue: dict[str, object] | None = None,
    scheduler: dict[str, object] | None = None,
    tls: dict[str, object] | None = None,
    log: dict[str, object] | None = None,
    static: dict[str, object] | None = None,
    compression: dict[str, object] | None = None,
    sandbox: dict[str, object] | None = None,
    name: str = "askr.toml",
) -> Path:
    """An askr.toml listening on a free loopback port, with the given overrides."""
    sections: dict[str, dict[str, object]] = {
        "server": {"listen": "127.0.0.1:0", "root": str(root), "workers": workers, **(server or {})},
    }
    if worker:
        sections["worker"] = dict(worker)
    if limits:
        sections["limits"] = dict(limits)
    for section, keys in (("reload", reload), ("queue", queue), ("scheduler", scheduler), ("tls", tls),
                          ("log", log), ("static", static), ("compression", compression),
                          ("sandbox", sandbox)):
        if keys:
            sections[section] = dict(keys)
    sections["admin"] = {"listen": "127.0.0.1:0", **(admin or {})}  # never the shared default port
    path = directory / name
    path.write_text(toml_text(sections))
    return path


def build_docroot(dest: Path, outside: Path) -> Path:
    """A copy of tests/php/app plus what must not be committed or must be generated:
    dotfiles, a 100 KB binary, and symlinks that escape the root."""
    shutil.copytree(APP, dest, symlinks=True)
    (dest / ".env").write_text(f"APP_KEY={SECRET}\n")
    (dest / ".git").mkdir()
    (dest / ".git" / "config").write_text(f"[core]\n\t# {SECRET}\n")
    (dest / "sub" / ".hidden").write_text(SECRET)
    (dest / ".well-known").mkdir()
    (dest / ".well-known" / "acme.txt").write_text("acme-token\n")
    (dest / "data.bin").write_bytes(bytes((i * 7 + i // 256) % 256 for i in range(DATA_SIZE)))
    (dest / "big.bin").write_bytes(os.urandom(BIG_SIZE))
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (outside / "evil.php").write_text(f"<?php echo '{SECRET}';")
    os.symlink(outside / "secret.txt", dest / "escape.txt")
    os.symlink(outside, dest / "escape_dir")
    os.symlink(outside / "evil.php", dest / "evil.php")
    return dest


class Gate:
    """Holds PHP workers busy in hold.php until `open()`; `wait_started` observes who started."""

    def __init__(self, base: Path, max_seconds: int = 30):
        self.started = base / "started"
        self.started.mkdir(parents=True, exist_ok=True)
        self.gate = base / "gate"
        self.max_seconds = max_seconds

    @property
    def target(self) -> str:
        q = urllib.parse.urlencode(
            {"dir": str(self.started), "gate": str(self.gate), "max": self.max_seconds}
        )
        return f"/hold.php?{q}"

    def pids(self) -> list[int]:
        return sorted(int(p.name) for p in self.started.iterdir())

    def wait_started(self, n: int, timeout: float = 30.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.pids()
            if len(pids) >= n:
                return pids
            time.sleep(0.02)
        raise AssertionError(f"only {self.pids()} of {n} hold.php requests started within {timeout}s")

    def open(self) -> None:
        self.gate.write_text("open")


def allow_root(args: list[str]) -> list[str]:
    """`askr serve` as root refuses to run PHP as root unless told to ([server] user): the suite
    says so (`--user root`) unless the test names a user itself."""
    if os.geteuid() != 0 or args[:1] != ["serve"] or "--user" in args:
        return args
    if "--config" in args:
        path = Path(args[args.index("--config") + 1])
        if path.is_file() and re.search(r"(?m)^\s*user\s*=", path.read_text()):
            return args
    return [*args, "--user", "root"]


def run_askr(args: list[str], cwd: Path | None = None, timeout: float = 60,
             env: dict[str, str] | None = None, root_ok: bool = True) -> tuple[int, str]:
    """Run `python -m askr ...` to completion; a server that starts by mistake is killed (whole
    process group) when the timeout expires, and the test fails."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "askr", *(allow_root(args) if root_ok else args)],
        cwd=cwd or REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        pytest.fail(f"askr {args} did not exit within {timeout}s; output:\n{out}")
    return proc.returncode, out


def wait_until(predicate, timeout: float = 60.0, what: str = "the condition",
               detail=None, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy (returned); fail after `timeout` s,
    saying `detail()` too when given (the state that would explain the wait)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}"
                                 + (f": {detail()}" if detail else ""))
        time.sleep(interval)


def free_port() -> int:
    """A loopback port free right now, for a server whose port must be known before it starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
    """Send `sig` and wait up to `timeout` s; SIGKILL past it. The exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


class ProcessLog:
    """A process the tests started, with its output (stdout and stderr as one text pipe) read line
    by line by a thread, to wait on and to show when something fails."""

    def __init__(self, proc: subprocess.Popen, name: str = "askr"):
        self.proc = proc
        self.name = name
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reading = True
        threading.Thread(target=self._read, name=f"log-{name}", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._reading = False
            self._cond.notify_all()

    @property
    def log(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 30.0, start: int = 0) -> re.Match:
        """Block until a line (from index `start`) matches `pattern`; return the match. Each wake
        looks only at the lines that came since the last look."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if m := rx.search(line):
                        return m
                seen = max(seen, len(self.lines))
                left = deadline - time.monotonic()
                if left <= 0 or not self._reading:
                    raise AssertionError(f"{self.name}: no log line matching {pattern!r} "
                                         f"({'timed out' if self._reading else 'it exited'}); log:\n"
                                         + "\n".join(self.lines[-200:]))
                self._cond.wait(min(left, 0.5))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        return stop_process(self.proc, sig, timeout)


def admin_status(server, query: str = "") -> dict:
    """GET /api/status on the server's admin listener (`query`: "?full" for instance)."""
    r = httpx.get(server.admin_url + "/api/status" + query, timeout=30)
    assert r.status_code == 200
    return r.json()


def front_pids(server) -> dict[int, int]:
    """Front index -> pid of its newest process."""
    return {int(i): int(pid) for i, pid in re.findall(r"front #(\d+) started \(pid (\d+)\)", server.log)}


def serving_pid(server_port: int, client_port: int, pids: Iterable[int]) -> int | None:
    """Which of `pids` holds the server side of the TCP connection from `client_port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, remote = (int(a.rsplit(":", 1)[1], 16) for a in fields[1:3])
                if (local, remote) == (server_port, client_port):
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return pid
            except FileNotFoundError:  # closed meanwhile
                continue
    return None
