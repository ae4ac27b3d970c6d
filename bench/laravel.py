"""The Laravel fixture under nginx + php-fpm (classic), askr classic and askr worker mode.

Usage (from the repository root):

    .venv/bin/python bench/laravel.py [--workers 2] [--duration 10] [--connections 32] [--rounds 3]
    .venv/bin/python bench/laravel.py --memory [--requests 10000]

The first form measures `GET /api/json` (a minimal Laravel 8 JSON route) with wrk against the three
targets, alternating, in one run, and prints a table with ratios against nginx + php-fpm. The
second serves N worker-mode requests and reports each PHP worker's RSS before and after (worker
mode keeps the app in memory, so this is where a leak would show).

The app is built fresh in a temporary directory from tests/laravel (Debian's
php-laravel-framework), migrations included; everything listens on 127.0.0.1 only and is
stopped in a ``finally``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from run import (
    GROUPS,
    NGINX_LABEL,
    REPO_ROOT,
    BenchError,
    WrkResult,
    _version,
    alternate,
    http_get,
    load_arguments,
    median_result,
    metered_wrk,
    render_costs,
    run_bench,
    start_askr,
    start_nginx_fpm,
)

sys.path.insert(0, str(REPO_ROOT / "tests" / "integration"))
from laravel_fixture import SANDBOX, make_laravel_app, php_ini

URL = "/api/json"
WORKER_SCRIPT = REPO_ROOT / "examples" / "laravel-worker.php"
CLASSIC_LABEL = "askr classic"
WORKER_LABEL = "askr worker"
# OPcache's tracing JIT, which Debian's opcache.ini turns off: `--jit` adds both stacks with it on
JIT_INI = ("opcache.jit=tracing", "opcache.jit_buffer_size=64M")
NGINX_JIT_LABEL = f"{NGINX_LABEL} + JIT"
WORKER_JIT_LABEL = f"{WORKER_LABEL} + JIT"
RESULTS = REPO_ROOT / "bench" / "results" / "laravel.md"


def check(label: str, base: str) -> None:
    status, body = http_get(base + URL, timeout=10)
    if status != 200 or b'"hello":"world"' not in body:
        raise BenchError(f"{label}: GET {URL} gave HTTP {status} {body[:300]!r}")


def start_targets(stack: ExitStack, tmp: Path, app: Path, workers: int, only_worker: bool = False,
                  jit: bool = False, front_scheduling: tuple[str, ...] = ()) -> tuple[dict[str, str],
                                                                                    dict[str, set[int]]]:
    """Base URL and process groups (for cpu.Meter) of each target."""
    public = app / "public"
    bases, groups = {}, {}

    def started(label: str, base: str) -> None:
        bases[label] = base
        groups[label] = set(GROUPS) - set().union(*groups.values())

    # askr runs the app with the app's own askr.toml, as production would: its sandbox's
    # writable directories and PHP's temporary directory inside storage/
    app_config = ("--config", str(app / "askr.toml"))
    if not only_worker:
        started(NGINX_LABEL, start_nginx_fpm(stack, tmp, workers, root=public, ready_path=URL))
        started(CLASSIC_LABEL, start_askr(stack, tmp, workers, root=public, ready_path=URL,
                                          extra=app_config, name="askr-classic"))
    started(WORKER_LABEL, start_askr(stack, tmp, workers, root=public, ready_path=URL,
                                     extra=("--worker", str(WORKER_SCRIPT), *app_config), name="askr-worker"))
    for policy in front_scheduling:  # the app's askr.toml has no [server] table: add one
        config = tmp / f"askr-sched-{policy}.toml"
        config.write_text((app / "askr.toml").read_text() + f'[server]\nfront_scheduling = "{policy}"\n')
        started(f"{WORKER_LABEL} sched={policy}",
                start_askr(stack, tmp, workers, root=public, ready_path=URL, name=f"askr-worker-{policy}",
                           extra=("--worker", str(WORKER_SCRIPT), "--config", str(config))))
    if jit:
        fpm_tmp = tmp / "fpm-jit"  # its own php-fpm.conf, socket and logs
        fpm_tmp.mkdir()
        started(NGINX_JIT_LABEL, start_nginx_fpm(stack, fpm_tmp, workers, root=public, ready_path=URL,
                                                 php_ini=JIT_INI))
        config = tmp / "askr-jit.toml"
        ini = {**php_ini(app), **dict(kv.split("=", 1) for kv in JIT_INI)}
        config.write_text("[worker]\nini = { " + ", ".join(f'"{k}" = "{v}"' for k, v in ini.items()) + " }\n"
                          f"[sandbox]\nwritable = {json.dumps(SANDBOX['writable'])}\n")
        started(WORKER_JIT_LABEL, start_askr(stack, tmp, workers, root=public, ready_path=URL,
                                             extra=("--worker", str(WORKER_SCRIPT), "--config", str(config)),
                                             name="askr-worker-jit"))
    for label, base in bases.items():
        check(label, base)
    return bases, groups


def throughput(args: argparse.Namespace, tmp: Path, app: Path) -> str:
    load = os.getloadavg()[0]
    with ExitStack() as stack:
        bases, groups = start_targets(stack, tmp, app, args.workers, jit=args.jit,
                                      front_scheduling=tuple(args.front_scheduling))
        label_of = {base: label for label, base in bases.items()}

        def measure(base: str, seconds: int) -> WrkResult:
            return metered_wrk(base + URL, groups[label_of[base]], args.threads, args.connections, seconds)

        samples = alternate(bases, measure, args.rounds, args.duration)
    results = {label: median_result(runs) for label, runs in samples.items()}
    base_rps = results[NGINX_LABEL].rps
    rows = [f"`GET {URL}` on the Laravel 8 fixture (tests/laravel, Debian php-laravel-framework "
            f"{_laravel_version()}) · nproc {os.cpu_count()} · load avg {load:.2f} at start · "
            f"{args.workers} PHP workers each · `wrk -t{args.threads} -c{args.connections} "
            f"-d{args.duration}s`, median of {args.rounds} alternating rounds",
            "",
            "| target | req/s (median) | range | p50 ms | p99 ms | errors | ÷ nginx+fpm |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for label, r in results.items():
        rows.append(f"| {label} | {r.rps:,.0f} | {r.spread} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
                    f"{r.errors_text()} | {r.rps / base_rps:.2f}x |")
    rows += ["", "- nginx+fpm and askr classic boot Laravel on every request; askr worker runs "
             "examples/laravel-worker.php, which boots it once per worker.",
             *([f"- `+ JIT`: the same with {', '.join(f'`{kv}`' for kv in JIT_INI)} (php-fpm's -d; "
                "askr's [worker] ini); Debian ships the JIT off."] if args.jit else []), "",
             *render_costs({(label, URL): r for label, r in results.items()}, list(results), {})]
    return "\n".join(rows) + "\n"



def _laravel_version() -> str:
    return _version(["dpkg-query", "-W", "-f=${Version}", "php-laravel-framework"])


# --------------------------------------------------------------------------- memory


def worker_pids(askr_pid: int) -> list[int]:
    """The PHP workers under this askr: children of its zygote, found through /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    zygotes = [p for p in children.get(askr_pid, [])
               if b"--zygote" in Path(f"/proc/{p}/cmdline").read_bytes()]
    return sorted(pid for z in zygotes for pid in children.get(z, []))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def hammer(base: str, total: int, url: str = URL, clients: int = 4) -> int:
    """`total` keep-alive GETs over `clients` connections; returns how many were not 200."""
    host, port = base.removeprefix("http://").split(":")
    bad = [0]
    per = total // clients

    def run() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        for _ in range(per):
            conn.request("GET", url)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                bad[0] += 1
        conn.close()

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return bad[0]


def memory(args: argparse.Namespace, tmp: Path, app: Path) -> str:
    with ExitStack() as stack:
        base = start_targets(stack, tmp, app, args.workers, only_worker=True)[0][WORKER_LABEL]
        askr_pid = _find_askr(base)
        hammer(base, 200, args.url)  # warm-up: autoloading, OPcache, Laravel's lazy services
        pids = worker_pids(askr_pid)
        before = {pid: rss_kib(pid) for pid in pids}
        started = time.monotonic()
        failures = hammer(base, args.requests, args.url)
        elapsed = time.monotonic() - started
        after = {pid: rss_kib(pid) for pid in pids if Path(f"/proc/{pid}").exists()}
    rows = [f"{args.requests:,} worker-mode requests to `GET {args.url}` over 4 keep-alive connections "
            f"in {elapsed:.1f} s ({failures} not 200); RSS of each PHP worker after a 200-request "
            "warm-up and after the run:", "",
            "| worker pid | RSS before | RSS after | growth |", "|---|---:|---:|---:|"]
    for pid in pids:
        if pid in after:
            rows.append(f"| {pid} | {before[pid] / 1024:.1f} MiB | {after[pid] / 1024:.1f} MiB | "
                        f"{(after[pid] - before[pid]) / 1024:+.2f} MiB |")
        else:
            rows.append(f"| {pid} | {before[pid] / 1024:.1f} MiB | (recycled) | |")
    return "\n".join(rows) + "\n"


def _find_askr(base: str) -> int:
    """The `askr serve` process listening on base's port (we started it: its cmdline says so)."""
    port = base.rsplit(":", 1)[1]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in cmd and f"127.0.0.1:{port}".encode() in cmd:
                return int(entry)
    raise BenchError("cannot find the askr process")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Laravel: nginx+php-fpm vs askr classic vs askr worker mode")
    load_arguments(ap, "PHP workers / fpm children", connections=32)
    ap.add_argument("--jit", action="store_true",
                    help="also measure nginx+fpm and askr worker mode with OPcache's tracing JIT on")
    ap.add_argument("--front-scheduling", action="append", default=[], choices=("normal", "batch"),
                    help="also measure worker mode with this [server] front_scheduling (repeatable)")
    ap.add_argument("--memory", action="store_true", help="report worker RSS over --requests instead")
    ap.add_argument("--requests", type=int, default=10_000, help="requests for --memory (default 10000)")
    ap.add_argument("--url", default=URL, help=f"path for --memory (default {URL}; /whoami uses the session)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def measure(tmp: Path) -> str:
        for tool in ("wrk", "/usr/sbin/nginx", "/usr/sbin/php-fpm8.2"):
            if not args.memory and shutil.which(tool) is None:
                raise BenchError(f"missing {tool} (Debian: apt-get install nginx php8.2-fpm wrk)")
        app = make_laravel_app(tmp / "app")
        return memory(args, tmp, app) if args.memory else throughput(args, tmp, app)

    return run_bench("askr-bench-laravel-", None if args.memory else RESULTS, measure)


if __name__ == "__main__":
    sys.exit(main())
