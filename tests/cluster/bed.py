"""The cluster test bed: Redis, HAProxy (contrib/haproxy.cfg) and N askr hosts serving the Laravel
fixture in worker mode, each host in its own network namespace (netns.py).

Every host has its own directory: releases/A and releases/B (copies of the fixture whose
CodeVersion says `release-A` / `release-B`), `current` -> one of them, its askr.toml and its
admin token. The app's .env points sessions, cache and queue at Redis; askr's [worker] ini points
PHP's own sessions there too. Used by tests/cluster and bench/cluster.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import trustme

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "integration"))

import haproxy  # noqa: E402
import netns  # noqa: E402
from askrtest import ProcessLog, toml_text, wait_until  # noqa: E402  (wait_until: the tests take it from here)
from laravel_fixture import make_laravel_app  # noqa: E402
from resp import Redis  # noqa: E402

HTTP_PORT = 8080
TLS_PORT = 8443  # the hosts' port when they terminate TLS themselves (HAProxy passes it through)
ADMIN_PORT = 9000
REDIS_PORT = 6379
WORKER_SCRIPT = REPO / "examples" / "laravel-worker.php"
QUEUE_SCRIPT = REPO / "examples" / "askr-queue.php"
DEPLOY_SCRIPT = REPO / "contrib" / "rolling-deploy.sh"
RELEASES = ("A", "B")
QUEUE_RETRY_AFTER = 5  # seconds before a job reserved by a dead host's worker is handed out again
TOOLS = ("haproxy", "redis-server")


def missing() -> str | None:
    """Why the test bed cannot run here (None: it can)."""
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install haproxy redis-server php8.2-redis)"
    return netns.unavailable()


def code_version(release: str) -> str:
    return f"release-{release}"


class Proc(ProcessLog):
    """A process of the bed (askr, HAProxy, Redis), in its own session, its output kept."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None):
        super().__init__(subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          errors="replace", start_new_session=True), name)


def askr_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "askr", *args]


ASKR_ENV = {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
            "PYTHONUNBUFFERED": "1"}


class Host:
    """One askr host: namespace, directory, config; start, stop, kill."""

    def __init__(self, ns: netns.Netns, base: Path, redis_address: str, workers: int, queue_workers: int):
        self.ns = ns
        self.name = ns.name  # also its HAProxy server name and its directory's
        self.dir = base / self.name
        self.address = ns.address
        self.config = self.dir / "askr.toml"
        self.proc: Proc | None = None
        self.redis_address = redis_address
        self.workers = workers
        self.queue_workers = queue_workers
        self.port = HTTP_PORT
        self.tls: tuple[Path, Path] | None = None  # (cert, key): askr terminates TLS on TLS_PORT

    def use_tls(self, cert: Path, key: Path) -> None:
        self.tls, self.port = (cert, key), TLS_PORT

    def prepare(self, template: Path) -> None:
        (self.dir / "releases").mkdir(parents=True)
        for release in RELEASES:
            app = self.dir / "releases" / release
            shutil.copytree(template, app, symlinks=True)
            (app / "app" / "Support" / "CodeVersion.php").write_text(
                "<?php\n\nnamespace App\\Support;\n\nclass CodeVersion\n{\n"
                f"    public const VALUE = '{code_version(release)}';\n}}\n")
            # What a real deployment keeps in the app's .env: shared state on Redis
            (app / ".env").write_text(
                "SESSION_DRIVER=redis\nCACHE_DRIVER=redis\nQUEUE_CONNECTION=redis\n"
                f"REDIS_HOST={self.redis_address}\nREDIS_PORT={REDIS_PORT}\n"
                f"QUEUE_RETRY_AFTER={QUEUE_RETRY_AFTER}\n")
        os.symlink("releases/A", self.dir / "current")
        (self.dir / "admin-token").write_text(f"token-{self.name}\n")
        current = self.dir / "current"
        self.config.write_text(toml_text({
            # behind a passthrough HAProxy nobody's X-Forwarded-* may be believed: it adds none
            "server": {"listen": f"{self.address}:{self.port}", "root": f"{current}/public",
                       "workers": self.workers, "fronts": 1, "user": "root",
                       "trusted_proxies": [] if self.tls else [netns.LB_ADDRESS], "drain_delay": "2s",
                       "graceful_timeout": 10},
            **({"tls": {"cert": str(self.tls[0]), "key": str(self.tls[1])}} if self.tls else {}),
            "worker": {"script": str(WORKER_SCRIPT), "app_base": str(current),
                       "ini": {"session.save_handler": "redis",
                               "session.save_path": f"tcp://{self.redis_address}:{REDIS_PORT}"}},
            **({"queue": {"script": str(QUEUE_SCRIPT), "workers": self.queue_workers,
                          "args": ["--sleep=0.2", "--tries=3"], "stop_timeout": 10}}
               if self.queue_workers else {}),
            "admin": {"listen": f"{self.address}:{ADMIN_PORT}", "token_file": str(self.dir / "admin-token"),
                      "health_public": True, "drain_quiet": 1},
        }))

    def current_release(self) -> str:
        return os.readlink(self.dir / "current").rsplit("/", 1)[-1]

    def start(self) -> Proc:
        """Start askr in the namespace (not waiting: see wait_ready)."""
        assert self.proc is None or not self.proc.alive(), f"{self.name} is already running"
        # TMPDIR: askr's runtime directory goes under the host's, so a killed host leaves
        # nothing behind in /tmp
        (self.dir / "tmp").mkdir(exist_ok=True)
        argv = self.ns.command(["env", f"CLUSTER_HOST={self.name}", f"TMPDIR={self.dir / 'tmp'}",
                                *askr_argv("serve", "--config", str(self.config))])
        self.proc = Proc(self.name, argv, env=ASKR_ENV)
        return self.proc

    def wait_ready(self, timeout: float = 120.0) -> None:
        assert self.proc is not None
        self.proc.wait_for_log(r"askr ready: ", timeout=timeout)

    def askr(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """An askr admin command on this host (`askr status`, `drain`, ...), from inside it."""
        return subprocess.run(self.ns.command(askr_argv(*args, "--config", str(self.config))),
                              env={**os.environ, **ASKR_ENV}, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is not None:
            self.proc.stop(signal.SIGTERM, timeout)

    def kill(self) -> list[int]:
        """kill -9 the whole host: the master and every child, whatever its process group (queue
        workers have their own), as a machine losing power would."""
        pids = self.ns.kill_all()
        if self.proc is not None:
            self.proc.proc.wait(30)
        return pids


class Cluster:
    """Start with `with Cluster(base) as c:`; everything (processes, namespaces) goes at exit."""

    def __init__(self, base: Path, hosts: int = 3, workers: int = 2, queue_workers: int = 1,
                 haproxy_log: bool = True, passthrough: bool = False):
        """passthrough: contrib/haproxy.cfg's TLS-passthrough alternative; the hosts terminate TLS."""
        self.base = base
        self.haproxy_log = haproxy_log
        self.passthrough = passthrough
        self.backend = haproxy.PASSTHROUGH_BACKEND if passthrough else haproxy.BACKEND
        self.net = netns.Network(hosts)
        self.hosts = [Host(ns, base, netns.LB_ADDRESS, workers, queue_workers) for ns in self.net.hosts]
        self.redis = Redis(base / "redis.sock")
        self.stats_socket = base / "haproxy.sock"
        self.redis_proc: Proc | None = None
        self.haproxy_proc: Proc | None = None
        self.ca = trustme.CA()
        self.ca_pem = base / "ca.pem"
        self.site_pem = base / "site.pem"

    @property
    def url(self) -> str:
        return f"https://{netns.LB_ADDRESS}"

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.net.create()
        self._start_redis()
        template = make_laravel_app(self.base / "fixture")
        # one certificate for the address clients use, held by HAProxy, or by every host
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        leaf = self.ca.issue_cert(netns.LB_ADDRESS)
        self.site_pem.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems)
                                  + leaf.private_key_pem.bytes())
        if self.passthrough:
            leaf.cert_chain_pems[0].write_to_path(str(self.base / "cert.pem"))
            leaf.private_key_pem.write_to_path(str(self.base / "key.pem"))
        for host in self.hosts:
            if self.passthrough:
                host.use_tls(self.base / "cert.pem", self.base / "key.pem")
            host.prepare(template)
            host.start()
        for host in self.hosts:
            host.wait_ready()
        self._start_haproxy()
        self.wait_all_up()

    def _start_redis(self) -> None:
        self.redis_proc = Proc("redis", self.net.lb.command([
            "redis-server", "--bind", netns.LB_ADDRESS, "--port", str(REDIS_PORT), "--protected-mode", "no",
            "--unixsocket", str(self.base / "redis.sock"), "--unixsocketperm", "700",
            "--save", "", "--appendonly", "no", "--dir", str(self.base), "--daemonize", "no"]))
        self.redis_proc.wait_for_log(r"Ready to accept connections", timeout=30)
        assert self.redis("PING") == "PONG"

    def _start_haproxy(self) -> None:
        config = self.base / "haproxy.cfg"
        config.write_text(haproxy.config_from_template(
            [(h.name, f"{h.address}:{h.port}") for h in self.hosts], self.site_pem, self.stats_socket,
            log=self.haproxy_log, passthrough=self.passthrough))
        check = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True,
                               check=False, timeout=30)
        assert check.returncode == 0, f"haproxy -c: {check.stdout}{check.stderr}"
        self.haproxy_proc = Proc("haproxy", self.net.lb.command(["haproxy", "-W", "-db", "-f", str(config)]))
        wait_until(lambda: self.stats_socket.exists() and self._stats_answer(), 30, "HAProxy's stats socket")

    def _stats_answer(self) -> bool:
        try:
            return bool(haproxy.server_status(self.stats_socket, self.backend))
        except OSError:
            return False

    def status(self) -> dict[str, str]:
        return haproxy.server_status(self.stats_socket, self.backend)

    def wait_all_up(self, timeout: float = 60.0) -> None:
        wait_until(lambda: all(s == "UP" for s in self.status().values()), timeout,
                   "every host UP in HAProxy", lambda: f"HAProxy says {self.status()}")

    def in_client(self, fn: Callable[..., object], *args: object, timeout: float = 120.0) -> object:
        """fn(*args) on a thread inside the client namespace (where HTTP clients must live)."""
        return self.net.client.call(fn, *args, timeout=timeout)

    def close(self) -> None:
        running = [h.proc for h in self.hosts if h.proc is not None and h.proc.alive()]
        for proc in running:  # all at once: each serves on for its drain_delay first
            proc.proc.send_signal(signal.SIGTERM)
        for proc in running:
            proc.stop(signal.SIGTERM, 30)
        for proc in (self.haproxy_proc, self.redis_proc):
            if proc is not None:
                proc.stop(signal.SIGTERM, 10)
        self.net.close()  # kills whatever is still in the namespaces

    def logs(self) -> str:
        """Every process's recent output, for a failing test's report."""
        parts = []
        for proc in (self.haproxy_proc, *(h.proc for h in self.hosts)):
            if proc is not None:
                parts.append(f"--- {proc.name} (last lines)\n" + "\n".join(list(proc.lines)[-40:]))
        return "\n".join(parts)
