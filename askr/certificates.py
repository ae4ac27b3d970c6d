"""Checks of a TLS certificate and key pair on disk: readable, matching, valid now.

Used by config validation (a bad pair is a config error naming the key) and by the fronts,
which build their TLS context in askr/front/tls.py. Only the ssl module: no front code.
"""

from __future__ import annotations

import ssl
import time

# The session ticket keys the master makes and every front uses (askr/front/tls.py
# share_ticket_keys): OpenSSL's 16-byte key name, 32-byte HMAC secret and 32-byte AES key.
TICKET_KEYS_SIZE = 80


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
