"""Frame codec for the front <-> PHP worker channel (see docs/internals.md). No I/O here."""

from __future__ import annotations

import struct

from askr._hotpath import encode_request as _encode_request

# front -> worker
REQUEST = 0x01
BODY = 0x02
BODY_END = 0x03
STOP = 0x04  # take no more requests (sent when the worker is idle; any frame boundary is fine)
# worker -> front
HELLO = 0x10
HEAD = 0x11
RESP_BODY = 0x12
END = 0x13
TAKEN = 0x14  # u64 request id, u8 its queue flags: the worker took this request from the queue
EARLY_HINTS = 0x15  # like HEAD, a 1xx informational response sent before the final one
BOOT_FAILED = 0x16  # u32 worker id, u32 pid, UTF-8 reason: the worker script never got ready
RECYCLE = 0x17  # u8 reason, u64 bytes: after a response, the worker asks to be replaced

END_FLAG_EXITING = 0x01  # the worker exits after this response
END_FLAG_QUOTA = 0x02  # max_requests reached: it serves on until a replacement is ready
RECYCLE_REASONS = {1: "max_memory"}  # RECYCLE's reason byte (RECYCLE_MAX_MEMORY in csrc/askr_chan.h)
_RECYCLE = struct.Struct("!BQ")

HEADER = struct.Struct("!BI")
HEADER_SIZE = HEADER.size
_HEADER_SIZE = HEADER_SIZE
_unpack_header = HEADER.unpack_from
_U16 = struct.Struct("!H")
_HELLO = struct.Struct("!III")
MAX_BODY_FRAME = 64 * 1024

# The request queue (SOCK_SEQPACKET) every front writes and every worker reads: one message per
# request, u64 id + u8 flags + u8 the front's index (whose channel gets the answer) + frames.
QUEUE_HEADER = struct.Struct("!QBB")
QUEUE_FLAG_BODY_ON_CHANNEL = 0x01  # only REQUEST is in the message; the body follows on the channel
MAX_QUEUE_MESSAGE = 256 * 1024  # the worker's receive buffer (READ_BUF_SIZE in csrc/askr_chan.h)
_U64 = struct.Struct("!Q")

BODY_END_FRAME = HEADER.pack(BODY_END, 0)
STOP_FRAME = HEADER.pack(STOP, 0)


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


# encode_request(params, headers, prefix=b"") -> bytes: one REQUEST frame from flat lists
# [name, value, name, value, ...] (no NUL in any item). The payload is NUL-separated: params, an
# empty name, headers, each item NUL-terminated; `prefix` is params already encoded by
# `encode_params` (those fixed per connection). Built in C in one allocation, called directly (no
# Python wrapper on the per-request path); tests/unit/bridge/test_wire.py states the layout in Python.
encode_request = _encode_request


def encode_params(params: list[bytes]) -> bytes:
    """A prefix for encode_request: params encoded once, reused for many requests."""
    return b"\0".join(params) + b"\0" if params else b""


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
    """Inverse of encode_request, as (name, value) pairs (used by tests and tools)."""
    items = payload[:-1].split(b"\0")
    split = next(i for i in range(0, len(items), 2) if items[i] == b"")
    params, headers = items[:split], items[split + 1 :]
    pairs = list(zip(params[::2], params[1::2], strict=True))
    return pairs, list(zip(headers[::2], headers[1::2], strict=True))


def split_frames(buf: bytes | bytearray) -> tuple[list[tuple[int, int, int]], int]:
    """The complete frames at the start of `buf`, as (type, payload start, payload end) offsets,
    and how many bytes they take; a frame not yet complete is left for the next read."""
    frames: list[tuple[int, int, int]] = []
    append = frames.append  # this runs for every response: locals, no attribute lookups
    pos, end = 0, len(buf)
    while pos + _HEADER_SIZE <= end:
        kind, length = _unpack_header(buf, pos)
        stop = pos + _HEADER_SIZE + length
        if stop > end:
            break
        append((kind, pos + _HEADER_SIZE, stop))
        pos = stop
    return frames, pos


def frame_size(buf: bytes | bytearray) -> int:
    """The whole size of the frame `buf` starts with (header included), once its header is in;
    until then, the header's size."""
    if len(buf) < _HEADER_SIZE:
        return _HEADER_SIZE
    return _HEADER_SIZE + _unpack_header(buf, 0)[1]


def decode_status(payload: bytes | bytearray, start: int = 0) -> int:
    """The u16 status that opens a HEAD or EARLY_HINTS payload."""
    return (payload[start] << 8) | payload[start + 1]


def decode_taken(payload: bytes) -> tuple[int, int]:
    """(request id, the queue flags it came with)."""
    return _U64.unpack_from(payload)[0], payload[8] if len(payload) > 8 else 0


def decode_hello(payload: bytes) -> tuple[int, int, int]:
    """(worker_id, pid, generation)."""
    return _HELLO.unpack(payload)


def decode_boot_failed(payload: bytes) -> tuple[int, int, str]:
    """(worker_id, pid, reason)."""
    worker_id, pid = struct.unpack_from("!II", payload)
    return worker_id, pid, payload[8:].decode("utf-8", "replace")


def decode_head(payload: bytes) -> tuple[int, list[bytes]]:
    """(status, ["Name: value", ...]) from a HEAD payload."""
    (status,) = _U16.unpack_from(payload, 0)
    rest = payload[2:]
    return status, rest.split(b"\n") if rest else []


def decode_recycle(payload: bytes) -> tuple[str, int]:
    """RECYCLE: why the worker asks to be replaced, and the figure behind it (bytes of memory)."""
    code, value = _RECYCLE.unpack_from(payload)
    return RECYCLE_REASONS.get(code, f"reason {code}"), value
