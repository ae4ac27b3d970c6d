"""req/s of 1, 2 and 3 askr hosts behind HAProxy (contrib/haproxy.cfg), Laravel in worker mode.

Usage (from the repository root, as root: it creates network namespaces):

    .venv/bin/python bench/cluster.py [--workers 2] [--duration 10] [--connections 32] [--rounds 3]

It builds the cluster test bed (tests/cluster/bed.py: three askr hosts serving the Laravel fixture
in worker mode, HAProxy and Redis, each in its own network namespace, addresses 10.231.0.0/24
existing only inside them), then for 1, 2 and 3 hosts in rotation (the others put in MAINT
through HAProxy's stats socket) runs `wrk` from the client namespace against HAProxy
(`https://10.231.0.1/api/json`: TLS at HAProxy, HTTP/1.1 to askr), alternating, and prints a
markdown table. One more row is wrk straight at one host, without HAProxy: what HAProxy costs.

On a machine with few cores every host, HAProxy, Redis and wrk share the same CPUs, so more hosts
add processes, not capacity: the table shows the cost of the layer and that balancing works, not
how far real machines scale.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from run import (
    REPO_ROOT,
    WRK,
    BenchError,
    WrkResult,
    alternate,
    load_arguments,
    median_result,
    run_bench,
    run_wrk,
)

sys.path.insert(0, str(REPO_ROOT / "tests" / "cluster"))
import bed
import haproxy

URL_PATH = "/api/json"
WARMUP_SECONDS = 3


def set_in_rotation(cluster: bed.Cluster, count: int) -> None:
    """The first `count` hosts take traffic; HAProxy keeps the others in MAINT."""
    for index, host in enumerate(cluster.hosts):
        state = "ready" if index < count else "maint"
        haproxy.command(cluster.stats_socket, f"set server {haproxy.BACKEND}/{host.name} state {state}")
    want = {h.name: ("UP" if i < count else "MAINT") for i, h in enumerate(cluster.hosts)}
    bed.wait_until(lambda: cluster.status() == want, 30, f"{count} host(s) in rotation", cluster.status)


def answered(cluster: bed.Cluster) -> dict[str, int]:
    """2xx responses HAProxy has had from each host so far."""
    return {name: int(row["hrsp_2xx"] or 0)
            for name, row in haproxy.server_stats(cluster.stats_socket, cluster.backend).items()}


def wrk(cluster: bed.Cluster, url: str, args: argparse.Namespace, seconds: int) -> WrkResult:
    """wrk from the client namespace."""
    return run_wrk(url, args.threads, args.connections, seconds, within=cluster.net.client.command)


def measure(args: argparse.Namespace, base: Path) -> str:
    load = os.getloadavg()[0]
    with bed.Cluster(base, hosts=3, workers=args.workers, queue_workers=0, haproxy_log=False) as cluster:
        through = f"{cluster.url}{URL_PATH}"
        direct = f"http://{cluster.hosts[0].address}:{bed.HTTP_PORT}{URL_PATH}"
        targets = {f"{n} host{'s' if n > 1 else ''} behind HAProxy": n for n in (1, 2, 3)}
        targets["1 host, no HAProxy (plain HTTP)"] = 0

        shares: dict[str, list[str]] = {}

        def run(label: str, seconds: int) -> WrkResult:
            count = targets[label]
            set_in_rotation(cluster, count or 3)
            before = answered(cluster)
            result = wrk(cluster, direct if count == 0 else through, args, seconds)
            after = answered(cluster)
            served = [after[h.name] - before[h.name] for h in cluster.hosts[:count]]
            shares[label] = [f"{100 * n / max(1, sum(served)):.0f}%" for n in served]
            return result

        samples = alternate({label: label for label in targets}, run, args.rounds, args.duration,
                            warmup=WARMUP_SECONDS)
    results = {label: median_result(runs) for label, runs in samples.items()}
    one = results["1 host behind HAProxy"].rps
    rows = [f"`GET {URL_PATH}` on the Laravel 8 fixture in worker mode (examples/laravel-worker.php), "
            f"{args.workers} PHP workers and 1 front per host · HAProxy {_haproxy_version()} with "
            f"contrib/haproxy.cfg (TLS at HAProxy, leastconn) · nproc {os.cpu_count()} · load avg "
            f"{load:.2f} at start · `wrk -t{args.threads} -c{args.connections} -d{args.duration}s` from "
            f"the client namespace, median of {args.rounds} alternating round(s)",
            "",
            "| target | req/s (median) | range | p50 ms | p99 ms | errors | ÷ 1 host | "
            "share per host (last round) |",
            "|---|---:|---:|---:|---:|---:|---:|---|"]
    for label, r in results.items():
        rows.append(f"| {label} | {r.rps:,.0f} | {r.spread} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
                    f"{r.errors_text()} | {r.rps / one:.2f}x | {' / '.join(shares[label]) or '-'} |")
    rows += ["", f"- All hosts, HAProxy, Redis and wrk share this machine's {os.cpu_count()} cores: "
             "a host adds processes competing for them, not CPU, so the rows cannot show how hosts "
             "scale; they show that every host in rotation takes its share, with or without "
             "errors, and what the HAProxy layer (TLS, a second hop) costs on the same cores. On "
             "separate machines each host brings its own cores."]
    return "\n".join(rows) + "\n"


def _haproxy_version() -> str:
    out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, check=False).stdout
    return out.split()[2] if len(out.split()) > 2 else "?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="1, 2 and 3 askr hosts behind HAProxy (Laravel, worker mode)")
    load_arguments(ap, "PHP workers per host", connections=32)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()

    def timed(base: Path) -> str:
        reason = bed.missing() or (None if shutil.which(WRK) else
                                   "wrk is not installed (apt-get install wrk)")
        if reason:
            raise BenchError(reason)
        table = measure(args, base)
        print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
        return table

    return run_bench("askr-bench-cluster-", REPO_ROOT / "bench" / "results" / "cluster.md", timed)


if __name__ == "__main__":
    sys.exit(main())
