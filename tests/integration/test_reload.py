"""Rolling reload (SIGHUP): a new PHP generation replaces the workers one at a time, each
replacement ready before its predecessor retires; under load, no request fails."""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path

import httpx
import pytest

WORKER = """<?php
$version = trim(file_get_contents(__DIR__ . '/VERSION'));  // read once, at boot
if ($version === 'broken') {
    throw new RuntimeException('broken release');
}
while (askr_handle_request(function () use ($version) {
    if ($version === 'bad500') {
        http_response_code(500);  // boots fine, then fails every request
    }
    if (isset($_GET['slow'])) {
        usleep(50000);  // a slow handler: reloads must wait for it, not cut it
    }
    $body = file_get_contents('php://input');
    echo $version, ' ', strlen($body);
})) {
}
"""


def make_release(base: Path, version: str) -> Path:
    (base / "public").mkdir(parents=True, exist_ok=True)
    (base / "public" / "static.txt").write_text(f"static {version}")
    (base / "worker.php").write_text(WORKER)
    (base / "VERSION").write_text(version)
    return base


def reload_and_wait(server, outcome: str = "reload complete") -> None:
    start = len(server.lines)
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for_log(outcome, start=start, timeout=60)


class Load:
    """Bounded load while a reload happens: keep-alive GETs, a fresh connection per request, and
    POSTs with 16 KB bodies, each in its own thread; every answer is recorded."""

    def __init__(self, url: str, per_thread: int = 3000, expect_500: bool = False):
        self.url = url
        self.per_thread = per_thread
        self.expect_500 = expect_500  # a canary that answers 500: recorded, not an error
        self.http_500 = 0
        self.stop = threading.Event()
        self.results: dict[str, list[str]] = {}
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(kind,))
                        for kind in ("keepalive", "fresh", "post", "slow")]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def total(self) -> int:
        return sum(map(len, self.results.values()))

    def wait_for(self, count: int) -> None:
        """Until `count` more answers arrived (or something failed); bounded by per_thread."""
        target = self.total() + count
        while self.total() < target and not self.errors and any(t.is_alive() for t in self.threads):
            threading.Event().wait(0.01)

    def wait_each(self, count: int) -> None:
        """Until every thread has `count` more answers: the slow one too."""
        targets = {kind: len(got) + count for kind, got in self.results.items()}
        while (any(len(self.results[k]) < n for k, n in targets.items()) and not self.errors
               and any(t.is_alive() for t in self.threads)):
            threading.Event().wait(0.01)

    def seen(self, version: str) -> int:
        return sum(body.startswith(version) for bodies in self.results.values() for body in bodies)

    def _run(self, kind: str) -> None:
        got = self.results.setdefault(kind, [])
        keep = httpx.Client(timeout=30)
        try:
            for _ in range(self.per_thread):
                if self.stop.is_set():
                    return
                try:
                    if kind == "keepalive":
                        r = keep.get(self.url)
                    elif kind == "fresh":
                        r = httpx.get(self.url, timeout=30, headers={"Connection": "close"})
                    elif kind == "slow":
                        r = keep.get(self.url + "/?slow=1")
                    else:
                        r = keep.post(self.url, content=b"x" * 16384)
                except httpx.HTTPError as e:
                    self.errors.append(f"{kind}: {e!r}")
                    continue
                if r.status_code == 500 and self.expect_500:
                    self.http_500 += 1
                elif r.status_code != 200:
                    self.errors.append(f"{kind}: HTTP {r.status_code} {r.text[:200]}")
                got.append(r.text)
        finally:
            keep.close()


# With two fronts every worker also serves both, and a reload rolls workers both fronts use.
FRONTS = pytest.mark.parametrize("fronts", [1, 2])


@FRONTS
def test_rolling_reloads_under_load_drop_nothing(config_server, tmp_path, fronts):
    """Modelled on Puma's restart_does_not_drop_connections: keep-alive and fresh connections,
    16 KB POSTs and 50 ms handlers, while five rolling reloads (signal and API, alternating)
    each switch the code: no request fails, every reload completes, answers follow the code."""
    release = make_release(tmp_path / "app", "v0")
    server = config_server(root=release / "public", workers=2, worker={"script": str(release / "worker.php")},
                           server={"fronts": fronts})
    with Load(server.url, per_thread=5000) as load:
        load.wait_for(50)
        for n in range(1, 6):
            (release / "VERSION").write_text(f"v{n}")
            start = len(server.lines)
            if n % 2:
                server.proc.send_signal(signal.SIGHUP)
            else:
                assert httpx.post(server.admin_url + "/api/reload", timeout=30).status_code == 202
            server.wait_for_log("reload complete", start=start, timeout=60)
            load.wait_each(3)  # a request that began before may still end on the retiring code
            assert not load.errors, load.errors[:5]
    assert load.errors == []
    assert server.log.count("reload complete") == 5
    assert "rolled back" not in server.log
    # every generation served (during a roll old and new code serve side by side, by design)
    assert {b.split()[0] for kind in load.results.values() for b in kind} == {f"v{n}" for n in range(6)}
    for kind, got in load.results.items():
        assert got[-1].startswith("v5"), (kind, got[-5:])  # the newest code after the last reload
    assert all(b.endswith(" 16384") for b in load.results["post"])  # bodies arrived whole


def test_reload_gives_classic_mode_a_fresh_opcache(config_server, tmp_path):
    """With opcache.validate_timestamps=0 a changed script is never re-read by a running
    generation; after a reload the new generation compiles it afresh."""
    root = tmp_path / "public"
    root.mkdir()
    (root / "v.php").write_text("<?php echo 'one';")
    os.utime(root / "v.php", (1, 1))  # older than opcache.file_update_protection, so it is cached
    server = config_server(root=root, workers=1,
                           worker={"ini": {"opcache.validate_timestamps": "0"}})
    assert httpx.get(server.url + "/v.php", timeout=30).text == "one"
    (root / "v.php").write_text("<?php echo 'two';")
    os.utime(root / "v.php", (1, 1))
    assert httpx.get(server.url + "/v.php", timeout=30).text == "one"  # still the cached script
    reload_and_wait(server)
    assert httpx.get(server.url + "/v.php", timeout=30).text == "two"


def test_broken_release_rolls_back_and_old_code_keeps_serving(config_server, tmp_path):
    release = make_release(tmp_path / "app", "v1")
    server = config_server(root=release / "public", workers=2,
                           worker={"script": str(release / "worker.php")})
    (release / "VERSION").write_text("broken")
    with Load(server.url, per_thread=400) as load:
        reload_and_wait(server, "rolling back to generation 1")
    assert load.errors == []
    assert {b.split()[0] for kind in load.results.values() for b in kind} == {"v1"}
    assert "broken release" in server.log
    # a fixed release then reloads normally
    (release / "VERSION").write_text("v3")
    reload_and_wait(server)
    assert httpx.get(server.url, timeout=30).text.startswith("v3")


def test_reload_follows_a_symlink_swap(config_server, tmp_path):
    """Deploys that switch a `current` symlink: the reload serves the new tree (PHP and static)."""
    r1 = make_release(tmp_path / "releases" / "r1", "r1")
    r2 = make_release(tmp_path / "releases" / "r2", "r2")
    current = tmp_path / "current"
    current.symlink_to(r1)
    server = config_server(root=current / "public", workers=1,
                           worker={"script": str(current / "worker.php"), "app_base": str(current)})
    assert httpx.get(server.url + "/", timeout=30).text.startswith("r1")
    assert httpx.get(server.url + "/static.txt", timeout=30).text == "static r1"
    tmp_link = tmp_path / "current.new"
    tmp_link.symlink_to(r2)
    tmp_link.replace(current)  # atomic, as deploy tools do it
    reload_and_wait(server)
    assert httpx.get(server.url + "/", timeout=30).text.startswith("r2")
    assert httpx.get(server.url + "/static.txt", timeout=30).text == "static r2"


CANARY_ABORTED = "canary UNHEALTHY — aborting reload; remaining workers keep old code"


def canary_server(config_server, release: Path, fronts: int = 1):
    return config_server(root=release / "public", workers=2, worker={"script": str(release / "worker.php")},
                         reload={"canary": True, "canary_seconds": 1}, server={"fronts": fronts})


def canary_reload(server, expect: str) -> int:
    """Ask for a canary reload, wait for the log line `expect`; return the index after it."""
    start = len(server.lines)
    assert httpx.post(server.admin_url + "/api/reload?canary=1", timeout=30).status_code == 202
    server.wait_for_log(expect, start=start, timeout=60)
    return next(i for i in range(start, len(server.lines)) if re.search(expect, server.lines[i])) + 1


def last_versions(load: Load) -> set[str]:
    return {got[-1].split()[0] for got in load.results.values()}


@FRONTS
def test_canary_with_a_syntax_error_aborts_and_old_code_serves(config_server, tmp_path, fronts):
    release = make_release(tmp_path / "app", "v1")
    server = canary_server(config_server, release, fronts)
    with Load(server.url, per_thread=2000) as load:
        load.wait_for(20)
        (release / "worker.php").write_text("<?php this is not php;\n")
        canary_reload(server, CANARY_ABORTED)
        server.wait_for_log("the canary did not start: PHP Parse error:")
        load.wait_each(3)
    assert load.errors == []
    assert {b.split()[0] for got in load.results.values() for b in got} == {"v1"}
    outcome = httpx.get(server.admin_url + "/api/status", timeout=30).json()["last_reload"]["outcome"]
    assert outcome.startswith("canary unhealthy: the canary did not start")


def test_canary_with_a_boot_fatal_aborts(config_server, tmp_path):
    release = make_release(tmp_path / "app", "v1")
    server = canary_server(config_server, release)
    with Load(server.url, per_thread=2000) as load:
        (release / "VERSION").write_text("broken")
        canary_reload(server, CANARY_ABORTED + r" \(the canary did not start: PHP Fatal error:  Uncaught "
                      r"RuntimeException: broken release")
        load.wait_each(3)
    assert load.errors == []
    assert last_versions(load) == {"v1"}


@FRONTS
def test_canary_answering_500s_aborts_and_old_code_comes_back(config_server, tmp_path, fronts):
    """A release that boots but fails its requests: the canary's 5xx rate gives it away, and the
    rollback worker runs the previous release (paths are resolved per generation, so the moved
    `current` symlink does not leak the bad release into it)."""
    good = make_release(tmp_path / "releases" / "good", "v1")
    bad = make_release(tmp_path / "releases" / "bad", "bad500")
    current = tmp_path / "current"
    current.symlink_to(good)
    server = config_server(root=current / "public", workers=2, worker={"script": str(current / "worker.php")},
                           reload={"canary": True, "canary_seconds": 1}, server={"fronts": fronts})
    with Load(server.url, per_thread=4000, expect_500=True) as load:
        load.wait_for(20)
        link = tmp_path / "current.new"
        link.symlink_to(bad)
        link.replace(current)
        after = canary_reload(server, CANARY_ABORTED + r" \(\d+ of its \d+ responses were 5xx; the old "
                              r"generation's: 0 of \d+\)")
        server.wait_for_log(r"ready; retiring pid", start=after)  # an old-generation worker is back
        load.wait_each(5)
    assert load.errors == []  # nothing failed but the canary's own answers, which it exists to catch
    assert load.http_500 > 0
    assert last_versions(load) == {"v1"}


@FRONTS
def test_good_canary_rolls_on(config_server, tmp_path, fronts):
    release = make_release(tmp_path / "app", "v1")
    server = canary_server(config_server, release, fronts)
    with Load(server.url, per_thread=4000) as load:
        load.wait_for(20)
        (release / "VERSION").write_text("v2")
        canary_reload(server, "canary healthy — rolling the rest")
        server.wait_for_log("reload complete")
        load.wait_each(3)
    assert load.errors == []
    assert last_versions(load) == {"v2"}
