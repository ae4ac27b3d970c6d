"""A host dies under load (kill -9 of every askr process on it; its network link cut): HAProxy
takes it out within its check interval, retries send its GETs elsewhere so none fails, and the
host comes back into rotation by itself once it is running (linked) again."""

from __future__ import annotations

import time
from collections.abc import Callable

import haproxy
from bed import Cluster, Host, wait_until
from load import Load

# contrib/haproxy.cfg as the test bed runs it (haproxy.Timings): inter 1s, fastinter 250ms,
# fall 2, timeout check 1s. A host is out after at most one interval plus a failed check, then a
# fast one; the bound is that, doubled for a busy 2-core machine.
OUT_WITHIN = 2 * (1.0 + 1.0 + 0.25 + 1.0)
GET_KINDS = ("keepalive", "fresh", "h2")


def _host_dies_and_returns(cluster: Cluster, victim: Host, die: Callable[[], None],
                           revive: Callable[[], None]) -> None:
    with haproxy.StatusRecorder(cluster.stats_socket) as states, \
            Load(cluster.net.client, cluster.url, cluster.ca_pem, kinds=GET_KINDS, max_seconds=150) as load:
        wait_until(lambda: {o.host for o in load.successes()} == {h.name for h in cluster.hosts}, 60,
                   "every host to answer", load.summary)
        died = time.monotonic()
        die()
        wait_until(lambda: cluster.status()[victim.name] == "DOWN", 30, f"HAProxy to mark {victim.name} DOWN",
                   cluster.status)
        out_after = time.monotonic() - died
        # the others carry the load while it is gone
        wait_until(lambda: load.every_kind_answered(since=time.monotonic() - 1.0, n=5), 30,
                   "answers while the host is down", load.summary)
        revive()
        wait_until(lambda: cluster.status()[victim.name] == "UP", 60, f"{victim.name} back UP",
                   cluster.status)
        back = time.monotonic()
        wait_until(lambda: any(o.host == victim.name for o in load.successes(since=back)), 30,
                   f"{victim.name} to serve again", load.summary)

    assert load.failures() == [], f"{load.summary()}; first failures: {load.failures()[:5]}"
    assert out_after < OUT_WITHIN, f"{victim.name} was marked DOWN only after {out_after:.1f} s"
    seen = states.states(victim.name)
    assert "DOWN" in seen and seen[-1] == "UP", seen
    assert not any("DOWN" in states.states(h.name) for h in cluster.hosts if h is not victim)


def test_a_host_killed_with_sigkill_is_taken_out_and_back_when_restarted(cluster):
    victim = cluster.hosts[0]

    def die() -> None:
        killed = victim.kill()
        assert len(killed) >= 5  # master, front, zygote, 2 PHP workers, queue worker

    def revive() -> None:
        victim.start()
        victim.wait_ready()

    _host_dies_and_returns(cluster, victim, die, revive)


def test_a_host_whose_link_goes_down_is_taken_out_and_back_when_it_returns(cluster):
    victim = cluster.hosts[1]
    _host_dies_and_returns(cluster, victim, lambda: victim.ns.set_link(False),
                           lambda: victim.ns.set_link(True))
    assert victim.proc is not None and victim.proc.alive()  # askr itself never noticed
