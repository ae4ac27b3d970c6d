"""A PHP CLI child of the master (a queue worker, a scheduler run): how it is started, and its
stdout/stderr forwarded into askr's log one line at a time, tagged with its name."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

from askr import privileges, sandbox
from askr.config import Config

READ_CHUNK = 65536
LOG_FLUSH_TIMEOUT = 2.0
MAX_LINE = 16384  # a longer "line" is logged in pieces rather than held in memory


@dataclass(frozen=True, slots=True)
class Release:
    """Script and app base resolved through symlinks when a generation starts, so respawns keep
    running the code that generation started with, even after a `current` symlink moves on."""

    script: str
    app_base: str
    sandbox_policy: str | None = None  # [sandbox]: what the launcher applies before running PHP's CLI

    @classmethod
    def resolve(cls, config: Config, script: str, run_as: tuple[int, int] | None = None) -> Release:
        script = os.path.realpath(script)
        policy = None
        if config.sandbox.enabled:
            rules = [sandbox.Rule("ro", script), *sandbox.cli_rules(config, run_as)]
            policy = sandbox.policy_text(config, rules)
        return cls(script, os.path.realpath(config.worker.app_base or "."), policy)


@dataclass
class CliProcess:
    name: str  # also its log component: queue#0, scheduler
    proc: subprocess.Popen
    generation: int
    started_at: float = field(default_factory=time.time)
    started_mono: float = field(default_factory=time.monotonic)
    state: str = "running"  # running -> stopping (asked to finish) -> exited
    exit_code: int | None = None  # its exit code, or -N when killed by signal N
    exited: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def reaped(self, status: int) -> None:
        """The master reaped it (waitpid status)."""
        self.exit_code = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.exit_code
        self.state = "exited"
        if not self.exited.done():
            self.exited.set_result(self.exit_code)

    def how(self) -> str:
        code = self.exit_code
        if code is None:
            return "still running"
        return f"killed by signal {-code}" if code < 0 else f"exited with code {code}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int, group: bool = False) -> None:
        """Signal it, or (group) it and what it started: a scheduler run's artisan commands."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL, group=True)

    def lived(self) -> float:
        return time.monotonic() - self.started_mono


def start(config: Config, name: str, release: Release, args: list[str], generation: int,
          run_as: tuple[int, int] | None, env: dict[str, str] | None = None,
          ignore_sigterm: bool = False) -> CliProcess:
    """Run `php [-d ini ...] SCRIPT ARGS...` in the app's base directory, in its own process group
    (a Ctrl-C on askr's terminal reaches askr alone, which decides how its children stop).

    ignore_sigterm: for a child askr never stops with SIGTERM (it waits, then kills), so one
    sent to every process of the service at once (systemd's default KillMode) changes nothing.

    With [sandbox] on, askr-php --sandbox-exec applies the sandbox (and ignores SIGTERM), then
    executes the CLI."""
    command = [shutil.which(config.worker.php_cli) or config.worker.php_cli]
    for key, value in config.worker.ini:
        command += ["-d", f"{key}={value}"]
    command += [release.script, *args]
    policy_fd = None
    if release.sandbox_policy is not None:
        policy_fd = sandbox.pipe_with(release.sandbox_policy)
        command = sandbox.launcher_command(policy_fd, command, ignore_sigterm)
    elif ignore_sigterm:  # an ignored signal stays ignored across exec
        command = ["/bin/sh", "-c", 'trap "" TERM; exec "$@"', name, *command]
    child_env = {**os.environ, "ASKR_APP_BASE": release.app_base, **(env or {})}
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        proc = subprocess.Popen(command, cwd=release.app_base, env=child_env, stdin=subprocess.DEVNULL,
                                stdout=out_w, stderr=err_w, process_group=0,
                                pass_fds=[] if policy_fd is None else [policy_fd],
                                **privileges.popen_user(run_as))
    except OSError:
        for fd in (out_r, err_r):
            os.close(fd)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
        if policy_fd is not None:
            os.close(policy_fd)
    child = CliProcess(name, proc, generation)
    log = logging.getLogger(f"askr.{name}")
    loop = asyncio.get_running_loop()
    for fd, level in ((out_r, logging.INFO), (err_r, logging.WARNING)):
        task = loop.create_task(_forward(fd, log, level))
        _log_tasks.add(task)
        task.add_done_callback(_log_tasks.discard)
    return child


_log_tasks: set[asyncio.Task] = set()


async def flush_logs() -> None:
    """At exit: let the last lines of exited children reach the log."""
    if _log_tasks:
        await asyncio.wait(list(_log_tasks), timeout=LOG_FLUSH_TIMEOUT)


async def _forward(fd: int, log: logging.Logger, level: int) -> None:
    """Log each line read from `fd` until the child (and whatever inherited the pipe) closes it."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                os.fdopen(fd, "rb", buffering=0))
    pending = b""
    try:
        while chunk := await reader.read(READ_CHUNK):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > MAX_LINE:
                lines.append(pending)
                pending = b""
            for line in lines:
                if line.strip():
                    log.log(level, "%s", line.decode("utf-8", "replace").rstrip())
        if pending.strip():
            log.log(level, "%s", pending.decode("utf-8", "replace").rstrip())
    finally:
        transport.close()
