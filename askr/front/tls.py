"""TLS for the fronts: the server context (TLS 1.2+, AEAD ciphers, ALPN h2 / http/1.1), checks of a
certificate and key pair, and reloading a renewed pair into the live context."""

from __future__ import annotations

import ssl
import time

ALPN = ["h2", "http/1.1"]
# TLS 1.2 suites: forward secret AEAD only (also what HTTP/2 requires, RFC 9113 9.2.2).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class TlsError(Exception):
    """The certificate or key is unusable; the message says which and why."""


def check_pair(cert: str, key: str) -> dict:
    """Raise TlsError unless `cert` and `key` are readable PEM, belong together and the
    certificate is valid now. Returns the decoded leaf certificate."""
    for name, path in (("cert", cert), ("key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise TlsError(f"{name} = {path!r}: cannot read it ({e.strerror})") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e) or "key values mismatch" in str(e):
            raise TlsError(f"key = {key!r} is not the private key of cert = {cert!r}") from None
        raise TlsError(f"cert = {cert!r} / key = {key!r}: not a usable PEM certificate and "
                       f"unencrypted private key ({e.reason or e})") from None
    try:
        leaf = ssl._ssl._test_decode_cert(cert)  # type: ignore[attr-defined]  # the stdlib's own parser
    except (AttributeError, ssl.SSLError, ValueError):
        return {}
    now = time.time()
    not_after = ssl.cert_time_to_seconds(leaf["notAfter"])
    not_before = ssl.cert_time_to_seconds(leaf["notBefore"])
    if now > not_after:
        raise TlsError(f"cert = {cert!r} expired on {leaf['notAfter']}; renew it")
    if now < not_before:
        raise TlsError(f"cert = {cert!r} is not valid before {leaf['notBefore']}; check the clock")
    return leaf


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
