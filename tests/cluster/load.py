"""Bounded HTTP load through HAProxy for the cluster tests, sent from the client namespace.

Each kind of client is one thread doing one request at a time until told to stop, or until its
request or time budget is spent:

- keepalive: GET /cluster/whoami on one HTTP/1.1 keep-alive connection, with a forged
             X-Forwarded-For the app must not believe
- fresh:     GET /cluster/whoami on a new connection (TLS handshake included) every time
- post:      POST /cluster/echo with a random body, checked against its SHA-1, keep-alive
- h2:        GET /cluster/whoami over HTTP/2 (ALPN at HAProxy)
- session:   logs in once, then GET /cluster/counter: Laravel's and PHP's own session counters
             must go up by exactly one per request, whichever host answers
"""

from __future__ import annotations

import hashlib
import os
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import netns

KINDS = ("keepalive", "fresh", "post", "h2", "session")
FORGED_ADDRESS = "203.0.113.9"  # only ever a header value (TEST-NET-3), never contacted


@dataclass(frozen=True)
class Outcome:
    kind: str
    at: float  # time.monotonic() when the answer came
    ok: bool
    host: str | None = None
    code: str | None = None  # CodeVersion of the release that answered
    detail: str = ""


@dataclass
class Load:
    client: netns.Netns
    base_url: str
    ca_pem: Path
    kinds: tuple[str, ...] = KINDS
    max_seconds: float = 180.0
    max_requests: int = 20000  # per client thread
    pause: float = 0.005  # between one client's requests: leaves CPU to the hosts on a small machine
    outcomes: list[Outcome] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for kind in self.kinds:
            t = threading.Thread(target=self._run, args=(kind,), name=f"load-{kind}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)
        stuck = [t.name for t in self._threads if t.is_alive()]
        assert not stuck, f"load clients still running: {stuck}"

    # -- what the test asks ------------------------------------------------------------------
    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def failures(self) -> list[Outcome]:
        return [o for o in self.snapshot() if not o.ok]

    def successes(self, kind: str | None = None, since: float = 0.0) -> list[Outcome]:
        return [o for o in self.snapshot() if o.ok and (kind is None or o.kind == kind) and o.at >= since]

    def every_kind_answered(self, since: float = 0.0, n: int = 3) -> bool:
        counts = Counter(o.kind for o in self.successes(since=since))
        return all(counts[k] >= n for k in self.kinds)

    def summary(self) -> str:
        counts = Counter((o.kind, o.ok) for o in self.snapshot())
        return ", ".join(f"{k}: {counts[(k, True)]} ok / {counts[(k, False)]} failed" for k in self.kinds)

    # -- the clients ---------------------------------------------------------------------------
    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def _run(self, kind: str) -> None:
        self.client.enter()  # this thread's sockets live in the client namespace
        tls = ssl.create_default_context(cafile=str(self.ca_pem))
        keep = httpx.Limits(max_keepalive_connections=0 if kind == "fresh" else 1, max_connections=1)
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(base_url=self.base_url, verify=tls, http2=kind == "h2", limits=keep,
                          timeout=30) as http:
            step = getattr(self, f"_{kind}")
            state: dict[str, object] = {}
            for _ in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    outcome = step(http, state)
                except (httpx.HTTPError, ValueError, KeyError) as e:  # ValueError: not JSON
                    outcome = Outcome(kind, time.monotonic(), False, detail=f"{type(e).__name__}: {e}")
                self._record(outcome)
                time.sleep(self.pause)

    @staticmethod
    def _answer(kind: str, r: httpx.Response, expect: int = 200) -> Outcome:
        now = time.monotonic()
        if r.status_code != expect:
            return Outcome(kind, now, False, detail=f"HTTP {r.status_code} {r.text[:200]!r}")
        body = r.json()
        return Outcome(kind, now, True, body.get("host"), body.get("code"))

    def _keepalive(self, http: httpx.Client, state: dict) -> Outcome:
        # A client's own X-Forwarded-For must not fool the app: askr believes HAProxy's entry
        # (trusted_proxies) and X-Forwarded-Proto, so the app sees this client, over https.
        r = http.get("/cluster/whoami", headers={"X-Forwarded-For": FORGED_ADDRESS})
        outcome = self._answer("keepalive", r)
        if outcome.ok and (r.json()["client_ip"], r.json()["secure"]) != (self.client.address, True):
            return Outcome("keepalive", outcome.at, False, outcome.host,
                           detail=f"the app saw client {r.json()['client_ip']}, secure "
                                  f"{r.json()['secure']}; expected {self.client.address} over https")
        return outcome

    def _fresh(self, http: httpx.Client, state: dict) -> Outcome:
        return self._answer("fresh", http.get("/cluster/whoami"))

    def _h2(self, http: httpx.Client, state: dict) -> Outcome:
        r = http.get("/cluster/whoami")
        if r.http_version != "HTTP/2":
            return Outcome("h2", time.monotonic(), False, detail=f"spoke {r.http_version}, not HTTP/2")
        return self._answer("h2", r)

    def _post(self, http: httpx.Client, state: dict) -> Outcome:
        body = os.urandom(int.from_bytes(os.urandom(2), "big") % 16384 + 1)
        r = http.post("/cluster/echo", content=body)
        outcome = self._answer("post", r)
        if outcome.ok and r.json()["sha1"] != hashlib.sha1(body).hexdigest():
            return Outcome("post", outcome.at, False, outcome.host, detail="the body arrived changed")
        return outcome

    def _session(self, http: httpx.Client, state: dict) -> Outcome:
        if "count" not in state:
            r = http.post("/cluster/login", data={"user": "ada"})
            if r.status_code != 200:
                return Outcome("session", time.monotonic(), False, detail=f"login: HTTP {r.status_code}")
            state["count"] = 0
        r = http.get("/cluster/counter")
        outcome = self._answer("session", r)
        if not outcome.ok:
            return outcome
        body = r.json()
        want = int(state["count"]) + 1  # type: ignore[call-overload]
        if (body["user"], body["count"], body["native_count"]) != ("ada", want, want):
            return Outcome("session", outcome.at, False, outcome.host,
                           detail=f"expected user ada, count {want} twice; got {body}")
        state["count"] = want
        return outcome
