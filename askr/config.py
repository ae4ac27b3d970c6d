"""askr.toml: the one home of every setting, its type, default and documentation.

Each setting is declared once (in SETTINGS); validation, defaults, CLI overrides and docs all
derive from that table. Problems raise ConfigError naming the file, the key and the fix; the CLI
turns that into exit code 2.
"""

from __future__ import annotations

import difflib
import grp
import ipaddress
import json
import os
import pwd
import re
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from askr.certificates import TlsError, check_pair
from askr.mime import CHARSET_TYPES
from askr.paths import EXAMPLE_ROOT


class ConfigError(Exception):
    """A setting is wrong; the message says where and how to fix it."""


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


Parser = Callable[[Any], Any]


def _typed(type_name: str, to_input: Callable[[Any], Any] | None = None) -> Callable[[Parser], Parser]:
    """Name the kind of value a parser takes, for the reference table (Setting.type_name), and,
    where the generic one will not do, how its result is written back in a form it accepts."""
    def mark(parse: Parser) -> Parser:
        parse.type_name = type_name  # type: ignore[attr-defined]
        parse.to_input = to_input  # type: ignore[attr-defined]
        return parse
    return mark


_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]?)B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


@_typed('size')
def parse_size(value: Any) -> int:
    """512, "512K", "64M", "1G" -> bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError('expected a size such as 512K, 8M or 1G')
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


@_typed('address')
def parse_listen(value: Any) -> Listen:
    """ "127.0.0.1:8080", "[::1]:8080", ":8080" (all interfaces is never implied: use 0.0.0.0)."""
    if not isinstance(value, str):
        raise ValueError('expected "HOST:PORT", e.g. "127.0.0.1:8080"')
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError('expected "HOST:PORT", e.g. "127.0.0.1:8080"')
    host = host.strip("[]") or "127.0.0.1"
    num = int(port)
    if not 0 <= num <= 65535:
        raise ValueError("the port must be between 0 and 65535")
    return Listen(host, num)


def _size_at_most(limit: int, unit: str) -> Callable[[Any], int]:
    @_typed("size")
    def check(value: Any) -> int:
        size = parse_size(value)
        if size > limit:
            raise ValueError(f"at most {unit}")
        return size

    return check


@_typed('address or list')
def _listen_list(value: Any) -> tuple[Listen, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("give at least one address")
    return tuple(parse_listen(v) for v in items)


@_typed('integer or "auto"')
def _workers(value: Any) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError('expected a positive integer or "auto"')
    return value


MAX_FRONTS = 64  # MAX_FRONTS in csrc/askr_chan.h: a queue message names its front in one byte


def auto_fronts(cpus: int) -> int:
    """`fronts = "auto"`: one front per core, as nginx's `worker_processes auto` (measured in
    docs/configuration.md: on 2 cores, 2 fronts beat 1 by 1.3-1.7x on every benchmark)."""
    return max(1, min(MAX_FRONTS, cpus))


@_typed('integer or "auto"')
def _fronts(value: Any) -> int:
    if value == "auto":
        return auto_fronts(os.cpu_count() or 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FRONTS:
        raise ValueError(f'expected an integer from 1 to {MAX_FRONTS}, or "auto"')
    return value


def _int(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    @_typed("integer")
    def check(value: Any) -> int:
        if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
                or (maximum is not None and value > maximum)):
            raise ValueError(f"expected an integer >= {minimum}" if maximum is None
                             else f"expected an integer from {minimum} to {maximum}")
        return value

    return check


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """10, 0.5, "5s", "500ms", "2m", "1h" -> seconds (a bare number is seconds)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(str(value)) if isinstance(value, str) else None
    if not m:
        raise ValueError('expected a duration: seconds (10, 0.5) or a string with a unit '
                         '("5s", "500ms", "2m")')
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


@_typed('seconds')
def _seconds(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("expected a number of seconds > 0, e.g. 10 or 0.5")
    return seconds


@_typed('seconds')
def _seconds_or_zero(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds < 0:
        raise ValueError('expected a number of seconds >= 0, e.g. 0, 4 or "4s"')
    return seconds


@_typed('URL path or ""')
def _url_path(value: Any) -> str:
    """An exact path the front answers itself ("" = off)."""
    if not isinstance(value, str) or (value and (not value.startswith("/") or any(
            c in value for c in "?# ") or not value.isprintable())):
        raise ValueError('expected "" (off) or a path starting with /, without ?, # or spaces, '
                         'e.g. "/askr-health"')
    return value


@_typed('boolean')
def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


@_typed('string')
def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


@_typed('list of strings')
def _str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError('expected a list of strings, e.g. ["--tries=3", "--queue=high,default"]')
    return tuple(value)


@_typed('list of CIDRs')
def _cidr_list(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_network(str(item), strict=False)))
        except ValueError:
            raise ValueError(f'{item!r} is not an address or CIDR; expected e.g. '
                             '["10.0.0.0/8", "127.0.0.1"]') from None
    return tuple(out)


def _choice(*options: str) -> Callable[[Any], str]:
    @_typed("choice")
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError("expected " + " or ".join(f'"{o}"' for o in options))
        return value

    return check


# [compression] algorithms: the codings askr can produce (Accept-Encoding names).
CODINGS = ("zstd", "br", "gzip")
# [compression] types: text, and the structured text formats browsers fetch.
COMPRESSIBLE_TYPES = (
    "text/*", "application/javascript", "application/json", "application/ld+json",
    "application/manifest+json", "application/xml", "application/xhtml+xml", "application/rss+xml",
    "application/atom+xml", "application/wasm", "image/svg+xml", "image/x-icon", "image/bmp",
    "font/ttf", "font/otf", "application/vnd.ms-fontobject",
)


@_typed("list of codings")
def _codings(value: Any) -> tuple[str, ...]:
    if (not isinstance(value, list) or not all(v in CODINGS for v in value)
            or len(set(value)) != len(value)):
        raise ValueError('expected a list of distinct codings among "zstd", "br" and "gzip", e.g. '
                         '["br", "gzip"] ([] compresses nothing; precompressed files are still served)')
    return tuple(value)


@_typed("list of types")
def _type_patterns(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
            isinstance(v, str) and re.fullmatch(r"[\w.+-]+/(?:\*|[\w.+-]+)", v) for v in value):
        raise ValueError('expected a list of "type/subtype" or "type/*", e.g. ["text/*", "application/json"]')
    return tuple(v.lower() for v in value)


IniPairs = tuple[tuple[str, str], ...]
_INI_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-\[\]]*")


def _ini_text(pairs: IniPairs) -> str:
    """php.ini lines that _ini reads back unchanged: every value quoted, repeats kept."""
    return "".join(f'{k}="{v}"\n' for k, v in pairs)


@_typed("table or string", to_input=_ini_text)
def _ini(value: Any) -> IniPairs:
    """[worker] ini as (key, value) pairs in order, from a table or from php.ini lines in one
    string ("zend_extension=opcache.so\nopcache.enable=1"): repeated keys such as extension stay."""
    if isinstance(value, str):
        return _ini_lines(value)
    if not isinstance(value, dict):
        raise ValueError('expected a table, e.g. ini = { memory_limit = "256M" }, or php.ini lines in '
                         'a string, e.g. ini = "memory_limit=256M\\nopcache.enable=1"')
    out = []
    for k, v in value.items():
        if isinstance(v, bool):
            v = "1" if v else "0"
        if not isinstance(v, str | int | float) or "\n" in str(v) or "=" in k:
            raise ValueError(f"ini.{k}: expected a string or number")
        out.append((k, str(v)))
    return tuple(out)


def _ini_lines(text: str) -> IniPairs:
    """php.ini syntax, one directive a line: blank lines and ;comments skipped, "quoted" values
    unquoted; anything else is an error naming its line."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        key, sep, val = line.partition("=")
        key, val = key.strip(), val.strip()
        if not sep or not _INI_KEY.fullmatch(key):
            raise ValueError(f"line {number} ({line!r}) is not a php.ini directive; write KEY=VALUE, "
                             "e.g. opcache.enable=1")
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1]
        out.append((key, val))
    return tuple(out)


@_typed('table')
def _types_table(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and re.fullmatch(r"[\w.+-]+/[\w.+-]+", v)
        for k, v in value.items()
    ):
        raise ValueError('expected a table of extension = "type/subtype", e.g. { mjs = "text/javascript" }')
    return {k.lower().lstrip("."): v for k, v in value.items()}


@_typed('list of absolute paths')
def _abs_dir_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.startswith("/") for v in value):
        raise ValueError('expected a list of absolute directory paths, e.g. ["/srv/app/storage/private"]')
    return tuple(value)


# An internal location's prefix: "/a/b/", segments that are neither hidden nor escaped.
_LOCATION_PREFIX = re.compile(r"(?:/[A-Za-z0-9_~!$&'()*+,;=:@-][A-Za-z0-9._~!$&'()*+,;=:@-]*)+/")


@_typed('table')
def _internal_locations(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and _LOCATION_PREFIX.fullmatch(k) and isinstance(v, str) and v.startswith("/")
        for k, v in value.items()
    ):
        raise ValueError('expected a table of "/uri-prefix/" = "/absolute/directory" (the prefix starts '
                         'and ends with /, no dot segments or escapes), e.g. '
                         '{ "/protected/" = "/srv/app/storage/private" }')
    return dict(value)


@_typed('list of paths')
def _sandbox_paths(value: Any) -> tuple[str, ...]:
    """[sandbox] readable / writable: absolute, or relative to the app base (resolved per
    generation, so a `current` symlink deploy gets the new release's directories)."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError('expected a list of paths, absolute or relative to the app base, e.g. '
                         '["storage", "bootstrap/cache", "/srv/shared/uploads"]')
    for path in value:
        if "\n" in path or "\0" in path:
            raise ValueError(f"{path!r}: a path cannot contain a newline or NUL")
        if os.path.normpath(path) == "/":
            raise ValueError(f"{path!r} is the whole filesystem, which leaves nothing sandboxed; "
                             "name the directories the app needs")
    return tuple(value)


_CONNECT = re.compile(r"tcp:(\d{1,5})")


MAX_CONNECT_PORTS = 64  # csrc/askr_sandbox.c's policy holds this many connect ports


@_typed('list of "tcp:PORT"')
def _connect_ports(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError('expected a list of "tcp:PORT", e.g. ["tcp:3306", "tcp:6379", "tcp:443"]')
    for item in value:
        m = _CONNECT.fullmatch(item)
        if not m or not 1 <= int(m.group(1)) <= 65535:
            raise ValueError(f'{item!r}: expected "tcp:PORT" with a port from 1 to 65535, e.g. "tcp:3306" '
                             "(Landlock restricts TCP only; UDP, DNS included, is never restricted)")
    ports = tuple(dict.fromkeys(value))  # each port once
    if len(ports) > MAX_CONNECT_PORTS:
        raise ValueError(f"at most {MAX_CONNECT_PORTS} ports (the sandbox's policy holds that many); "
                         "leave connect empty to not restrict the network")
    return ports


DEFAULT_WATCH = ("**/*.php", ".env", "config/**")  # askr serve --watch with no globs
WATCH_QUIET = 0.3  # seconds without a change before a --watch reload
WATCH_VENDOR_QUIET = 2.0  # the same when vendor/ changed: a composer run writes for a while


@_typed('list of globs or boolean')
def _watch_globs(value: Any) -> tuple[str, ...]:
    if value is True:
        return DEFAULT_WATCH
    if value is False:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError('expected a list of globs, e.g. ["**/*.php", ".env"], or true for the defaults')
    for glob in value:
        if glob.startswith("/") or ".." in Path(glob).parts:
            raise ValueError(f"{glob!r}: globs are relative to the app base and stay inside it")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Setting:
    section: str
    key: str
    default: Any
    parse: Callable[[Any], Any]
    doc: str
    path: bool = False  # a filesystem path: relative values are relative to the config file

    @property
    def name(self) -> str:
        return f"[{self.section}] {self.key}"

    @property
    def type_name(self) -> str:
        """What kind of value it takes, for the reference table."""
        return "path" if self.path else self.parse.type_name  # type: ignore[attr-defined]

    def to_input(self, value: Any) -> Any:
        """`value` (as parsed) back in a form `parse` accepts and JSON can carry: how the master
        hands the resolved config to its children (dump/restore)."""
        if value is None:
            return None
        if self.parse.to_input is not None:  # type: ignore[attr-defined]
            return self.parse.to_input(value)  # type: ignore[attr-defined]
        if isinstance(value, Listen):
            return str(value)
        if isinstance(value, tuple):
            return [str(v) if isinstance(v, Listen) else v for v in value]
        return value


SETTINGS: tuple[Setting, ...] = (
    Setting("server", "listen", "127.0.0.1:8080", _listen_list,
            'Address(es) to accept HTTP on: "HOST:PORT" or a list of them.'),
    Setting("server", "root", None, _str,
            "Document root: static files are served from it and classic-mode scripts run from it. "
            "Default: ./public if it exists, else the bundled example app.", path=True),
    Setting("server", "workers", "auto", _workers,
            'Number of PHP workers: a positive integer, or "auto" for one per CPU core.'),
    Setting("server", "fronts", "auto", _fronts,
            'Number of HTTP front processes, 1 to 64, or "auto" for one per CPU core (at most 64); '
            "the kernel spreads connections over them (SO_REUSEPORT). Every front hands requests "
            "to every PHP worker through one shared queue, so more fronts add HTTP capacity "
            "without splitting PHP's; each costs about 30-40 MB of memory. When to change it, "
            'with measurements: deployment.md, "How many fronts".'),
    Setting("server", "front_scheduling", "batch", _choice("batch", "normal"),
            'How the kernel schedules the fronts. "batch" (default): SCHED_BATCH, as the PHP workers '
            "run: a front woken by a client's bytes or a worker's answer does not preempt the process "
            "on its core at once, and takes what arrived meanwhile in the same turn, so it wakes fewer "
            "times per request (its CPU share is unchanged; with an idle core it runs at once). "
            '"normal": SCHED_OTHER, a woken front preempts at once: a shorter p99 on a saturated '
            "machine, more CPU per request (Laravel worker mode: about 30% fewer req/s). "
            'Measurements: deployment.md, "How the fronts are scheduled".'),
    Setting("server", "front_priority", -5, _int(-20, 19),
            "The fronts' nice value, -20 (most CPU) to 19, as nginx's worker_priority; the PHP workers "
            "keep the master's. A front only runs when a client or a worker has something for it, "
            "so a higher weight costs PHP nothing while the machine has CPU to spare; on a saturated "
            "machine the fronts accept, dispatch and answer without waiting behind busy PHP "
            "processes. Measured on 2 cores: hello.php p99 halved, req/s +18% (deployment.md, \"How "
            "the fronts are scheduled\"). A negative value needs root (askr starting as root, with "
            "[server] user) or CAP_SYS_NICE; without it the fronts run at the master's nice, and say "
            "so at info level."),
    Setting("server", "max_requests", 0, _int(0),
            "Recycle a PHP worker after about this many requests (0 = never): quotas are spread "
            "±15% across workers, and a replacement boots before the old worker retires."),
    Setting("server", "request_timeout", 60, _seconds,
            "Wall-clock seconds one PHP request may take, from dispatch to the end of its response; "
            "past it the client gets 504, and the worker is killed and replaced (with [worker] "
            "slowlog_timeout set, it logs its PHP backtrace first) "
            "(Debian's PHP counts "
            "max_execution_time in CPU time, so sleep() and blocked I/O escape that limit)."),
    Setting("server", "retry_crashed", "idempotent", _choice("idempotent", "never"),
            'A request whose PHP worker died (a segfault, the OOM killer, kill -9) before any of its '
            'response came: "idempotent" (default) sends it once more, to another worker, when it '
            "is a GET, HEAD or OPTIONS without a body; a second crash gets the 502 (two workers at "
            'most, never a loop). "never": the 502 at once, as nginx + php-fpm answer. A request '
            "killed for request_timeout is never retried (docs/fpm-compatibility.md)."),
    Setting("server", "graceful_timeout", 30, _seconds,
            "On SIGTERM, seconds in-flight requests get to finish (new connections are refused, idle "
            "keep-alives closed, responses in flight sent with Connection: close); what is still "
            "running then is cut off and logged."),
    Setting("server", "drain_delay", "0s", _seconds_or_zero,
            "On SIGTERM, how long askr keeps serving normally while its readiness already answers "
            "503 stopping (/api/health/ready, health_path), so a load balancer stops sending first; "
            "then it drains as graceful_timeout says. Make it about 2x the balancer's check "
            'interval (e.g. "4s"). A second SIGTERM, or SIGINT/SIGQUIT, skips the rest of the delay. '
            "Under systemd keep TimeoutStopSec above drain_delay + graceful_timeout."),
    Setting("server", "health_path", "", _url_path,
            'A path on the traffic listeners, e.g. "/askr-health", that the front answers itself '
            "with the host's readiness (200 ready, else 503 and a JSON reason), for balancers that "
            "can only probe the traffic port. Never routed: no PHP, no file from the root. "
            '"" (default): off; the admin API has /api/health/ready either way.'),
    Setting("server", "user", None, _str,
            "The user the fronts, PHP workers, queue workers and scheduler run as; the master keeps "
            "root only to bind the listen sockets (ports below 1024 too) and supervise. When askr "
            'starts as root this must be set: "www-data" for instance, or "root" to run PHP as root '
            "knowingly. Files PHP and the fronts read must be readable by this user."),
    Setting("server", "group", None, _str, "Their group. Default: the user's primary group."),
    Setting("server", "https", False, _bool,
            "Tell PHP every request came over https (TLS terminated by a load balancer in front): "
            "HTTPS=on, REQUEST_SCHEME=https. Not needed with [tls], nor for trusted_proxies that send "
            "X-Forwarded-Proto."),
    Setting("server", "trusted_proxies", [], _cidr_list,
            'Load balancers / proxies (addresses or CIDRs, e.g. ["10.0.0.0/8"]) whose X-Forwarded-For, '
            "-Proto, -Host, -Port and Forwarded headers askr believes: from them REMOTE_ADDR, HTTPS and "
            "the host come from those headers. From any other peer those headers are removed before "
            "PHP sees them. Empty (default): the headers are passed through untouched and not used."),
    Setting("server", "h2c", False, _bool,
            "Also speak HTTP/2 without TLS on the plain listeners (prior knowledge only, as h2load "
            "--h2c or curl --http2-prior-knowledge do; browsers never use it). Off by default."),
    Setting("server", "redirect_http", None, parse_listen,
            'With [tls]: an extra plain listener, e.g. "0.0.0.0:80", that answers every request with '
            "a 308 redirect to the same URL on https."),
    Setting("tls", "cert", None, _str,
            "TLS certificate chain (PEM, leaf first). With cert and key set, every [server] listen "
            "address speaks TLS, negotiating HTTP/2 or HTTP/1.1 by ALPN. Re-read on reload "
            "(SIGHUP, askr reload), so a renewed certificate is picked up without dropping "
            "connections.", path=True),
    Setting("tls", "key", None, _str, "The certificate's private key (PEM, unencrypted).", path=True),
    Setting("worker", "script", None, _str,
            "Worker mode: a PHP script each worker runs once; it boots the app and loops in "
            "askr_handle_request() (docs/worker-mode.md). Every request that is not a static file "
            "goes to it. Unset: classic mode, each request runs its script like php-fpm.", path=True),
    Setting("worker", "app_base", None, _str,
            "The application's base directory, given to the worker, queue and scheduler scripts as "
            "$_SERVER['ASKR_APP_BASE'] (queue workers and scheduler runs also start in it), and the "
            "directory the sandbox lets PHP read as a whole. Default: the parent of [server] root. An "
            "app that lives entirely in its document root (WordPress in /var/www/html) sets it to the "
            "root, so that the sandbox does not open the whole parent (/var/www) to PHP.", path=True),
    Setting("worker", "ini", {}, _ini,
            'php.ini overrides for every PHP process askr runs (HTTP workers, queue workers, the '
            'scheduler): a table, e.g. { memory_limit = "256M" }, or php.ini lines in one string, '
            'e.g. "zend_extension=opcache.so\\nopcache.enable=1" (repeated keys such as extension '
            "allowed; a bad line is an error naming it)."),
    Setting("worker", "php_cli", "php", _str,
            "The PHP command-line program that runs queue workers and the scheduler (PHP's CLI SAPI, "
            "so PHP_SAPI is cli and pcntl signal handling works): a name looked up in PATH, or a path."),
    Setting("worker", "max_memory", 0, parse_size,
            "Recycle a PHP worker (classic or worker mode) whose anonymous memory (RssAnon: its heap, "
            "PHP's and C extensions' alike; not OPcache's shared memory or libraries) is over this "
            'after a request, e.g. "256M" (0 = never): a replacement boots before the old worker '
            "retires, as with max_requests (docs/deployment.md, \"Memory-based recycling\")."),
    Setting("worker", "slowlog_timeout", None, _seconds,
            "Log the PHP backtrace (function, file:line of each call, as php-fpm's "
            "request_slowlog_timeout) of a request still running after this many seconds; the "
            "request goes on undisturbed; counted as slowlogged_requests in /api/status. Unset: no "
            "slowlog. With it set, a request_timeout kill also logs the backtrace first "
            '(docs/fpm-compatibility.md, "Slowlog"); it runs a watchdog thread in each worker, '
            'which costs about 3 µs per request. E.g. 5 or "5s".'),
    Setting("worker", "slowlog_file", None, _str,
            "Where slowlog records go (appended, php-fpm's slowlog layout), opened by the PHP zygote "
            "as the user PHP runs as. Default: the error log (stderr), as WARNING records.", path=True),
    Setting("queue", "script", None, _str,
            "Queue workers: a PHP script that boots the app and runs queue:work in-process "
            "(examples/askr-queue.php). askr runs it with --max-jobs, --max-time and [queue] args as "
            "arguments, respawns it when it exits, and rolls it on reload. Unset: no queue workers.",
            path=True),
    Setting("queue", "workers", 1, _int(0), "How many queue worker processes run the queue script."),
    Setting("queue", "max_jobs", 1000, _int(0),
            "Passed as --max-jobs: a queue worker exits after this many jobs and is started afresh "
            "(0 = no limit)."),
    Setting("queue", "max_time", 3600, _int(0),
            "Passed as --max-time: a queue worker exits after this many seconds (once its current job "
            "is done) and is started afresh (0 = no limit)."),
    Setting("queue", "args", [], _str_list,
            'More queue:work arguments, e.g. ["--tries=3", "--queue=high,default", "--sleep=1"].'),
    Setting("queue", "stop_timeout", 60, _seconds,
            "On shutdown and reload a queue worker gets SIGTERM and finishes its current job; after "
            "this many seconds it is killed. Keep it above your longest job."),
    Setting("scheduler", "script", None, _str,
            "Scheduler: a PHP script that boots the app and runs schedule:run in-process "
            "(examples/askr-scheduler.php); askr runs it every interval, never two at once, with no "
            "crontab. Unset: no scheduler.", path=True),
    Setting("scheduler", "interval", 60, _seconds,
            "Seconds between scheduler runs, at wall-clock multiples of it (60: at the start of every "
            "minute, like cron). A run longer than this delays the next one; runs never overlap."),
    Setting("scheduler", "stop_timeout", 60, _seconds,
            "On shutdown a scheduler run in progress gets this many seconds to finish, then it (and "
            "the commands it started) are killed."),
    Setting("static", "charset", None, _str,
            'Add "; charset=VALUE" (e.g. "utf-8") to the Content-Type of static files whose type is '
            "in charset_types, as nginx's charset directive does. Unset (default): types exactly as "
            "nginx's mime.types gives them, with no charset."),
    Setting("static", "charset_types", list(CHARSET_TYPES), _str_list,
            "The types charset applies to (nginx's charset_types default)."),
    Setting("static", "types", {}, _types_table,
            'Extra or different static Content-Types by extension, on top of nginx\'s mime.types '
            '(like an nginx types block), e.g. { mjs = "text/javascript", webmanifest = '
            '"application/manifest+json" }.'),
    Setting("static", "cache_size", "16M", parse_size,
            "Memory each front process may use to keep static files of up to 64K, with their response "
            "headers, for GET requests to be answered without touching the disk (like nginx's "
            "open_file_cache, plus the contents). A file is checked again at most once a second, so a "
            "changed, replaced or deleted file is seen within about a second; the files used least "
            "recently are dropped first. 0 turns it off: every request reads the file."),
    Setting("static", "sendfile_roots", [], _abs_dir_list,
            'X-Sendfile: directories (absolute paths) from which a PHP response carrying '
            '"X-Sendfile: /abs/path" is answered by the front with that file (Range, ETag, 304, HEAD), '
            "the PHP worker freed at once; a path whose real path (symlinks resolved) is outside them "
            "is answered 500 and logged, never served. Symfony's BinaryFileResponse and Laravel's "
            "download() use it once trusted (X-Sendfile-Type is sent to PHP). Each must exist; resolved "
            'when askr starts. Empty (default): off, the header is passed through. docs/x-sendfile.md.'),
    Setting("static", "internal_locations", {}, _internal_locations,
            'X-Accel-Redirect, as nginx\'s internal locations: URI prefixes mapped to directories, e.g. '
            '{ "/protected/" = "/srv/app/storage/private" }; "X-Accel-Redirect: /protected/a.pdf" from '
            "PHP is answered with that directory's a.pdf, under the same rules as sendfile_roots. "
            "Clients cannot reach these directories: their requests for /protected/... are routed "
            "from the document root as usual. Empty (default): off."),
    Setting("compression", "enabled", True, _bool,
            "Compress responses (PHP's and static files') with gzip, brotli or zstd for clients that "
            "accept it (Accept-Encoding); docs/compression.md. On by default, as FrankenPHP's "
            "php_server (nginx ships with gzip off): an app server often faces browsers directly. "
            "It costs front CPU per response (a 20 KB page: about 40 µs with zstd, 100-200 µs with "
            "gzip or brotli). Turn it off when a proxy or CDN in front compresses already."),
    Setting("compression", "algorithms", ["zstd", "br", "gzip"], _codings,
            'The codings offered, in the order preferred when the client accepts several equally '
            '(same q-value): any of "zstd", "br", "gzip".'),
    Setting("compression", "min_size", "1K", parse_size,
            "Responses known to be smaller than this are sent as they are (compressing them saves "
            "too little); a PHP response of unknown length is compressed as it streams."),
    Setting("compression", "types", list(COMPRESSIBLE_TYPES), _type_patterns,
            'Content-Types worth compressing: exact types, or "type/*" for a whole family; parameters '
            '(charset) are ignored. Images, fonts in woff/woff2, archives and media are compressed '
            "already and are left out of the default."),
    Setting("compression", "gzip_level", 5, _int(1, 9), "gzip (zlib) level, 1 to 9."),
    Setting("compression", "br_level", 4, _int(0, 11),
            "Brotli quality, 0 to 11 (above 5 it gets much slower for little gain: keep those for "
            "precompressed files)."),
    Setting("compression", "zstd_level", 3, _int(1, 19), "zstd level, 1 to 19."),
    Setting("compression", "precompressed", True, _bool,
            "Serve a precompressed sibling of a static file when the client accepts its coding: "
            "app.css.zst, app.css.br or app.css.gz next to app.css (nginx's gzip_static, Caddy's "
            "precompressed), with app.css's Content-Type. A sibling older than its original is "
            "ignored, so a stale one left by an old build is never served. Checked even when "
            "enabled is false."),
    Setting("reload", "canary", False, _bool,
            "Every reload starts with a canary: one worker runs the new code for canary_seconds; "
            "if it does not start, dies, or answers 5xx clearly more often than the old workers, the "
            "reload is aborted and the old code keeps serving. Per reload: askr reload --canary."),
    Setting("reload", "canary_seconds", 5, _seconds,
            "How long a canary worker is watched before the rest of the workers roll."),
    Setting("admin", "listen", "127.0.0.1:9000", parse_listen,
            'Address of the admin API (GET /api/status, POST /api/reload): "HOST:PORT". A '
            "non-loopback address needs a token."),
    Setting("admin", "token", None, _str,
            "Bearer token the admin API requires (Authorization: Bearer TOKEN). Prefer token_file."),
    Setting("admin", "token_file", None, _str,
            "File holding the admin token (its first line), so the token stays out of askr.toml.",
            path=True),
    Setting("admin", "health_public", False, _bool,
            "Answer /api/health/live and /api/health/ready without the token, for a load balancer "
            "or an orchestrator that cannot send one; every other endpoint still needs it."),
    Setting("admin", "drain_quiet", "5s", _seconds,
            "askr drain --wait returns once no request has arrived for this long and none is in "
            "flight: the balancer has stopped sending."),
    Setting("log", "format", "text", _choice("text", "json"),
            'Event log format on stderr: "text" (time LEVEL [component] message) or "json" (one object '
            "per line: time, level, component, message), for every askr process including PHP."),
    Setting("log", "level", "info", _choice("debug", "info", "warning", "error"),
            "Least severe event logged."),
    Setting("log", "access", "off", _choice("off", "combined", "json"),
            'Access log: "combined" (nginx\'s format plus the duration in seconds and the PHP worker\'s '
            'pid) or "json", one line per response; "off" (default) for none. The client address is '
            "the connection's peer, or the client a trusted proxy ([server] trusted_proxies) names."),
    Setting("log", "access_file", None, _str,
            "Where the access log goes (appended; reopened on reload for logrotate). Default: stderr, "
            "with the event log.", path=True),
    Setting("log", "slow_request", 1, _seconds,
            "A PHP request whose response takes at least this many seconds (from its complete head to "
            "the end of its response) counts as slow: slow_requests in /api/status, "
            "askr_slow_requests_total (php-fpm's \"slow requests\"; for the backtrace of a request "
            "still running, see [worker] slowlog_timeout)."),
    Setting("limits", "max_body_size", "8M", parse_size,
            "Largest request body accepted; larger ones get 413 without the rest being read."),
    # Upper bounds: a request's head must fit one message of the worker's queue (256 KiB).
    Setting("limits", "max_header_size", "16K", _size_at_most(64 * 1024, "64K"),
            "Largest request head (request line and headers); larger gets 431. At most 64K."),
    Setting("limits", "max_request_line", "8K", _size_at_most(32 * 1024, "32K"),
            "Longest request line; longer gets 414. At most 32K."),
    Setting("limits", "max_headers", 100, _int(1), "Most header fields in one request; more gets 431."),
    Setting("limits", "header_timeout", 10, _seconds,
            "Seconds a client has to send the whole request head; then 408 and close."),
    Setting("limits", "body_timeout", 30, _seconds,
            "Length in seconds of the window in which a request body must advance by "
            "body_min_rate x body_timeout bytes; otherwise 408 and close (slow-body protection)."),
    Setting("limits", "body_min_rate", "1K", parse_size,
            "Minimum average request-body rate in bytes per second, checked per body_timeout window."),
    Setting("limits", "keepalive_timeout", 15, _seconds,
            "Seconds an idle keep-alive connection is kept open."),
    Setting("limits", "max_streams", 100, _int(1),
            "HTTP/2: streams (requests) one connection may have open at once (SETTINGS_MAX_CONCURRENT_"
            "STREAMS). A client that resets more than twice this many streams within 10 s is cut off "
            "(rapid-reset protection, CVE-2023-44487)."),
    Setting("limits", "max_queue", 1024, _int(0),
            "Requests that may wait for a busy PHP worker pool, counted by each front (so up to "
            "fronts x max_queue in all); beyond that, 503 with Retry-After."),
    Setting("sandbox", "enabled", True, _bool,
            "Sandbox every PHP process (HTTP workers, queue workers, the scheduler) with Landlock "
            "(which files it may read, write and execute) and a seccomp filter (syscalls no PHP app "
            "needs, such as ptrace, mount, bpf and kernel modules, fail with EPERM), applied before "
            "any app code runs and irreversibly. What it allows: docs/internals.md, \"The sandbox "
            "policy\". Where the kernel lacks Landlock or seccomp, askr logs one warning as PHP first "
            "starts (a reload repeats it only if what PHP runs without changed) and runs without it "
            "(see required); askr doctor shows what the kernel offers."),
    Setting("sandbox", "required", False, _bool,
            "Refuse to start PHP (the generation fails, with the reason) when the kernel cannot "
            "sandbox it, instead of warning once and running unsandboxed."),
    Setting("sandbox", "readable", [], _sandbox_paths,
            "More paths PHP may read (files or directories, recursively): absolute, or relative to "
            "the app base ([worker] app_base, else the parent of [server] root). The document root, "
            "the app base, PHP's own files and the system's libraries, certificates, timezones and "
            "DNS files are readable already; a path that does not exist is skipped."),
    Setting("sandbox", "writable", [], _sandbox_paths,
            'Paths PHP may write (and read), e.g. ["storage", "bootstrap/cache"] for Laravel: '
            "absolute, or relative to the app base. session.save_path, upload_tmp_dir and "
            "sys_temp_dir (else /tmp) are writable already. Nothing writable can be executed directly "
            "(execve); with allow_exec, a program PHP wrote can still be run through the dynamic loader "
            "or an interpreter, as PHP itself can include() what it wrote."),
    Setting("sandbox", "connect", [], _connect_ports,
            'Restrict outgoing TCP to these ports, e.g. ["tcp:3306", "tcp:6379", "tcp:443"] (Landlock '
            "ABI 4, Linux 6.7+, else a WARNING, or a refusal with required; binding TCP ports is "
            "then refused too). Empty (default): the "
            "network is not restricted, as apps talk to databases, caches and HTTP APIs."),
    Setting("sandbox", "allow_exec", True, _bool,
            "Let PHP run programs (exec(), shell_exec(), proc_open(), mail() through sendmail), as "
            "php-fpm does: system programs under /usr run, with the same Landlock rules and syscall "
            "filter as PHP. false (recommended when the app runs no programs) makes execve fail with "
            "EPERM in HTTP workers, and in queue workers and scheduler runs once their PHP CLI has "
            "started (Laravel's scheduled command() events, which run in a shell, need true)."),
    Setting("dev", "watch", [], _watch_globs,
            "Development: a rolling reload whenever a file matching one of these globs changes (as "
            "SIGHUP; askr serve --watch). Globs are relative to the app base ([worker] app_base, else "
            "the parent of [server] root), ** matches any number of directories; true watches "
            f"{', '.join(DEFAULT_WATCH)}. A reload follows {WATCH_QUIET:g} s without further changes "
            f"({WATCH_VENDOR_QUIET:g} s when vendor/ changed, so a composer run reloads once, at its "
            "end); changes during a reload queue one more. A glob's directory must exist. Empty "
            "(default): off. Not for production: every change rolls every worker."),
)
_BY_SECTION: dict[str, dict[str, Setting]] = {}
for _s in SETTINGS:
    _BY_SECTION.setdefault(_s.section, {})[_s.key] = _s


def _section(name: str, **namespace: Any) -> type:
    """A section's frozen dataclass, one attribute per setting of SETTINGS (declared only there)."""
    fields = [(s.key, Any) for s in SETTINGS if s.section == name]
    return make_dataclass(f"{name.title()}Config", fields, frozen=True, slots=True, namespace=namespace)


SECTIONS: dict[str, type] = {name: _section(name) for name in _BY_SECTION if name != "tls"}
SECTIONS["tls"] = _section("tls", enabled=property(lambda self: self.cert is not None))
# The whole configuration: cfg.server.listen, cfg.worker.ini, ... (an attribute per section).
Config = make_dataclass("Config", [*((name, SECTIONS[name]) for name in _BY_SECTION),
                                   ("source", str, field(default="<defaults>"))], frozen=True, slots=True)


def _build(parsed: dict[str, dict[str, Any]], source: str) -> Config:
    """The Config from every setting's parsed value (the one constructor validate and restore share)."""
    return Config(**{name: cls(**parsed[name]) for name, cls in SECTIONS.items()}, source=source)


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def load(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read askr.toml (or nothing), apply CLI overrides ("section.key": value), validate.
    Raises ConfigError with the first problem."""
    config, problems = validate(path, overrides)
    if problems or config is None:
        raise ConfigError(problems[0])
    return config


def validate(path: str | os.PathLike | None = None,
             overrides: dict[str, Any] | None = None) -> tuple[Config | None, list[str]]:
    """Every problem with the configuration, each naming the file, the key and the fix (what
    `askr config-check` prints); the Config when there are none."""
    source = str(path) if path else "<command line>"
    problems: list[str] = []
    raw: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text())
        except FileNotFoundError:
            return None, [f"{source}: file not found; check the --config path"]
        except (OSError, UnicodeDecodeError) as e:
            return None, [f"{source}: cannot read: {e}"]
        except tomllib.TOMLDecodeError as e:
            return None, [f"{source}: not valid TOML: {e}"]
        base_dir = p.resolve().parent

    values: dict[str, dict[str, Any]] = {s: {} for s in _BY_SECTION}
    for section, table in raw.items():
        if section not in _BY_SECTION:
            hint = _suggest(section, list(_BY_SECTION))
            problems.append(f"{source}: unknown section [{section}].{hint}")
            continue
        if not isinstance(table, dict):
            problems.append(f"{source}: [{section}] must be a table")
            continue
        for key, value in table.items():
            setting = _BY_SECTION[section].get(key)
            if setting is None:
                hint = _suggest(key, list(_BY_SECTION[section]))
                problems.append(f"{source}: unknown key [{section}] {key}.{hint}")
                continue
            values[section][key] = (value, source, base_dir)
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".")
        values[section][key] = (value, "command line", Path.cwd())

    parsed: dict[str, dict[str, Any]] = {s: {} for s in _BY_SECTION}
    for setting in SETTINGS:
        value, origin, rel_base = values[setting.section].get(setting.key, (setting.default, None, None))
        if value is None:
            parsed[setting.section][setting.key] = None
            continue
        try:
            result = setting.parse(value)
        except ValueError as e:
            where = origin or "default"
            problems.append(f"{where}: {setting.name} = {value!r}: {e}. {setting.doc}")
            result = None if setting.default is None else setting.parse(setting.default)
        else:
            if setting.path and origin is not None:
                result = str((rel_base / result).resolve()) if not os.path.isabs(result) else result
        parsed[setting.section][setting.key] = result

    problems += _cross_checks(source, parsed)
    if problems:
        return None, problems
    return _build(parsed, source), []


def _cross_checks(source: str, parsed: dict[str, dict[str, Any]]) -> list[str]:
    """What no single setting can check alone: the defaults that depend on other settings first,
    then the combinations (pure), then what the machine must have (files, programs, users, TLS)."""
    problems = _derive(source, parsed)
    return problems + _check_values(source, parsed) + _check_environment(source, parsed)


def _derive(source: str, parsed: dict[str, dict[str, Any]]) -> list[str]:
    """Fill in the defaults that depend on other settings: the root (./public if there), app_base
    (the root's parent, when a script needs one) and the admin token (from token_file)."""
    problems: list[str] = []
    server, worker, admin = parsed["server"], parsed["worker"], parsed["admin"]
    if server["root"] is None:
        server["root"] = str(Path("public").resolve()) if Path("public").is_dir() else str(EXAMPLE_ROOT)
    if any(_scripts(parsed).values()) and worker["app_base"] is None:
        worker["app_base"] = str(Path(server["root"]).resolve().parent)
    if admin["token_file"] is not None:
        try:
            admin["token"] = Path(admin["token_file"]).read_text().splitlines()[0].strip() or None
        except (OSError, IndexError) as e:
            problems.append(f"{source}: [admin] token_file = {admin['token_file']!r}: cannot read a "
                            f"token from it ({e}); write the token on its first line")
    return problems


def _scripts(parsed: dict[str, dict[str, Any]]) -> dict[str, str | None]:
    return {"[worker] script": parsed["worker"]["script"], "[queue] script": parsed["queue"]["script"],
            "[scheduler] script": parsed["scheduler"]["script"]}


def _check_values(source: str, parsed: dict[str, dict[str, Any]]) -> list[str]:
    """Combinations of values that cannot work, judged from the values alone (no I/O)."""
    problems: list[str] = []
    server, worker, tls, admin = parsed["server"], parsed["worker"], parsed["tls"], parsed["admin"]
    sandboxed = parsed["sandbox"]["enabled"]
    if not any(_scripts(parsed).values()) and worker["app_base"] is not None and not sandboxed:
        problems.append(f"{source}: [worker] app_base is set but no script is, and the sandbox is off; "
                        "app_base only applies to worker mode, queue workers, the scheduler and what the "
                        "sandbox lets PHP read: set a script or remove it")
    if (tls["cert"] is None) != (tls["key"] is None):
        missing = "key" if tls["key"] is None else "cert"
        problems.append(f"{source}: [tls] {missing} is missing: TLS needs both cert and key")
    elif tls["cert"] is None and server["redirect_http"] is not None:
        problems.append(f"{source}: [server] redirect_http is set but [tls] is not: there is no "
                        "https listener to redirect to; set [tls] cert and key, or remove it")
    addresses = [*server["listen"], admin["listen"], server["redirect_http"]]
    taken = [a for a in addresses if a is not None and a.port]
    for address in {a for a in taken if taken.count(a) > 1}:
        problems.append(f"{source}: {address} is used twice (among [server] listen, redirect_http and "
                        "[admin] listen); give each its own port")
    if not admin["token"] and not _is_loopback(admin["listen"].host):
        problems.append(f"{source}: [admin] listen = '{admin['listen']}' is reachable from other "
                        "machines and no token is set: anyone could reload askr; set [admin] "
                        "token_file (or token), or listen on 127.0.0.1")
    return problems


def _check_environment(source: str, parsed: dict[str, dict[str, Any]]) -> list[str]:
    """What the machine must have: the directories and scripts, PHP's CLI, the user and group,
    a usable TLS pair."""
    problems: list[str] = []
    server, worker, tls = parsed["server"], parsed["worker"], parsed["tls"]
    if not Path(server["root"]).is_dir():
        problems.append(f"{source}: [server] root = {server['root']!r}: no such directory; "
                        "point it at your app's public/ directory")
    for name, script in _scripts(parsed).items():
        if script is not None and not Path(script).is_file():
            problems.append(f"{source}: {name} = {script!r}: no such file; point it at your script "
                            "(see examples/ for Laravel ones)")
    if (parsed["queue"]["script"] or parsed["scheduler"]["script"]) and not shutil.which(worker["php_cli"]):
        problems.append(f"{source}: [worker] php_cli = {worker['php_cli']!r}: no such program; queue "
                        "workers and the scheduler need PHP's CLI (apt-get install php8.2-cli), or "
                        "set php_cli to its path")
    if worker["app_base"] is not None and not Path(worker["app_base"]).is_dir():
        problems.append(f"{source}: [worker] app_base = {worker['app_base']!r}: no such directory")
    if worker["slowlog_file"] is not None and not Path(worker["slowlog_file"]).parent.is_dir():
        problems.append(f"{source}: [worker] slowlog_file = {worker['slowlog_file']!r}: its directory does "
                        "not exist; create it (writable by [server] user) or remove slowlog_file to log "
                        "to the error log")
    if tls["cert"] is not None and tls["key"] is not None:
        try:
            check_pair(tls["cert"], tls["key"])
        except TlsError as e:
            problems.append(f"{source}: [tls] {e}")
    if server["user"] is not None:
        try:
            pwd.getpwnam(server["user"])
        except KeyError:
            problems.append(f"{source}: [server] user = {server['user']!r}: no such user on this machine; "
                            "create it (adduser --system askr) or name an existing one")
        else:
            if os.geteuid() != 0 and pwd.getpwnam(server["user"]).pw_uid != os.geteuid():
                problems.append(f"{source}: [server] user = {server['user']!r}: only root can run "
                                "processes as another user; start askr as root or remove user")
    problems += _check_offload_dirs(source, parsed["static"])
    problems += _check_watch(source, parsed)
    if server["group"] is not None:
        try:
            grp.getgrnam(server["group"])
        except KeyError:
            problems.append(f"{source}: [server] group = {server['group']!r}: no such group")
    return problems


def _check_offload_dirs(source: str, static: dict[str, Any]) -> list[str]:
    """[static] sendfile_roots and internal_locations name existing directories; they are kept as
    real paths, the form every X-Sendfile target is compared with."""
    problems: list[str] = []

    def real_dir(key: str, path: str) -> str:
        real = os.path.realpath(path)
        if not os.path.isdir(real):
            problems.append(f"{source}: [static] {key}: {path!r} is not a directory; create it or fix "
                            "the path")
        elif real == "/":
            problems.append(f"{source}: [static] {key}: {path!r} is the whole filesystem; name the "
                            "directory of the files PHP may hand over, e.g. /srv/app/storage/private")
        return real

    static["sendfile_roots"] = tuple(real_dir("sendfile_roots", p) for p in static["sendfile_roots"])
    static["internal_locations"] = {prefix: real_dir(f'internal_locations."{prefix}"', d)
                                    for prefix, d in static["internal_locations"].items()}
    return problems


def watch_base(config_or_parsed: Any) -> str:
    """The directory [dev] watch globs are relative to: [worker] app_base when it was set, else
    the parent of [server] root, as written (not resolved: a `current` symlink is followed again
    whenever the watch restarts, after each reload)."""
    if isinstance(config_or_parsed, dict):
        root, app_base = config_or_parsed["server"]["root"], config_or_parsed["worker"]["app_base"]
    else:
        root, app_base = config_or_parsed.server.root, config_or_parsed.worker.app_base
    parent = os.path.dirname(os.path.abspath(root))
    # a derived app_base is the root's resolved parent: then keep the unresolved one
    if app_base is None or os.path.realpath(app_base) == os.path.realpath(parent):
        return parent
    return app_base


def watch_literal_prefix(glob: str) -> str:
    """The directories of `glob` before its first wildcard ("src/**/*.php" -> "src")."""
    parts = []
    for part in Path(glob).parts[:-1]:
        if any(c in part for c in "*?["):
            break
        parts.append(part)
    return os.path.join(*parts) if parts else ""


def _check_watch(source: str, parsed: dict[str, dict[str, Any]]) -> list[str]:
    """Every [dev] watch glob's directory exists (the defaults may match nothing)."""
    globs = parsed["dev"]["watch"]
    if not globs or tuple(globs) == DEFAULT_WATCH:
        return []
    base = watch_base(parsed)
    if not Path(base).is_dir():
        return [f"{source}: [dev] watch: the app base {base!r} is not a directory; set [worker] app_base"]
    problems = []
    for glob in globs:
        prefix = watch_literal_prefix(glob)
        if prefix and not Path(base, prefix).is_dir():
            problems.append(f"{source}: [dev] watch = {glob!r}: {os.path.join(base, prefix)!r} does not "
                            "exist; watch globs are relative to the app base ([worker] app_base, else the "
                            "parent of [server] root): fix the glob or create the directory")
    return problems


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def dump(config: Config) -> str:
    """The resolved config as JSON (each value in its parser's input form), handed from the master
    to its children."""
    data = {name: {s.key: s.to_input(getattr(getattr(config, name), s.key))
                   for s in _BY_SECTION[name].values()}
            for name in SECTIONS}
    return json.dumps({**data, "source": config.source})


def restore(text: str) -> Config:
    """The Config `dump` wrote: parsed again by the same parsers, checked no further (the master
    validated it, derived defaults included)."""
    data = json.loads(text)
    parsed = {name: {key: None if value is None else _BY_SECTION[name][key].parse(value)
                     for key, value in data[name].items()}
              for name in SECTIONS}
    return _build(parsed, data["source"])


def reference_markdown() -> str:
    """The configuration reference (docs/configuration.md is this, checked by a test)."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = "—" if s.default is None else f"`{json.dumps(s.default)}`"
        lines.append(f"| `[{s.section}] {s.key}` | {s.type_name} | {default} | {s.doc} |")
    return "\n".join(lines) + "\n"
