"""The command line and askr.toml: errors that name the file and key (exit 2), defaults that find
./public, relative roots, flags, [worker] ini, `askr version`, and SIGTERM."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import ssl
from pathlib import Path

import pytest
import trustme
from askrtest import APP, REPO, VERSION, run_askr, write_config
from laravel_fixture import make_laravel_app
from rawhttp import Conn, request_bytes

BASE = '[server]\nlisten = "127.0.0.1:0"\nroot = "{root}"\n'

BAD_CONFIGS = {
    # name: (toml text after BASE, the key the message must name)
    "unknown_server_key": ("workrs = 2\n", "workrs"),
    "unknown_section": ("\n[srever]\nworkers = 2\n", "srever"),
    "unknown_limits_key": ('\n[limits]\nmax_body = "1M"\n', "max_body"),
    "workers_not_int": ('workers = "many"\n', "workers"),
    "workers_negative": ("workers = -3\n", "workers"),
    "max_requests_negative": ("max_requests = -1\n", "max_requests"),
    "https_not_bool": ('https = "yes"\n', "https"),
    "bad_size": ('\n[limits]\nmax_body_size = "lots"\n', "max_body_size"),
    "bad_size_unit": ('\n[limits]\nmax_header_size = "16Q"\n', "max_header_size"),
    "bad_timeout": ('\n[limits]\nheader_timeout = "soon"\n', "header_timeout"),
    "bad_max_headers": ('\n[limits]\nmax_headers = "many"\n', "max_headers"),
    "ini_bad_line": ('\n[worker]\nini = "memory_limit=1G\\nopcache.enable"\n', "line 2 ('opcache.enable')"),
    "ini_not_table": ('\n[worker]\nini = 3\n', "ini"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_exits_2_naming_file_and_key(tmp_path, case):
    extra, key = BAD_CONFIGS[case]
    path = tmp_path / "askr.toml"
    path.write_text(BASE.format(root=APP) + extra)
    code, out = run_askr(["serve", "--config", str(path)])
    assert code == 2, out
    assert path.name in out, out
    assert key in out, out
    assert "Traceback" not in out, out


def test_bad_listen_address_exits_2(tmp_path):
    path = tmp_path / "askr.toml"
    path.write_text(f'[server]\nlisten = "not-an-address"\nroot = "{APP}"\n')
    code, out = run_askr(["serve", "--config", str(path)])
    assert code == 2, out
    assert "listen" in out
    assert "Traceback" not in out


def test_missing_root_exits_2(tmp_path):
    path = tmp_path / "askr.toml"
    path.write_text(BASE.format(root=tmp_path / "does-not-exist"))
    code, out = run_askr(["serve", "--config", str(path)])
    assert code == 2, out
    assert "root" in out
    assert "Traceback" not in out


def test_toml_syntax_error_exits_2(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('[server\nlisten = "127.0.0.1:0"\n')
    code, out = run_askr(["serve", "--config", str(path)])
    assert code == 2, out
    assert "broken.toml" in out
    assert "Traceback" not in out


def test_missing_config_file_exits_2(tmp_path):
    code, out = run_askr(["serve", "--config", str(tmp_path / "nope.toml")])
    assert code == 2, out
    assert "nope.toml" in out


def test_bad_max_body_size_flag_exits_2():
    code, out = run_askr(["serve", "--root", str(APP), "--listen", "127.0.0.1:0", "--max-body-size", "12Q"])
    assert code == 2, out
    assert "max-body-size" in out or "max_body_size" in out
    assert "Traceback" not in out


def test_bad_workers_flag_exits_2():
    code, out = run_askr(["serve", "--root", str(APP), "--listen", "127.0.0.1:0", "--workers", "lots"])
    assert code == 2, out
    assert "workers" in out


def test_version():
    code, out = run_askr(["version"])
    assert code == 0, out
    assert VERSION in out


def test_server_header_matches_version(php_app):
    with Conn(php_app.host, php_app.port) as c:
        assert c.request("GET", "/hello.php").header("server") == f"askr/{VERSION}"


def test_serve_without_root_uses_cwd_public(askr_server, tmp_path):
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.php").write_text("<?php echo 'from-public:' . $_SERVER['REQUEST_URI'];")
    (tmp_path / "index.php").write_text("<?php echo 'wrong-root';")
    server = askr_server(cwd=tmp_path)  # no --root, no --config
    with Conn(server.host, server.port) as c:
        resp = c.request("GET", "/some/route")
        assert resp.status == 200
        assert resp.body == b"from-public:/some/route"


def test_relative_root_in_config_is_relative_to_config_dir(askr_server, tmp_path):
    conf_dir = tmp_path / "conf"
    (conf_dir / "site").mkdir(parents=True)
    (conf_dir / "site" / "index.php").write_text("<?php echo 'site-root';")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "site").mkdir(parents=True)
    (elsewhere / "site" / "index.php").write_text("<?php echo 'cwd-relative-root';")
    path = write_config(conf_dir, root="site")
    server = askr_server("--config", path, cwd=elsewhere)
    with Conn(server.host, server.port) as c:
        assert c.request("GET", "/").body == b"site-root"


def test_workers_flag_gives_that_many_concurrent_workers(askr_server, gate):
    server = askr_server("--root", APP, "--workers", "3")
    conns = [Conn(server.host, server.port, timeout=30) for _ in range(3)]
    try:
        for c in conns:
            c.send(request_bytes("GET", gate.target))
        pids = gate.wait_started(3)  # three requests in PHP at once: three workers
        assert len(set(pids)) == 3
        gate.open()
        for c in conns:
            assert c.read_final_response().status == 200
    finally:
        for c in conns:
            c.close()


def test_max_body_size_flag(askr_server):
    server = askr_server("--root", APP, "--workers", "1", "--max-body-size", "1K")
    with Conn(server.host, server.port) as c:
        ok = c.request("POST", "/info.php", [("Content-Type", "text/plain")], b"a" * 1000)
        assert ok.status == 200
        assert len(ok.json()["input"]) == 1000
    with Conn(server.host, server.port) as c:
        c.send(request_bytes("POST", "/info.php", [("Content-Length", "2000")]))
        assert c.read_final_response().status == 413


def test_worker_ini_overrides(askr_server, tmp_path):
    path = write_config(tmp_path, workers=1, worker={"ini": {"memory_limit": "77M", "max_input_vars": "123"}})
    server = askr_server("--config", path)
    with Conn(server.host, server.port) as c:
        assert c.request("GET", "/ini.php?k=memory_limit").json()["value"] == "77M"
        assert c.request("GET", "/ini.php?k=max_input_vars").json()["value"] == "123"


def test_workers_in_config_and_flag_wins(askr_server, tmp_path, gate):
    path = write_config(tmp_path, workers=1)
    server = askr_server("--config", path, "--workers", "2")
    conns = [Conn(server.host, server.port, timeout=30) for _ in range(2)]
    try:
        for c in conns:
            c.send(request_bytes("GET", gate.target))
        assert len(set(gate.wait_started(2))) == 2
        gate.open()
        for c in conns:
            assert c.read_final_response().status == 200
    finally:
        for c in conns:
            c.close()


def test_sigterm_exits_0(askr_server):
    server = askr_server("--root", APP, "--workers", "1")
    with Conn(server.host, server.port) as c:
        assert c.request("GET", "/hello.php").status == 200
    assert server.stop(signal.SIGTERM, timeout=30) == 0


def test_sigterm_lets_inflight_request_finish(askr_server, gate):
    server = askr_server("--root", APP, "--workers", "1")
    with Conn(server.host, server.port, timeout=30) as c:
        c.send(request_bytes("GET", gate.target))
        gate.wait_started(1)
        seen = len(server.lines)
        server.proc.send_signal(signal.SIGTERM)
        # let the shutdown begin (its log line) before the request may finish
        with contextlib.suppress(AssertionError):
            server.wait_for_log(r".", timeout=5, start=seen)
        gate.open()
        resp = c.read_final_response()
        assert resp.status == 200
        assert resp.json()["released"] is True
    assert server.proc.wait(30) == 0


def test_workers_auto(askr_server, tmp_path):
    server = askr_server("--config", write_config(tmp_path, workers="auto"))
    with Conn(server.host, server.port) as c:
        assert c.request("GET", "/hello.php").body == b"hello"


def test_worker_ini_as_php_ini_lines(askr_server, tmp_path):
    """The seed deployment's form: one string of php.ini lines, repeated keys and all."""
    path = tmp_path / "askr.toml"
    path.write_text(f'[server]\nlisten = "127.0.0.1:0"\nroot = "{APP}"\nworkers = 1\n'
                    '[admin]\nlisten = "127.0.0.1:0"\n[worker]\n'
                    'ini = "; tuned for production\\nmemory_limit = 77M\\n'
                    'max_input_vars=\\"123\\"\\n\\nopcache.enable=1"\n')
    server = askr_server("--config", path)
    with Conn(server.host, server.port) as c:
        assert c.request("GET", "/ini.php?k=memory_limit").json()["value"] == "77M"
        assert c.request("GET", "/ini.php?k=max_input_vars").json()["value"] == "123"
        assert c.request("GET", "/ini.php?k=opcache.enable").json()["value"] == "1"


def deployment_toml(tmp_path: Path, app: Path) -> str:
    """docs/deployment.md's askr.toml exactly as written, but for paths, ports and the user."""
    doc = (REPO / "docs" / "deployment.md").read_text()
    text = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    assert 'ini = "zend_extension=opcache.so' in text  # the string form, as the seed writes it
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    leaf.private_key_pem.write_to_path(tmp_path / "key.pem")
    shutil.copy(REPO / "examples" / "laravel-worker.php", app / "public" / "askr-worker.php")
    for script in ("askr-queue.php", "askr-scheduler.php"):
        shutil.copy(REPO / "examples" / script, app / script)
    user = pwd.getpwuid(os.geteuid()).pw_name
    replacements = {
        "0.0.0.0:443": "127.0.0.1:0", "0.0.0.0:80": "127.0.0.1:0", "/srv/app/current": str(app),
        '"www-data"': f'"{user}"',
        "/etc/letsencrypt/live/example.com/fullchain.pem": str(tmp_path / "cert.pem"),
        "/etc/letsencrypt/live/example.com/privkey.pem": str(tmp_path / "key.pem"),
        "/var/log/askr/access.log": str(tmp_path / "access.log"),
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return text + '\n[admin]\nlisten = "127.0.0.1:0"\n'


def test_the_deployment_guide_s_askr_toml_works_as_written(askr_server, tmp_path):
    app = make_laravel_app(tmp_path / "app")
    path = tmp_path / "askr.toml"
    path.write_text(deployment_toml(tmp_path, app))
    code, out = run_askr(["config-check", str(path)])
    assert code == 0, out
    server = askr_server("--config", path)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((server.host, server.port), timeout=30) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := tls.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:300]
