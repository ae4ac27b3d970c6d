"""Checks before a deploy: `askr config-check` (the configuration, its files and scripts) and
`askr doctor` (this machine: PHP, the worker program, a real worker's OPcache, limits)."""

from __future__ import annotations

import json
import os
import platform
import pwd
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from askr import config as config_mod
from askr.config import Config
from askr.paths import php_worker_binary

READY = re.compile(r"askr ready: https?://([\d.]+:\d+)")
PROBE_TIMEOUT = 60.0
NOFILE_WANTED = 16384  # each client connection is a descriptor in a front


def php_lint(php_cli: str, script: str) -> str | None:
    """`php -l`: None when the script parses, else PHP's message."""
    try:
        done = subprocess.run([php_cli, "-l", script], capture_output=True, text=True, timeout=60,
                              check=False)
    except OSError as e:
        return f"cannot run {php_cli} -l: {e.strerror}"
    if done.returncode == 0:
        return None
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()
             and not line.startswith("Errors parsing")]
    return lines[0] if lines else f"php -l exited with {done.returncode}"


def config_check(path: str) -> tuple[Config | None, list[str]]:
    """Every problem `askr serve --config path` would stop at, and scripts that do not parse;
    the Config when it loads (even with scripts that do not parse)."""
    config, problems = config_mod.validate(path)
    if config is None:
        return None, problems
    php_cli = config.worker.php_cli if shutil.which(config.worker.php_cli) else "php"
    if not shutil.which(php_cli):
        return config, [f"{path}: cannot syntax-check the PHP scripts: no PHP CLI ([worker] php_cli); "
                        "apt-get install php8.2-cli"]
    for key, script in (("[worker] script", config.worker.script), ("[queue] script", config.queue.script),
                        ("[scheduler] script", config.scheduler.script)):
        if script is not None:
            error = php_lint(php_cli, script)
            if error:
                problems.append(f"{path}: {key} = {script!r} does not parse: {error}; fix the script")
    return config, problems


# -- doctor --------------------------------------------------------------------------------
@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str


PROBE = """<?php
header('Content-Type: application/json');
$ini = json_decode($_GET['ini'] ?? '', true) ?: [];
$applied = [];
foreach ($ini as $k => $v) { $applied[$k] = ini_get($k); }
$op = function_exists('opcache_get_status') ? opcache_get_status(false) : false;
echo json_encode([
    'version' => PHP_VERSION, 'zts' => (bool) PHP_ZTS, 'sapi' => PHP_SAPI,
    'extensions' => get_loaded_extensions(), 'ini' => $applied,
    'opcache' => is_array($op) && !empty($op['opcache_enabled']),
]);
"""


def doctor(config_path: str | None) -> list[Check]:
    checks: list[Check] = []
    add = lambda name, status, detail: checks.append(Check(name, status, detail))  # noqa: E731
    add("python", "ok" if sys.version_info >= (3, 11) else "fail", f"Python {platform.python_version()}")
    config = None
    if config_path is not None:
        config, problems = config_check(config_path)
        add("config", "fail" if problems else "ok", "; ".join(problems) or f"{config_path} is valid")
    binary = php_worker_binary()
    if not binary.exists() or not os.access(binary, os.X_OK):
        add("worker program", "fail", f"{binary} is missing; reinstall askr (pip install .) to build it")
    else:
        add("worker program", "ok", str(binary))
        library = _library_check(binary)
        checks += library
        if not any(c.status == "fail" for c in library):
            checks += _probe_worker(config)
    checks += _cli_check(config)
    if binary.exists():
        checks.append(_sandbox_check(config))
    checks.append(_io_uring_check())
    checks.append(_nofile_check())
    checks.append(_root_check(config))
    return checks


def _library_check(binary: Path) -> list[Check]:
    try:
        done = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30, check=False)
    except OSError as e:
        return [Check("php library", "warn", f"cannot run ldd: {e.strerror}")]
    line = next((ln for ln in done.stdout.splitlines() if "libphp" in ln), "")
    if not line:
        return [Check("php library", "fail", f"{binary} does not link libphp; rebuild askr")]
    if "not found" in line:
        return [Check("php library", "fail", f"{line.strip()}: apt-get install libphp8.2-embed")]
    return [Check("php library", "ok", line.strip())]


def _probe_worker(config: Config | None) -> list[Check]:
    """Start a real askr (one classic worker, loopback, a throwaway docroot) with the config's
    [worker] ini, and ask the worker what PHP it is."""
    pairs = config.worker.ini if config is not None else ()
    ini = dict(pairs)
    with tempfile.TemporaryDirectory(prefix="askr-doctor-") as tmp:
        (Path(tmp) / "probe.php").write_text(PROBE)
        user = (config.server.user if config is not None else None) or pwd.getpwuid(os.geteuid()).pw_name
        argv = [sys.executable, "-m", "askr", "serve", "--root", tmp, "--listen", "127.0.0.1:0",
                "--admin-listen", "127.0.0.1:0", "--workers", "1", "--user", user]
        os.chmod(tmp, 0o755)  # readable by that user
        conf = Path(tmp) / "askr.toml"
        if pairs:  # as php.ini lines: repeated keys (extension=) survive
            lines = "\n".join(f'{k}="{v}"' for k, v in pairs)
            conf.write_text(f"[worker]\nini = {json.dumps(lines)}\n")
            argv += ["--config", str(conf)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        lines: list[str] = []
        try:
            address = _wait_ready(proc, lines)
            if address is None:
                tail = " | ".join(lines[-3:])
                return [Check("php worker", "fail", f"a test server did not start: {tail}")]
            query = urllib.parse.urlencode({"ini": json.dumps(ini)})
            with urllib.request.urlopen(f"http://{address}/probe.php?{query}", timeout=30) as resp:
                info = json.loads(resp.read())
        except (OSError, ValueError) as e:
            return [Check("php worker", "fail", f"the probe request failed: {e}")]
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                rest, _ = proc.communicate(timeout=30)
                lines += rest.splitlines()
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    out = []
    version = info["version"]
    major_minor = tuple(int(x) for x in version.split(".")[:2])
    zts = " ZTS" if info["zts"] else " NTS"
    status = "fail" if info["zts"] or major_minor < (8, 1) else "ok"
    why = "; askr needs a non-ZTS build (Debian's libphp8.2-embed is)" if info["zts"] else ""
    out.append(Check("php", status, f"PHP {version}{zts}, SAPI {info['sapi']}{why}"))
    out.append(Check("opcache", "ok" if info["opcache"] else "warn",
                     "enabled in a worker" if info["opcache"] else
                     "not enabled in a worker: every request compiles its scripts; apt-get install "
                     "php8.2-opcache (opcache.enable=1)"))
    out.append(Check("extensions", "ok", ", ".join(sorted(info["extensions"]))))
    startup = [ln for ln in lines if "Unable to load" in ln or "PHP Warning:  PHP Startup" in ln
               or "PHP Startup:" in ln]
    if startup:
        message = startup[0].partition("PHP Warning:")[2].strip() or startup[0]
        out.append(Check("php startup", "fail", message))
    for key in ini:
        if key in ("extension", "zend_extension"):
            continue  # not readable with ini_get(); a failed load shows as a startup warning above
        got = info["ini"].get(key)
        if got is False or got is None:
            out.append(Check(f"ini {key}", "fail", f"[worker] ini sets {key!r}, which this PHP does not "
                             "know (a typo, or its extension is not loaded)"))
    return out


def _wait_ready(proc: subprocess.Popen, lines: list[str]) -> str | None:
    deadline = time.monotonic() + PROBE_TIMEOUT
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            return None
        lines.append(line.rstrip())
        m = READY.search(line)
        if m:
            return m.group(1)
    return None


def _cli_check(config: Config | None) -> list[Check]:
    if config is None or not (config.queue.script or config.scheduler.script):
        php = shutil.which("php")
        return [Check("php cli", "ok" if php else "warn",
                      php or "no php in PATH: queue workers and the scheduler need it (php8.2-cli)")]
    php = shutil.which(config.worker.php_cli)
    if not php:
        return [Check("php cli", "fail", f"[worker] php_cli = {config.worker.php_cli!r} not found; "
                      "the queue workers and scheduler need it")]
    done = subprocess.run([php, "-r", "echo PHP_VERSION, ' ', extension_loaded('pcntl') ? 1 : 0;"],
                          capture_output=True, text=True, timeout=30, check=False)
    version, _, pcntl = done.stdout.strip().partition(" ")
    if pcntl != "1":
        return [Check("php cli", "warn", f"{php} (PHP {version}) has no pcntl: queue:work cannot finish its "
                      "job on SIGTERM and is killed after [queue] stop_timeout")]
    return [Check("php cli", "ok", f"{php}: PHP {version}, pcntl loaded")]


# What each Landlock ABI adds to askr's rules; a kernel below one goes without it.
LANDLOCK_FEATURES = ((2, "renames across directories (before: always refused, EXDEV)"),
                     (3, "truncate"), (4, "[sandbox] connect (TCP ports)"), (5, "ioctl on devices"),
                     (6, "signal and abstract-socket scoping"), (7, "audit logging of denials"))


def _sandbox_check(config: Config | None) -> Check:
    """[sandbox]: what this kernel lets askr apply (askr-php --sandbox-probe)."""
    from askr import sandbox

    wanted = config.sandbox if config is not None else None
    if wanted is not None and not wanted.enabled:
        return Check("sandbox", "warn", "off ([sandbox] enabled = false): PHP runs unsandboxed")
    try:
        found = sandbox.probe()
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        return Check("sandbox", "warn", f"cannot ask the worker program what the kernel offers: {e}")
    abi, seccomp = int(found.get("landlock_abi", 0)), bool(found.get("seccomp"))
    why = found.get("landlock_error") or "unavailable"
    parts = [f"Landlock ABI {abi}" if abi else f"no Landlock ({why})",
             "seccomp filter" if seccomp else f"no seccomp filter (arch {found.get('arch')})"]
    missing = [what for version, what in LANDLOCK_FEATURES if abi < version]
    if abi and missing:
        parts.append("this kernel's Landlock lacks: " + "; ".join(missing))
    if abi and seccomp:
        return Check("sandbox", "ok", ", ".join(parts))
    required = wanted is not None and wanted.required
    return Check("sandbox", "fail" if required else "warn", ", ".join(parts) + (
        ": [sandbox] required = true, so askr will refuse to start PHP" if required else
        ": PHP runs partly unsandboxed (one warning at startup)"))


def _io_uring_check() -> Check:
    release = platform.release()
    nums = tuple(int(x) for x in re.findall(r"\d+", release)[:2]) or (0, 0)
    try:
        disabled = int(Path("/proc/sys/kernel/io_uring_disabled").read_text())
    except (OSError, ValueError):
        disabled = 0
    note = "(askr does not use io_uring yet; this is for what comes)"
    if nums < (5, 1):
        return Check("io_uring", "warn", f"kernel {release} has no io_uring (5.1+, 5.10+ recommended) {note}")
    if disabled == 2:
        return Check("io_uring", "warn", f"disabled by kernel.io_uring_disabled=2 {note}")
    if disabled == 1:
        return Check("io_uring", "warn", f"restricted by kernel.io_uring_disabled=1 {note}")
    status = "ok" if nums >= (5, 10) else "warn"
    return Check("io_uring", status, f"kernel {release}" + ("" if status == "ok" else " (5.10+ recommended)"))


def _nofile_check() -> Check:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= NOFILE_WANTED:
        return Check("open files", "ok", f"limit {soft} (hard {hard})")
    return Check("open files", "warn", f"limit {soft}: each client connection takes a descriptor; set "
                 f"LimitNOFILE={NOFILE_WANTED * 4} in the systemd unit (ulimit -n)")


def _root_check(config: Config | None) -> Check:
    if os.geteuid() != 0:
        return Check("user", "ok", f"running as uid {os.geteuid()}")
    user = config.server.user if config is not None else None
    if user is None:
        return Check("user", "fail" if config is not None else "warn",
                     "running as root with no [server] user: askr serve refuses to run PHP as root; set "
                     '[server] user = "www-data" (or "root" to allow it)')
    if user == "root":
        return Check("user", "warn", 'PHP runs as root ([server] user = "root")')
    return Check("user", "ok", f"the master binds as root; fronts and PHP run as {user}")


def render(checks: list[Check], as_json: bool) -> str:
    if as_json:
        return json.dumps([asdict(c) for c in checks], indent=1)
    return "\n".join(f"{c.status:4} {c.name}: {c.detail}" for c in checks)
