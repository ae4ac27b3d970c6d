"""HTTP/2 over TLS: askr against nginx (http2 + php-fpm), with h2load, in the same run.

Usage (from the repository root):

    .venv/bin/python bench/h2.py [--workers 2] [--duration 8] [--clients 16] [--streams 10] [--rounds 3]

Both serve bench/docroot's hello.php over TLS 1.3 with a throwaway certificate (made here with
trustme); `h2load -c CLIENTS -m STREAMS -t 2 -D DURATION` measures each, alternating, and the
median round is reported with p50/p99 (from h2load's per-request log) and the ratio to nginx +
php-fpm. By default both run as production does: nginx `worker_processes auto`, askr's default
fronts; `--fronts N` runs N of each instead. Everything listens on 127.0.0.1 and is stopped in a
``finally``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from run import (
    NGINX,
    PHP_FPM,
    REPO_ROOT,
    BenchError,
    _version,
    alternate,
    run_bench,
    start_askr,
    start_nginx_fpm,
)

H2LOAD = "h2load"
URL = "/hello.php"
RESULTS = REPO_ROOT / "bench" / "results" / "h2.md"


@dataclass
class H2Result:
    rps: float
    succeeded: int
    failed: int
    errored: int
    p50_ms: float
    p99_ms: float
    protocol: str


def make_certificate(tmp: Path) -> tuple[str, str]:
    import trustme  # a test dependency (pip install -e ".[test]")

    leaf = trustme.CA().issue_cert("127.0.0.1")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


WARM_UP_S = 1


def run_h2load(url: str, clients: int, streams: int, duration: int, log: Path) -> H2Result:
    argv = [H2LOAD, "-c", str(clients), "-m", str(streams), "-t", "2", "-D", str(duration),
            "--warm-up-time", str(WARM_UP_S), f"--log-file={log}", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120, check=False)
    out = done.stdout
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    counts = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    if done.returncode != 0 or not rps or not counts or float(rps.group(1)) == 0:
        raise BenchError(f"h2load {url} failed ({done.returncode}):\n{out[-600:]}\n{done.stderr[-600:]}")
    p50_ms, p99_ms = percentiles(log)
    return H2Result(float(rps.group(1)), *(int(x) for x in counts.groups()), p50_ms, p99_ms,
                    proto.group(1) if proto else "?")


def percentiles(log: Path) -> tuple[float, float]:
    """p50 and p99 in ms of the requests h2load logged (start µs, status, duration µs) that
    started after the warm-up; h2load itself reports only min/max/mean/sd."""
    rows = [line.split("\t") for line in log.read_text().splitlines() if line.count("\t") >= 2]
    log.unlink()
    if not rows:
        return float("nan"), float("nan")
    start = min(int(r[0]) for r in rows) + WARM_UP_S * 1_000_000
    durations = sorted(int(r[2]) for r in rows if int(r[0]) >= start and int(r[1]) > 0)
    if not durations:
        return float("nan"), float("nan")
    def at(q: float) -> float:
        return durations[min(len(durations) - 1, int(q * len(durations)))] / 1000
    return at(0.50), at(0.99)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--streams", type=int, default=10, help="concurrent streams per client (-m)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fronts", type=int, default=None,
                    help="askr [server] fronts, and as many nginx worker processes (default: askr's "
                         "default fronts and nginx worker_processes auto, as production runs them)")
    args = ap.parse_args(argv)
    missing = [t for t in (H2LOAD, NGINX, PHP_FPM) if shutil.which(t) is None]
    if missing:
        print(f"missing {', '.join(missing)} (Debian: apt-get install nghttp2-client nginx php8.2-fpm)",
              file=sys.stderr)
        return 2

    def measure(tmp: Path) -> str:
        load = os.getloadavg()[0]
        pair = make_certificate(tmp)
        with ExitStack() as stack:
            fronts = () if args.fronts is None else ("--fronts", str(args.fronts))
            bases = {"nginx+fpm (h2)": start_nginx_fpm(stack, tmp, args.workers, tls=pair,
                                                       processes=args.fronts or "auto"),
                     "askr (h2)": start_askr(stack, tmp, args.workers, tls=pair, extra=fronts)}

            def one_load(base: str, seconds: int) -> H2Result:
                return run_h2load(base + URL, args.clients, args.streams, seconds, tmp / "h2load.log")

            samples = alternate(bases, one_load, args.rounds, args.duration)
        return render(samples, args, load)

    return run_bench("askr-bench-h2-", RESULTS, measure)


def render(samples: dict[str, list[H2Result]], args: argparse.Namespace, load: float) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = [f"**{now}** · nproc {os.cpu_count()} · load avg {load:.2f} at start · {args.workers} PHP "
            f"workers · `h2load -c{args.clients} -m{args.streams} -t2 -D{args.duration}` over TLS, "
            f"{args.rounds} alternating rounds, median", "",
            "| target | protocol | req/s (median) | range | p50 ms | p99 ms | failed+errored | ÷ nginx+fpm |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    medians = {label: sorted(runs, key=lambda r: r.rps)[len(runs) // 2] for label, runs in samples.items()}
    base = medians.get("nginx+fpm (h2)")
    for label, runs in samples.items():
        m = medians[label]
        spread = f"{min(r.rps for r in runs):,.0f}-{max(r.rps for r in runs):,.0f}"
        bad = sum(r.failed + r.errored for r in runs)
        ratio = f"{m.rps / base.rps:.2f}x" if base and base.rps else ""
        rows.append(f"| {label} | {m.protocol} | {m.rps:,.0f} | {spread} | {m.p50_ms:.2f} | "
                    f"{m.p99_ms:.2f} | {bad} | {ratio} |")
    nginx_v = _version([NGINX, "-v"]).removeprefix("nginx version: ")
    processes = args.fronts or "auto"
    fronts = f" --fronts {args.fronts}" if args.fronts else " (default fronts)"
    rows += ["", f"- nginx: {nginx_v}, `worker_processes {processes}`, `listen ssl http2`, php-fpm "
             f"`pm = static`; askr: `askr serve --tls-cert --tls-key --workers {args.workers}{fronts}`.",
             "- h2load, the fronts and PHP share the machine's cores; compare rows of one run."]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.exit(main())
