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
import shutil
import sys
from contextlib import ExitStack
from pathlib import Path

from run import (
    H2LOAD,
    NGINX,
    PHP_FPM,
    REPO_ROOT,
    H2Result,
    _version,
    alternate,
    equal_load_argument,
    equal_loads,
    render_equal_load,
    run_bench,
    run_h2load,
    start_askr,
    start_nginx_fpm,
)

URL = "/hello.php"
NGINX_H2 = "nginx+fpm (h2)"
RESULTS = REPO_ROOT / "bench" / "results" / "h2.md"


def make_certificate(tmp: Path) -> tuple[str, str]:
    import trustme  # a test dependency (pip install -e ".[test]")

    leaf = trustme.CA().issue_cert("127.0.0.1")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--streams", type=int, default=10, help="concurrent streams per client (-m)")
    ap.add_argument("--rounds", type=int, default=3)
    equal_load_argument(ap, "then offer both the same req/s (h2load --rps)")
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
            bases = {NGINX_H2: start_nginx_fpm(stack, tmp, args.workers, tls=pair,
                                                       processes=args.fronts or "auto"),
                     "askr (h2)": start_askr(stack, tmp, args.workers, tls=pair, extra=fronts)}

            def one_load(base: str, seconds: int) -> H2Result:
                return run_h2load(base + URL, args.clients, seconds, tmp / "h2load.log", streams=args.streams)

            samples = alternate(bases, one_load, args.rounds, args.duration)
            runs = samples[NGINX_H2]
            full_speed = {URL: sorted(r.rps for r in runs)[len(runs) // 2]} if args.equal_load else {}
            equal = equal_loads(bases, full_speed, args.equal_load, args.rounds, args.duration, tmp,
                                args.clients, streams=args.streams, h1=False)
        return render(samples, args, load) + render_equal_load(
            equal, list(bases), f"h2load -c{args.clients} -m{args.streams}", args.rounds, args.duration,
            reference=NGINX_H2)

    return run_bench("askr-bench-h2-", RESULTS, measure)


def render(samples: dict[str, list[H2Result]], args: argparse.Namespace, load: float) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = [f"**{now}** · nproc {os.cpu_count()} · load avg {load:.2f} at start · {args.workers} PHP "
            f"workers · `h2load -c{args.clients} -m{args.streams} -t2 -D{args.duration}` over TLS, "
            f"{args.rounds} alternating rounds, median", "",
            "| target | protocol | req/s (median) | range | p50 ms | p99 ms | failed+errored | ÷ nginx+fpm |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    medians = {label: sorted(runs, key=lambda r: r.rps)[len(runs) // 2] for label, runs in samples.items()}
    base = medians.get(NGINX_H2)
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
