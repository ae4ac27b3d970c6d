"""`askr status`, `askr reload`, `askr drain` and `askr undrain`: the admin API from the command line."""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from typing import Any

from askr import config as config_mod

POLL_INTERVAL = 0.5


class AdminError(Exception):
    pass


def _endpoint(args: argparse.Namespace) -> tuple[str, str | None]:
    listen, token = "127.0.0.1:9000", None
    if args.config:
        cfg = config_mod.load(args.config)
        listen, token = str(cfg.admin.listen), cfg.admin.token
    if args.admin:
        listen = args.admin
    return f"http://{listen}", args.token or token


def call(base: str, token: str | None, method: str, path: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(base + path, method=method, data=b"" if method == "POST" else None)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except (urllib.error.URLError, OSError) as e:
        raise AdminError(f"cannot reach the admin API at {base}: {getattr(e, 'reason', e)} "
                         "(is askr running? see [admin] listen)") from None


def expect(base: str, token: str | None, method: str, path: str, status: int = 200) -> dict[str, Any]:
    """`call`, raising AdminError (with the server's reason) unless it answers `status`."""
    code, body = call(base, token, method, path)
    if code != status:
        raise AdminError(f"{method} {path.partition('?')[0]}: HTTP {code}: {body.get('error', body)}")
    return body


def render(status: dict[str, Any]) -> str:
    traffic = status["traffic"]
    lines = [
        f"askr {status['version']}, up {status['uptime_seconds']:.0f} s, {status['mode']} mode, "
        f"PHP generation {status['generation']}",
        f"state: {status['state']}" + (" (drained by askr drain)" if status["draining"] and
                                       status["state"] != "draining" else ""),
        f"traffic: {traffic['in_flight']} requests in flight, none new for {traffic['idle_seconds']:.1f} s",
        f"workers: {status['workers_ready']} ready of {status['workers_configured']} "
        f"({status['busy']} busy, {status['idle']} idle), {status['restarts']} restarts",
    ]
    recycled = status.get("recycled")
    if recycled:
        lines.append("recycled: " + " · ".join(f"{reason} {n}" for reason, n in recycled.items()))
    reload = status.get("last_reload")
    if reload:
        lines.append(f"last reload ({reload['requested_by']}): {reload['outcome']}")
    for name, failing in status.get("failing", {}).items():
        lines.append(f"{name}: {failing['failures']} failed starts in a row: {failing['last_error']}")
    lines.extend(_render_requests(status))
    lines.append(f"{'worker':8} {'pid':>8} {'gen':>4} {'state':9} {'busy':5} {'requests':>9} {'rss':>9} "
                 f"{'anon':>9}{LAST_REQUEST_HEAD}")
    for w in status["workers"]:
        rss, anon = (f"{w[key] / 1024:.1f}M" if w.get(key) else "-" for key in ("rss_kib", "rss_anon_kib"))
        lines.append(f"php#{w['position']:<4} {w['pid']:>8} {w['generation']:>4} {w['state']:9} "
                     f"{'yes' if w['busy'] else 'no':5} {w['requests']:>9} {rss:>9} {anon:>9}"
                     f"{_last_request(w)}")
    lines.extend(_render_jobs(status))
    return "\n".join(lines)


LAST_REQUEST_HEAD = f"  {'last req':>9} {'cpu':>8} {'peak mem':>9}"


def _render_requests(status: dict[str, Any]) -> list[str]:
    """php-fpm's pool counters (listen queue, max listen queue, max children reached, slow
    requests, accepted conn) on one line, with the requests whose backtrace the slowlog logged."""
    if "requests_waiting" not in status:
        return []
    slowlogged = status.get("slowlogged_requests")
    return [f"requests: {status['requests_waiting']} waiting for a worker (at most "
            f"{status['max_requests_waiting']}), all workers busy {status['all_workers_busy']} times, "
            f"{status['slow_requests']} slow (>= {status['slow_request_seconds']:g} s), "
            + (f"{slowlogged} slowlogged, " if slowlogged is not None else "")
            + f"{status['accepted_connections']} connections accepted"]


def _last_request(worker: dict[str, Any]) -> str:
    """The worker's latest finished request (from /api/status?full): duration, CPU, PHP's peak."""
    if worker.get("last_request_seconds") is None:
        return f"  {'-':>9} {'-':>8} {'-':>9}"
    last, cpu = _duration(worker["last_request_seconds"]), _duration(worker["last_request_cpu_seconds"])
    return f"  {last:>9} {cpu:>8} {worker['last_request_peak_bytes'] / 1048576:>8.1f}M"


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else f"{seconds:.2f}s"


def _render_jobs(status: dict[str, Any]) -> list[str]:
    lines = []
    queue = status.get("queue_workers") or []
    if queue:
        lines.append(f"{'queue':8} {'pid':>8} {'gen':>4} {'state':10} {'restarts':>8}  started / last exit")
    for q in queue:
        started = time.strftime("%H:%M:%S", time.localtime(q["started_at"])) if q["started_at"] else "-"
        lines.append(f"{q['name']:8} {q['pid'] or '-':>8} {q['generation'] or '-':>4} {q['state']:10} "
                     f"{q['restarts']:>8}  {started} / {q['last_exit'] or '-'}")
    scheduler = status.get("scheduler")
    if scheduler:
        last = scheduler["last_run"]
        if last:
            when = time.strftime("%H:%M:%S", time.localtime(last["started_at"]))
            outcome = "ok" if last["ok"] else f"FAILED (exit status {last['exit_status']})"
            text = f"last run {when}, {outcome}, {last['duration_seconds']:.2f} s"
        else:
            text = "no run yet"
        if scheduler["running"]:
            nxt = f"running now (pid {scheduler['pid']})"
        elif scheduler["next_run_at"]:
            nxt = time.strftime("next run %H:%M:%S", time.localtime(scheduler["next_run_at"]))
        else:
            nxt = "stopped"
        lines.append(f"scheduler: every {scheduler['interval_seconds']:g} s; {text}; "
                     f"{scheduler['runs']} runs, {scheduler['failed_runs']} failed; {nxt}")
    return lines


def drain(base: str, token: str | None, args: argparse.Namespace) -> int:
    """askr drain [--wait]: readiness goes 503 at once; with --wait, return once the balancer
    has stopped sending (the server's `traffic.quiet`: no request for [admin] drain_quiet and
    none in flight)."""
    print(f"state: {expect(base, token, 'POST', '/api/drain')['state']}")
    if not args.wait:
        return 0
    started = time.monotonic()
    deadline = started + args.timeout
    while True:
        status = expect(base, token, "GET", "/api/status")
        traffic = status["traffic"]
        if not status["draining"] and status["state"] != "stopping":
            raise AdminError("undrained while waiting (askr undrain, or POST /api/undrain)")
        if traffic["quiet"]:
            print(f"drained: no request for {traffic['idle_seconds']:.1f} s and none in flight "
                  f"(waited {time.monotonic() - started:.1f} s)")
            return 0
        if time.monotonic() >= deadline:
            raise AdminError(
                f"still receiving traffic after --timeout {args.timeout:g} s: {traffic['in_flight']} "
                f"requests in flight, none new for {traffic['idle_seconds']:.1f} s (quiet needs "
                f"{traffic['quiet_after_seconds']:g} s, [admin] drain_quiet); is the load balancer "
                "probing /api/health/ready? the host stays drained")
        time.sleep(POLL_INTERVAL)


def main(args: argparse.Namespace) -> int:
    base, token = _endpoint(args)
    try:
        if args.command == "drain":
            return drain(base, token, args)
        if args.command == "undrain":
            print(f"state: {expect(base, token, 'POST', '/api/undrain')['state']}")
            return 0
        if args.command == "status":
            body = expect(base, token, "GET", "/api/status?full")
            print(json.dumps(body, indent=1) if args.json else render(body))
            return 0
        body = expect(base, token, "POST", "/api/reload?canary=1" if args.canary else "/api/reload", 202)
        print(f"reload {body['reload']}")
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)
            _, status = call(base, token, "GET", "/api/status")
            last = status.get("last_reload") or {}
            if not status.get("reloading") and last.get("finished_at"):
                print(f"reload {last['outcome']}; PHP generation {status['generation']}")
                return 0 if last["outcome"] == "complete" else 1
        raise AdminError(f"the reload did not finish within {args.timeout:.0f} s")
    except AdminError as e:
        print(f"askr: {e}")
        return 1
