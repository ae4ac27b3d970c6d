"""[sandbox]: the policy the master hands every PHP process it starts, on a pipe (--sandbox-fd).

The C program (csrc/askr_sandbox.c) turns it into Landlock rules and a seccomp filter; it adds
what only PHP knows once php.ini is parsed (extension_dir, php.ini and conf.d, include_path,
session.save_path, the temporary directories, error_log, OPcache's files). This module adds
what comes from askr's config and the system: the document root, the app base, the worker
script, [sandbox] readable / writable / connect, shared libraries, certificates, timezone and
locale data, the files DNS needs, and (allow_exec) the system's programs. Never askr.toml, the
TLS key or /etc as a whole. The format is in docs/internals.md ("The sandbox policy").
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass

from askr import privileges
from askr.config import Config
from askr.paths import php_worker_binary

log = logging.getLogger("askr.master")

# Read-only for every PHP process: libraries (PHP's extensions link against them), CA
# certificates, timezone and locale data, what glibc's resolver and NSS read (DNS must work),
# the random devices, and host-wide /proc figures (sys_getloadavg()). A path that does not exist
# on this system is skipped by the C side.
SYSTEM_READABLE = (
    "/usr/lib", "/lib", "/lib64", "/usr/lib64",
    # /etc/ssl's certificates and configuration, not the directory: /etc/ssl/private holds the
    # host's TLS keys (askr's own, often), which a root or ssl-cert PHP could otherwise read
    "/etc/ssl/certs", "/etc/ssl/openssl.cnf", "/etc/ssl/cert.pem", "/usr/share/ca-certificates",
    "/usr/share/zoneinfo", "/etc/localtime", "/etc/timezone", "/usr/lib/locale", "/usr/share/locale",
    "/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/host.conf",
    "/etc/services", "/etc/protocols", "/etc/passwd", "/etc/group",
    "/dev/urandom", "/dev/random", "/dev/zero",
    "/proc/loadavg", "/proc/meminfo", "/proc/cpuinfo",
)
SYSTEM_WRITABLE = ("/dev/null",)
# allow_exec: where system programs live (read + execute): sendmail, convert, git (its helpers
# are under /usr/lib/git-core), and on systems without merged /usr the old /bin and /sbin.
EXECUTABLE = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/usr/libexec", "/usr/lib",
              "/bin", "/sbin")

# What the PHP CLI (queue workers, the scheduler) says about its own configuration: the C side
# learns the same for the embedded PHP after php.ini is parsed, but the CLI reads its php.ini
# only after the launcher has applied the sandbox, so it must be known beforehand.
_CLI_PROBE = r"""
$files = array_filter(array_map('trim', explode(',', (string) php_ini_scanned_files())));
$save = (string) ini_get('session.save_path');
echo json_encode([
    'ro' => array_values(array_filter(array_merge(
        [(string) php_ini_loaded_file(), (string) ini_get('extension_dir'),
         (string) ini_get('opcache.preload')],
        $files, explode(PATH_SEPARATOR, (string) get_include_path())))),
    'rw' => array_values(array_filter([
        substr($save, (int) strrpos(';' . $save, ';')), sys_get_temp_dir(),
        (string) ini_get('upload_tmp_dir'), (string) ini_get('error_log'),
        (string) ini_get('opcache.file_cache')])),
    'scan_dir' => getenv('PHP_INI_SCAN_DIR') ?: (PHP_CONFIG_FILE_SCAN_DIR ?: ''),
]);
"""


@dataclass(frozen=True, slots=True)
class Rule:
    access: str  # ro | rw | exec
    path: str


def app_base(config: Config) -> str:
    """The directory relative [sandbox] paths start from, resolved: [worker] app_base, else the
    parent of the document root (the code a front controller includes, e.g. Laravel's)."""
    if config.worker.app_base is not None:
        return os.path.realpath(config.worker.app_base)
    return os.path.dirname(os.path.realpath(config.server.root))


def resolve(config: Config, path: str) -> str:
    return os.path.normpath(os.path.join(app_base(config), path))


def rules(config: Config) -> list[Rule]:
    """The rules askr's config and the system give every PHP process of one generation (resolved
    now: a generation keeps the release it started with)."""
    sandbox = config.sandbox
    out = [Rule("ro", os.path.realpath(config.server.root)), Rule("ro", app_base(config))]
    if config.worker.script is not None:
        out.append(Rule("ro", os.path.realpath(config.worker.script)))
    out += [Rule("ro", p) for p in SYSTEM_READABLE]
    out += [Rule("ro", resolve(config, p)) for p in sandbox.readable]
    out += [Rule("rw", p) for p in SYSTEM_WRITABLE]
    out += [Rule("rw", resolve(config, p)) for p in sandbox.writable]
    if sandbox.allow_exec:
        out += [Rule("exec", p) for p in EXECUTABLE]
    return out


def policy_text(config: Config, extra: list[Rule] | None = None) -> str:
    """The policy as the C program reads it (docs/internals.md)."""
    sandbox = config.sandbox
    lines = ["# askr sandbox policy",
             f"required {int(sandbox.required)}",
             f"allow_exec {int(sandbox.allow_exec)}",
             f"debug {int(config.log.level == 'debug')}"]
    for rule in [*rules(config), *(extra or [])]:
        if "\n" in rule.path or "\0" in rule.path:
            # One directive per line: such a path would end its line early and the rest would be
            # read as a directive of its own ("/srv/x\nrw /" granting the whole filesystem).
            # Left out, PHP gets EACCES there, which is the safe way to be wrong.
            log.error("sandbox: PHP gets no access to %r: a path with a newline or NUL cannot be "
                      "written into the sandbox policy; rename it", rule.path)
            continue
        lines.append(f"{rule.access} {rule.path}")
    lines += [f"connect {c}" for c in sandbox.connect]
    return "\n".join(lines) + "\n"


# Where the master makes its runtime directory (the fronts' config.json, the admin token in it,
# the scoreboard, the fronts' sockets), which it hands to the PHP user: not under TMPDIR or
# /tmp, PHP's default temporary directory and so writable by PHP. /dev/shm is in no rule.
RUNTIME_PARENT = "/dev/shm"


def runtime_parent(config: Config) -> str | None:
    """The directory for askr's runtime directory (None: tempfile's default, TMPDIR or /tmp)."""
    usable = os.path.isdir(RUNTIME_PARENT) and os.access(RUNTIME_PARENT, os.W_OK | os.X_OK)
    return RUNTIME_PARENT if config.sandbox.enabled and usable else None


def _beneath(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def exposed_secrets(config: Config, runtime_dir: str | None = None) -> list[tuple[str, Rule]]:
    """askr's own secrets (askr.toml, the TLS key, the admin token file, its runtime directory)
    that a rule lets PHP read after all, each with the first such rule. Landlock only grants, it
    cannot carve a file out of a directory it grants: a secret kept in the app base (askr.toml
    beside Laravel's public/, the default layout) is the app's to read."""
    secrets = [config.source, config.tls.key, config.admin.token_file, runtime_dir]
    granted = rules(config)
    out = []
    for secret in dict.fromkeys(s for s in secrets if s and os.path.exists(s)):
        real = os.path.realpath(secret)
        for rule in granted:
            if _beneath(real, os.path.realpath(rule.path)):
                out.append((secret, rule))
                break
    return out


def warn_exposed_secrets(config: Config, runtime_dir: str | None = None) -> None:
    """One WARNING per secret PHP can read (each generation, as its policy is made)."""
    for secret, rule in exposed_secrets(config, runtime_dir=runtime_dir):
        log.warning("sandbox: PHP can read %s: it lies under %s, which the sandbox lets PHP %s; keep "
                    "askr.toml, the TLS key and the token file outside the app (e.g. /etc/askr)",
                    secret, rule.path, "write" if rule.access == "rw" else "read")


def connect_not_enforced(config: Config, landlock_abi: int) -> str | None:
    """Why [sandbox] connect does not hold on this kernel (Landlock below ABI 4 has no TCP rules,
    and the C side skips them silently), or None. Without Landlock at all the zygote has said so."""
    if not config.sandbox.connect or not 0 < landlock_abi < 4:
        return None
    return (f"sandbox: [sandbox] connect is not enforced: this kernel's Landlock is ABI {landlock_abi}, "
            "TCP rules need ABI 4 (Linux 6.7); outgoing TCP is not restricted")


class UnenforcedLog:
    """What PHP runs without, as each generation's zygote reports it ("Landlock is not available
    on this kernel", [sandbox] connect below Landlock ABI 4, ...): one WARNING per master process,
    at the first generation. Every reload starts a zygote that finds the same kernel, so the
    same report is not logged again; a generation whose report differs logs what is new in it
    (and one that reports nothing, e.g. with the sandbox disabled, makes a later report new)."""

    def __init__(self) -> None:
        self.reported: frozenset[str] = frozenset()

    def to_log(self, report: list[str]) -> list[str]:
        """Of one generation's report, the lines to log now: those the previous one lacked."""
        new = [line for line in report if line not in self.reported]
        self.reported = frozenset(report)
        return new


def cli_rules(config: Config, run_as: tuple[int, int] | None = None) -> list[Rule]:
    """The PHP CLI's own files (php.ini, conf.d and what its entries link to, extension_dir,
    include_path, session and temporary directories), asked of the CLI itself, plus the CLI
    program, which the launcher must be allowed to execute. [] when the CLI cannot be run.

    The probe runs unsandboxed, so it runs as the user PHP runs as (`run_as`, [server] user),
    never as the master's root ([worker] ini and php_cli are the app's to choose)."""
    php = shutil.which(config.worker.php_cli)
    if php is None:
        return []
    command = [php]
    for key, value in config.worker.ini:
        command += ["-d", f"{key}={value}"]
    try:
        done = subprocess.run([*command, "-r", _CLI_PROBE], capture_output=True, text=True, timeout=30,
                              check=False, cwd="/", **privileges.popen_user(run_as))
        found = json.loads(done.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        log.warning("sandbox: cannot ask %s for its php.ini paths (%s); queue workers and the scheduler "
                    "may not read them", php, e)
        return []
    out = [Rule("exec", php)]
    for access in ("ro", "rw"):
        for path in found.get(access, []):
            if isinstance(path, str) and path.startswith("/"):
                out.append(Rule(access, path))
                real = os.path.realpath(path)
                if real != path:
                    out.append(Rule(access, real))
    scan_dir = found.get("scan_dir")
    if isinstance(scan_dir, str):
        out += [Rule("ro", d) for d in scan_dir.split(":") if d.startswith("/")]
    return out


def pipe_with(text: str) -> int:
    """A pipe's read end holding `text` (written whole now, the write end closed), for a child's
    --sandbox-fd; the caller passes it on and closes it."""
    data = text.encode()
    read_fd, write_fd = os.pipe()
    try:
        if len(data) > 60000:  # a pipe holds 64 KiB by default: make room, or writing would block
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, len(data) + 4096)
        os.write(write_fd, data)
    except OSError:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return read_fd


def launcher_command(policy_fd: int, argv: list[str], ignore_sigterm: bool) -> list[str]:
    """`argv` (the PHP CLI and its arguments) run through askr-php --sandbox-exec."""
    command = [str(php_worker_binary()), "--sandbox-exec", "--sandbox-fd", str(policy_fd)]
    if ignore_sigterm:
        command.append("--ignore-sigterm")
    return [*command, "--", *argv]


def probe() -> dict:
    """What this kernel offers (askr-php --sandbox-probe): landlock_abi (0: none), seccomp."""
    done = subprocess.run([str(php_worker_binary()), "--sandbox-probe"], capture_output=True, text=True,
                          timeout=30, check=False)
    return json.loads(done.stdout)
