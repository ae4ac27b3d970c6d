"""The master's handle on one PHP generation's zygote (the C program in --zygote mode).

It speaks the line protocol of docs/internals.md over a socketpair; the zygote forks workers,
reaps them and reports their exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
from collections.abc import Callable

from askr import privileges, sandbox
from askr.config import Config
from askr.paths import php_worker_binary

log = logging.getLogger("askr.master")


class ZygoteError(Exception):
    pass


class Zygote:
    def __init__(self, config: Config, generation: int, on_line: Callable[[Zygote, list[str]], None],
                 queue_fds: list[int], scoreboard: str, run_as: tuple[int, int] | None = None,
                 unenforced_log: sandbox.UnenforcedLog | None = None):
        self.run_as = run_as  # (uid, gid) the zygote and so its workers run as
        # the master's: what the sandbox runs without is logged once, not at every generation
        self.unenforced_log = unenforced_log or sandbox.UnenforcedLog()
        self.config = config
        self.queue_fds = queue_fds  # inherited by every worker; `spawn` names the one to read
        self.scoreboard = scoreboard
        self.generation = generation
        self.on_line = on_line
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pid = 0
        self.reader: asyncio.Task | None = None  # reads its report lines until EOF
        # What the zygote reported applying ([sandbox]): {"landlock_abi": N, "seccomp": bool};
        # None when the sandbox is off
        self.sandbox: dict | None = None

    def command(self, control_fd: int, sandbox_fd: int | None = None) -> list[str]:
        cmd = [str(php_worker_binary()), "--zygote", "--control-fd", str(control_fd),
               "--generation", str(self.generation), "--scoreboard", self.scoreboard]
        if sandbox_fd is not None:
            cmd += ["--sandbox-fd", str(sandbox_fd)]
        worker = self.config.worker
        if worker.script is not None:
            # Resolved now: a generation keeps the release it started with, even after a
            # `current` symlink moves on (a rollback must not pick up the new code).
            cmd += ["--mode", "worker", "--worker-script", os.path.realpath(worker.script)]
            if worker.app_base is not None:
                cmd += ["--app-base", os.path.realpath(worker.app_base)]
        else:
            cmd += ["--mode", "classic"]
        if worker.max_memory:
            cmd += ["--max-memory", str(worker.max_memory)]
        if worker.slowlog_timeout is not None:
            cmd += ["--slowlog-timeout-ms", str(max(1, round(worker.slowlog_timeout * 1000)))]
        if worker.slowlog_file is not None:
            cmd += ["--slowlog-file", os.path.abspath(worker.slowlog_file)]
        for key, value in self.config.worker.ini:
            cmd += ["--ini", f"{key}={value}"]
        if self.config.log.format == "json":
            cmd += ["--log-format", "json"]
        return cmd

    async def start(self, timeout: float = 60.0) -> None:
        binary = php_worker_binary()
        if not binary.exists():
            raise ZygoteError(f"the PHP worker program {binary} is missing; reinstall askr (pip install .) "
                              "so it is built")
        ours, theirs = socket.socketpair()
        # [sandbox]: the policy on a pipe, resolved now like the rest of the generation
        policy_fd = None
        if self.config.sandbox.enabled:
            sandbox.warn_exposed_secrets(self.config, os.path.dirname(self.scoreboard) or None)
            policy_fd = sandbox.pipe_with(sandbox.policy_text(self.config))
        extra_fds = [] if policy_fd is None else [policy_fd]
        try:
            # Workers run in the document root (php-fpm runs in its pool's chdir and, like it,
            # PHP does not chdir per script: SAPI_OPTION_NO_CHDIR).
            self.proc = subprocess.Popen(self.command(theirs.fileno(), policy_fd),
                                         pass_fds=[theirs.fileno(), *self.queue_fds, *extra_fds],
                                         stdin=subprocess.DEVNULL,
                                         cwd=os.path.realpath(self.config.server.root),
                                         **privileges.popen_user(self.run_as))
        finally:
            theirs.close()
            if policy_fd is not None:
                os.close(policy_fd)
        # SCHED_BATCH, inherited by every worker it forks: a worker woken by a request in the
        # queue does not preempt the front that queued it (on a box where fronts and workers
        # share cores, that preemption cost a context switch per ~2 requests and broke the
        # front's batching of a loop turn's requests); CPU shares are unchanged.
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(self.proc.pid, os.SCHED_BATCH, os.sched_param(0))
        self.sock = ours
        reader, self.writer = await asyncio.open_connection(sock=ours)
        try:
            first = await asyncio.wait_for(reader.readline(), timeout)
        except TimeoutError:
            raise ZygoteError(f"PHP did not start within {timeout:.0f} s") from None
        unenforced: list[str] = []  # what PHP runs without ([sandbox] required = false)
        line = first.decode(errors="replace")
        while line.startswith("sandbox-unenforced "):
            unenforced.append(line.partition(" ")[2].strip())
            line = (await reader.readline()).decode(errors="replace")
        fields = line.split()
        if fields[:1] == ["sandbox"] and len(fields) == 3:  # what it applied, before `ready`
            self.sandbox = {"landlock_abi": int(fields[1]), "seccomp": fields[2] == "1"}
            connect = sandbox.connect_not_enforced(self.config, self.sandbox["landlock_abi"])
            if connect and self.config.sandbox.required:
                raise ZygoteError(f"{connect}, and [sandbox] required = true")
            if connect:
                unenforced.append(connect)
            fields = (await reader.readline()).decode(errors="replace").split()
        if self.sandbox is not None or not self.config.sandbox.enabled:  # a report (none: no sandbox)
            for text in self.unenforced_log.to_log(unenforced):
                log.warning("%s", text)
        if not fields or fields[0] != "ready":
            reason = " ".join(fields[1:]) if fields else "it exited during startup (see the log above)"
            raise ZygoteError(f"PHP startup failed: {reason}")
        self.pid = int(fields[1])
        self.reader = asyncio.get_running_loop().create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            self.on_line(self, line.decode(errors="replace").split())
        self.on_line(self, ["closed"])

    def spawn(self, worker_id: int, channel_path: str, max_requests: int, queue_fd: int,
              position: int) -> None:
        """Fork a worker: `worker_id` is its scoreboard slot, `position` names it in logs (php#N)."""
        assert self.writer is not None
        self.writer.write(f"spawn {worker_id} {channel_path} {max_requests} {queue_fd} {position}\n".encode())

    def stop_reading(self) -> None:
        """The master is done: no more report lines (an old zygote's come until its EOF)."""
        if self.reader is not None:
            self.reader.cancel()

    def close(self) -> None:
        """Stop forking; the zygote exits, its workers serve on until their channels close."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
