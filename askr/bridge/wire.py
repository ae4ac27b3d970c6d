"""Frame codec for the front <-> PHP worker channel (see docs/internals.md). No I/O here."""

from __future__ import annotations

import struct
from collections.abc import Iterable

# front -> worker
REQUEST = 0x01
BODY = 0x02
BODY_END = 0x03
# worker -> front
HELLO = 0x10
HEAD = 0x11
RESP_BODY = 0x12
END = 0x13

END_FLAG_EXITING = 0x01

HEADER = struct.Struct("!BI")
HEADER_SIZE = HEADER.size
_RECORD = struct.Struct("!HI")
_U16 = struct.Struct("!H")
_HELLO = struct.Struct("!III")
MAX_BODY_FRAME = 64 * 1024

BODY_END_FRAME = HEADER.pack(BODY_END, 0)


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def _records(pairs: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    out: list[bytes] = []
    pack = _RECORD.pack
    for name, value in pairs:
        out.append(pack(len(name), len(value)))
        out.append(name)
        out.append(value)
    return out


def encode_request(params: list[tuple[bytes, bytes]], headers: list[tuple[bytes, bytes]]) -> bytes:
    """One REQUEST frame: CGI params, then request headers (names unique)."""
    parts = [_U16.pack(len(params)), *_records(params), _U16.pack(len(headers)), *_records(headers)]
    payload = b"".join(parts)
    return HEADER.pack(REQUEST, len(payload)) + payload


def encode_body(data: bytes) -> bytes:
    """BODY frames for `data`, split at MAX_BODY_FRAME."""
    if len(data) <= MAX_BODY_FRAME:
        return HEADER.pack(BODY, len(data)) + data
    view = memoryview(data)
    return b"".join(
        HEADER.pack(BODY, len(view[i : i + MAX_BODY_FRAME])) + bytes(view[i : i + MAX_BODY_FRAME])
        for i in range(0, len(data), MAX_BODY_FRAME)
    )


def decode_request(payload: bytes) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """Inverse of encode_request (used by tests and tools)."""
    pos = 0
    sections: list[list[tuple[bytes, bytes]]] = []
    for _ in range(2):
        (count,) = _U16.unpack_from(payload, pos)
        pos += 2
        records = []
        for _ in range(count):
            nlen, vlen = _RECORD.unpack_from(payload, pos)
            pos += _RECORD.size
            name = payload[pos : pos + nlen]
            pos += nlen
            records.append((name, payload[pos : pos + vlen]))
            pos += vlen
        sections.append(records)
    return sections[0], sections[1]


def decode_hello(payload: bytes) -> tuple[int, int, int]:
    """(worker_id, pid, generation)."""
    return _HELLO.unpack(payload)


def decode_head(payload: bytes) -> tuple[int, list[bytes]]:
    """(status, ["Name: value", ...]) from a HEAD payload."""
    (status,) = _U16.unpack_from(payload, 0)
    rest = payload[2:]
    return status, rest.split(b"\n") if rest else []
