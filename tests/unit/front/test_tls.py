"""askr/front/tls.py and [tls] in askr.toml: unusable certificates are refused with the reason."""

from __future__ import annotations

import contextlib
import datetime
import ssl
from pathlib import Path

import pytest
import trustme

from askr import config
from askr.config import ConfigError
from askr.front import tls


def write_pair(directory: Path, leaf: trustme.LeafCert, name: str = "site") -> tuple[str, str]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_a_good_pair(tmp_path, ca) -> None:
    cert, key = write_pair(tmp_path, ca.issue_cert("localhost"))
    assert tls.check_pair(cert, key)["notAfter"]
    context = tls.server_context(cert, key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_problems_are_named(tmp_path, ca) -> None:
    cert, key = write_pair(tmp_path, ca.issue_cert("localhost"))
    _, other_key = write_pair(tmp_path, ca.issue_cert("other"), "other")
    with pytest.raises(tls.TlsError, match="is not the private key of"):
        tls.check_pair(cert, other_key)
    with pytest.raises(tls.TlsError, match="cannot read it"):
        tls.check_pair(str(tmp_path / "missing.pem"), key)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(tls.TlsError, match="not a usable PEM certificate"):
        tls.check_pair(str(junk), key)
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    expired = ca.issue_cert("localhost", not_before=past, not_after=past + datetime.timedelta(days=30))
    old_cert, old_key = write_pair(tmp_path, expired, "old")
    with pytest.raises(tls.TlsError, match=r"expired on .*renew it"):
        tls.check_pair(old_cert, old_key)


def test_reload_keeps_the_old_pair_when_the_new_one_is_bad(tmp_path, ca) -> None:
    cert, key = write_pair(tmp_path, ca.issue_cert("localhost"))
    context = tls.server_context(cert, key)
    _, other_key = write_pair(tmp_path, ca.issue_cert("other"), "other")
    with pytest.raises(tls.TlsError):
        tls.reload_pair(context, cert, other_key)


def test_config_errors(tmp_path, ca) -> None:
    (tmp_path / "public").mkdir()
    cert, key = write_pair(tmp_path, ca.issue_cert("localhost"))
    _, other_key = write_pair(tmp_path, ca.issue_cert("other"), "other")
    path = tmp_path / "askr.toml"
    cases = {
        f'[tls]\ncert = "{cert}"\n': "[tls] key is missing",
        f'[tls]\ncert = "{cert}"\nkey = "{other_key}"\n': "[tls] key = ",
        '[server]\nredirect_http = "127.0.0.1:8081"\n': "redirect_http is set but [tls] is not",
        '[server]\ntrusted_proxies = ["10.0.0.0/33"]\n': "is not an address or CIDR",
    }
    for text, needle in cases.items():
        path.write_text('[server]\nroot = "public"\n' + text if not text.startswith("[server]")
                        else text.replace("[server]\n", '[server]\nroot = "public"\n'))
        with pytest.raises(ConfigError) as err:
            config.load(path)
        assert needle in str(err.value) and str(path) in str(err.value)
    path.write_text(f'[server]\nroot = "public"\nh2c = true\n[tls]\ncert = "{cert}"\nkey = "{key}"\n')
    cfg = config.load(path)
    assert cfg.tls.enabled and cfg.server.h2c
    assert config.restore(config.dump(cfg)) == cfg


def _connect(server: ssl.SSLContext, client: ssl.SSLContext,
             session: ssl.SSLSession | None = None) -> ssl.SSLObject:
    """A TLS 1.3 handshake between two in-memory ends, then one byte from the server, so the
    client has read the session ticket that follows the handshake."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    srv = server.wrap_bio(to_server, to_client, server_side=True)
    cli = client.wrap_bio(to_client, to_server, server_hostname="localhost", session=session)
    for _ in range(10):
        for end in (cli, srv):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
    srv.write(b"x")
    assert cli.read(1) == b"x"
    return cli


def test_fronts_with_the_same_ticket_keys_resume_each_others_sessions(tmp_path, ca) -> None:
    """Each front is its own process with its own context; a session one of them issued
    resumes on another only when they share the master's ticket keys."""
    cert, key = write_pair(tmp_path, ca.issue_cert("localhost"))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    keys = bytes(range(tls.TICKET_KEYS_SIZE))
    front_a, front_b = (tls.server_context(cert, key, ticket_keys=keys) for _ in range(2))
    session = _connect(front_a, client).session
    assert _connect(front_b, client, session).session_reused

    stranger = tls.server_context(cert, key)  # its own keys, as every front had before
    assert not _connect(stranger, client, _connect(front_a, client).session).session_reused
    with pytest.raises(ValueError, match="80 bytes"):
        tls.share_ticket_keys(stranger, b"short")
