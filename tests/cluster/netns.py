"""Network namespaces for the cluster test bed: a private network that exists only while a test
session runs.

Layout (every address below lives only inside these namespaces):

    <tag>-lb       bridge br0 10.231.0.1/24: HAProxy and Redis run here
    <tag>-client   eth0 10.231.0.100: where the test's HTTP clients connect from
    <tag>-h1..hN   eth0 10.231.0.11.. : one askr host each

Each member namespace has a veth pair whose other end is a port of the bridge, created directly
inside the namespaces (nothing is added to the machine's own namespace). `<tag>` is
`askrc<pid>-<n>`: unique per run (and per network within it), and a later run removes what a
killed run left behind (names with the prefix whose pid is gone).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

PREFIX = "askrc"
SUBNET = "10.231.0"
LB_ADDRESS = f"{SUBNET}.1"
CLIENT_ADDRESS = f"{SUBNET}.100"
CLONE_NEWNET = 0x40000000
_STALE = re.compile(rf"^{PREFIX}(\d+)-")

T = TypeVar("T")


class NetnsError(Exception):
    pass


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    probe = f"{PREFIX}{os.getpid()}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


class Netns:
    """One named network namespace (/run/netns/NAME)."""

    def __init__(self, name: str, address: str):
        self.name = name
        self.address = address

    def ip(self, *args: str) -> str:
        return _ip("-n", self.name, *args)

    def command(self, argv: Sequence[str]) -> list[str]:
        """argv run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True,
                             check=False, timeout=30).stdout
        return [int(p) for p in out.split()]

    def kill_all(self) -> list[int]:
        """SIGKILL every process in the namespace (what a machine losing power does to them)."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def set_link(self, up: bool) -> None:
        self.ip("link", "set", "eth0", "up" if up else "down")

    def enter(self) -> None:
        """Move the calling thread (only it) into this namespace: sockets it opens from now on
        live there."""
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc().setns(fd, CLONE_NEWNET) != 0:
                raise NetnsError(f"setns({self.name}): {os.strerror(ctypes.get_errno())}")
        finally:
            os.close(fd)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 120.0) -> T:
        """fn(*args) on a fresh thread inside this namespace; its result (or exception)."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                self.enter()
                box["result"] = fn(*args)
            except BaseException as e:  # handed to the caller
                box["error"] = e

        thread = threading.Thread(target=run, name=f"in-{self.name}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise NetnsError(f"{getattr(fn, '__name__', fn)} in {self.name} still running after {timeout} s")
        if "error" in box:
            raise box["error"]
        return box["result"]


_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _remove(name: str) -> None:
    """Kill what runs in namespace `name`, then delete it (its veths go with it)."""
    ns = Netns(name, "")
    ns.kill_all()
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False, timeout=30)


def remove_stale() -> list[str]:
    """Namespaces a killed earlier run left: our prefix, and the pid in the name is gone."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    removed = []
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _STALE.match(name)
        if m and int(m.group(1)) != os.getpid() and not os.path.exists(f"/proc/{m.group(1)}"):
            _remove(name)
            removed.append(name)
    return removed


class Network:
    """The bridge namespace, the client namespace and `hosts` host namespaces, wired up.
    create() builds it; close() removes every namespace made, whatever happened (the Cluster of
    bed.py, the one context manager, calls both)."""

    made = 0  # networks made by this process: each gets its own names

    def __init__(self, hosts: int):
        Network.made += 1
        self.tag = f"{PREFIX}{os.getpid()}-{Network.made}"
        self.lb = Netns(f"{self.tag}-lb", LB_ADDRESS)
        self.client = Netns(f"{self.tag}-client", CLIENT_ADDRESS)
        self.hosts = [Netns(f"{self.tag}-h{i}", f"{SUBNET}.{10 + i}") for i in range(1, hosts + 1)]
        self._made: list[Netns] = []

    @property
    def members(self) -> list[Netns]:
        return [self.client, *self.hosts]

    def create(self) -> None:
        remove_stale()
        for ns in (self.lb, *self.members):
            _remove(ns.name)  # a leftover of this very pid (an earlier session in this process)
            _ip("netns", "add", ns.name)
            self._made.append(ns)
            ns.ip("link", "set", "lo", "up")
        self.lb.ip("link", "add", "br0", "type", "bridge")
        self.lb.ip("addr", "add", f"{self.lb.address}/24", "dev", "br0")
        self.lb.ip("link", "set", "br0", "up")
        for index, ns in enumerate(self.members):
            port = f"port{index}"
            _ip("link", "add", "eth0", "netns", ns.name, "type", "veth", "peer", "name", port,
                "netns", self.lb.name)
            self.lb.ip("link", "set", port, "master", "br0", "up")
            ns.ip("addr", "add", f"{ns.address}/24", "dev", "eth0")
            ns.ip("link", "set", "eth0", "up")

    def close(self) -> None:
        for ns in reversed(self._made):
            _remove(ns.name)
        self._made.clear()
