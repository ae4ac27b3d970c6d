"""A minimal Redis client for the tests (RESP over Redis's unix socket): the test process reads
what the jobs and sessions wrote without entering the namespaces."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any


class RedisError(Exception):
    pass


def _encode(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read(f: Any) -> Any:
    line = f.readline()
    if not line:
        raise RedisError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = f.read(size + 2)
        return data[:-2].decode()
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read(f) for _ in range(size)]
    raise RedisError(f"unexpected reply {line!r}")


class Redis:
    def __init__(self, path: Path):
        self.path = path

    def __call__(self, *args: Any) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(self.path))
            s.sendall(_encode(args))
            with s.makefile("rb") as f:
                return _read(f)

    def hgetall(self, key: str) -> dict[str, str]:
        flat = self("HGETALL", key)
        return dict(zip(flat[::2], flat[1::2], strict=True))
