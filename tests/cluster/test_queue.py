"""Laravel's redis queue shared by every host's askr queue workers ([queue], examples/askr-queue.php):
jobs dispatched through HAProxy run exactly once across the hosts, a host stopping meanwhile
included, and a job whose host dies mid-run is run again elsewhere after retry_after."""

from __future__ import annotations

import ssl
import threading
import time

import httpx
from bed import QUEUE_RETRY_AFTER, Cluster, wait_until

JOBS = 100


def dispatch(cluster: Cluster, batch: str, ids: range, seconds: float = 0.0) -> list[str]:
    """POST /cluster/jobs through HAProxy for each id (keep-alive, one at a time); the failures."""

    def send() -> list[str]:
        failures = []
        tls = ssl.create_default_context(cafile=str(cluster.ca_pem))
        with httpx.Client(base_url=cluster.url, verify=tls, timeout=30) as http:
            for job_id in ids:
                try:
                    r = http.post("/cluster/jobs", params={"batch": batch, "id": job_id, "seconds": seconds})
                    if r.status_code != 202:
                        failures.append(f"job {job_id}: HTTP {r.status_code} {r.text[:200]}")
                except httpx.HTTPError as e:
                    failures.append(f"job {job_id}: {type(e).__name__}: {e}")
        return failures

    return cluster.in_client(send)  # type: ignore[return-value]


def test_jobs_dispatched_through_haproxy_run_exactly_once_across_hosts_while_one_stops(cluster):
    batch = f"once-{time.time_ns()}"
    leaving = cluster.hosts[2]
    assert dispatch(cluster, batch, range(0, 40)) == []
    # SIGTERM while jobs keep coming: readiness says stopping, HAProxy takes the host out during
    # drain_delay, then askr drains; its queue worker finishes the job in hand and exits
    stopping = threading.Thread(target=leaving.stop)
    stopping.start()
    assert dispatch(cluster, batch, range(40, 70)) == []
    stopping.join(90)
    assert not stopping.is_alive() and not leaving.proc.alive()
    wait_until(lambda: cluster.status()[leaving.name] == "DOWN", 30, f"HAProxy to mark {leaving.name} DOWN",
               cluster.status)
    assert dispatch(cluster, batch, range(70, JOBS)) == []  # while it is stopped

    runs = wait_until(lambda: (r := cluster.redis.hgetall(f"cluster:{batch}:runs")) and len(r) == JOBS and r,
                      60, f"all {JOBS} jobs to run",
                      lambda: f"{len(cluster.redis.hgetall(f'cluster:{batch}:runs'))} ran")
    starts = cluster.redis.hgetall(f"cluster:{batch}:starts")
    assert set(runs.values()) == {"1"} and set(starts.values()) == {"1"}, "a job ran twice"
    ran_on = cluster.redis.hgetall(f"cluster:{batch}:ran_on")
    assert len(set(ran_on.values())) >= 2, f"one host ran every job: {set(ran_on.values())}"
    # what was dispatched after the host had stopped, the other hosts ran
    assert leaving.name not in {ran_on[str(i)] for i in range(70, JOBS)}


def test_a_job_whose_host_dies_mid_run_runs_again_on_another_host(cluster):
    batch = f"dies-{time.time_ns()}"
    seconds = QUEUE_RETRY_AFTER - 2  # shorter than retry_after, or a healthy run would be doubled too
    assert dispatch(cluster, batch, range(1), seconds=seconds) == []
    first = wait_until(lambda: cluster.redis("HGET", f"cluster:{batch}:started_on", "0"), 30,
                       "a queue worker to start the job")
    victim = next(h for h in cluster.hosts if h.name == first)
    victim.kill()  # mid-run: its queue worker dies holding the reserved job
    died = time.monotonic()
    wait_until(lambda: cluster.redis("HGET", f"cluster:{batch}:runs", "0") == "1",
               QUEUE_RETRY_AFTER + seconds + 30, "the job to run again on another host")
    assert time.monotonic() - died >= QUEUE_RETRY_AFTER - 2  # handed out again only after retry_after
    assert cluster.redis("HGET", f"cluster:{batch}:starts", "0") == "2"
    assert cluster.redis("HGET", f"cluster:{batch}:ran_on", "0") != victim.name
