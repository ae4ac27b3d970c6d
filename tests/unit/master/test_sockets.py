"""Listen sockets: one per front per address, and a port in use refused even to SO_REUSEPORT."""

from __future__ import annotations

import socket

import pytest

from askr.config import ConfigError, Listen
from askr.master import sockets


def test_one_front_gets_one_plain_socket():
    [sock] = sockets.bind_shards(Listen("127.0.0.1", 0), 1)
    with sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0


def test_several_fronts_get_one_socket_each_on_the_same_free_port():
    shards = sockets.bind_shards(Listen("127.0.0.1", 0), 3)
    try:
        assert len({s.fileno() for s in shards}) == 3
        assert len({s.getsockname() for s in shards}) == 1
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in shards)
        with socket.create_connection(shards[0].getsockname(), timeout=5):
            pass  # accepted by one of them: they listen
    finally:
        for s in shards:
            s.close()


def test_a_port_held_by_another_reuseport_group_is_refused():
    """Without the plain bind first, a second askr would silently join the group."""
    held = sockets.bind_shards(Listen("127.0.0.1", 0), 2)
    try:
        port = held[0].getsockname()[1]
        with pytest.raises(ConfigError, match=r"\[server\] listen = '127.0.0.1:\d+': cannot listen there"):
            sockets.bind_shards(Listen("127.0.0.1", port), 2)
    finally:
        for s in held:
            s.close()
