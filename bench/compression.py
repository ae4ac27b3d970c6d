"""[compression]: what each codec and level costs and saves on real pages, and what it does to req/s.

Usage (from the repository root):

    .venv/bin/python bench/compression.py [--duration 5] [--connections 32] [--no-wrk]

Part 1 (no server, one core): for each page and for gzip, brotli and zstd at several levels, the
compressed size and the CPU time per KB of input (best of 3 samples of `process_time`), the whole body
at once (as askr compresses a complete response or a static file) and as 4 KB flushes (as it
compresses a PHP response that streams). The pages:

- a real Laravel HTML page: the 404 page the Laravel fixture (tests/laravel, Debian's
  php-laravel-framework) renders, served by askr in classic mode;
- Debian's python3 policy manual (/usr/share/doc/python3/python-policy.html): a long document;
- Debian's jQuery (/usr/share/javascript/jquery/jquery.min.js): minified JavaScript;
- Sphinx's basic.css from the same package: a stylesheet.

Part 2 (wrk against askr): requests/s for a 20 KB HTML page (the start of the policy manual), from
PHP (`readfile`) and as a static file (from the hot-file cache), without compression and with each
codec at askr's default level, plus the bytes per response on the wire and the CPU µs per request
of askr's fronts and PHP workers (from /proc, as run.py's cost table). Short single runs: req/s
moves with whatever else the machine runs; the CPU per request is the steadier figure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import brotli
import cpu
import zstandard
from run import GROUPS, REPO_ROOT, WRK, BenchError, http_get, parse_wrk, run_bench, start_askr

sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests" / "integration"))
from laravel_fixture import make_laravel_app

from askr.front.compression import Encoder, zstd_stream_compressor

POLICY = Path("/usr/share/doc/python3/python-policy.html")
JQUERY = Path("/usr/share/javascript/jquery/jquery.min.js")
CSS = Path("/usr/share/doc/python3/_static/basic.css")
LEVELS = {"gzip": (1, 5, 6, 9), "br": (1, 4, 5, 11), "zstd": (1, 3, 9, 19)}
DEFAULTS = {"gzip": 5, "br": 4, "zstd": 3}
FLUSH = 4096
RESULTS = REPO_ROOT / "bench" / "results" / "compression.md"


def whole(coding: str, level: int) -> Callable[[bytes], bytes]:
    if coding == "gzip":
        return lambda data: zlib.compress(data, level, wbits=31)
    if coding == "br":
        return lambda data: brotli.compress(data, quality=level)
    compressor = zstandard.ZstdCompressor(level=level)
    return compressor.compress


def streamed(coding: str, level: int) -> Callable[[bytes], bytes]:
    """A fresh encoder per response, except zstd's compressor, which a front reuses (as here)."""
    zstd = zstd_stream_compressor(level) if coding == "zstd" else None

    def run(data: bytes) -> bytes:
        encoder = Encoder(coding, level, zstd)
        parts = [encoder.chunk(data[i:i + FLUSH]) for i in range(0, len(data), FLUSH)]
        parts.append(encoder.finish())
        return b"".join(parts)
    return run


def measure(fn: Callable[[bytes], bytes], data: bytes) -> tuple[int, float]:
    """(compressed size, CPU µs per KB of input): the best of 3 samples, each repeating the call
    for at least 50 ms of CPU (one call of a few µs is below process_time's resolution)."""
    size = len(fn(data))
    best = float("inf")
    for _ in range(3):
        calls = 0
        start = time.process_time()
        while (spent := time.process_time() - start) < 0.05 or not calls:
            fn(data)
            calls += 1
        best = min(best, spent / calls)
    return size, best * 1e6 / (len(data) / 1024)


def laravel_page(stack: ExitStack, tmp: Path) -> bytes:
    app = make_laravel_app(tmp / "laravel")
    base = start_askr(stack, tmp, 1, root=app / "public", ready_path="/api/json", name="askr-laravel")
    status, body = http_get(base + "/no-such-page", timeout=30)
    if status != 404 or b"<html" not in body.lower():
        raise BenchError(f"the Laravel fixture's 404 page: HTTP {status} {body[:200]!r}")
    return body


def codec_table(pages: dict[str, bytes]) -> str:
    lines = ["| page | size | codec | level | bytes | saved | µs/KB whole | µs/KB 4 KB flushes "
             "| bytes flushed |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for name, data in pages.items():
        for coding, levels in LEVELS.items():
            for level in levels:
                size, cost = measure(whole(coding, level), data)
                ssize, scost = measure(streamed(coding, level), data)
                mark = " (default)" if DEFAULTS[coding] == level else ""
                lines.append(f"| {name} | {len(data):,} | {coding} | {level}{mark} | {size:,} | "
                             f"{100 * (1 - size / len(data)):.0f}% | {cost:.1f} | {scost:.1f} | {ssize:,} |")
    return "\n".join(lines)


def wrk(url: str, accept: str | None, duration: int, connections: int,
        meter: cpu.Meter | None = None) -> tuple[float, float, cpu.Cost | None]:
    """(requests/s, bytes per response, CPU µs per request by process kind) from one wrk run."""
    argv = [WRK, "-t", "2", "-c", str(connections), "-d", f"{duration}s", "--latency"]
    if accept:
        argv += ["-H", f"Accept-Encoding: {accept}"]
    if meter:
        meter.start()
    done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration + 30, check=False)
    spent = meter.stop() if meter else None
    result = parse_wrk(done.stdout) if done.returncode == 0 else None
    if result is None or result.errors:
        raise BenchError(f"wrk: {done.stdout}{done.stderr}")
    transfer = done.stdout.split("Transfer/sec:")[1].split()[0]
    unit = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[transfer.lstrip("0123456789.")]
    cost = cpu.Cost.of(spent, result.requests) if spent is not None else None
    return result.rps, float(transfer.rstrip("KMGB")) * unit / result.rps, cost


def throughput_table(tmp: Path, stack: ExitStack, duration: int, connections: int) -> str:
    root = tmp / "docroot"
    root.mkdir()
    html = POLICY.read_bytes()
    page = html[:html.index(b"\n", 20 * 1024) + 1]
    (root / "page.html").write_bytes(page)
    (root / "page.php").write_text("<?php header('Content-Type: text/html; charset=utf-8'); "
                                   "readfile(__DIR__ . '/page.html');\n")
    cfg = tmp / "compression.toml"
    cfg.write_text("[compression]\nenabled = true\n")
    base = start_askr(stack, tmp, 2, root=root, ready_path="/page.php", name="askr-compression",
                      extra=("--config", str(cfg)))
    meter = cpu.Meter({GROUPS[-1]})
    lines = [f"| response ({len(page):,} B of HTML) | Accept-Encoding | req/s | bytes/response "
             "| front CPU µs/req | PHP CPU µs/req |", "|---|---|---:|---:|---:|---:|"]
    for target, label in (("/page.php", "PHP (readfile)"), ("/page.html", "static (hot-file cache)")):
        for accept in (None, "gzip", "br", "zstd"):
            wrk(base + target, accept, 1, connections)  # warm-up
            rps, per, cost = wrk(base + target, accept, duration, connections, meter)
            front = cost.get("askr front") if cost else 0.0
            php = cost.get("askr PHP worker") if cost else 0.0
            lines.append(f"| {label} | {accept or '(none)'} | {rps:,.0f} | {per:,.0f} | {front:.0f} "
                         f"| {php:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-wrk", action="store_true", help="only the codec table")
    args = parser.parse_args(argv)

    def measure(tmp: Path) -> str:
        with ExitStack() as stack:
            pages = {"Laravel 404 page": laravel_page(stack, tmp), "python-policy.html": POLICY.read_bytes(),
                     "jquery.min.js": JQUERY.read_bytes(), "basic.css": CSS.read_bytes()}
            report = ["## CPU and bytes per codec and level", "", codec_table(pages)]
            if not args.no_wrk:
                report += ["", "## req/s with and without compression", "",
                           throughput_table(tmp, stack, args.duration, args.connections)]
        return "\n".join(report) + "\n"

    return run_bench("askr-bench-compression-", RESULTS, measure)


if __name__ == "__main__":
    sys.exit(main())
