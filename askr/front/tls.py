"""TLS for the fronts: the server context (TLS 1.2+, AEAD ciphers, ALPN h2 / http/1.1), session
ticket keys shared by all fronts, and reloading a renewed pair into the live context. The pair's
checks are askr/certificates.py."""

from __future__ import annotations

import _ssl
import ctypes
import logging
import ssl

from askr.certificates import TICKET_KEYS_SIZE, TlsError, check_pair

__all__ = ["ALPN", "TICKET_KEYS_SIZE", "TlsError", "check_pair", "negotiated_h2", "reload_pair",
           "server_context", "share_ticket_keys"]

log = logging.getLogger("askr.front")

ALPN = ["h2", "http/1.1"]
# TLS 1.2 suites: forward secret AEAD only (also what HTTP/2 requires, RFC 9113 9.2.2).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


_SSL_CTRL_SET_TLSEXT_TICKET_KEYS = 59


def server_context(cert: str, key: str, alpn: list[str] = ALPN,
                   ticket_keys: bytes | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(alpn)
    context.load_cert_chain(cert, key)
    if ticket_keys is not None and not share_ticket_keys(context, ticket_keys):
        log.warning("TLS session tickets cannot be shared between fronts on this Python/OpenSSL: "
                    "a client resumes its session only when it reconnects to the same front")
    return context


def share_ticket_keys(context: ssl.SSLContext, keys: bytes) -> bool:
    """Make `context` encrypt and accept session tickets with `keys` (TICKET_KEYS_SIZE bytes).

    Each SSL_CTX otherwise makes up its own keys, so with several fronts (each its own process,
    each its own listen socket) a client that comes back lands on another front half the time or
    more and pays a full handshake again; nginx shares its keys between workers the same way.
    Python's ssl module has no call for this, so it goes to OpenSSL directly with the SSL_CTX
    pointer that CPython keeps right after the object header of an SSLContext; a read-back of
    the context's options through that pointer proves it is one before anything is set."""
    if len(keys) != TICKET_KEYS_SIZE:
        raise ValueError(f"ticket keys must be {TICKET_KEYS_SIZE} bytes")
    try:
        libssl = ctypes.CDLL(_ssl.__file__)  # its symbols resolve to the libssl it links
        get_options, ctrl = libssl.SSL_CTX_get_options, libssl.SSL_CTX_ctrl
    except (OSError, AttributeError):
        return False
    get_options.restype, get_options.argtypes = ctypes.c_uint64, [ctypes.c_void_p]
    ctrl.restype = ctypes.c_long
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    ssl_ctx = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not ssl_ctx or get_options(ssl_ctx) != int(context.options):
        return False
    return ctrl(ssl_ctx, _SSL_CTRL_SET_TLSEXT_TICKET_KEYS, len(keys), keys) == 1


def reload_pair(context: ssl.SSLContext, cert: str, key: str) -> None:
    """Load a renewed pair into the live context: new handshakes use it, open connections keep
    theirs. Checked on its own first, so a bad pair never half-replaces a good one."""
    check_pair(cert, key)
    context.load_cert_chain(cert, key)


def negotiated_h2(transport) -> bool:
    ssl_object = transport.get_extra_info("ssl_object")
    return ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2"
