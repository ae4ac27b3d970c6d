"""The reference askr is measured against: Debian's nginx + php-fpm, started by the test itself.

nginx is configured the way Debian, Laravel and Symfony deployments run PHP: static files and
directories first, `try_files ... /index.php?$query_string` as the fallback, and PHP through
Debian's own `snippets/fastcgi-php.conf` (split PATH_INFO, 404 for a script that does not exist)
in a `location ~ [^/]\\.php(/|$)` block. php-fpm runs `pm = static` with Debian's php.ini, like
askr's workers. Everything listens on 127.0.0.1 only and lives in a temporary directory.

Tests skip (naming the missing package) when nginx or php-fpm is not installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from askrtest import free_port

NGINX = "/usr/sbin/nginx"
PHP_FPM = "/usr/sbin/php-fpm8.2"
FASTCGI_SNIPPET = "/etc/nginx/snippets/fastcgi-php.conf"


@dataclass
class Reference:
    host: str
    port: int
    tmp: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def fpm_log(self) -> str:
        return (self.tmp / "php-fpm.log").read_text(errors="replace")


def require_reference() -> None:
    for path, package in ((NGINX, "nginx"), (PHP_FPM, "php8.2-fpm"), (FASTCGI_SNIPPET, "nginx-common")):
        if not os.path.exists(path):
            pytest.skip(f"the nginx + php-fpm reference needs Debian's {package} ({path} is missing)")


def _fpm_conf(tmp: Path, ini: dict[str, str]) -> str:
    as_root = "user = root\ngroup = root\n" if os.geteuid() == 0 else ""
    admin = "".join(f"php_admin_value[{k}] = {v}\n" for k, v in ini.items())
    return f"""\
[global]
pid = {tmp}/php-fpm.pid
error_log = {tmp}/php-fpm.log
daemonize = no

[reference]
{as_root}listen = {tmp}/php-fpm.sock
listen.mode = 0666
pm = static
pm.max_children = 2
catch_workers_output = yes
{admin}"""


# How nginx hands PHP requests to php-fpm. "debian": Debian's snippets/fastcgi-php.conf (nginx
# splits PATH_INFO; 404 for a missing script). "fix_pathinfo": nginx passes the whole path as
# SCRIPT_FILENAME with PATH_INFO, and php-fpm's cgi.fix_pathinfo=1 splits it, deriving
# PATH_TRANSLATED (as configurations without fastcgi_split_path_info, or Apache, have it).
PHP_LOCATIONS = {
    "debian": "include snippets/fastcgi-php.conf;",
    "fix_pathinfo": """fastcgi_split_path_info ^(.+?\\.php)(/.*)$;
            if (!-f $document_root$fastcgi_script_name) { return 404; }
            include fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name$fastcgi_path_info;
            fastcgi_param PATH_INFO $fastcgi_path_info;""",
}


def _nginx_conf(tmp: Path, port: int, root: Path, php_location: str) -> str:
    as_root = "user root root;\n" if os.geteuid() == 0 else ""
    return f"""\
{as_root}daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {tmp}/client_body;
    fastcgi_temp_path {tmp}/fastcgi;
    proxy_temp_path {tmp}/proxy;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        index index.php index.html;
        location / {{
            try_files $uri $uri/ /index.php?$query_string;
        }}
        location ~ [^/]\\.php(/|$) {{
            {PHP_LOCATIONS[php_location]}
            fastcgi_pass unix:{tmp}/php-fpm.sock;
        }}
    }}
}}
"""


def _wait_answering(url: str, procs: list[subprocess.Popen], tmp: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                logs = "\n".join(p.read_text(errors="replace") for p in tmp.glob("*.log"))
                raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}:\n{logs}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError as e:
            if e.code != 502:  # 502: php-fpm is not listening yet
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"nginx + php-fpm did not answer {url} within {timeout:.0f} s")


@contextmanager
def nginx_fpm(root: Path, tmp: Path, ready_path: str = "/", ini: dict[str, str] | None = None,
              php_location: str = "debian") -> Iterator[Reference]:
    """Run nginx + php-fpm on `root` (a fresh temporary `tmp` holds their files and logs)."""
    require_reference()
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (tmp / "php-fpm.conf").write_text(_fpm_conf(tmp, ini or {}))
    (tmp / "nginx.conf").write_text(_nginx_conf(tmp, port, root, php_location))
    # nginx resolves `include` beside its config: Debian's snippet and what it includes, as is
    for name in ("snippets", "fastcgi.conf", "fastcgi_params"):
        if not (tmp / name).exists():
            (tmp / name).symlink_to(Path("/etc/nginx") / name)
    as_root = ["-R"] if os.geteuid() == 0 else []
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen([PHP_FPM, "-F", "-O", "-y", str(tmp / "php-fpm.conf"), *as_root],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        procs.append(subprocess.Popen([NGINX, "-p", f"{tmp}/", "-c", str(tmp / "nginx.conf"),
                                       "-e", str(tmp / "nginx-error.log")],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        _wait_answering(f"http://127.0.0.1:{port}{ready_path}", procs, tmp)
        yield Reference("127.0.0.1", port, tmp)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        shutil.rmtree(tmp / "client_body", ignore_errors=True)
