"""One log line per event: `time LEVEL [component] message` (or one JSON object), on stderr, for
every askr process; and the optional access log ([log] access).

The C worker writes the same shape itself (`[php#N]`; JSON with --log-format json), so the
master's stderr is one readable stream.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import IO

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def utc_iso(seconds: float) -> str:
    """2026-11-24T04:47:46.123Z (the C worker writes the same)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"


class _ComponentFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.component = record.name.rpartition(".")[2]
        return super().format(record)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": utc_iso(record.created), "level": record.levelname,
                 "component": record.name.rpartition(".")[2], "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str | int = logging.INFO, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_ComponentFormatter("%(asctime)s %(levelname)s [%(component)s] %(message)s"))
    root = logging.getLogger("askr")
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level, logging.INFO) if isinstance(level, str) else level)
    root.propagate = False


class AccessLog:
    """[log] access: a line per response, "combined" (nginx's format plus the duration in seconds
    and the PHP worker's pid) or "json". Buffered; the front flushes it a few times a second."""

    def __init__(self, fmt: str, path: str | None):
        self.fmt = fmt
        self.path = path
        self.out: IO[str] = self._open()

    def _open(self) -> IO[str]:
        if self.path is None:
            return os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=64 * 1024)
        return open(self.path, "a", buffering=64 * 1024)

    def reopen(self) -> None:
        """After logrotate moved the file (askr reload)."""
        self.out.flush()
        if self.path is not None:
            self.out.close()
            self.out = self._open()

    def write(self, remote: str, method: bytes, uri: bytes, protocol: str, status: int, nbytes: int,
              referer: bytes | None, agent: bytes | None, seconds: float, worker: int) -> None:
        now = time.time()
        if self.fmt == "json":
            self.out.write(json.dumps({
                "time": utc_iso(now), "remote": remote, "method": method.decode("latin-1"),
                "uri": uri.decode("latin-1"), "protocol": protocol, "status": status, "bytes": nbytes,
                "referer": referer.decode("latin-1") if referer else None,
                "user_agent": agent.decode("latin-1") if agent else None,
                "duration_ms": round(seconds * 1000, 3), "worker_pid": worker or None}) + "\n")
            return
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))
        ref = _quoted(referer)
        ua = _quoted(agent)
        self.out.write(f'{remote} - - [{stamp}] "{method.decode("latin-1")} {uri.decode("latin-1")} '
                       f'{protocol}" {status} {nbytes} "{ref}" "{ua}" {seconds:.3f} {worker or "-"}\n')

    def flush(self) -> None:
        self.out.flush()


def _quoted(value: bytes | None) -> str:
    if not value:
        return "-"
    return value.decode("latin-1").replace("\\", "\\\\").replace('"', '\\"')
