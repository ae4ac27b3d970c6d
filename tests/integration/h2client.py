"""A small blocking HTTP/2 client on the `h2` library, for what httpx and curl cannot show:
flow-control windows held shut, informational responses, GOAWAY, raw resets."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    informational: list[list[tuple[bytes, bytes]]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


class _GracefulGoaway(h2.connection.H2Connection):
    """h2 ends the connection at any GOAWAY, but after a graceful one (NO_ERROR) the streams up to
    its last_stream_id still complete (RFC 9113 6.8), which is what the drain test watches."""

    def _receive_goaway_frame(self, frame):
        if frame.error_code:
            return super()._receive_goaway_frame(frame)
        event = h2.events.ConnectionTerminated()
        event.error_code = h2.errors.ErrorCodes.NO_ERROR
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


class H2Client:
    def __init__(self, host: str, port: int, cafile: str | None = None, tls: bool = True,
                 validate: bool = True):
        sock = socket.create_connection((host, port), timeout=30)
        if tls:
            context = ssl.create_default_context(cafile=cafile)
            context.set_alpn_protocols(["h2"])
            sock = context.wrap_socket(sock, server_hostname=host)
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.authority = f"{host}:{port}".encode()
        self.scheme = b"https" if tls else b"http"
        self.conn = _GracefulGoaway(h2.config.H2Configuration(  # validate=False: send malformed blocks
            client_side=True, header_encoding=None, validate_outbound_headers=validate,
            normalize_outbound_headers=validate))
        self.conn.initiate_connection()
        self.responses: dict[int, Response] = {}
        self.hold: set[int] = set()  # streams whose received data we do not acknowledge
        self.unacked: dict[int, int] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.remote_settings: dict = {}
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str, method: str = "GET", headers: list[tuple[str, str]] | None = None,
                body: bytes | None = None) -> int:
        sid = self.conn.get_next_available_stream_id()
        head = [(b":method", method.encode()), (b":path", path.encode()), (b":scheme", self.scheme),
                (b":authority", self.authority)]
        head += [(k.encode(), v.encode()) for k, v in headers or []]
        self.conn.send_headers(sid, head, end_stream=body is None)
        self.responses[sid] = Response()
        self.flush()
        if body is not None:
            self.send_body(sid, body)
        return sid

    def send_body(self, sid: int, body: bytes) -> None:
        view = memoryview(body)
        while view:
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.read_once()
                continue
            self.conn.send_data(sid, bytes(view[:window]))
            view = view[window:]
            self.flush()
        self.conn.end_stream(sid)
        self.flush()

    def release(self, sid: int) -> None:
        """Start acknowledging a held stream's data (its window opens again)."""
        self.hold.discard(sid)
        n = self.unacked.pop(sid, 0)
        if n:
            self.conn.increment_flow_control_window(n, stream_id=sid)
            self.flush()

    def read_once(self, timeout: float = 30) -> None:
        self.sock.settimeout(timeout)
        data = self.sock.recv(1 << 20)
        if not data:
            self.closed = True
            return
        for event in self.conn.receive_data(data):
            self._on(event)
        self.flush()

    def _on(self, event) -> None:
        sid = getattr(event, "stream_id", None)
        resp = self.responses.get(sid) if sid else None
        if isinstance(event, h2.events.InformationalResponseReceived) and resp:
            resp.informational.append(event.headers)
        elif isinstance(event, h2.events.ResponseReceived) and resp:
            resp.headers = event.headers
            resp.status = int(dict(event.headers)[b":status"])
        elif isinstance(event, h2.events.DataReceived) and resp:
            resp.data += event.data
            if sid in self.hold:  # the connection's window re-opens; the stream's stays shut
                self.unacked[sid] = self.unacked.get(sid, 0) + event.flow_controlled_length
                if event.flow_controlled_length:
                    self.conn.increment_flow_control_window(event.flow_controlled_length)
            else:
                self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
        elif isinstance(event, h2.events.StreamEnded) and resp:
            resp.ended = True
        elif isinstance(event, h2.events.StreamReset) and resp:
            resp.reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.remote_settings.update({k: v.new_value for k, v in event.changed_settings.items()})

    def wait(self, predicate, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.closed:
                raise AssertionError("the server closed the connection")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("timed out waiting on the HTTP/2 connection")
            self.read_once(remaining)

    def get(self, path: str, **kw) -> Response:
        sid = self.request(path, **kw)
        self.wait(lambda: self.responses[sid].ended or self.responses[sid].reset is not None)
        return self.responses[sid]

    def close(self) -> None:
        self.sock.close()
