"""Status lines: standard phrases, none for unregistered codes, PHP's own from a CGI Status line."""

from __future__ import annotations

import pytest

from askr.front.responses import cgi_status_line, status_line


def test_standard_and_unregistered_codes() -> None:
    assert status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert status_line(399) == b"HTTP/1.1 399 \r\n"  # as nginx: the SP stays, no phrase


@pytest.mark.parametrize(("field", "line"), [
    (b"Status: 403 Access Denied", b"HTTP/1.1 403 Access Denied\r\n"),
    (b"status:399 Choose Your Own Adventure ", b"HTTP/1.1 399 Choose Your Own Adventure\r\n"),
    (b"Status: 201", b"HTTP/1.1 201 \r\n"),  # PHP set the status without a phrase: none, as nginx
    (b"Status: 201 tab\there", b"HTTP/1.1 201 tab\there\r\n"),
    (b"Status: 201 bad\x00byte", b"HTTP/1.1 201 Created\r\n"),  # never a control byte on the wire
])
def test_cgi_status_line(field: bytes, line: bytes) -> None:
    status = int(field.partition(b":")[2].split()[0])
    assert cgi_status_line(status, field) == line
