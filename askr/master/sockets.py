"""Listen sockets, bound once by the master and inherited by fronts.

With one front, each listen address is one socket. With several, each front gets its own socket
per address, all bound with SO_REUSEPORT, so the kernel spreads new connections over the fronts'
accept queues by hashing the connection's addresses. One socket shared by every front lets
whichever front wakes first take a whole burst (libuv accepts until the queue is empty): wrk's 64
connections landed 64/0 in 6 of 8 runs on 2 fronts, at times costing two thirds of the
throughput, and every connection woke every front. The master keeps every shard open, so the
connections queued on a front that died wait for its replacement instead of being refused; the
price is that a front that hangs without dying holds its share of new connections queued.
"""

from __future__ import annotations

import os
import socket

from askr.config import ConfigError, Listen


def bind_tcp(address: Listen, backlog: int = 1024, key: str = "[server] listen",
             reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address.host, address.port))
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise ConfigError(f"{key} = {str(address)!r}: cannot listen there: {e.strerror}; "
                          "pick a free port or stop what is using it") from None
    sock.setblocking(False)
    return sock


def bind_shards(address: Listen, count: int, key: str = "[server] listen") -> list[socket.socket]:
    """`count` sockets on one address, one per front (SO_REUSEPORT when more than one); port 0
    means one free port for all of them."""
    if count == 1:
        return [bind_tcp(address, key=key)]
    # A plain bind first: SO_REUSEPORT alone would let a second askr (or anything of the same
    # user) join the group on a port already in use and take part of its traffic silently.
    probe = bind_tcp(address, key=key)
    same = Listen(address.host, probe.getsockname()[1])
    probe.close()
    shards: list[socket.socket] = []
    try:
        for _ in range(count):
            shards.append(bind_tcp(same, key=key, reuse_port=True))
    except ConfigError:
        for sock in shards:
            sock.close()
        raise
    return shards


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
