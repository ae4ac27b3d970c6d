"""A tiny raw HTTP/1.1 client for integration tests: exact bytes out, parsed responses in.

HTTP client libraries normalise what we need to send verbatim (`..`, `%2e`, duplicate headers,
CL+TE conflicts) and hide what we need to observe (100 Continue, chunk boundaries, connection
reuse, EOF). Every read has a socket timeout, so a test never hangs on a silent server.
"""

from __future__ import annotations

import contextlib
import json
import socket
from dataclasses import dataclass, field
from typing import Any

TIMEOUT = 20.0


class ServerClosed(AssertionError):
    """The server closed the connection before a complete response arrived."""


@dataclass
class Response:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    chunked: bool = False

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_list(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers!r} body={self.body[:300]!r}>"


def request_bytes(
    method: str,
    target: str,
    headers: list[tuple[str, str]] | dict[str, str] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
    host: str = "127.0.0.1",
) -> bytes:
    """Build a request; adds Host (unless given) and Content-Length for a body (unless framed)."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in items}
    if "host" not in names and version == "HTTP/1.1":
        items.insert(0, ("Host", host))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        items.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n"
    return head.encode("latin-1") + body


class Conn:
    """One client connection with its own read buffer."""

    def __init__(self, host: str, port: int, timeout: float = TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        self.reset = False

    # -- plumbing -------------------------------------------------------------------------------
    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """Send, reporting False instead of raising when the server already closed/reset."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _fill(self, timeout: float | None = None) -> bool:
        """Read more bytes into the buffer; False on EOF (a reset counts as EOF)."""
        if self.eof:
            return False
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            self.reset = True
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, marker: bytes, timeout: float | None = None) -> bytes:
        while marker not in self.buf:
            if not self._fill(timeout):
                raise ServerClosed(f"EOF before {marker!r}; got {self.buf[:500]!r}")
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n: int, timeout: float | None = None) -> bytes:
        while len(self.buf) < n:
            if not self._fill(timeout):
                raise ServerClosed(f"EOF after {len(self.buf)} of {n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_eof(self, timeout: float | None = None) -> bytes:
        while self._fill(timeout):
            pass
        out, self.buf = self.buf, b""
        return out

    def wait_closed(self, timeout: float = TIMEOUT) -> bool:
        """True once the server closes the connection (no further bytes); False on timeout."""
        try:
            extra = self.read_to_eof(timeout)
        except TimeoutError:
            return False
        assert extra == b"", f"unexpected bytes before close: {extra[:300]!r}"
        return True

    def received_nothing_for(self, seconds: float) -> bool:
        """Deliberate short wait: True when neither data nor EOF arrived within `seconds`."""
        if self.buf or self.eof:
            return False
        try:
            self._fill(seconds)
        except TimeoutError:
            return True
        return False

    # -- HTTP -----------------------------------------------------------------------------------
    def read_head(self, timeout: float | None = None) -> Response:
        raw = self.read_until(b"\r\n\r\n", timeout)
        lines = raw[:-4].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        assert version.startswith("HTTP/") and code.isdigit(), f"bad status line {lines[0]!r}"
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            assert sep, f"bad header line {line!r}"
            headers.append((name, value.strip()))
        resp = Response(int(code), reason, version, headers)
        te = (resp.header("transfer-encoding") or "").lower()
        resp.chunked = "chunked" in te
        return resp

    def read_chunk(self, timeout: float | None = None) -> bytes:
        """One chunk of a chunked body (b'' for the last chunk, whose trailers are consumed)."""
        size_line = self.read_until(b"\r\n", timeout)
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while self.read_until(b"\r\n", timeout) != b"\r\n":
                pass
            return b""
        data = self.read_exact(size, timeout)
        assert self.read_exact(2, timeout) == b"\r\n", "chunk not followed by CRLF"
        return data

    def read_body(self, resp: Response, head_request: bool = False) -> Response:
        if head_request or resp.status < 200 or resp.status in (204, 304):
            return resp
        if resp.chunked:
            parts = []
            while chunk := self.read_chunk():
                parts.append(chunk)
            resp.body = b"".join(parts)
        elif resp.header("content-length") is not None:
            resp.body = self.read_exact(int(resp.header("content-length") or 0))
        else:
            resp.body = self.read_to_eof()
        return resp

    def read_response(self, head_request: bool = False, timeout: float | None = None) -> Response:
        """The next response, 1xx included (a 1xx is returned on its own, without a body)."""
        return self.read_body(self.read_head(timeout), head_request)

    def read_final_response(self, head_request: bool = False) -> Response:
        """The next non-1xx response (for 10 interim responses at most)."""
        for _ in range(10):
            resp = self.read_response(head_request)
            if resp.status >= 200:
                return resp
        raise AssertionError("too many interim responses")

    def request(self, method: str, target: str, headers=None, body: bytes = b"", **kw) -> Response:
        self.send(request_bytes(method, target, headers, body, **kw))
        return self.read_final_response(head_request=method == "HEAD")


def one_shot(host: str, port: int, data: bytes, head_request: bool = False) -> tuple[Response, bool]:
    """Send raw bytes on a new connection; return the first final response and whether the
    server then closed the connection (within the timeout)."""
    with Conn(host, port) as c:
        c.try_send(data)
        resp = c.read_final_response(head_request)
        return resp, c.wait_closed()
