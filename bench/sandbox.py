"""What the PHP sandbox costs: askr with `[sandbox]` on (the default) and off, same run, alternating.

Usage (from the repository root):

    .venv/bin/python bench/sandbox.py [--workers 2] [--duration 10] [--connections 32] [--rounds 3]

Two URLs, each served by two otherwise identical askr servers:

- `/hello.php` from bench/docroot (classic mode: every request runs the script);
- `/api/json` of the Laravel fixture (tests/laravel) in worker mode.

The sandbox is applied once per PHP worker, after fork; a request then pays only for what the
kernel checks on each system call (the seccomp filter) and on each path it opens (Landlock), so the
expected difference is within noise. The table reports req/s, latency and CPU µs per request of
the PHP workers and fronts, from /proc (bench/cpu.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from contextlib import ExitStack
from pathlib import Path

from run import (
    DOCROOT,
    GROUPS,
    REPO_ROOT,
    BenchError,
    WrkResult,
    alternate,
    load_arguments,
    median_result,
    metered_wrk,
    run_bench,
    start_askr,
)

sys.path.insert(0, str(REPO_ROOT / "tests" / "integration"))
from laravel_fixture import make_laravel_app

WORKER_SCRIPT = REPO_ROOT / "examples" / "laravel-worker.php"
RESULTS = REPO_ROOT / "bench" / "results" / "sandbox.md"
ON, OFF = "sandbox on (default)", "sandbox off"


def configs(tmp: Path, name: str, base: str = "") -> dict[str, Path]:
    """The two askr.toml files of a pair: `base` (an app's own config) as it is, and the same with
    `[sandbox] enabled = false`."""
    on, off = tmp / f"{name}-on.toml", tmp / f"{name}-off.toml"
    on.write_text(base)
    if "[sandbox]" in base:
        off.write_text(base.replace("[sandbox]", "[sandbox]\nenabled = false", 1))
    else:
        off.write_text(base + "\n[sandbox]\nenabled = false\n")
    return {ON: on, OFF: off}


def start_pair(stack: ExitStack, tmp: Path, name: str, workers: int, root: Path, url: str,
               extra: tuple[str, ...] = (), base_config: str = ""
               ) -> tuple[dict[str, str], dict[str, set[int]]]:
    """Start the sandboxed and the unsandboxed askr for one URL (each once `url` answers 200:
    start_askr waits for it); their base URLs and groups."""
    bases, groups = {}, {}
    for label, config in configs(tmp, name, base_config).items():
        bases[label] = start_askr(stack, tmp, workers, root=root, ready_path=url,
                                  extra=("--config", str(config), *extra), name=f"{name}-{config.stem}")
        groups[label] = set(GROUPS) - set().union(*groups.values())
    return bases, groups


def measure_pair(args: argparse.Namespace, bases: dict[str, str], groups: dict[str, set[int]],
                 url: str) -> dict[str, WrkResult]:
    label_of = {base: label for label, base in bases.items()}

    def measure(base: str, seconds: int) -> WrkResult:
        return metered_wrk(base + url, groups[label_of[base]], args.threads, args.connections, seconds)

    samples = alternate(bases, measure, args.rounds, args.duration)
    return {label: median_result(runs) for label, runs in samples.items()}


def _cost(r: WrkResult, kind: str) -> str:
    return f"{r.cost.get(kind):.1f}" if r.cost else "-"


def render(results: dict[str, dict[str, WrkResult]], args: argparse.Namespace, load: float) -> str:
    rows = [f"askr with and without `[sandbox]` · nproc {os.cpu_count()} · load avg {load:.2f} at start · "
            f"{args.workers} PHP workers · `wrk -t{args.threads} -c{args.connections} -d{args.duration}s`, "
            f"median of {args.rounds} alternating rounds",
            "",
            "| URL | target | req/s (median) | range | p50 ms | p99 ms | errors | PHP worker µs/req "
            "| front µs/req | ÷ sandbox off |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for url, pair in results.items():
        off = pair[OFF].rps
        for label, r in pair.items():
            rows.append(f"| {url} | {label} | {r.rps:,.0f} | {r.spread} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
                        f"{r.errors_text()} | {_cost(r, 'askr PHP worker')} | {_cost(r, 'askr front')} | "
                        f"{r.rps / off:.3f}x |")
    return "\n".join(rows) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="askr with the PHP sandbox on vs off")
    load_arguments(ap, "PHP workers", connections=32)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def measure(tmp: Path) -> str:
        load = os.getloadavg()[0]
        results: dict[str, dict[str, WrkResult]] = {}
        if shutil.which("wrk") is None:
            raise BenchError("missing wrk (Debian: apt-get install wrk)")
        app = make_laravel_app(tmp / "app")
        # One URL at a time: only the pair being measured is running. The Laravel app runs with
        # its own askr.toml (what it may write: storage/, bootstrap/cache/, database/).
        with ExitStack() as stack:
            bases, groups = start_pair(stack, tmp, "hello", args.workers, DOCROOT, "/hello.php")
            results["/hello.php"] = measure_pair(args, bases, groups, "/hello.php")
        with ExitStack() as stack:
            bases, groups = start_pair(stack, tmp, "laravel", args.workers, app / "public", "/api/json",
                                         extra=("--worker", str(WORKER_SCRIPT)),
                                         base_config=(app / "askr.toml").read_text())
            results["/api/json (Laravel, worker mode)"] = measure_pair(args, bases, groups, "/api/json")
        return render(results, args, load)

    return run_bench("askr-bench-sandbox-", RESULTS, measure)


if __name__ == "__main__":
    sys.exit(main())
