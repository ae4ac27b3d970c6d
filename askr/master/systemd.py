"""sd_notify(3) without libsystemd: tell systemd (Type=notify) what the master is doing.

A no-op unless systemd set NOTIFY_SOCKET. The variable is taken out of the environment so that
fronts and PHP workers, which inherit it, cannot speak for the master.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("askr.master")


class Notifier:
    def __init__(self) -> None:
        path = os.environ.pop("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path  # @: abstract namespace

    def send(self, *fields: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as e:
            log.warning("sd_notify to %r failed: %s", self.address, e)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd (Type=notify-reload) match this reload to its request
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}",
                  "STATUS=rolling reload")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")
