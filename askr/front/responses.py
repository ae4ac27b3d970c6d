"""Bits every HTTP response needs: status lines, a once-a-second Date header, error bodies."""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus

from askr import SERVER_SOFTWARE

SERVER_HEADER = b"server: " + SERVER_SOFTWARE.encode() + b"\r\n"

STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        # No phrase for a code nobody registered: the reason is optional, its SP is not (nginx
        # sends the same "HTTP/1.1 399 ").
        line = STATUS_LINES[status] = b"HTTP/1.1 %d \r\n" % status
    return line


def cgi_status_line(status: int, field: bytes) -> bytes:
    """The status line for a CGI `Status: NNN [reason]` field (RFC 3875 6.3.3) from the PHP worker,
    which sends one when PHP set the status itself: its phrase, or none (as nginx + php-fpm)."""
    reason = field.partition(b":")[2].strip()[4:].strip()
    if _BAD_REASON.search(reason):
        return status_line(status)
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


_BAD_REASON = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # reason-phrase: HTAB, SP, VCHAR, obs-text

# A PHP header line whose field name is empty, or holds a blank or a control character, at a line
# start of PHP's '\n'-separated head: the name runs up to the first colon (or the line's end).
# PHP keeps header("X-A : b") and header(" : x") as written, and neither may go out (RFC 9112
# 5.1: no whitespace between field name and colon; a leading blank is obsolete line folding).
# nginx refuses such a head from php-fpm with 502 ("upstream sent invalid header"), over HTTP/1.1
# and HTTP/2 alike; so does askr (Stream.refuse_php_head). A name of other non-token bytes, as in
# header("X(A): b"), passes nginx and passes here. A pattern, not a compiled regex: HTTP/1.1 folds
# it into the scan it already makes of every head, so a valid head pays for no second pass.
INVALID_FIELD_NAME = rb"[^\x00-\x20:\x7f]*+[^:\n]|:"
INVALID_FIELD_LINE = re.compile(rb"^(?:" + INVALID_FIELD_NAME + rb")", re.M)


class DateHeader:
    """`date: ...\r\n`, formatted at most once a second (formatting costs more than a request parse)."""

    __slots__ = ("_field", "_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""
        self._field = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._field = formatdate(now, usegmt=True).encode()
            self._value = b"date: " + self._field + b"\r\n"
        return self._value

    def field(self) -> bytes:
        """The bare value ("Sun, 06 Nov 1994 08:49:37 GMT"), for HTTP/2's header lists."""
        self.get()
        return self._field


DATE = DateHeader()


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_body(status: int) -> bytes:
    """The text/plain body of a response the front answers itself: "404 Not Found\\n"."""
    return f"{status} {reason(status)}\n".encode()


def error_response(status: int, close: bool, extra: bytes = b"", head_only: bool = False) -> bytes:
    """A complete small text response for errors the front answers itself."""
    body = error_body(status)
    parts = [
        status_line(status), DATE.get(), SERVER_HEADER,
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: ", str(len(body)).encode(), b"\r\n", extra,
    ]
    if close:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(body)
    return b"".join(parts)
