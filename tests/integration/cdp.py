"""A headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe):
no websocket client and no extra package. Chromium reads commands on its fd 3 and writes answers
and events on fd 4, each message JSON ended by a NUL byte.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class CDPError(Exception):
    pass


def _above_nine(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    def __init__(self, profile: Path, timeout: float = 60.0):
        assert CHROMIUM is not None
        self.timeout = timeout
        to_chromium_r, self.to_chromium = os.pipe()
        self.from_chromium, from_chromium_w = os.pipe()
        # Chromium's ends move above 9 first, so that placing them on 3 and 4 cannot clobber them
        to_chromium_r, from_chromium_w = (_above_nine(to_chromium_r), _above_nine(from_chromium_w))
        args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1280,1000", f"--user-data-dir={profile}",
                "--remote-debugging-pipe", "about:blank"]
        # bash (dash takes one-digit fds only) puts the ends on fds 3 and 4, where Chromium wants them
        script = f'exec "$@" 3<&{to_chromium_r} 4>&{from_chromium_w} {to_chromium_r}<&- {from_chromium_w}>&-'
        self.proc = subprocess.Popen(["bash", "-c", script, "bash", *args],
                                     pass_fds=(to_chromium_r, from_chromium_w),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(to_chromium_r)
        os.close(from_chromium_w)
        self.buffer = b""
        self.last_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def close(self) -> None:
        with contextlib.suppress(CDPError, OSError, TimeoutError):
            self.call("Browser.close", session=None, timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self.to_chromium)
        os.close(self.from_chromium)

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.from_chromium], [], [], left)
            if ready:
                chunk = os.read(self.from_chromium, 65536)
                if not chunk:
                    raise CDPError(f"chromium exited (status {self.proc.poll()})")
                self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = "page",
             timeout: float | None = None) -> dict[str, Any]:
        """Send one command (to the attached page unless session=None) and return its result;
        events that arrive meanwhile are kept in self.events."""
        self.last_id += 1
        message: dict[str, Any] = {"id": self.last_id, "method": method, "params": params or {}}
        if session == "page":
            session = self.session
        if session is not None:
            message["sessionId"] = session
        os.write(self.to_chromium, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            answer = self._message(deadline)
            if answer.get("id") == self.last_id:
                if "error" in answer:
                    raise CDPError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            if "method" in answer:
                self.events.append(answer)

    def open(self, url: str) -> None:
        """A new tab, attached, with its exceptions reported as events, at `url`."""
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=None)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=None)["sessionId"]
        self.call("Runtime.enable")
        self.call("Page.enable")
        self.call("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise CDPError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def exceptions(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("method") == "Runtime.exceptionThrown"]
