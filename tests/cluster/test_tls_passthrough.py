"""contrib/haproxy.cfg's TLS-passthrough alternative: HAProxy in mode tcp, each askr host
terminating TLS itself ([tls]) and negotiating HTTP/2 by ALPN, health checks on the admin port
still steering new connections."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import netns
import pytest
from bed import Cluster, missing, wait_until
from load import FORGED_ADDRESS


@pytest.fixture(scope="module")
def passthrough(tmp_path_factory) -> Iterator[Cluster]:
    reason = missing()
    if reason:
        pytest.skip(f"cluster test bed unavailable: {reason}")
    with Cluster(tmp_path_factory.mktemp("passthrough"), queue_workers=0, passthrough=True) as bed:
        yield bed


def fresh_connections(cluster: Cluster, count: int, http2: bool) -> list[httpx.Response]:
    """`count` GET /cluster/whoami, each on a new TLS connection through HAProxy, from the client
    namespace (a client's forged X-Forwarded-For on each)."""

    def run() -> list[httpx.Response]:
        tls = ssl.create_default_context(cafile=str(cluster.ca_pem))
        out = []
        for _ in range(count):
            with httpx.Client(base_url=cluster.url, verify=tls, http2=http2, timeout=30) as http:
                out.append(http.get("/cluster/whoami", headers={"X-Forwarded-For": FORGED_ADDRESS}))
        return out

    return cluster.in_client(run)  # type: ignore[return-value]


def test_askr_terminates_tls_behind_a_passthrough_haproxy(passthrough):
    h2 = fresh_connections(passthrough, 9, http2=True)
    h1 = fresh_connections(passthrough, 3, http2=False)
    assert [r.status_code for r in h2 + h1] == [200] * 12
    # ALPN is askr's: HAProxy only passed the bytes on; the certificate it showed is the hosts'
    assert {r.http_version for r in h2} == {"HTTP/2"} and {r.http_version for r in h1} == {"HTTP/1.1"}
    bodies = [r.json() for r in h2 + h1]
    assert all(b["secure"] for b in bodies)
    # no trusted proxy: askr sees HAProxy's address and drops the client's forged header
    assert {b["client_ip"] for b in bodies} == {netns.LB_ADDRESS}
    assert {b["host"] for b in bodies} == {h.name for h in passthrough.hosts}  # balanced per connection


def test_a_drained_host_gets_no_new_connections_in_passthrough_mode(passthrough):
    host = passthrough.hosts[0]
    drained = host.askr("drain")
    assert drained.returncode == 0, drained.stdout + drained.stderr
    try:
        wait_until(lambda: passthrough.status()[host.name] == "DOWN", 30, f"HAProxy to mark {host.name} DOWN",
                   passthrough.status)
        answers = fresh_connections(passthrough, 8, http2=True)
        assert [r.status_code for r in answers] == [200] * 8
        assert host.name not in {r.json()["host"] for r in answers}
    finally:
        host.askr("undrain")
    wait_until(lambda: passthrough.status()[host.name] == "UP", 30, f"{host.name} back UP",
               passthrough.status)
