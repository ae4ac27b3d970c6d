"""Listen sockets, bound once by the master and inherited by fronts (one shared accept queue)."""

from __future__ import annotations

import os
import socket

from askr.config import ConfigError, Listen


def bind_tcp(address: Listen, backlog: int = 1024, key: str = "[server] listen") -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise ConfigError(f"{key} = {str(address)!r}: cannot listen there: {e.strerror}; "
                          "pick a free port or stop what is using it") from None
    sock.setblocking(False)
    return sock


def bind_unix(path: str, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


QUEUE_BUFFER = 4 * 1024 * 1024


def request_queue() -> tuple[socket.socket, socket.socket]:
    """(front end, workers' end) of a front's request queue: SOCK_SEQPACKET keeps each request
    one message, and the workers sharing their end each receive whole, distinct messages."""
    front_end, workers_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    front_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, QUEUE_BUFFER)
    workers_end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, QUEUE_BUFFER)
    return front_end, workers_end


def display_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
