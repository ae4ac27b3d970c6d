"""askr/sandbox.py (the policy the master builds) and the C side that applies it, driven directly:
askr-php --sandbox-probe and --sandbox-exec around the PHP CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from askr import config, sandbox
from askr.paths import php_worker_binary

PHP = shutil.which("php")


def load(tmp_path: Path, text: str) -> config.Config:
    (tmp_path / "app" / "public").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "askr.toml"
    path.write_text(f'[server]\nroot = "app/public"\n{text}')
    return config.load(path)


@pytest.mark.parametrize(("text", "message"), [
    ('connect = ["3306"]', '"tcp:PORT"'),
    ('connect = ["tcp:70000"]', "from 1 to 65535"),
    (f"connect = {json.dumps([f'tcp:{p}' for p in range(1000, 1065)])}", "at most 64 ports"),
    ('writable = ["/"]', "whole filesystem"),
    ('readable = "storage"', "list of paths"),
    ('allow_exec = "no"', "true or false"),
])
def test_bad_sandbox_settings_name_the_key_and_the_fix(tmp_path, text, message) -> None:
    with pytest.raises(config.ConfigError) as err:
        load(tmp_path, f"[sandbox]\n{text}\n")
    assert "[sandbox]" in str(err.value) and message in str(err.value) and "askr.toml" in str(err.value)


def test_policy_resolves_relative_paths_against_the_app_base(tmp_path) -> None:
    cfg = load(tmp_path, '[sandbox]\nwritable = ["storage", "/srv/shared"]\nreadable = ["config"]\n'
                         'connect = ["tcp:3306"]\nrequired = true\n')
    app = os.path.realpath(tmp_path / "app")
    lines = sandbox.policy_text(cfg).splitlines()
    assert {"required 1", "allow_exec 1", f"ro {app}/public", f"ro {app}", f"rw {app}/storage",
            "rw /srv/shared", f"ro {app}/config", "connect tcp:3306", "exec /usr/bin", "rw /dev/null",
            "ro /etc/resolv.conf"} <= set(lines)
    assert not any(line.endswith("askr.toml") or line == "ro /etc" for line in lines)


def test_allow_exec_false_names_no_program_directory(tmp_path) -> None:
    cfg = load(tmp_path, "[sandbox]\nallow_exec = false\n")
    text = sandbox.policy_text(cfg)
    assert "allow_exec 0" in text and "\nexec " not in text


def test_the_worker_app_base_is_the_base_when_set(tmp_path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "w.php").write_text("<?php")
    cfg = load(tmp_path, '[worker]\nscript = "base/w.php"\napp_base = "base"\n[sandbox]\nwritable = ["s"]\n')
    assert f"rw {os.path.realpath(tmp_path / 'base')}/s" in sandbox.policy_text(cfg)


def test_a_classic_app_can_narrow_the_app_base_to_its_root(tmp_path) -> None:
    """WordPress in app/public: with app_base = the root, the parent (other sites) is not readable."""
    cfg = load(tmp_path, '[worker]\napp_base = "app/public"\n')
    app = os.path.realpath(tmp_path / "app")
    lines = sandbox.policy_text(cfg).splitlines()
    assert f"ro {app}/public" in lines and f"ro {app}" not in lines


def test_a_path_with_a_newline_is_left_out_not_split_into_a_directive(tmp_path, caplog) -> None:
    """A directory name carrying "\nrw /" must not become a rule granting the whole filesystem."""
    evil = tmp_path / "x\nrw /"
    (evil / "public").mkdir(parents=True)
    path = tmp_path / "askr.toml"
    path.write_text(f'[server]\nroot = {json.dumps(str(evil / "public"))}\n')
    text = sandbox.policy_text(config.load(path))
    assert "\nrw /\n" not in text and not any(line.startswith("rw /") and line.strip() == "rw /"
                                             for line in text.splitlines())
    assert str(evil) not in text
    assert "PHP gets no access to" in caplog.text and "newline" in caplog.text
    # and the C side, given a policy: every line is a directive of its own (nothing to escape)
    lines = text.splitlines()
    assert all(line.startswith(("#", "required ", "allow_exec ", "debug ", "ro /", "rw /", "exec /"))
               for line in lines), lines


def test_secrets_under_a_readable_rule_are_named(tmp_path, caplog) -> None:
    """askr.toml beside public/ (the default layout) and a token file in a writable directory are
    PHP's to read; a token file kept elsewhere is not."""
    app = tmp_path / "app"
    (app / "public").mkdir(parents=True)
    (app / "storage").mkdir()
    (app / "storage" / "token").write_text("t0ken\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "token").write_text("t0ken\n")
    path = app / "askr.toml"
    path.write_text(f'[server]\nroot = "public"\n[admin]\ntoken_file = "{app}/storage/token"\n'
                    f'[sandbox]\nwritable = ["storage"]\n')
    cfg = config.load(path)
    found = {secret: (rule.access, rule.path) for secret, rule in sandbox.exposed_secrets(cfg)}
    base = ("ro", str(app.resolve()))  # the app base rule: the first that covers them
    assert found == {str(path): base, f"{app}/storage/token": base}
    sandbox.warn_exposed_secrets(cfg)
    assert caplog.text.count("sandbox: PHP can read") == 2 and "outside the app" in caplog.text
    # kept in a directory of its own: nothing to say
    outside = tmp_path / "etc" / "askr.toml"
    outside.write_text(f'[server]\nroot = "{app}/public"\n[admin]\ntoken_file = "{tmp_path}/etc/token"\n')
    assert sandbox.exposed_secrets(config.load(outside)) == []


@pytest.mark.parametrize(("connect", "abi", "unenforced"), [
    ('["tcp:3306"]', 3, True), ('["tcp:3306"]', 4, False), ("[]", 3, False),
    ('["tcp:3306"]', 0, False),  # no Landlock at all: the zygote's report says so
])
def test_connect_on_a_kernel_without_tcp_rules_is_said(tmp_path, connect, abi, unenforced) -> None:
    cfg = load(tmp_path, f"[sandbox]\nconnect = {connect}\n")
    why = sandbox.connect_not_enforced(cfg, abi)
    assert (why is not None) == unenforced
    if why:
        assert f"Landlock is ABI {abi}" in why and "not restricted" in why


NO_LANDLOCK = "sandbox: Landlock is not available on this kernel (Function not implemented): ..."
NO_SECCOMP = "sandbox: seccomp filters are not available here: ..."


def test_what_the_sandbox_runs_without_is_logged_once_then_on_a_change() -> None:
    """Each generation's zygote reports it again; the master logs it at the first generation
    and later only what a generation's report adds (the kernel does not change at a reload)."""
    log = sandbox.UnenforcedLog()
    assert log.to_log([NO_LANDLOCK]) == [NO_LANDLOCK]  # the first generation
    assert log.to_log([NO_LANDLOCK]) == []  # every reload after it
    assert log.to_log([NO_LANDLOCK]) == []
    assert log.to_log([NO_LANDLOCK, NO_SECCOMP]) == [NO_SECCOMP]  # a change: what is new
    assert log.to_log([NO_SECCOMP]) == []  # one went away: nothing to warn about
    assert log.to_log([NO_LANDLOCK, NO_SECCOMP]) == [NO_LANDLOCK]  # ... and came back
    assert log.to_log([]) == []  # the sandbox off, say
    assert log.to_log([NO_SECCOMP]) == [NO_SECCOMP]  # on again: said again
    assert sandbox.UnenforcedLog().to_log([NO_LANDLOCK]) == [NO_LANDLOCK]  # another master process


@pytest.mark.skipif(not os.access(sandbox.RUNTIME_PARENT, os.W_OK | os.X_OK), reason="no writable /dev/shm")
def test_the_runtime_directory_lies_in_no_rule_and_is_named_if_one_covers_it(tmp_path) -> None:
    cfg = load(tmp_path, "")
    parent = sandbox.runtime_parent(cfg)
    assert parent == "/dev/shm" and not any(sandbox._beneath(parent, os.path.realpath(r.path))
                                            for r in sandbox.rules(cfg))
    assert sandbox.runtime_parent(load(tmp_path, "[sandbox]\nenabled = false\n")) is None
    covered = load(tmp_path, '[sandbox]\nreadable = ["/dev/shm"]\n')
    runtime = tempfile.mkdtemp(prefix="askr-", dir=parent)
    try:
        found = sandbox.exposed_secrets(covered, runtime_dir=runtime)
        assert found == [(runtime, sandbox.Rule("ro", "/dev/shm"))]
        assert sandbox.exposed_secrets(cfg, runtime_dir=runtime) == []
    finally:
        os.rmdir(runtime)


def test_probe_reports_the_kernel() -> None:
    found = sandbox.probe()
    assert set(found) == {"landlock_abi", "landlock_error", "seccomp", "arch"}
    assert isinstance(found["landlock_abi"], int) and isinstance(found["seccomp"], bool)


# -- the launcher (askr-php --sandbox-exec) around the PHP CLI ---------------------------------
def launch(policy: str, code: str, *php_args: str) -> subprocess.CompletedProcess:
    read_fd = sandbox.pipe_with(policy)
    try:
        return subprocess.run([str(php_worker_binary()), "--sandbox-exec", "--sandbox-fd", str(read_fd), "--",
                               PHP, "-n", "-d", "extension=ffi", "-d", "ffi.enable=1", *php_args, "-r", code],
                              pass_fds=[read_fd], capture_output=True, text=True, timeout=60, check=False)
    finally:
        os.close(read_fd)


BASE = "allow_exec 0\nro /usr/lib\nrw /dev/null\n"
needs_kernel = pytest.mark.skipif(not (sandbox.probe()["landlock_abi"] and sandbox.probe()["seccomp"]),
                                  reason="this kernel lacks Landlock or seccomp")
needs_php = pytest.mark.skipif(PHP is None, reason="no PHP CLI (php8.2-cli)")


@needs_php
def test_a_bad_policy_line_is_refused() -> None:
    done = launch("ro /usr/lib\nbogus line\n", "echo 1;")
    assert done.returncode == 2 and "bad sandbox policy line 2: bogus line" in done.stderr


@needs_php
@needs_kernel
def test_the_launcher_confines_the_cli(tmp_path) -> None:
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "f").write_text("readable")
    (tmp_path / "no").write_text("secret")
    code = (f"echo json_encode(["
            f"'ok' => @file_get_contents('{tmp_path}/ok/f'), 'no' => @file_get_contents('{tmp_path}/no'),"
            f"'write' => @file_put_contents('{tmp_path}/ok/g', 'x'),"
            f"'exec' => @shell_exec('echo ran'),"
            f"'ptrace' => FFI::cdef('long ptrace(int, int, void *, void *); int *__errno_location(void);',"
            f" 'libc.so.6')->ptrace(0, 0, null, null)]);")
    done = launch(BASE + f"ro {tmp_path}/ok\n", code)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    # shell_exec: false, the shell cannot be executed (Landlock's EXECUTE: only the CLI and its loader)
    assert result == {"ok": "readable", "no": False, "write": False, "exec": False, "ptrace": -1}


@needs_php
@needs_kernel
def test_allow_exec_false_lets_the_launcher_run_the_cli_and_nothing_more(tmp_path) -> None:
    """Landlock must let the launcher's execve map the CLI and the dynamic loader, so from the
    CLI, the loader could run any file PHP can read (ld.so FILE) and the CLI could start itself
    again; with allow_exec 0 the seccomp filter refuses every execve after the launcher's own."""
    (tmp_path / "ok").mkdir()
    shutil.copy("/usr/bin/id", tmp_path / "ok" / "id")  # readable only: no EXECUTE right
    loader = "/lib64/ld-linux-x86-64.so.2"
    code = ("function run($argv) { $p = @proc_open($argv, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $io);"
            " return $p ? stream_get_contents($io[1]) : false; }"
            f"echo json_encode([run(['{loader}', '{tmp_path}/ok/id']),"
            f" run(['{PHP}', '-n', '-r', 'echo 1;'])]);")
    done = launch(BASE + f"ro {tmp_path}/ok\n", code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["", ""], done.stdout  # each child's execve failed
    with_exec = launch(BASE.replace("allow_exec 0", "allow_exec 1") + f"ro {tmp_path}/ok\n", code)
    assert json.loads(with_exec.stdout)[1] == "1"  # allow_exec 1: the CLI may run itself


@needs_php
@needs_kernel
def test_a_symlink_in_a_writable_directory_cannot_widen_a_rule(tmp_path) -> None:
    """PHP may write storage/: what a rule names inside it could, by the next reload, be a symlink
    PHP made to anywhere. Such a rule is skipped (with a WARNING) when it leads out of storage/;
    one that stays inside is kept."""
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "f").write_text("secret")
    storage = tmp_path / "storage"
    (storage / "real").mkdir(parents=True)
    (storage / "real" / "f").write_text("mine")
    (storage / "cache").symlink_to(tmp_path / "secret")   # planted: out of storage/
    (storage / "inside").symlink_to(storage / "real")     # harmless: stays in it
    policy = BASE + f"rw {storage}\nro {storage}/cache\nrw {storage}/inside\nro {storage}/cache/f\n"
    code = ("echo json_encode(array_map(fn ($p) => @file_get_contents($p), "
            f"['{tmp_path}/secret/f', '{storage}/cache/f', '{storage}/inside/f']));")
    done = launch(policy, code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [False, False, "mine"]
    assert done.stderr.count("which PHP may write, and leads out of it") == 2, done.stderr
    assert f"no rule for {storage}/cache: it lies in {storage}" in done.stderr


@needs_php
@needs_kernel
@pytest.mark.skipif(sandbox.probe()["landlock_abi"] < 4, reason="TCP rules need Landlock ABI 4 (Linux 6.7)")
def test_connect_limits_tcp_to_the_listed_ports() -> None:
    with socket.socket() as allowed, socket.socket() as other:
        for s in (allowed, other):
            s.bind(("127.0.0.1", 0))
            s.listen()
        ports = allowed.getsockname()[1], other.getsockname()[1]
        code = (f"$r = []; foreach ([{ports[0]}, {ports[1]}] as $p) {{ $r[] = "
                "@fsockopen('127.0.0.1', $p, $no, $err, 5) ? 'connected' : $err; } echo json_encode($r);")
        done = launch(BASE + f"connect tcp:{ports[0]}\n", code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["connected", "Permission denied"]


# -- askr doctor's sandbox line ------------------------------------------------------------------
@pytest.mark.parametrize(("found", "required", "status", "words"), [
    ({"landlock_abi": 7, "seccomp": True}, False, "ok", ["Landlock ABI 7", "seccomp filter"]),
    ({"landlock_abi": 3, "seccomp": True}, False, "ok", ["Landlock ABI 3", "lacks: [sandbox] connect"]),
    ({"landlock_abi": 0, "landlock_error": "Function not implemented", "seccomp": True}, False, "warn",
     ["no Landlock (Function not implemented)", "one warning"]),
    ({"landlock_abi": 0, "landlock_error": "x", "seccomp": True}, True, "fail", ["refuse to start"]),
    ({"landlock_abi": 7, "seccomp": False, "arch": "riscv64"}, False, "warn",
     ["no seccomp filter (arch riscv64)"]),
])
def test_doctor_says_what_the_kernel_offers(tmp_path, monkeypatch, found, required, status, words) -> None:
    from askr import preflight

    cfg = load(tmp_path, f"[sandbox]\nrequired = {str(required).lower()}\n")
    monkeypatch.setattr(sandbox, "probe", lambda: found)
    check = preflight._sandbox_check(cfg)
    assert check.status == status and all(w in check.detail for w in words), check


def test_doctor_with_the_sandbox_off(tmp_path) -> None:
    from askr import preflight

    check = preflight._sandbox_check(load(tmp_path, "[sandbox]\nenabled = false\n"))
    assert (check.status, check.detail) == ("warn", "off ([sandbox] enabled = false): PHP runs unsandboxed")


def test_a_port_named_twice_is_one_port(tmp_path) -> None:
    cfg = load(tmp_path, '[sandbox]\nconnect = ["tcp:3306", "tcp:6379", "tcp:3306"]\n')
    assert cfg.sandbox.connect == ("tcp:3306", "tcp:6379")


@pytest.mark.skipif(os.geteuid() != 0, reason="starting the probe as another user needs root")
def test_the_cli_probe_runs_as_the_php_user_not_the_master(tmp_path) -> None:
    """[worker] php_cli is the app's choice: the master must not run it as root."""
    with tempfile.TemporaryDirectory() as shared:  # pytest's tmp_path is root's alone (0700)
        base = Path(shared)
        base.chmod(0o777)
        wrapper = base / "php"
        wrapper.write_text(f'#!/bin/sh\nid -u > {base}/uid\nexec {shutil.which("php")} "$@"\n')
        wrapper.chmod(0o755)
        cfg = load(tmp_path, f"[worker]\nphp_cli = {json.dumps(str(wrapper))}\n")
        rules = sandbox.cli_rules(cfg, (65534, 65534))
        assert (base / "uid").read_text().strip() == "65534"
    assert sandbox.Rule("exec", str(wrapper)) in rules and any(r.access == "ro" for r in rules[1:])
