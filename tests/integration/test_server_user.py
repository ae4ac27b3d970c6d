"""[server] user: the master binds (a port below 1024 too) as root; fronts, PHP workers and
queue workers run as the user; serving as root without it is refused."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from askrtest import APP, run_askr

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root; not running as root")


def low_port() -> int:
    for port in range(1023, 799, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free port below 1024 on 127.0.0.1")


def ps(pid_filter: str) -> list[tuple[int, str, str]]:
    out = subprocess.run(["ps", "-o", "pid=,user=,args=", *pid_filter.split()], capture_output=True,
                         text=True, check=False).stdout
    return [(int(p), u, a) for p, u, a in (line.split(None, 2) for line in out.splitlines() if line.strip())]


@pytest.fixture
def public_root():
    root = tempfile.mkdtemp(prefix="askr-priv-", dir="/tmp")  # pytest's tmp_path is root-only
    os.chmod(root, 0o755)
    Path(root, "whoami.php").write_text(
        "<?php echo json_encode(['euid' => posix_geteuid(), 'egid' => posix_getegid(),"
        " 'pid' => getmypid()]);")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_fronts_and_php_run_as_the_user(askr_server, public_root):
    port = low_port()
    server = askr_server("--root", public_root, "--listen", f"127.0.0.1:{port}", "--workers", "1",
                         "--user", "nobody")
    answer = httpx.get(f"http://127.0.0.1:{port}/whoami.php", timeout=30).json()
    assert (answer["euid"], answer["egid"]) == (65534, 65534)
    master = server.proc.pid
    assert ps(f"-p {master}")[0][1] == "root"  # it bound the port and supervises
    # every front drops root before it serves; one may still be starting (ready needs only one)
    deadline = time.monotonic() + 30
    while True:
        children = ps(f"--ppid {master}")
        front = [c for c in children if "askr.front" in c[2]]
        zygote = [c for c in children if "--zygote" in c[2]]
        if {c[1] for c in front} == {"nobody"} or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert front and zygote
    assert {c[1] for c in front + zygote} == {"nobody"}
    workers = ps(f"--ppid {zygote[0][0]}")
    assert answer["pid"] in [w[0] for w in workers] and {w[1] for w in workers} == {"nobody"}
    assert httpx.get(f"http://127.0.0.1:{port}/whoami.php", timeout=30).status_code == 200


def test_serving_as_root_without_a_user_is_refused(tmp_path):
    code, out = run_askr(["serve", "--root", str(APP), "--listen", "127.0.0.1:0"], root_ok=False)
    assert code == 2
    assert "askr is running as root and [server] user is not set, so PHP would run as root" in out
    code, out = run_askr(["serve", "--root", str(APP), "--listen", "127.0.0.1:0", "--user", "no-such-user"],
                         root_ok=False)
    assert code == 2 and "[server] user = 'no-such-user': no such user" in out


def test_queue_workers_run_as_the_user(askr_server, public_root):
    Path(public_root, "queue.php").write_text("<?php echo 'queue euid=', posix_geteuid(), PHP_EOL; sleep(9);")
    config = Path(public_root, "askr.toml")
    config.write_text(f'[server]\nlisten = "127.0.0.1:0"\nroot = "{public_root}"\nworkers = 1\n'
                      f'user = "nobody"\n[queue]\nscript = "{public_root}/queue.php"\n'
                      '[admin]\nlisten = "127.0.0.1:0"\n')
    server = askr_server("--config", config)
    server.wait_for_log(r"\[queue#0\] queue euid=65534")
