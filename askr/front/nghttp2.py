"""A sans-IO server-side HTTP/2 session over Debian's libnghttp2 (cffi API mode, askr.front._nghttp2).

Bytes in (receive_data -> events), frames queued by method calls, bytes out (data_to_send). Same
shape as how askr.front.http2 drives `h2`, at a few microseconds per request instead of ~150.

What nghttp2 does for us, and so differently from h2 as askr configures it:
- it validates request headers itself (RFC 9113 8.2/8.3, content-length against DATA): a malformed
  stream is reset with PROTOCOL_ERROR and never reaches the caller;
- it answers PING and SETTINGS and enforces MAX_CONCURRENT_STREAMS, CONTINUATION and
  RST_STREAM floods (rapid reset: a token bucket, then GOAWAY);
- flow control is manual: consume(stream_id, n) re-opens a stream's window as its body moves on;
  the connection window is re-opened at once here. nghttp2 sends WINDOW_UPDATE only once half a
  window is consumed (fewer frames than h2);
- response bodies wait in a per-stream C buffer that nghttp2 drains as the peer's windows allow;
  pending(stream_id) is what is still waiting (for backpressure).
"""

from __future__ import annotations

import enum
from itertools import chain

from askr.front._nghttp2 import ffi, lib


class ErrorCodes(enum.IntEnum):
    NO_ERROR = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2
    FLOW_CONTROL_ERROR = 3
    SETTINGS_TIMEOUT = 4
    STREAM_CLOSED = 5
    FRAME_SIZE_ERROR = 6
    REFUSED_STREAM = 7
    CANCEL = 8
    COMPRESSION_ERROR = 9
    CONNECT_ERROR = 10
    ENHANCE_YOUR_CALM = 11
    INADEQUATE_SECURITY = 12
    HTTP_1_1_REQUIRED = 13


class SettingCodes(enum.IntEnum):
    HEADER_TABLE_SIZE = 1
    ENABLE_PUSH = 2
    MAX_CONCURRENT_STREAMS = 3
    INITIAL_WINDOW_SIZE = 4
    MAX_FRAME_SIZE = 5
    MAX_HEADER_LIST_SIZE = 6
    ENABLE_CONNECT_PROTOCOL = 8


class ProtocolError(Exception):
    """The connection is dead: write what data_to_send() still holds (nghttp2's GOAWAY), then close."""

    def __init__(self, message: str, error_code: int = ErrorCodes.PROTOCOL_ERROR):
        super().__init__(message)
        self.error_code = error_code


class StreamClosedError(Exception):
    """The stream is gone (reset, finished, or never ours)."""

    def __init__(self, stream_id: int):
        super().__init__(f"stream {stream_id} is closed")
        self.stream_id = stream_id


# -- events (plain slotted classes: built per request, so kept cheap) --------------------------
class Event:
    __slots__ = ()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class RequestReceived(Event):
    """A request's header block. end_stream: no body follows (StreamEnded is not sent then).
    headers_too_large: the block passed max_header_list_size; `headers` holds what fit (answer 431)."""

    __slots__ = ("end_stream", "headers", "headers_too_large", "stream_id")

    def __init__(self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool,
                 headers_too_large: bool):
        self.stream_id = stream_id
        self.headers = headers
        self.end_stream = end_stream
        self.headers_too_large = headers_too_large


class TrailersReceived(Event):
    __slots__ = ("headers", "stream_id")

    def __init__(self, stream_id: int, headers: list[tuple[bytes, bytes]]):
        self.stream_id = stream_id
        self.headers = headers


class DataReceived(Event):
    """Body bytes. flow_controlled_length is what to consume() once they moved on (padding is
    re-opened by nghttp2 itself, so it equals len(data))."""

    __slots__ = ("data", "flow_controlled_length", "stream_id")

    def __init__(self, stream_id: int, data: bytes):
        self.stream_id = stream_id
        self.data = data
        self.flow_controlled_length = len(data)


class StreamEnded(Event):
    """The body is complete (END_STREAM on DATA or trailers)."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int):
        self.stream_id = stream_id


class StreamReset(Event):
    """A stream the caller was told about closed before the caller finished it: remote=True for the
    peer's RST_STREAM, False when nghttp2 reset it (a malformed body, content-length mismatch...)."""

    __slots__ = ("error_code", "remote", "stream_id")

    def __init__(self, stream_id: int, error_code: int, remote: bool):
        self.stream_id = stream_id
        self.error_code = error_code
        self.remote = remote


class WindowUpdated(Event):
    __slots__ = ("delta", "stream_id")

    def __init__(self, stream_id: int, delta: int):
        self.stream_id = stream_id
        self.delta = delta


class RemoteSettingsChanged(Event):
    __slots__ = ("changed",)

    def __init__(self, changed: dict[int, int]):
        self.changed = changed


class ConnectionTerminated(Event):
    """The peer's GOAWAY."""

    __slots__ = ("additional_data", "error_code", "last_stream_id")

    def __init__(self, error_code: int, last_stream_id: int, additional_data: bytes):
        self.error_code = error_code
        self.last_stream_id = last_stream_id
        self.additional_data = additional_data


_EV_REQUEST, _EV_TRAILERS, _EV_DATA, _EV_END, _EV_RESET, _EV_WINDOW, _EV_SETTINGS, _EV_GOAWAY = range(1, 9)
# what nghttp2 answers for a stream that is gone (or already has its response)
_CLOSED_ERRORS = frozenset((lib.NGHTTP2_ERR_STREAM_CLOSED, lib.NGHTTP2_ERR_INVALID_ARGUMENT,
                            lib.NGHTTP2_ERR_DATA_EXIST))
_MODE_BODY, _MODE_END, _MODE_INFORMATIONAL, _MODE_WHOLE = 0, 1, 2, 3


def _fields(block: bytes, count: int) -> list[tuple[bytes, bytes]]:
    """The (name, value) pairs of one header block, NUL-separated by the C layer (nghttp2 refuses
    NUL inside names and values, RFC 9113 8.2.1)."""
    if not count:
        return []
    parts = block.split(b"\0")
    if len(parts) != 2 * count:
        raise ProtocolError("header block does not split into its fields", ErrorCodes.INTERNAL_ERROR)
    it = iter(parts)
    return list(zip(it, it, strict=True))


class Session:
    """One server-side HTTP/2 connection. Not thread-safe; one per connection."""

    def __init__(self, *, max_concurrent_streams: int = 100, initial_window_size: int = 65535,
                 max_header_list_size: int = 65536, connection_window: int = 65535,
                 reset_burst: int = 1000, reset_rate: int = 33, max_continuations: int = 8):
        # Our SETTINGS are queued now, before the client preface is even read (RFC 9113 3.4).
        self._s = lib.askr_h2_new(max_concurrent_streams, initial_window_size, max_header_list_size,
                                  connection_window, reset_burst, reset_rate, max_continuations)
        if self._s == ffi.NULL:
            raise MemoryError("nghttp2 session")

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Free the C session (idempotent)."""
        s = getattr(self, "_s", None)
        if s is not None:
            self._s = None
            lib.askr_h2_free(s)

    # -- input -------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Event]:
        s = self._s
        rv = lib.askr_h2_recv(s, data, len(data))
        if rv < 0:
            raise ProtocolError(ffi.string(lib.nghttp2_strerror(rv)).decode(), self._fatal_code(rv))
        if s.lib_goaway:  # nghttp2 found a connection error and queued its GOAWAY
            code = s.lib_goaway_code
            raise ProtocolError(f"nghttp2 sent GOAWAY ({_code_name(code)})", code)
        return self.take_events()

    def take_events(self) -> list[Event]:
        """Events not yet returned: receive_data returns them; this gets those that arose while
        sending (a stream nghttp2 reset on its own during data_to_send)."""
        s = self._s
        n = s.nev
        if not n:
            return []
        ev = ffi.unpack(s.ev, 6 * n)
        raw = ffi.buffer(s.buf, s.nbuf)[:] if s.nbuf else b""
        lens = ffi.unpack(s.lens, s.nlens) if s.nlens else []  # SETTINGS pairs
        s.consumed = 1
        events: list[Event] = []
        append = events.append
        for i in range(0, 6 * n, 6):
            kind = ev[i]
            if kind == _EV_REQUEST:
                flags = ev[i + 2]
                start = ev[i + 4]
                append(RequestReceived(ev[i + 1], _fields(raw[start:start + ev[i + 5]], ev[i + 3]),
                                       bool(flags & 1), bool(flags & 2)))
            elif kind == _EV_DATA:
                start = ev[i + 4]
                append(DataReceived(ev[i + 1], raw[start:start + ev[i + 5]]))
            elif kind == _EV_END:
                append(StreamEnded(ev[i + 1]))
            elif kind == _EV_RESET:
                append(StreamReset(ev[i + 1], ev[i + 2], bool(ev[i + 3])))
            elif kind == _EV_WINDOW:
                append(WindowUpdated(ev[i + 1], ev[i + 2]))
            elif kind == _EV_TRAILERS:
                start = ev[i + 4]
                append(TrailersReceived(ev[i + 1], _fields(raw[start:start + ev[i + 5]], ev[i + 3])))
            elif kind == _EV_SETTINGS:
                at = ev[i + 3]
                pairs = range(at, at + 2 * ev[i + 5], 2)
                append(RemoteSettingsChanged({lens[j]: lens[j + 1] for j in pairs}))
            elif kind == _EV_GOAWAY:
                start = ev[i + 4]
                append(ConnectionTerminated(ev[i + 2], ev[i + 3], raw[start:start + ev[i + 5]]))
        return events

    # -- output ------------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        s = self._s
        rv = lib.askr_h2_send(s)
        n = s.nout
        out = ffi.buffer(s.out, n)[:] if n else b""
        s.nout = 0
        if rv < 0:
            raise ProtocolError(ffi.string(lib.nghttp2_strerror(rv)).decode(), ErrorCodes.INTERNAL_ERROR)
        return out

    def send_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]],
                     end_stream: bool = False) -> None:
        """The final response head; the body follows with send_data (unless end_stream). Names must be
        lower-case and values free of CR/LF/NUL: nghttp2 does not check what we send."""
        self._respond(stream_id, headers, _MODE_END if end_stream else _MODE_BODY)

    def send_informational(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        """A 1xx head (103 Early Hints): HEADERS without END_STREAM, before send_headers."""
        self._respond(stream_id, headers, _MODE_INFORMATIONAL)

    def _respond(self, stream_id: int, headers: list[tuple[bytes, bytes]], mode: int,
                 body: bytes = b"") -> None:
        blob = b"\0".join(chain.from_iterable(headers))
        rv = lib.askr_h2_respond(self._s, stream_id, blob, len(blob), len(headers), mode, body, len(body))
        if rv:
            self._raise(stream_id, rv)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> int:
        """Queue body bytes (any size: nghttp2 frames them as windows allow). Returns the stream's
        pending bytes."""
        rv = lib.askr_h2_push(self._s, stream_id, data, len(data), end_stream)
        if rv < 0:
            self._raise(stream_id, rv)
        return rv

    def end_stream(self, stream_id: int) -> None:
        self.send_data(stream_id, b"", end_stream=True)

    def respond(self, stream_id: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """A whole response in one go: headers, then body with END_STREAM (no body: END_STREAM on
        HEADERS)."""
        self._respond(stream_id, headers, _MODE_WHOLE if body else _MODE_END, body)

    def pending(self, stream_id: int) -> int:
        """Response bytes queued on the stream that nghttp2 has not yet framed (the peer's window
        is shut, or data_to_send() was not called yet); -1 for a closed stream."""
        return lib.askr_h2_pending(self._s, stream_id)

    def reset_stream(self, stream_id: int, error_code: int = ErrorCodes.NO_ERROR) -> None:
        rv = lib.askr_h2_reset(self._s, stream_id, error_code)
        if rv:
            self._raise(stream_id, rv)

    def goaway(self, last_stream_id: int | None = None, error_code: int = ErrorCodes.NO_ERROR,
               debug: bytes = b"") -> None:
        """GOAWAY that lets streams up to last_stream_id finish (graceful drain); nghttp2 ignores
        streams opened past it."""
        self._goaway(-1 if last_stream_id is None else last_stream_id, error_code, debug, 0)

    def terminate(self, error_code: int, last_stream_id: int | None = None) -> None:
        """GOAWAY that ends the connection: want_read()/want_write() turn false once it is sent."""
        self._goaway(-1 if last_stream_id is None else last_stream_id, error_code, b"", 1)

    def _goaway(self, last_stream_id: int, error_code: int, debug: bytes, terminate: int) -> None:
        if last_stream_id < 0:  # the highest stream nghttp2 handed us
            last_stream_id = lib.askr_h2_last_proc(self._s)
        rv = lib.askr_h2_goaway(self._s, last_stream_id, error_code, debug, len(debug), terminate)
        if rv:
            raise ProtocolError(ffi.string(lib.nghttp2_strerror(rv)).decode(), ErrorCodes.INTERNAL_ERROR)

    # -- flow control ------------------------------------------------------------------------
    def consume(self, stream_id: int, n: int) -> None:
        """n body bytes of the stream moved on: its window may re-open (WINDOW_UPDATE once half of
        it is consumed). Streams already closed are ignored."""
        if n:
            lib.askr_h2_consume(self._s, stream_id, n)

    def remote_window(self, stream_id: int = 0) -> int:
        """What the peer lets us send on the stream (0: the connection); -1 for no such stream."""
        return lib.askr_h2_remote_window(self._s, stream_id)

    def remote_setting(self, code: int) -> int:
        return lib.askr_h2_remote_setting(self._s, code)

    # -- h2c upgrade (RFC 7540 3.2) ----------------------------------------------------------
    def upgrade(self, settings_payload: bytes, head_request: bool = False) -> None:
        """After answering 101 to an HTTP/1.1 request with Upgrade: h2c: settings_payload is the
        base64url-decoded HTTP2-Settings header. The request becomes stream 1 (already ended);
        answer it with send_headers(1, ...)."""
        rv = lib.askr_h2_upgrade(self._s, settings_payload, len(settings_payload), head_request)
        if rv:
            raise ProtocolError(ffi.string(lib.nghttp2_strerror(rv)).decode())

    # -- connection state --------------------------------------------------------------------
    def want_read(self) -> bool:
        return bool(lib.askr_h2_want_read(self._s))

    def want_write(self) -> bool:
        """False together with want_read(): the session is over, close the connection."""
        return bool(lib.askr_h2_want_write(self._s))

    @staticmethod
    def _fatal_code(rv: int) -> int:
        return ErrorCodes.ENHANCE_YOUR_CALM if rv == lib.NGHTTP2_ERR_FLOODED else ErrorCodes.PROTOCOL_ERROR

    @staticmethod
    def _raise(stream_id: int, rv: int) -> None:
        if rv in _CLOSED_ERRORS:
            raise StreamClosedError(stream_id)
        if rv == lib.NGHTTP2_ERR_INVALID_HEADER_BLOCK:
            raise ValueError("a header name or value holds NUL")
        raise ProtocolError(ffi.string(lib.nghttp2_strerror(rv)).decode(), ErrorCodes.INTERNAL_ERROR)


def _code_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)
