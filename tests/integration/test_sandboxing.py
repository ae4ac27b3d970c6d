"""[sandbox]: Landlock and seccomp around real PHP workers, queue workers and scheduler runs.

The suite runs as root in CI, where an unsandboxed PHP reads /etc/shadow: that is what makes the
denials below mean something (each such assertion first checks that the test itself can read it).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trustme
from askrtest import REPO, TESTS, allow_root, stop_process, wait_until, write_config
from test_metrics import scrape, value

from askr.sandbox import probe as sandbox_probe

FIXTURE = TESTS / "php" / "sandbox"
SHADOW = "/etc/shadow"
ROOT_READS_SHADOW = os.access(SHADOW, os.R_OK)


def layout(base: Path) -> dict[str, Path]:
    """An app (document root, code, storage), a secret beside it, and askr's config and TLS pair
    in a directory of their own; PHP's temporary and session directories are set apart, so that
    no rule covers the pytest temporary directory all of this lives in."""
    app = base / "app"
    shutil.copytree(FIXTURE, app)
    (app / "src").mkdir()
    (app / "src" / "code.php").write_text("<?php return 'app code';\n")
    (app / "storage").mkdir()
    (base / "secret").mkdir()
    (base / "secret" / "secret.txt").write_text("not for PHP")
    conf = base / "conf"
    conf.mkdir()
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    for i, pem in enumerate(leaf.cert_chain_pems):
        pem.write_to_path(str(conf / "cert.pem"), append=i > 0)
    leaf.private_key_pem.write_to_path(str(conf / "key.pem"))
    ca.cert_pem.write_to_path(str(base / "ca.pem"))
    for d in ("phptmp", "sessions"):
        (base / d).mkdir()
    return {"base": base, "app": app, "conf": conf, "secret": base / "secret" / "secret.txt"}


def php_ini(paths: dict[str, Path], **more: str) -> dict[str, str]:
    base = paths["base"]
    # opcache.lockfile_path (default /tmp) is writable for the zygote's startup, preloading included
    tmp = str(base / "phptmp")
    return {"ffi.enable": "1", "sys_temp_dir": tmp, "upload_tmp_dir": tmp, "opcache.lockfile_path": tmp,
            "session.save_path": str(base / "sessions"), **more}


def sandbox_config(paths: dict[str, Path], mode: str = "classic", sandbox: dict | None = None,
                   tls: bool = True, worker: dict | None = None, **kw) -> Path:
    worker = worker or {"ini": php_ini(paths)}  # the app base: the root's parent, app/
    if mode == "worker":
        worker["script"] = str(paths["app"] / "worker.php")
    path = write_config(paths["conf"], root=paths["app"] / "public", workers=1, worker=worker,
                        tls={"cert": str(paths["conf"] / "cert.pem"), "key": str(paths["conf"] / "key.pem")}
                        if tls else None, **kw)
    section = {"writable": ["storage"], **(sandbox or {})}
    lines = [f"{k} = {str(v).lower() if isinstance(v, bool) else json.dumps(v)}" for k, v in section.items()]
    path.write_text(path.read_text() + "\n[sandbox]\n" + "\n".join(lines) + "\n")
    return path


def client(server, paths: dict[str, Path]) -> httpx.Client:
    url = server.url.replace("http://", "https://") if (paths["conf"] / "cert.pem").exists() else server.url
    return httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(paths["base"] / "ca.pem")),
                        timeout=30)


def probe(http: httpx.Client, **params: str) -> dict:
    response = http.get("/probe.php", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def metric(server, name: str) -> float:
    return value(scrape(server), name)


@pytest.fixture(scope="module", params=["classic", "worker"])
def sandboxed(request, tmp_path_factory, askr_module_server):
    paths = layout(tmp_path_factory.mktemp("sandbox"))
    server = askr_module_server("--config", sandbox_config(paths, request.param))
    server.mode = request.param
    with client(server, paths) as http:
        yield server, http, paths


def test_reads_only_what_the_rules_allow(sandboxed) -> None:
    _server, http, paths = sandboxed
    conf = paths["conf"]
    forbidden = [SHADOW, str(paths["secret"]), str(conf / "askr.toml"), str(conf / "key.pem")]
    for path in forbidden:
        assert os.access(path, os.R_OK) or path == SHADOW  # the test itself can read them
        result = probe(http, do="read", path=path)
        assert result["ok"] is False, path
        assert (path == SHADOW and not ROOT_READS_SHADOW) or "Permission denied" in result["error"], result
    assert probe(http, do="list", path=str(paths["secret"].parent))["ok"] is False
    assert probe(http, do="list", path="/etc")["ok"] is False  # not /etc as a whole
    # nor the host's TLS keys beside the CA certificates (the test, as root, can list them)
    private = "/etc/ssl/private"
    if os.access(private, os.R_OK | os.X_OK):
        assert probe(http, do="list", path=private)["ok"] is False
        assert probe(http, do="list", path="/usr/lib/ssl/private")["ok"] is False  # Debian's symlink to it
    # what the app needs: its code, PHP's own files, DNS and TLS data
    for path in (str(paths["app"] / "src" / "code.php"), "/usr/share/php", "/etc/resolv.conf",
                 "/usr/share/zoneinfo/UTC", "/etc/ssl/certs/ca-certificates.crt"):
        if os.path.exists(path):
            assert probe(http, do="list" if os.path.isdir(path) else "read", path=path)["ok"] is True, path


def test_cannot_write_the_document_root_or_the_code(sandboxed) -> None:
    _server, http, paths = sandboxed
    for path in (paths["app"] / "public" / "shell.php", paths["app"] / "src" / "code.php",
                 paths["app"] / "worker.php"):
        before = path.read_bytes() if path.exists() else None
        result = probe(http, do="write", path=str(path))
        assert result["ok"] is False and "Permission denied" in result["error"], (path, result)
        assert (path.read_bytes() if path.exists() else None) == before


def test_writes_storage_sessions_and_uploads(sandboxed) -> None:
    server, http, paths = sandboxed
    target = paths["app"] / "storage" / f"{server.mode}.txt"
    assert probe(http, do="write", path=str(target), data="hello")["ok"] is True
    assert target.read_text() == "hello"
    first = probe(http, do="session")
    second = probe(http, do="session")
    assert (first["n"], second["n"]) == (1, 2)
    assert Path(second["file"]).parent == paths["base"] / "sessions" and Path(second["file"]).exists()
    dest = paths["app"] / "storage" / f"upload-{server.mode}.bin"
    response = http.post("/probe.php", params={"do": "upload", "path": str(dest)},
                         files={"file": ("a.bin", b"\x00upload" * 1000)})
    assert response.json() == {"do": "upload", "tmp_dir": str(paths["base"] / "phptmp"), "ok": True}
    assert dest.read_bytes() == b"\x00upload" * 1000


def test_ptrace_and_mount_fail_with_eperm_and_are_counted(sandboxed) -> None:
    server, http, _paths = sandboxed
    before = metric(server, "askr_sandbox_denied_syscalls_total")
    for call in ("ptrace", "mount"):
        result = probe(http, do="syscall", call=call)
        assert (result["rc"], result["errno"]) == (-1, 1), result  # EPERM, and the worker lives on
    wait_until(lambda: metric(server, "askr_sandbox_denied_syscalls_total") >= before + 2,
               what="the denials in /metrics")
    server.wait_for_log(r"sandbox: denied syscall ptrace \(101\)")
    server.wait_for_log(r"sandbox: denied syscall mount \(165\)")
    status = httpx.get(server.admin_url + "/api/status", timeout=30).json()
    assert status["sandbox"]["landlock_abi"] >= 1 and status["sandbox"]["seccomp"] is True
    assert status["sandbox"]["denied_syscalls"] >= 2 and status["sandbox"]["allow_exec"] is True


TIOCSTI, TIOCLINUX, TCGETS = 0x5412, 0x541C, 0x5401
EPERM, ENOTTY = 1, 25


def test_terminal_injection_ioctls_fail_with_eperm(sandboxed) -> None:
    """TIOCSTI would type commands into the terminal askr serve runs in; TIOCLINUX reads the
    console. Both are EPERM, from PHP and from a program it runs; other ioctls pass (ENOTTY on
    /dev/null, not EPERM)."""
    _server, http, _paths = sandboxed
    for request in (TIOCSTI, TIOCLINUX):
        assert probe(http, do="ioctl", request=str(request)) == {"do": "ioctl", "rc": -1, "errno": EPERM}
        # the high word is not part of the request the kernel runs: it cannot hide one
        assert probe(http, do="ioctl", request=str(request | 1 << 32))["errno"] == EPERM
    assert probe(http, do="ioctl", request=str(TCGETS)) == {"do": "ioctl", "rc": -1, "errno": ENOTTY}
    perl = "perl -e '$x = \"x\"; ioctl(STDIN, {}, $x) or print $!+0' < /dev/null 2>&1"
    assert probe(http, do="exec", cmd=perl.format(TIOCSTI))["output"] == str(EPERM)
    assert probe(http, do="exec", cmd=perl.format(TCGETS))["output"] == str(ENOTTY)


def test_programs_run_but_inherit_the_rules(sandboxed) -> None:
    _server, http, paths = sandboxed
    assert "uid=" in probe(http, do="exec", cmd="id")["output"]
    output = probe(http, do="exec", cmd=f"cat {SHADOW} 2>&1; cat {paths['secret']} 2>&1")["output"]
    assert "root:" not in output and "not for PHP" not in output
    assert output.count("Permission denied") == 2, output


def serve(askr_server, paths: dict[str, Path], **kw) -> tuple[object, httpx.Client]:
    server = askr_server("--config", sandbox_config(paths, tls=False, **kw))
    return server, httpx.Client(base_url=server.url, timeout=30)


def test_allow_exec_false_denies_programs(askr_server, tmp_path) -> None:
    paths = layout(tmp_path)
    server, http = serve(askr_server, paths, sandbox={"allow_exec": False})
    with http:
        assert probe(http, do="exec", cmd="id")["output"] in (None, False)  # no pipe, or no output
        server.wait_for_log(r"sandbox: denied syscall execve")
        assert probe(http, do="read", path=str(paths["app"] / "src" / "code.php"))["ok"] is True
    assert metric(server, "askr_sandbox_denied_syscalls_total") >= 1


@pytest.mark.skipif(sandbox_probe()["landlock_abi"] < 4, reason="TCP rules need Landlock ABI 4 (Linux 6.7)")
def test_connect_allows_only_the_listed_ports(askr_server, tmp_path) -> None:
    paths = layout(tmp_path)
    with socket.socket() as allowed, socket.socket() as other:
        for s in (allowed, other):
            s.bind(("127.0.0.1", 0))
            s.listen()
        port, other_port = allowed.getsockname()[1], other.getsockname()[1]
        _server, http = serve(askr_server, paths, sandbox={"connect": [f"tcp:{port}"]})
        with http:
            assert probe(http, do="connect", port=str(port))["ok"] is True
            assert probe(http, do="connect", port=str(other_port)) == {
                "do": "connect", "ok": False, "error": "Permission denied"}


@pytest.mark.skipif(not ROOT_READS_SHADOW, reason="needs root: only root's unsandboxed PHP reads /etc/shadow")
def test_enabled_false_is_todays_behaviour(askr_server, tmp_path) -> None:
    paths = layout(tmp_path)
    server, http = serve(askr_server, paths, sandbox={"enabled": False})
    with http:
        assert probe(http, do="read", path=SHADOW)["ok"] is True
        assert probe(http, do="syscall", call="ptrace")["rc"] == 0  # PTRACE_TRACEME works unsandboxed
        status = httpx.get(server.admin_url + "/api/status", timeout=30).json()
    assert status["sandbox"] == {"enabled": False, "required": False, "allow_exec": True, "landlock_abi": 0,
                                 "seccomp": False, "denied_syscalls": 0}
    assert "sandbox" not in server.log


def runtime_dir(server) -> Path:
    """askr's runtime directory: where the master's scoreboard mapping lives."""
    maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
    return Path(re.search(r"(/\S+)/scoreboard$", maps, re.M).group(1))


def test_askr_runtime_directory_is_out_of_php_reach(askr_server, tmp_path) -> None:
    """PHP's temporary directory left at its default (TMPDIR, else /tmp, writable by PHP) must not
    hold askr's runtime directory, which belongs to the PHP user too: the fronts' config (the admin
    token in it), the scoreboard and the fronts' sockets."""
    paths = layout(tmp_path)
    ini = {k: v for k, v in php_ini(paths).items() if k not in ("sys_temp_dir", "upload_tmp_dir")}
    server, http = serve(askr_server, paths, worker={"ini": ini}, admin={"token": "t0ken-for-the-admin-api"})
    with http:
        directory = runtime_dir(server)
        wait_until(lambda: (directory / "config.json").exists(), what="the fronts' config.json")
        assert "t0ken-for-the-admin-api" in (directory / "config.json").read_text()
        assert probe(http, do="list", path=str(directory))["ok"] is False
        assert probe(http, do="read", path=str(directory / "config.json"))["ok"] is False
        assert probe(http, do="write", path=str(directory / "scoreboard"), data="x")["ok"] is False
        # PHP's own temporary directory works as before
        mine = f"{os.environ.get('TMPDIR', '/tmp')}/askr-php-{os.getpid()}"
        assert probe(http, do="write", path=mine)["ok"] is True
    os.unlink(mine)


def test_opcache_preload_runs_sandboxed(askr_server, tmp_path) -> None:
    """opcache.preload runs app code in the zygote during module startup: inside the sandbox too."""
    paths = layout(tmp_path)
    ini = php_ini(paths, **{"opcache.preload": str(paths["app"] / "preload.php")})
    if os.geteuid() == 0:
        ini["opcache.preload_user"] = "root"  # PHP refuses to preload as root without it
    server, http = serve(askr_server, paths, worker={"ini": ini})
    http.close()
    result = json.loads((paths["app"] / "storage" / "preload.json").read_text())
    assert result == {"shadow": False, "write_code": False}
    assert not (paths["app"] / "public" / "preloaded.php").exists()
    assert "askr ready" in server.log


# -- a kernel without Landlock: askr serve under a seccomp filter of the test's own ---------
SYS_LANDLOCK = (444, 446)  # landlock_create_ruleset .. landlock_restrict_self (x86_64)


def without_landlock() -> None:
    """preexec_fn: every landlock_* call of this process tree fails with ENOSYS, as on a kernel
    built without Landlock."""
    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                    ("k", ctypes.c_uint32)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    program = [
        (0x20, 0, 0, 4),              # ld arch
        (0x15, 0, 4, 0xC000003E),     # jeq AUDIT_ARCH_X86_64, else allow
        (0x20, 0, 0, 0),              # ld nr
        (0x35, 0, 2, SYS_LANDLOCK[0]),  # jge 444, else allow
        (0x25, 1, 0, SYS_LANDLOCK[1]),  # jgt 446: allow
        (0x06, 0, 0, 0x00050000 | 38),  # ret ERRNO(ENOSYS)
        (0x06, 0, 0, 0x7FFF0000),     # ret ALLOW
    ]
    filters = (SockFilter * len(program))(*(SockFilter(*ins) for ins in program))
    fprog = SockFprog(len(program), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:
        os._exit(99)  # PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP: the test cannot simulate the kernel


def start_without_landlock(config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "askr", *allow_root(["serve", "--config", str(config)])]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", stdin=subprocess.DEVNULL, preexec_fn=without_landlock)


def read_until(proc: subprocess.Popen, lines: list[str], pattern: str) -> re.Match:
    """Read the server's output into `lines` up to a line matching `pattern` (the server's own
    timeouts end a hang)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"the server exited before logging {pattern!r}:\n" + "".join(lines))


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the test's filter is written for x86_64")
def test_no_landlock_warns_once_and_serves_unsandboxed(tmp_path) -> None:
    """One WARNING per master process: reloads start zygotes that find the same kernel."""
    paths = layout(tmp_path)
    proc = start_without_landlock(sandbox_config(paths, tls=False))
    lines: list[str] = []
    try:
        ready = read_until(proc, lines, r"askr ready: (http://[\d.]+:\d+)")
        for generation in (2, 3):
            proc.send_signal(signal.SIGHUP)  # a reload: a new generation, its own zygote
            read_until(proc, lines, rf"PHP generation {generation} ready")
        admin = re.search(r"admin API: (http://[\d.]+:\d+)/api/status", "".join(lines)).group(1)
        with httpx.Client(base_url=ready.group(1), timeout=30) as http:
            assert probe(http, do="read", path=str(paths["secret"]))["ok"] is True  # no filesystem rules
            if ROOT_READS_SHADOW:
                assert probe(http, do="read", path=SHADOW)["ok"] is True
            result = probe(http, do="syscall", call="ptrace")  # the seccomp filter still holds
            assert (result["rc"], result["errno"]) == (-1, 1)
        status = httpx.get(admin + "/api/status", timeout=30).json()["sandbox"]
        assert (status["landlock_abi"], status["seccomp"]) == (0, True)
    finally:
        stop_process(proc)
        lines += proc.stdout.readlines()
    warnings = [line for line in lines if "Landlock is not available" in line]
    assert len(warnings) == 1, "".join(lines)
    assert "Function not implemented" in warnings[0] and "WARNING" in warnings[0]


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the test's filter is written for x86_64")
def test_no_landlock_with_required_refuses_to_start(tmp_path) -> None:
    paths = layout(tmp_path)
    proc = start_without_landlock(sandbox_config(paths, tls=False, sandbox={"required": True}))
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        stop_process(proc)
    assert proc.returncode != 0
    assert "askr ready" not in out
    assert re.search(r"sandbox: \[sandbox\] required = true, but Landlock is not available on this kernel "
                     r"\(Function not implemented\)", out), out


# -- queue workers and the scheduler -----------------------------------------------------------
def test_queue_workers_and_scheduler_runs_are_sandboxed(askr_server, tmp_path) -> None:
    paths = layout(tmp_path)
    job = str(paths["app"] / "job.php")
    server, http = serve(askr_server, paths, queue={"script": job, "workers": 1},
                         scheduler={"script": job, "interval": 1})
    http.close()
    storage = paths["app"] / "storage"
    wait_until(lambda: (storage / "queue.json").exists() and (storage / "scheduler.json").exists(),
               what="a queue worker and a scheduler run", detail=lambda: server.log[-2000:])
    for name in ("queue", "scheduler"):
        result = json.loads((storage / f"{name}.json").read_text())
        assert result["code"] is True and result["write_code"] is False, (name, result)
        assert result["shadow"] is False and result["own_proc"] is True, (name, result)
        assert not (paths["app"] / "public" / f"{name}.php").exists()
