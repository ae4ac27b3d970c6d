"""Benchmark askr against nginx + php-fpm on the same docroot, in the same run.

Usage (from the repository root):

    .venv/bin/python bench/run.py [--workers 2] [--duration 10] [--connections 64] [--threads 2]
                                  [--only askr|nginx] [--nginx-processes auto|N]
                                  [--askr fronts=N,pin=CPUS ...]

Everything it starts (nginx, php-fpm, askr) lives in a temporary directory, listens only on
127.0.0.1 and is stopped in a ``finally``. Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cpu

T = TypeVar("T")

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DOCROOT = BENCH_DIR / "docroot"
RESULTS = BENCH_DIR / "results" / "latest.md"

NGINX = "/usr/sbin/nginx"
PHP_FPM = "/usr/sbin/php-fpm8.2"
WRK = "wrk"
H2LOAD = "h2load"

URLS = ("/hello.php", "/static-4k.txt", "/static-1m.bin")
HELLO_BODY = b"Hello, world!\n"
STATIC_SIZES = {"/static-4k.txt": 4096, "/static-1m.bin": 1 << 20}
WARMUP_SECONDS = 2
NGINX_READY_TIMEOUT = 30.0
ASKR_READY_TIMEOUT = 60.0
STOP_GRACE = 10.0

NGINX_LABEL = "nginx+fpm"
ASKR_LABEL = "askr"


class BenchError(Exception):
    """A failure worth a clear one-line message and a non-zero exit."""


# --------------------------------------------------------------------------- processes


@dataclass
class Server:
    """A process group we started, with the log its output goes to."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def free_port() -> int:
    """A loopback port that was free a moment ago (bind port 0, close, reuse the number)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


GROUPS: list[int] = []  # every server started: its process group id (= its pid), for cpu.Meter
# Each server in a session of its own, as systemd starts each service (the default), or in the
# bench's session (--one-autogroup). It matters for the scheduler: with kernel.sched_autogroup_enabled
# (Debian's default) each session is a scheduling group, weighed against the others as a whole,
# whatever its processes' nice values. wrk runs in the bench's session.
OWN_SESSIONS = True


def start(name: str, argv: list[str], log: Path, cwd: Path | None = None) -> Server:
    """Start argv leading its own process group (so the whole group can be stopped)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=OWN_SESSIONS,
                                process_group=None if OWN_SESSIONS else 0)
    GROUPS.append(proc.pid)
    return Server(name, proc, log)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # the group id is the child's pid


def stop(server: Server) -> None:
    """SIGTERM the server's process group, SIGKILL it if still alive after STOP_GRACE seconds."""
    proc = server.proc
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        print(f"{server.name} ignored SIGTERM for {STOP_GRACE:.0f} s; sending SIGKILL", file=sys.stderr)
        _signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=STOP_GRACE)
    # Children left behind by a master that exited first (same group) get the same treatment.
    _signal_group(proc, signal.SIGKILL)


@contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        stop(server)


# --------------------------------------------------------------------------- HTTP checks


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    # https here is always our own loopback server with a throwaway certificate
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(servers: list[Server], url: str, timeout: float) -> None:
    """Poll GET url until it answers 200; fail early if one of the servers dies."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        for server in servers:
            if server.proc.poll() is not None:
                raise BenchError(f"{server.name} exited with status {server.proc.returncode} "
                                 f"before {url} answered; its log ends with:\n{server.log_tail()}")
        try:
            status, _ = http_get(url, timeout=1.0)
            if status == 200:
                return
            last = f"HTTP {status}"
        except (OSError, urllib.error.URLError) as e:
            last = str(e)
        time.sleep(0.1)
    tails = "\n".join(f"--- {s.name} ({s.log}):\n{s.log_tail()}" for s in servers)
    raise BenchError(f"{url} did not return 200 within {timeout:.0f} s (last: {last})\n{tails}")


def check_target(label: str, base: str) -> None:
    """The target must really run PHP and serve the static file before we load it."""
    status, body = http_get(base + "/hello.php")
    if status != 200 or body != HELLO_BODY:
        raise BenchError(f"{label} did not run PHP: GET /hello.php gave HTTP {status} {body[:200]!r}, "
                         f"expected 200 {HELLO_BODY!r}")
    for path, size in STATIC_SIZES.items():
        status, body = http_get(base + path)
        if status != 200 or len(body) != size:
            raise BenchError(f"{label}: GET {path} gave HTTP {status} with {len(body)} bytes, "
                             f"expected 200 with {size}")


def make_docroot(tmp: Path) -> Path:
    """bench/docroot plus the 1 MiB file (generated: not worth a megabyte in the repository)."""
    root = tmp / "docroot"
    shutil.copytree(DOCROOT, root)
    (root / "static-1m.bin").write_bytes(bytes(range(256)) * 4096)
    return root


# --------------------------------------------------------------------------- nginx + php-fpm


def fpm_conf(tmp: Path, workers: int) -> str:
    as_root = "user = root\ngroup = root\n" if os.geteuid() == 0 else ""
    return f"""\
[global]
pid = {tmp}/php-fpm.pid
error_log = {tmp}/php-fpm-error.log
daemonize = no

[bench]
{as_root}listen = {tmp}/php-fpm.sock
listen.mode = 0666
pm = static
pm.max_children = {workers}
"""


def nginx_conf(tmp: Path, port: int, root: Path = DOCROOT, tls: tuple[str, str] | None = None,
               processes: int | str = 1) -> str:
    """tls: (cert, key) to listen with TLS and HTTP/2 instead of plain HTTP/1.1."""
    as_root = "user root root;\n" if os.geteuid() == 0 else ""
    listen = f"listen 127.0.0.1:{port};"
    if tls:
        listen = (f"listen 127.0.0.1:{port} ssl http2;\n        ssl_certificate {tls[0]};\n"
                  f"        ssl_certificate_key {tls[1]};\n        ssl_protocols TLSv1.2 TLSv1.3;")
    return f"""\
{as_root}daemon off;
master_process on;
worker_processes {processes};
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    # nginx closes a connection after 1000 requests by default (HTTP/2: GOAWAY), which h2load
    # does not reopen; askr sets no such limit, so neither does the baseline.
    keepalive_requests 1000000;

    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    server {{
        {listen}
        root {root};
        index index.php index.html;

        location / {{
            try_files $uri $uri/ /index.php?$query_string;
        }}

        location ~ \\.php$ {{
            try_files $uri =404;
            fastcgi_pass unix:{tmp}/php-fpm.sock;
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        }}
    }}
}}
"""


def start_nginx_fpm(stack: ExitStack, tmp: Path, workers: int, root: Path = DOCROOT,
                    ready_path: str = "/hello.php", tls: tuple[str, str] | None = None,
                    processes: int | str = 1, php_ini: tuple[str, ...] = ()) -> str:
    """Start php-fpm and nginx in tmp; return the base URL once `ready_path` answers 200.
    `php_ini`: KEY=VALUE settings for php-fpm's command line (-d), after its php.ini."""
    port = free_port()
    fpm_cfg = tmp / "php-fpm.conf"
    fpm_cfg.write_text(fpm_conf(tmp, workers))
    nginx_cfg = tmp / "nginx.conf"
    nginx_cfg.write_text(nginx_conf(tmp, port, root, tls, processes))

    fpm_argv = [PHP_FPM, *(arg for kv in php_ini for arg in ("-d", kv)), "-F", "-y", str(fpm_cfg)]
    fpm_argv += ["-R"] if os.geteuid() == 0 else []
    fpm = stack.enter_context(running(start("php-fpm", fpm_argv, tmp / "php-fpm.out")))
    # -e: nginx opens its error log before reading the config; keep even that one in tmp.
    nginx_argv = [NGINX, "-p", f"{tmp}/", "-c", str(nginx_cfg), "-e", str(tmp / "nginx-error.log")]
    nginx = stack.enter_context(running(start("nginx", nginx_argv, tmp / "nginx.out")))

    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    wait_ready([fpm, nginx], base + ready_path, NGINX_READY_TIMEOUT)
    return base


# --------------------------------------------------------------------------- askr


def start_askr(stack: ExitStack, tmp: Path, workers: int, root: Path = DOCROOT,
               ready_path: str = "/hello.php", extra: tuple[str, ...] = (), name: str = "askr",
               tls: tuple[str, str] | None = None) -> str:
    """Start `askr serve` on `root`; return the base URL once `ready_path` answers 200."""
    port = free_port()
    argv = [sys.executable, "-m", "askr", "serve", "--root", str(root),
            "--listen", f"127.0.0.1:{port}", "--workers", str(workers),
            "--admin-listen", "127.0.0.1:0", *extra]
    if os.geteuid() == 0:
        argv += ["--user", "root"]  # as php-fpm runs here with -R: the same privileges for both
    if tls:
        argv += ["--tls-cert", tls[0], "--tls-key", tls[1]]
    askr = stack.enter_context(running(start(name, argv, tmp / f"{name}.out", cwd=REPO_ROOT)))
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    wait_ready([askr], base + ready_path, ASKR_READY_TIMEOUT)
    return base


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: dict[str, int]
    spread: str = ""  # lowest-highest req/s over the rounds
    requests: int = 0
    cost: cpu.Cost | None = None  # CPU µs per request by process kind, when measured

    @property
    def errors(self) -> int:
        return self.non2xx + sum(self.socket_errors.values())

    def errors_text(self) -> str:
        if not self.errors:
            return "0"
        parts = [f"{k} {v}" for k, v in self.socket_errors.items() if v]
        if self.non2xx:
            parts.insert(0, f"non-2xx {self.non2xx}")
        return f"{self.errors} ({', '.join(parts)})"


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def to_ms(value: str) -> float:
    """'812.00us' / '1.23ms' / '2.01s' / '1.50m' -> milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value.strip())
    if not m:
        raise BenchError(f"unrecognised wrk latency {value!r}")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (rps and p50 and p99):
        raise BenchError(f"could not parse wrk output:\n{output}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    total = re.search(r"^\s+(\d+) requests in ", output, re.M)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    socket_errors = dict(zip(("connect", "read", "write", "timeout"),
                             (int(g) for g in sock.groups()), strict=True)) if sock else {}
    return WrkResult(float(rps.group(1)), to_ms(p50.group(1)), to_ms(p99.group(1)),
                     int(non2xx.group(1)) if non2xx else 0, socket_errors,
                     requests=int(total.group(1)) if total else 0)


def run_wrk(url: str, threads: int, connections: int, duration: int,
            within: Callable[[list[str]], list[str]] | None = None) -> WrkResult:
    """`within`: wraps wrk's argv (e.g. to run it inside a network namespace)."""
    argv = [WRK, "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency", url]
    argv = within(argv) if within else argv
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30, check=False)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"wrk did not finish within {duration + 30} s: {' '.join(argv)}") from e
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {' '.join(argv)}\n{done.stderr}{done.stdout}")
    result = parse_wrk(done.stdout)
    # every round on stderr: the table keeps the median round, this shows how much rounds differ
    print(f"  {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms",
          file=sys.stderr)
    return result


# --------------------------------------------------------------------------- h2load


@dataclass
class H2Result:
    rps: float
    succeeded: int
    failed: int
    errored: int
    p50_ms: float
    p99_ms: float
    protocol: str

    @property
    def errors(self) -> int:
        return self.failed + self.errored


H2LOAD_WARM_UP_S = 1


def run_h2load(url: str, clients: int, duration: int, log: Path, streams: int = 1,
               rate: float | None = None, h1: bool = False) -> H2Result:
    """h2load on `url` for `duration` s (after a 1 s warm-up). `rate`: the total req/s offered,
    split evenly over the clients (h2load --rps), instead of as fast as answers come; `h1`:
    HTTP/1.1 (keep-alive) rather than HTTP/2."""
    argv = [H2LOAD, "-c", str(clients), "-m", str(streams), "-t", "2", "-D", str(duration),
            "--warm-up-time", str(H2LOAD_WARM_UP_S), f"--log-file={log}"]
    if rate is not None:
        argv.append(f"--rps={rate / clients:.3f}")
    if h1:
        argv.append("--h1")
    done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration + 120, check=False)
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
    start = min(int(r[0]) for r in rows) + H2LOAD_WARM_UP_S * 1_000_000
    durations = sorted(int(r[2]) for r in rows if int(r[0]) >= start and int(r[1]) > 0)
    if not durations:
        return float("nan"), float("nan")

    def at(q: float) -> float:
        return durations[min(len(durations) - 1, int(q * len(durations)))] / 1000
    return at(0.50), at(0.99)


# --------------------------------------------------------------------------- report


@dataclass
class Params:
    workers: int
    duration: int
    connections: int
    threads: int
    load_before: float  # 1-minute load average when the run started: others' load skews numbers
    rounds: int = 1


def metered_wrk(url: str, groups: set[int], threads: int, connections: int, seconds: int) -> WrkResult:
    """wrk on `url`, with the CPU µs per request the target's processes (its `groups`) spent."""
    meter = cpu.Meter(groups)
    meter.start()
    result = run_wrk(url, threads, connections, seconds)
    result.cost = cpu.Cost.of(meter.stop(), result.requests)
    return result


def load_arguments(ap: argparse.ArgumentParser, workers_help: str, connections: int) -> None:
    """The options every wrk bench takes: --workers, --duration, --connections, --threads, --rounds."""
    ap.add_argument("--workers", type=int, default=2, help=f"{workers_help} (default 2)")
    ap.add_argument("--duration", type=int, default=10, help="seconds of wrk per measurement (default 10)")
    ap.add_argument("--connections", type=int, default=connections,
                    help=f"wrk connections (default {connections})")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating measurements per target; the median is reported (default 3)")
    ap.add_argument("--one-autogroup", action=_OneAutogroup, nargs=0,
                    help="start the servers in the bench's session instead of one session each: "
                         "the kernel's autogroup scheduling then weighs every server process and wrk "
                         "in one group, by their nice values, as under one cgroup (bench/README.md)")


class _OneAutogroup(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        global OWN_SESSIONS
        OWN_SESSIONS = False
        setattr(namespace, self.dest, True)


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "?"


@dataclass
class AskrSpec:
    """One askr target: its `[server] fronts` (None: askr's default), the CPUs its fronts are
    pinned to (None: not pinned) and its `[server] front_scheduling` (None: askr's default)."""

    fronts: int | None = None
    pin: set[int] | None = None
    scheduling: str | None = None

    @classmethod
    def parse(cls, text: str) -> AskrSpec:
        spec = cls()
        for item in filter(None, text.split(",")):
            key, _, value = item.partition("=")
            if key == "fronts":
                spec.fronts = int(value)
            elif key == "pin":
                spec.pin = set(_cpu_list(value))
            elif key == "sched" and value in ("batch", "normal"):
                spec.scheduling = value
            else:
                raise argparse.ArgumentTypeError(f"unknown askr setting {item!r} "
                                                 "(fronts=N, pin=CPUS, sched=batch|normal)")
        return spec

    @property
    def label(self) -> str:
        parts = ([f"fronts={self.fronts}"] if self.fronts else []) + (
            [f"pinned to cpu {_cpu_text(self.pin)}"] if self.pin is not None else []) + (
            [f"sched={self.scheduling}"] if self.scheduling else [])
        return " ".join([ASKR_LABEL, *parts])

    def extra(self, tmp: Path) -> tuple[str, ...]:
        """askr serve's arguments for this target (a config file in `tmp` where one is needed)."""
        args: tuple[str, ...] = ("--fronts", str(self.fronts)) if self.fronts else ()
        if self.scheduling:
            config = tmp / f"askr-sched-{self.scheduling}.toml"
            config.write_text(f'[server]\nfront_scheduling = "{self.scheduling}"\n')
            args += ("--config", str(config))
        return args


def _cpu_list(text: str) -> list[int]:
    """"0", "0-1", "0,2" (with ':' for ',' inside an --askr spec) -> [cpus]."""
    out: list[int] = []
    for part in text.replace(":", ",").split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def _cpu_text(cpus: set[int]) -> str:
    return ",".join(map(str, sorted(cpus)))


def render_table(results: dict[tuple[str, str], WrkResult], targets: list[str], p: Params,
                 nginx_processes: int | str, fronts: dict[str, int]) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"**{now}** · nproc {os.cpu_count()} · load avg {p.load_before:.2f} at start · "
              f"{p.workers} PHP workers · "
              f"`wrk -t{p.threads} -c{p.connections} -d{p.duration}s --latency`, "
              f"{p.rounds} alternating rounds, median "
              f"(after {WARMUP_SECONDS} s warm-up per target and URL)")
    rows = ["| URL | target | req/s (median) | range over rounds | p50 ms | p99 ms | errors "
            "| req/s ÷ nginx+fpm |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for url in dict.fromkeys(u for _, u in results):
        base = results.get((NGINX_LABEL, url))
        for target in targets:
            r = results[(target, url)]
            ratio = f"{r.rps / base.rps:.2f}x" if target != NGINX_LABEL and base and base.rps else ""
            rows.append(f"| `{url}` | {target} | {r.rps:,.0f} | {r.spread} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
                        f"| {r.errors_text()} | {ratio} |")
    nginx_v = _version([NGINX, "-v"]).removeprefix("nginx version: ")
    fpm_v = _version([PHP_FPM, "-v"]).split(" (")[0]
    commit = _version(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    notes = [
        f"nginx+fpm: {nginx_v} with `worker_processes {nginx_processes}`"
        + (" (Debian's default: one per core)" if str(nginx_processes) == "auto" else "")
        + f" in front of {fpm_v}-fpm, `pm = static`, `pm.max_children = {p.workers}`, over a unix "
        f"socket; askr (commit {commit}): `askr serve --workers {p.workers}` ("
        + "; ".join(f"{t}: {n} front{'s' if n != 1 else ''}" for t, n in fronts.items())
        + "). Same docroot (`bench/docroot` plus a generated 1 MiB file), access logs off.",
        f"wrk, the front and the PHP workers all share the same {os.cpu_count()} cores, so absolute "
        "numbers are machine-bound; compare the rows of a URL, measured alternately in one run.",
        "errors = non-2xx/3xx responses + socket errors (connect/read/write/timeout) reported by wrk.",
    ]
    return "\n".join([header, "", *rows, "", *(f"- {n}" for n in notes), "",
                      *render_costs(results, targets, fronts)]) + "\n"


PROJECTED_CORES = (8, 16, 32, 64)


def render_costs(results: dict[tuple[str, str], WrkResult], targets: list[str],
                 fronts: dict[str, int]) -> list[str]:
    """CPU µs per request by process kind (the median round), and the projection from it."""
    kinds = [k for k, _ in cpu.KINDS if any(r.cost and k in r.cost.by_kind for r in results.values())]
    if not kinds:
        return []
    rows = ["CPU µs per request (user + system, from /proc, the median round; wrk not counted):", "",
            "| URL | target | " + " | ".join(kinds) + " | all |",
            "|---|---|" + "---:|" * (len(kinds) + 1)]
    for url in dict.fromkeys(u for _, u in results):
        for target in targets:
            cost = results[(target, url)].cost
            if cost is None:
                continue
            cells = [f"{cost.by_kind[k]:.1f}" if k in cost.by_kind else "" for k in kinds]
            rows.append(f"| `{url}` | {target} | " + " | ".join(cells) + f" | {cost.total:.1f} |")
    rows += ["", "Projected req/s on bigger machines from those costs (model: every core busy with the "
             "stack's own processes, the load generator elsewhere, per-request cost unchanged; askr "
             "is also capped at fronts * 10^6 / front µs, one core per front, with `fronts = \"auto\"` "
             "for the core count; nginx `worker_processes auto` and one fpm child per core):", "",
             "| URL | target | " + " | ".join(f"{c} cores" for c in PROJECTED_CORES) + " |",
             "|---|---|" + "---:|" * len(PROJECTED_CORES)]
    from askr.config import auto_fronts

    for url in dict.fromkeys(u for _, u in results):
        for target in targets:
            cost = results[(target, url)].cost
            if cost is None or (target != NGINX_LABEL and not target.startswith(ASKR_LABEL)):
                continue
            if target == NGINX_LABEL:
                cells = [cpu.project_nginx(cost, c) for c in PROJECTED_CORES]
            else:
                cells = [cpu.project_askr(cost, c, auto_fronts(c)) for c in PROJECTED_CORES]
            rows.append(f"| `{url}` | {target} | " + " | ".join(f"{v:,.0f}" for v in cells) + " |")
    return rows


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="askr vs nginx + php-fpm, measured with wrk on 127.0.0.1")
    load_arguments(ap, "PHP workers / fpm children", connections=64)
    ap.add_argument("--only", choices=("askr", "nginx"), help="benchmark only this target")
    ap.add_argument("--nginx-processes", default="auto",
                    help='nginx worker_processes: "auto" (default: Debian\'s, one per core) or a number')
    ap.add_argument("--askr", metavar="SPEC", action="append", type=AskrSpec.parse,
                    help="an askr target: fronts=N, pin=CPUS (its fronts pinned with taskset, e.g. "
                         "pin=0 or pin=0-1) and/or sched=batch|normal ([server] front_scheduling); "
                         "repeat for several (default: one, askr's defaults)")
    ap.add_argument("--url", action="append", choices=URLS,
                    help="measure only this URL (repeatable; default: all of them)")
    equal_load_argument(ap, "after the wrk rounds, offer every target the same req/s with h2load --rps")
    args = ap.parse_args(argv)
    if args.only:
        args.equal_load = []  # it needs nginx+fpm's req/s and something to compare
    args.url = args.url or list(URLS)
    for name in ("workers", "duration", "connections", "threads", "rounds"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    args.askr = args.askr or [AskrSpec()]
    if len({spec.label for spec in args.askr}) != len(args.askr):
        ap.error("two --askr targets are the same")
    return args


def fractions(text: str) -> list[float]:
    """--equal-load: "0.5,0.8" -> [0.5, 0.8]; "none" -> []."""
    try:
        values = [] if text == "none" else [float(f) for f in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("fractions like 0.5,0.8, or none") from None
    if any(not 0 < f <= 1 for f in values):
        raise argparse.ArgumentTypeError("fractions must be above 0 and at most 1")
    return values


def equal_load_argument(ap: argparse.ArgumentParser, what: str) -> None:
    """--equal-load, as run.py and h2.py take it; `what`: the help's first words."""
    ap.add_argument("--equal-load", type=fractions, default="0.5,0.8", metavar="FRACTIONS",
                    help=f"{what}: these fractions of nginx+fpm's median req/s, for p50/p99 at equal "
                         'load (default 0.5,0.8; "none" skips it)')


def preflight(only: str | None, equal_load: bool) -> None:
    needed = [WRK] + ([NGINX, PHP_FPM] if only != "askr" else []) + ([H2LOAD] if equal_load else [])
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        raise BenchError(f"missing {', '.join(missing)} "
                         "(Debian: apt-get install nginx php8.2-fpm wrk nghttp2-client)")
    for path in (DOCROOT / "hello.php", DOCROOT / "static-4k.txt"):
        if not path.is_file():
            raise BenchError(f"missing {path}")


def bench(args: argparse.Namespace, tmp: Path) -> str:
    root = make_docroot(tmp)
    params = Params(args.workers, args.duration, args.connections, args.threads, os.getloadavg()[0],
                    args.rounds)
    with ExitStack() as stack:
        bases: dict[str, str] = {}
        groups: dict[str, set[int]] = {}
        fronts: dict[str, int] = {}

        def started(label: str, base: str) -> None:
            bases[label] = base
            groups[label] = set(GROUPS) - set().union(*groups.values())
            check_target(label, base)
            print(f"  {label} ready at {base}", file=sys.stderr)

        if args.only in (None, "nginx"):
            print(f"starting {NGINX_LABEL} ...", file=sys.stderr)
            started(NGINX_LABEL, start_nginx_fpm(stack, tmp, args.workers, root,
                                                 processes=args.nginx_processes))
        if args.only in (None, "askr"):
            for n, spec in enumerate(args.askr):
                print(f"starting {spec.label} ...", file=sys.stderr)
                started(spec.label, start_askr(stack, tmp, args.workers, root, extra=spec.extra(tmp),
                                               name=f"askr{n}"))
                front_pids = [pid for pid, k in cpu.processes(groups[spec.label]).items()
                              if k == "askr front"]
                fronts[spec.label] = len(front_pids)
                if spec.pin is not None:
                    cpu.pin(groups[spec.label], "askr front", spec.pin)
        for url in args.url:
            for label, base in bases.items():
                print(f"warm-up {label} {url} ({WARMUP_SECONDS} s)", file=sys.stderr)
                run_wrk(base + url, args.threads, args.connections, WARMUP_SECONDS)
        samples: dict[tuple[str, str], list[WrkResult]] = {}
        for url in args.url:
            for n in range(args.rounds):
                for label, base in bases.items():  # alternate, so all see the same machine state
                    print(f"measuring {label} {url} round {n + 1}/{args.rounds} ({args.duration} s)",
                          file=sys.stderr)
                    result = metered_wrk(base + url, groups[label], args.threads, args.connections,
                                         args.duration)
                    samples.setdefault((label, url), []).append(result)
        results = {key: median_result(runs) for key, runs in samples.items()}
        full_speed = {url: results[(NGINX_LABEL, url)].rps for url in args.url} if args.equal_load else {}
        equal = equal_loads(bases, full_speed, args.equal_load, args.rounds, args.duration, tmp,
                            args.connections)
    return (render_table(results, list(bases), params, args.nginx_processes, fronts)
            + render_equal_load(equal, list(bases), f"h2load --h1 -c{args.connections}", args.rounds,
                                args.duration))


def equal_load(bases: dict[str, str], url: str, rate: float, rounds: int, duration: int, tmp: Path,
               clients: int, streams: int = 1, h1: bool = True) -> dict[str, H2Result]:
    """Every target offered `rate` req/s of `url` by h2load (HTTP/1.1 keep-alive unless `h1` is
    False), alternating for the rounds; per target the round with the median p99."""
    def one_load(base: str, seconds: int) -> H2Result:
        return run_h2load(base + url, clients, seconds, tmp / "h2load.log", streams=streams, rate=rate, h1=h1)

    print(f"equal load: {url} at {rate:,.0f} req/s", file=sys.stderr)
    runs = alternate(bases, one_load, rounds, duration, warmup=1)
    return {label: sorted(r, key=lambda x: x.p99_ms)[len(r) // 2] for label, r in runs.items()}


def equal_loads(bases: dict[str, str], full_speed: dict[str, float], fractions: list[float], rounds: int,
                duration: int, tmp: Path, clients: int, streams: int = 1,
                h1: bool = True) -> dict[tuple[str, float], dict[str, H2Result]]:
    """equal_load() for each URL at each fraction of its nginx+fpm full-speed req/s."""
    return {(url, f * rps): equal_load(bases, url, f * rps, rounds, duration, tmp, clients, streams, h1)
            for url, rps in full_speed.items() for f in fractions}


def render_equal_load(equal: dict[tuple[str, float], dict[str, H2Result]], targets: list[str], command: str,
                      rounds: int, duration: int, reference: str = NGINX_LABEL) -> str:
    if not equal:
        return ""
    rows = ["", f"Latency at the same offered load: `{command} --rps` gives every target the same req/s, "
            f"a fraction of {reference}'s median req/s above, spread over the connections at a fixed "
            f"pace; {rounds} alternating rounds of {duration} s, the round with the median p99. At full "
            "speed (above) the faster stack runs the machine harder and the load generator, on the same "
            "cores, waits for CPU too; here both carry the same traffic.", "",
            "| URL | offered req/s | target | served req/s | p50 ms | p99 ms | errors "
            f"| p99 ÷ {reference}'s |",
            "|---|---:|---|---:|---:|---:|---:|---:|"]
    for (url, rate), by_target in equal.items():
        base = by_target.get(reference)
        for target in targets:
            r = by_target[target]
            ratio = f"{r.p99_ms / base.p99_ms:.2f}" if target != reference and base and base.p99_ms else ""
            rows.append(f"| `{url}` | {rate:,.0f} | {target} | {r.rps:,.0f} | {r.p50_ms:.2f} | "
                        f"{r.p99_ms:.2f} | {r.errors} | {ratio} |")
    return "\n".join(rows) + "\n"


def alternate(bases: dict[str, str], measure: Callable[[str, int], T], rounds: int,
              duration: int, warmup: int = WARMUP_SECONDS) -> dict[str, list[T]]:
    """Warm every target up (`warmup` s), then measure them in turn for `rounds` rounds (so all
    see the same machine state); `measure(base_url, seconds)` runs one load."""
    for label, base in bases.items():
        print(f"warm-up {label} ({warmup} s)", file=sys.stderr)
        measure(base, warmup)
    samples: dict[str, list[T]] = {}
    for n in range(rounds):
        for label, base in bases.items():
            print(f"measuring {label} round {n + 1}/{rounds} ({duration} s)", file=sys.stderr)
            samples.setdefault(label, []).append(measure(base, duration))
    return samples


def median_result(runs: list[WrkResult]) -> WrkResult:
    """The run with the median req/s (its latencies with it); errors summed over all runs."""
    ordered = sorted(runs, key=lambda r: r.rps)
    mid = ordered[len(ordered) // 2]
    socket_errors: dict[str, int] = {}
    for r in runs:
        for k, v in r.socket_errors.items():
            socket_errors[k] = socket_errors.get(k, 0) + v
    spread = f"{ordered[0].rps:,.0f}-{ordered[-1].rps:,.0f}"
    return WrkResult(mid.rps, mid.p50_ms, mid.p99_ms, sum(r.non2xx for r in runs), socket_errors, spread,
                     mid.requests, mid.cost)


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


def run_bench(prefix: str, results: Path | None, measure: Callable[[Path], str]) -> int:
    """What every bench's main() does around `measure(tmp)`, which returns the report: SIGTERM
    unwinds through the finally blocks that stop the servers, the temporary directory goes
    afterwards, a BenchError is a one-line error (exit 1), and the report is printed and written
    to `results` (None: printed only). The exit status."""
    signal.signal(signal.SIGTERM, _terminate)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        report = measure(tmp)
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(report)
    if results is not None:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(report)
        print(f"(also written to {results.relative_to(REPO_ROOT)})", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def measure(tmp: Path) -> str:
        preflight(args.only, bool(args.equal_load))
        return bench(args, tmp)

    return run_bench("askr-bench-", RESULTS, measure)


if __name__ == "__main__":
    sys.exit(main())
