"""TLS for the fronts: the server context (TLS 1.2+, AEAD ciphers, ALPN h2 / http/1.1), and reloading
a renewed pair into the live context. The pair's checks are askr/certificates.py."""

from __future__ import annotations

import ssl

from askr.certificates import TlsError, check_pair

__all__ = ["ALPN", "TlsError", "check_pair", "negotiated_h2", "reload_pair", "server_context"]

ALPN = ["h2", "http/1.1"]
# TLS 1.2 suites: forward secret AEAD only (also what HTTP/2 requires, RFC 9113 9.2.2).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def server_context(cert: str, key: str, alpn: list[str] = ALPN) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(alpn)
    context.load_cert_chain(cert, key)
    return context


def reload_pair(context: ssl.SSLContext, cert: str, key: str) -> None:
    """Load a renewed pair into the live context: new handshakes use it, open connections keep
    theirs. Checked on its own first, so a bad pair never half-replaces a good one."""
    check_pair(cert, key)
    context.load_cert_chain(cert, key)


def negotiated_h2(transport) -> bool:
    ssl_object = transport.get_extra_info("ssl_object")
    return ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2"
