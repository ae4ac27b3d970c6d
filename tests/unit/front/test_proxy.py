"""askr/front/proxy.py: which peers are believed, and what their forwarding headers mean."""

from __future__ import annotations

from askr.front.proxy import ProxyTrust, strip_forward_headers


def getter(headers: dict[bytes, bytes]):
    return headers.get


def as_dict(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def test_trusts_only_its_networks() -> None:
    trust = ProxyTrust(("10.0.0.0/8", "::1/128"))
    assert trust.trusts("10.1.2.3") and trust.trusts("::1") and trust.trusts("::ffff:10.0.0.1")
    assert not trust.trusts("192.168.1.1") and not trust.trusts("not-an-ip")
    assert not ProxyTrust(()).enabled


def test_x_forwarded_headers() -> None:
    trust = ProxyTrust(("10.0.0.0/8",))
    params = as_dict(trust.params(getter({
        b"x-forwarded-for": b"203.0.113.7, 198.51.100.2, 10.0.0.5",  # client, some hop, our LB
        b"x-forwarded-proto": b"https", b"x-forwarded-host": b"shop.example:8443"})))
    assert params[b"REMOTE_ADDR"] == b"198.51.100.2"  # the nearest hop we do not trust
    assert (params[b"HTTPS"], params[b"REQUEST_SCHEME"]) == (b"on", b"https")
    assert (params[b"SERVER_NAME"], params[b"SERVER_PORT"]) == (b"shop.example", b"8443")
    assert trust.host(getter({b"x-forwarded-host": b"a.example, b.example"})) == "a.example"


def test_every_hop_trusted_gives_the_first() -> None:
    trust = ProxyTrust(("10.0.0.0/8",))
    params = as_dict(trust.params(getter({b"x-forwarded-for": b"10.9.9.9, 10.0.0.5"})))
    assert params[b"REMOTE_ADDR"] == b"10.9.9.9"


def test_rfc7239_forwarded() -> None:
    trust = ProxyTrust(("127.0.0.1",))
    params = as_dict(trust.params(getter({
        b"forwarded": b'for="[2001:db8::7]:4711";proto=https;host=app.example, for=127.0.0.1'})))
    assert params[b"REMOTE_ADDR"] == b"2001:db8::7"
    assert (params[b"HTTPS"], params[b"SERVER_PORT"]) == (b"on", b"443")
    assert params[b"SERVER_NAME"] == b"app.example"


def test_plain_http_through_the_proxy() -> None:
    params = as_dict(ProxyTrust(("127.0.0.1",)).params(getter({b"x-forwarded-proto": b"http"})))
    assert (params[b"HTTPS"], params[b"REQUEST_SCHEME"], params[b"SERVER_PORT"]) == (b"off", b"http", b"80")
    assert b"REMOTE_ADDR" not in params  # no X-Forwarded-For: the peer stays the client


def test_strip_forward_headers() -> None:
    flat = [b"Host", b"a", b"X-Forwarded-For", b"1.2.3.4", b"Forwarded", b"for=x", b"X-Other", b"y"]
    assert strip_forward_headers(flat) == [b"Host", b"a", b"X-Other", b"y"]


def test_client_is_the_address_remote_addr_gets() -> None:
    trust = ProxyTrust(("10.0.0.0/8",))
    headers = {b"x-forwarded-for": b"203.0.113.7:5555, 10.0.0.2"}
    assert trust.client(headers.get) == "203.0.113.7"
    assert trust.client({b"forwarded": b'for="[2001:db8::1]:80";proto=https'}.get) == "2001:db8::1"
    assert trust.client({}.get) is None  # no forwarding header: the caller keeps the peer
