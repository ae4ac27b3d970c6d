"""Shared fixtures: start the real `askr serve` on a free loopback port and wait for readiness.

Readiness is an event, not a sleep: the master prints `askr ready: http://HOST:PORT` once every
PHP worker has connected to the front. `--listen 127.0.0.1:0` lets the kernel pick a free port.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "integration"))
from askrtest import ProcessLog, allow_root  # the suite's helpers live beside the integration tests

REPO = Path(__file__).resolve().parent.parent
PHP_FIXTURES = Path(__file__).resolve().parent / "php"
READY = re.compile(r"askr ready: https?://([\d.]+):(\d+)")
ADMIN = re.compile(r"admin API: http://([\d.]+:\d+)/api/status")


class RunningServer(ProcessLog):
    """`askr serve` started by a test: its log, and once ready its address."""

    def __init__(self, proc: subprocess.Popen):
        super().__init__(proc)
        self.host = ""
        self.port = 0
        self.mode = "classic"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return "http://" + self.wait_for_log(ADMIN.pattern).group(1)


def askr_command() -> list[str]:
    return [sys.executable, "-m", "askr"]


def start_server(
    args: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    timeout: float = 60.0,
    new_session: bool = False,
) -> RunningServer:
    """new_session: askr leads its own process group (and session), so a test can signal the
    whole tree at once with os.killpg(server.proc.pid, ...) as systemd or a terminal would."""
    args = allow_root(args)
    if args[:1] == ["serve"] and "--config" not in args and "--admin-listen" not in args:
        args = [*args, "--admin-listen", "127.0.0.1:0"]  # servers run side by side in the suite
    # PYTHONPATH: `python -m askr` must import this checkout even when cwd is elsewhere
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath, **(env or {})}
    proc = subprocess.Popen(
        [*askr_command(), *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=new_session,
    )
    server = RunningServer(proc)
    if wait_ready:
        try:
            m = server.wait_for_log(READY.pattern, timeout=timeout)
        except AssertionError:
            server.stop(signal.SIGKILL)  # never leak a half-started server
            raise
        server.host, server.port = m.group(1), int(m.group(2))
    return server


def _server_factory() -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def factory(*args: str | os.PathLike, **kw) -> RunningServer:
        argv = ["serve", *map(str, args)]
        if "--listen" not in argv and "--config" not in argv:
            argv += ["--listen", "127.0.0.1:0"]
        server = start_server(argv, **kw)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def askr_server() -> Iterator[Callable[..., RunningServer]]:
    """Factory: askr_server("--root", DIR, "--workers", "2", ...) -> a ready RunningServer.

    `--listen 127.0.0.1:0` is added unless the arguments name a listen address or a config file.
    Every server started is stopped (SIGTERM) at teardown.
    """
    yield from _server_factory()


@pytest.fixture(scope="module")
def askr_module_server() -> Iterator[Callable[..., RunningServer]]:
    """Like `askr_server`, but its servers live until the end of the test module."""
    yield from _server_factory()


WORKER_SCRIPT = PHP_FIXTURES / "worker.php"  # runs tests/php/app's scripts in worker mode


def php_app_args(mode: str) -> list[str]:
    args = ["serve", "--root", str(PHP_FIXTURES / "app"), "--workers", "2", "--listen", "127.0.0.1:0"]
    return args + (["--worker", str(WORKER_SCRIPT)] if mode == "worker" else [])


@pytest.fixture(scope="module", params=["classic", "worker"])
def php_app(request) -> Iterator[RunningServer]:
    """One shared server (2 workers) over tests/php/app for read-only behaviour tests, once in
    classic mode and once in worker mode: every test using it must pass in both."""
    server = start_server(php_app_args(request.param))
    server.mode = request.param
    yield server
    server.stop()


@pytest.fixture(scope="module")
def both_modes() -> Iterator[dict[str, RunningServer]]:
    """The tests/php/app server in classic and in worker mode at once, to compare answers."""
    servers = {mode: start_server(php_app_args(mode)) for mode in ("classic", "worker")}
    yield servers
    for server in servers.values():
        server.stop()
