"""`askr` command line: thin; everything it does lives in config, master and front."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from askr import __version__, privileges
from askr import config as config_mod
from askr import log as log_setup
from askr.config import ConfigError

log = logging.getLogger("askr.master")

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="askr", description="A production application server for PHP apps.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a PHP app (default: ./public, else the bundled example)")
    serve.add_argument("--config", metavar="FILE", help="askr.toml to read")
    serve.add_argument("--root", metavar="DIR", help="document root ([server] root)")
    serve.add_argument("--listen", metavar="HOST:PORT", action="append",
                       help="address to accept HTTP on ([server] listen); repeatable")
    serve.add_argument("--workers", metavar="N|auto", help="number of PHP workers ([server] workers)")
    serve.add_argument("--max-body-size", metavar="SIZE", help="largest request body, e.g. 64M")
    serve.add_argument("--worker", metavar="SCRIPT", help="worker mode with this script ([worker] script)")
    serve.add_argument("--admin-listen", metavar="HOST:PORT", help="admin API address ([admin] listen)")
    serve.add_argument("--canary", action="store_true", help="reloads start with a canary ([reload] canary)")
    serve.add_argument("--max-requests", metavar="N", type=int,
                       help="recycle a PHP worker after N requests ([server] max_requests)")
    serve.add_argument("--fronts", metavar="N|auto", help="HTTP front processes ([server] fronts)")
    serve.add_argument("--user", metavar="NAME", help="run fronts and PHP as this user ([server] user)")
    serve.add_argument("--tls-cert", metavar="PEM", help="serve https with this certificate ([tls] cert)")
    serve.add_argument("--tls-key", metavar="PEM", help="the certificate's private key ([tls] key)")
    serve.add_argument("--watch", metavar="GLOB", nargs="*",
                       help="development: rolling reload when a file matching a GLOB changes (relative "
                       "to the app base; default: " + " ".join(config_mod.DEFAULT_WATCH) + ") ([dev] watch)")
    for name, text in (("status", "show the running server's state (admin API)"),
                       ("reload", "rolling reload of the running server, and wait for its outcome"),
                       ("drain", "take the running server out of its load balancer: readiness "
                        "503 draining, while it still serves what arrives"),
                       ("undrain", "put the running server back: readiness follows its workers again")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--config", metavar="FILE", help="askr.toml naming [admin] listen and token")
        cmd.add_argument("--admin", metavar="HOST:PORT", help="admin API address (default: from the "
                         "config, else 127.0.0.1:9000)")
        cmd.add_argument("--token", help="admin bearer token (default: from the config)")
        if name == "status":
            cmd.add_argument("--json", action="store_true", help="print the raw JSON")
        elif name == "drain":
            cmd.add_argument("--wait", action="store_true", help="return once the balancer has stopped "
                             "sending: no request for [admin] drain_quiet and none in flight")
            cmd.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                             help="with --wait: give up after this long, exit 1 (default 300)")
        elif name == "reload":
            cmd.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
            cmd.add_argument("--canary", action="store_true", help="start with a canary worker")
    check = sub.add_parser("config-check",
                           help="validate an askr.toml without starting (exit 0 valid, 1 not)")
    check.add_argument("file", metavar="FILE", help="the askr.toml to check")
    doctor = sub.add_parser("doctor", help="pre-deploy checks of this machine: PHP, the worker program, "
                            "OPcache in a real worker, limits (exit 1 on any fail)")
    doctor.add_argument("--config", metavar="FILE", help="also check this askr.toml and use its [worker] ini")
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    sub.add_parser("version", help="print the version")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.root:
        out["server.root"] = args.root
    if args.listen:
        out["server.listen"] = args.listen
    if args.workers:
        out["server.workers"] = int(args.workers) if args.workers.isdigit() else args.workers
    if args.max_body_size:
        out["limits.max_body_size"] = args.max_body_size
    if args.worker:
        out["worker.script"] = args.worker
    if args.max_requests is not None:
        out["server.max_requests"] = args.max_requests
    if args.admin_listen:
        out["admin.listen"] = args.admin_listen
    if args.user:
        out["server.user"] = args.user
    if args.fronts:
        out["server.fronts"] = int(args.fronts) if args.fronts.isdigit() else args.fronts
    if args.tls_cert:
        out["tls.cert"] = args.tls_cert
    if args.tls_key:
        out["tls.key"] = args.tls_key
    if args.canary:
        out["reload.canary"] = True
    if args.watch is not None:  # --watch alone: the default globs
        out["dev.watch"] = args.watch or True
    return out


def serve(args: argparse.Namespace) -> int:
    from askr.master.arbiter import Arbiter

    try:
        cfg = config_mod.load(args.config, _overrides(args))
        refusal = privileges.root_problem(cfg)
        if refusal:
            raise ConfigError(refusal)
        log_setup.setup(cfg.log.level, cfg.log.format)
        arbiter = Arbiter(cfg)
        return asyncio.run(arbiter.run())
    except ConfigError as e:
        print(f"askr: config error: {e}", file=sys.stderr)
        return EXIT_CONFIG


def config_check(path: str) -> int:
    from askr import preflight

    _, problems = preflight.config_check(path)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{path}: ok")
    return 1 if problems else 0


def doctor(args: argparse.Namespace) -> int:
    from askr import preflight

    checks = preflight.doctor(args.config)
    print(preflight.render(checks, args.json))
    return 1 if any(c.status == "fail" for c in checks) else 0


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    log_setup.setup()
    if args.command == "version":
        print(f"askr {__version__}")
        sys.exit(0)
    if args.command == "config-check":
        sys.exit(config_check(args.file))
    if args.command == "doctor":
        sys.exit(doctor(args))
    if args.command in ("status", "reload", "drain", "undrain"):
        from askr.admin import client

        try:
            sys.exit(client.main(args))
        except ConfigError as e:
            print(f"askr: config error: {e}", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
    sys.exit(serve(args))
