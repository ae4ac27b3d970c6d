"""contrib/rolling-deploy.sh moves three askr hosts behind HAProxy to a new release under load:
no request fails, the logged-in session carries on, and HAProxy took each host out and back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import haproxy
import httpx
from bed import ASKR_ENV, DEPLOY_SCRIPT, HTTP_PORT, Cluster, Host, askr_argv, code_version, wait_until
from load import Load


def deploy_env(cluster: Cluster, release: str) -> dict[str, str]:
    """The script reaches each host through its namespace instead of ssh; {host} is the
    namespace's name, which is also the host's directory and its HAProxy server name."""
    return {**os.environ, **ASKR_ENV,
            "ASKR_RELEASE": release,
            "ASKR_REMOTE": "ip netns exec {host}",
            "ASKR": " ".join(askr_argv()),
            "ASKR_CONFIG": f"{cluster.base}/{{host}}/askr.toml",
            "ASKR_APP_DIR": f"{cluster.base}/{{host}}",
            "ASKR_DRAIN_TIMEOUT": "60", "ASKR_RELOAD_TIMEOUT": "60", "ASKR_READY_TIMEOUT": "60",
            "ASKR_IN_ROTATION": f"{sys.executable} {haproxy.__file__} {cluster.stats_socket} "
                                f"{haproxy.BACKEND} {{host}}"}


def whoami_direct(cluster: Cluster) -> dict[str, str]:
    """Each host's own answer (bypassing HAProxy): which release its PHP workers run."""
    def ask() -> dict[str, str]:
        return {h.name: httpx.get(f"http://{h.address}:{HTTP_PORT}/cluster/whoami", timeout=30).json()["code"]
                for h in cluster.hosts}

    return cluster.in_client(ask)  # type: ignore[return-value]


def test_rolling_deploy_under_load_moves_every_host_with_no_failed_request(cluster):
    old = cluster.hosts[0].current_release()
    new = "B" if old == "A" else "A"
    assert set(whoami_direct(cluster).values()) == {code_version(old)}
    names = [h.name for h in cluster.hosts]

    with haproxy.StatusRecorder(cluster.stats_socket) as states, \
            Load(cluster.net.client, cluster.url, cluster.ca_pem, max_seconds=200) as load:
        wait_until(load.every_kind_answered, 60, "the load to get going", load.summary)
        started = time.monotonic()
        deploy = subprocess.run([str(DEPLOY_SCRIPT), *names], env=deploy_env(cluster, new),
                                capture_output=True, text=True, timeout=240, check=False)
        assert deploy.returncode == 0, f"rolling-deploy.sh failed:\n{deploy.stdout}{deploy.stderr}"
        deployed = time.monotonic()
        # every kind of client keeps being answered after the last host is back, by every host
        wait_until(lambda: load.every_kind_answered(since=deployed)
                   and {o.host for o in load.successes(since=deployed)} == set(names),
                   60, "answers from every host after the deploy", load.summary)

    assert load.failures() == [], f"{load.summary()}; first failures: {load.failures()[:5]}"
    assert [h.current_release() for h in cluster.hosts] == [new] * len(names)
    assert whoami_direct(cluster) == {n: code_version(new) for n in names}
    # through HAProxy, after the deploy, only the new code answers, from every host
    after = load.successes(since=deployed)
    assert {o.code for o in after} == {code_version(new)}
    assert {o.host for o in after} == set(names)
    during = load.successes(since=started)
    assert {o.code for o in during} == {code_version(old), code_version(new)}
    # the one logged-in session ran across the whole deploy, its counters never reset (every
    # answer was checked to be the previous count + 1), and it saw several hosts
    session = load.successes("session")
    assert len({o.host for o in session}) > 1 and len({o.code for o in session}) == 2
    # HAProxy took each host out (its readiness said 503 draining) and put it back
    for name in names:
        seen = states.states(name)
        assert "DOWN" in seen and seen[-1] == "UP", f"{name}: HAProxy statuses {seen}"
    # one host at a time: never two out of rotation together
    out_together = _max_down_at_once(states, names)
    assert out_together == 1, f"{out_together} hosts were out of rotation at once: {states.transitions}"
    assert f"all {len(names)} hosts on {new}" in deploy.stdout


def host_state(host: Host) -> str:
    done = host.askr("status", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)["state"]


def _max_down_at_once(states: haproxy.StatusRecorder, names: list[str]) -> int:
    events = sorted((at, name, status) for name in names for at, status in states.transitions[name])
    current = {name: "UP" for name in names}
    worst = 0
    for _, name, status in events:
        current[name] = status
        worst = max(worst, sum(1 for s in current.values() if not s.startswith("UP")))
    return worst


def test_rolling_deploy_stops_at_a_missing_release_and_leaves_the_host_drained(cluster):
    first = cluster.hosts[0]
    before = [h.current_release() for h in cluster.hosts]
    env = deploy_env(cluster, "no-such-release")
    deploy = subprocess.run([str(DEPLOY_SCRIPT), *(h.name for h in cluster.hosts)], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert deploy.returncode == 1
    assert f"FAILED: {first.name}: no release at" in deploy.stderr
    assert [h.current_release() for h in cluster.hosts] == before  # nothing switched
    assert host_state(first) == "draining"  # out of rotation until someone looks
    assert [host_state(h) for h in cluster.hosts[1:]] == ["ready"] * (len(cluster.hosts) - 1)
    undrain = first.askr("undrain")
    assert undrain.returncode == 0, undrain.stdout + undrain.stderr
    cluster.wait_all_up()


def run_script(*hosts: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ASKR")}
    return subprocess.run([str(DEPLOY_SCRIPT), *hosts], env={**clean, **env}, capture_output=True,
                          text=True, timeout=60, check=False)


def test_rolling_deploy_without_hosts_or_release_says_how_to_call_it():
    no_hosts = run_script(ASKR_RELEASE="B")
    assert no_hosts.returncode == 2 and "usage: ASKR_RELEASE=NAME" in no_hosts.stderr
    no_release = run_script("app1")
    assert no_release.returncode != 0 and "set ASKR_RELEASE" in no_release.stderr


def test_rolling_deploy_stops_at_the_first_host_it_cannot_reach():
    # ASKR_REMOTE stands for ssh; `false` is a host that cannot be reached
    done = run_script("app1", "app2", ASKR_RELEASE="B", ASKR_REMOTE="false {host}")
    assert done.returncode == 1
    assert "FAILED: app1: askr drain --wait did not finish" in done.stderr
    assert "app2" not in done.stdout + done.stderr  # never touched
