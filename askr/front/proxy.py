"""[server] trusted_proxies: believing X-Forwarded-* / Forwarded only from the peers configured.

From a trusted peer, REMOTE_ADDR is the nearest address in X-Forwarded-For (or Forwarded: for=)
that is not itself a trusted proxy, and the scheme, host and port come from the headers. From
anyone else the headers are removed, so neither askr nor the app can be fooled by a client that
sends them itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

FORWARD_HEADERS = frozenset((b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                             b"x-forwarded-port", b"forwarded"))
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyTrust:
    def __init__(self, cidrs: tuple[str, ...]):
        self.networks: list[Network] = [ipaddress.ip_network(c, strict=False) for c in cidrs]

    @property
    def enabled(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:  # type: ignore[union-attr]
            ip = ip.ipv4_mapped  # type: ignore[union-attr]
        return any(ip in net for net in self.networks)

    def params(self, header: Callable[[bytes], bytes | None]) -> list[bytes]:
        """CGI params (flat name/value list) that override the connection's, for a request that
        came through a trusted proxy; `header` gets a request header by lower-case name."""
        chain, proto, forwarded_host = self._forwarded(header(b"forwarded"))
        xff = header(b"x-forwarded-for")
        if xff is not None:
            chain = [part.strip() for part in xff.decode("latin-1").split(",") if part.strip()]
        proto = _text(header(b"x-forwarded-proto")) or proto
        host = _public_host(header, forwarded_host) or ""
        port = _text(header(b"x-forwarded-port"))
        out: list[bytes] = []
        client = self._client(chain)
        if client is not None:
            out += [b"REMOTE_ADDR", client.encode()]
        https: bool | None = None
        if proto:
            https = proto.split(",")[0].strip().lower() == "https"
            out += [b"REQUEST_SCHEME", b"https" if https else b"http", b"HTTPS", b"on" if https else b"off"]
        if host:
            name, sep, host_port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
            if sep and host_port.isdigit():
                out += [b"SERVER_NAME", name.encode()]
                port = port or host_port
            else:
                out += [b"SERVER_NAME", host.encode()]
        if not port and https is not None:
            port = "443" if https else "80"
        if port and port.split(",")[0].strip().isdigit():
            out += [b"SERVER_PORT", port.split(",")[0].strip().encode()]
        return out

    def client(self, header: Callable[[bytes], bytes | None]) -> str | None:
        """The client's address as a trusted proxy reports it (what REMOTE_ADDR becomes), or None."""
        xff = header(b"x-forwarded-for")
        if xff is not None:
            chain = [part.strip() for part in xff.decode("latin-1").split(",") if part.strip()]
        else:
            chain = self._forwarded(header(b"forwarded"))[0]
        return self._client(chain)

    def _client(self, chain: list[str]) -> str | None:
        """The nearest hop of `chain` that is not itself a trusted proxy (port stripped)."""
        client = next((a for a in reversed(chain) if not self.trusts(_strip_port(a))), None)
        if client is None and chain:
            client = chain[0]  # every hop is trusted: the first is the client
        return _strip_port(client) if client is not None else None

    def host(self, header: Callable[[bytes], bytes | None]) -> str | None:
        """The public host the proxy was asked for (PHP's Host header becomes this)."""
        return _public_host(header, self._forwarded(header(b"forwarded"))[2])

    @staticmethod
    def _forwarded(value: bytes | None) -> tuple[list[str], str, str]:
        """RFC 7239: for= of every hop, and proto= / host= of the last (nearest) one."""
        chain: list[str] = []
        proto = host = ""
        if not value:
            return chain, proto, host
        for element in value.decode("latin-1").split(","):
            for pair in element.split(";"):
                key, _, val = pair.strip().partition("=")
                val = val.strip().strip('"')
                key = key.strip().lower()
                if key == "for" and val:
                    chain.append(val)
                elif key == "proto":
                    proto = val
                elif key == "host":
                    host = val
        return chain, proto, host


def strip_forward_headers(flat: list[bytes]) -> list[bytes]:
    """The request's [name, value, ...] headers without the X-Forwarded-* / Forwarded ones."""
    out: list[bytes] = []
    for i in range(0, len(flat), 2):
        if flat[i].lower() not in FORWARD_HEADERS:
            out += flat[i : i + 2]
    return out


def _public_host(header: Callable[[bytes], bytes | None], forwarded_host: str) -> str | None:
    """X-Forwarded-Host (its first value), else Forwarded's host=."""
    host = _text(header(b"x-forwarded-host")) or forwarded_host
    return host.split(",")[0].strip() or None


def _text(value: bytes | None) -> str:
    return value.decode("latin-1").strip() if value else ""


def _strip_port(address: str) -> str:
    """'1.2.3.4:5678' -> '1.2.3.4', '[2001:db8::1]:80' -> '2001:db8::1', bare IPv6 untouched."""
    if address.startswith("["):
        return address[1:].partition("]")[0]
    if address.count(":") == 1:
        return address.partition(":")[0]
    return address
