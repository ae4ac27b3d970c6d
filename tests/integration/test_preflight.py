"""`askr config-check` and `askr doctor` (askr/preflight.py) from the command line."""

from __future__ import annotations

import getpass
import json

from askrtest import APP, run_askr


def test_config_check_lists_every_problem(tmp_path):
    (tmp_path / "public").mkdir()
    (tmp_path / "askr.toml").write_text("""
[server]
root = "public"
workers = "two"
[queue]
script = "missing.php"
[admin]
listen = "0.0.0.0:9100"
[limitz]
x = 1
""")
    code, out = run_askr(["config-check", str(tmp_path / "askr.toml")])
    assert code == 1
    lines = out.strip().splitlines()
    assert len(lines) == 4, out  # one line per problem, each naming the key and the fix
    assert "unknown section [limitz]. Did you mean 'limits'?" in lines[0]
    assert "[server] workers = 'two': expected a positive integer or \"auto\"" in out
    assert "[queue] script = " in out and "no such file" in out
    assert "[admin] listen = '0.0.0.0:9100' is reachable from other machines" in out


def test_config_check_runs_php_lint_on_scripts(tmp_path):
    (tmp_path / "public").mkdir()
    (tmp_path / "worker.php").write_text("<?php\necho 'x'\nfoo(;\n")
    (tmp_path / "askr.toml").write_text('[server]\nroot = "public"\n[worker]\nscript = "worker.php"\n')
    code, out = run_askr(["config-check", str(tmp_path / "askr.toml")])
    assert code == 1
    assert "[worker] script = " in out and "does not parse: PHP Parse error" in out and "line 3" in out
    (tmp_path / "worker.php").write_text("<?php\nwhile (askr_handle_request(fn () => print('x'))) {}\n")
    code, out = run_askr(["config-check", str(tmp_path / "askr.toml")])
    assert (code, out.strip()) == (0, f"{tmp_path / 'askr.toml'}: ok")


def test_doctor_on_this_machine(tmp_path):
    (tmp_path / "askr.toml").write_text(f'[server]\nroot = "{APP}"\nuser = "{getpass.getuser()}"\n'
                                        '[worker]\nini = { memory_limit = "192M" }\n')
    code, out = run_askr(["doctor", "--json", "--config", str(tmp_path / "askr.toml")], timeout=120)
    checks = {c["name"]: c for c in json.loads(out[out.index("["):])}
    assert code == 0, out
    assert checks["config"]["status"] == "ok"
    assert checks["worker program"]["status"] == "ok" and checks["php library"]["status"] == "ok"
    assert checks["php"]["status"] == "ok" and "NTS" in checks["php"]["detail"]
    assert checks["opcache"]["status"] == "ok"  # measured inside a real worker
    assert "Zend OPcache" in checks["extensions"]["detail"]
    assert {"io_uring", "open files", "user"} <= set(checks)
    assert all(c["status"] in ("ok", "warn") for c in checks.values())


def test_doctor_fails_a_broken_setup(tmp_path):
    code, out = run_askr(["doctor"], env={"ASKR_PHP_BIN": str(tmp_path / "no-such-askr-php")})
    assert code == 1
    assert "fail worker program: " in out and "reinstall askr" in out
    (tmp_path / "askr.toml").write_text(
        f'[server]\nroot = "{APP}"\n[worker]\nini = {{ extension = "no_such_ext", "no_such.key" = "1" }}\n')
    code, out = run_askr(["doctor", "--config", str(tmp_path / "askr.toml")], timeout=120)
    assert code == 1
    assert "fail php startup: " in out and "Unable to load dynamic library 'no_such_ext'" in out
    assert "fail ini no_such.key: " in out


def test_doctor_and_config_check_take_the_seed_s_string_ini(tmp_path):
    ini = "zend_extension=opcache.so\\nopcache.enable=1\\nopcache.validate_timestamps=0\\nmemory_limit=192M"
    (tmp_path / "askr.toml").write_text(f'[server]\nroot = "{APP}"\nuser = "{getpass.getuser()}"\n'
                                        f'[worker]\nini = "{ini}"\n')
    code, out = run_askr(["config-check", str(tmp_path / "askr.toml")])
    assert code == 0, out
    code, out = run_askr(["doctor", "--json", "--config", str(tmp_path / "askr.toml")], timeout=120)
    checks = {c["name"]: c for c in json.loads(out[out.index("["):])}
    assert code == 0, out
    assert checks["opcache"]["status"] == "ok"
    assert not any(name.startswith("ini ") for name in checks), checks  # every key known to PHP
