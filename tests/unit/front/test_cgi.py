"""absolute_url: the origin the client used, as PHP's $_SERVER describes it (nginx's
absolute_redirect + port_in_redirect)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from askr.front.cgi import absolute_url
from askr.front.proxy import ProxyTrust


def conn(scheme: bytes = b"http", port: bytes = b"8080", trusted: bool | None = None,
         addr: bytes = b"10.0.0.5"):
    ctx = SimpleNamespace(proxies=ProxyTrust(("127.0.0.1",)))
    return SimpleNamespace(origin=(scheme, port), server_addr=addr, trusted_peer=trusted, ctx=ctx)


def req(**headers: str):
    table = {k.replace("_", "-").lower().encode(): v.encode() for k, v in headers.items()}
    return SimpleNamespace(header=table.get)


@pytest.mark.parametrize(("c", "r", "url"), [
    (conn(), req(host="example.test:9999"), b"http://example.test:8080/wp-admin/"),
    (conn(port=b"80"), req(host="example.test"), b"http://example.test/wp-admin/"),
    (conn(b"https", b"443"), req(host="example.test"), b"https://example.test/wp-admin/"),
    (conn(b"https", b"8443"), req(host="[::1]:8443"), b"https://[::1]:8443/wp-admin/"),
    (conn(), req(), b"http://10.0.0.5:8080/wp-admin/"),
    (conn(addr=b"::1"), req(), b"http://[::1]:8080/wp-admin/"),
    (conn(), req(host="evil.test/x?"), b"http://10.0.0.5:8080/wp-admin/"),
    (conn(trusted=True), req(host="lb", x_forwarded_proto="https", x_forwarded_host="shop.test"),
     b"https://shop.test/wp-admin/"),
    (conn(trusted=False), req(host="lb", x_forwarded_proto="https"), b"http://lb:8080/wp-admin/"),
])
def test_absolute_url(c, r, url: bytes) -> None:
    assert absolute_url(c, r, "/wp-admin/") == url
