"""askr serve --watch ([dev] watch): an edit is served by new code after one rolling reload, with
no failed request meanwhile; a burst of edits gives one reload; a glob naming a directory that
does not exist is a config error."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import httpx
import pytest
from askrtest import run_askr, wait_until

WORKER = """<?php
require __DIR__ . '/lib.php';  // loaded once, at boot: only a reload serves an edit
while (askr_handle_request(function () {
    echo version();
})) {
}
"""
CLASSIC = """<?php
require __DIR__ . '/../lib.php';
echo version();
"""


def make_app(base: Path) -> Path:
    """base/lib.php (the code under edit), base/public/index.php and base/worker.php."""
    (base / "public").mkdir(parents=True)
    (base / "public" / "index.php").write_text(CLASSIC)
    (base / "worker.php").write_text(WORKER)
    set_version(base, "v1")
    return base


def set_version(base: Path, version: str) -> None:
    """Save lib.php as most editors do, whole (a new file renamed over the old one): in classic
    mode a request could otherwise include it half-written (truncated, not yet rewritten), as
    under php-fpm, and fail for a reason that has nothing to do with the reload."""
    new = base / "lib.php.new"
    new.write_text(f"<?php\nfunction version() {{ return '{version}'; }}\n")
    os.replace(new, base / "lib.php")


class Client:
    """A bounded request loop in a thread: every answer that is not 200 is a failure."""

    def __init__(self, url: str, max_requests: int = 20000, max_seconds: float = 120.0):
        self.url = url
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.bodies: set[str] = set()
        self.count = 0
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=30) as c:
            while not self.stop.is_set() and self.count < self.max_requests and time.monotonic() < deadline:
                self.count += 1
                try:
                    r = c.get(self.url)
                except httpx.HTTPError as e:
                    self.failures.append(repr(e))
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
                else:
                    self.bodies.add(r.text)
                time.sleep(0.005)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(60)


def watch_reloads(server) -> list[str]:
    return [line for line in server.lines if re.search(r"watch: .* changed: rolling reload", line)]


@pytest.mark.parametrize("mode", ["classic", "worker"])
def test_an_edit_is_served_after_one_reload_and_nothing_fails(askr_server, tmp_path, mode):
    base = make_app(tmp_path / "app")
    args = ["--root", base / "public", "--workers", "2", "--watch"]
    if mode == "worker":
        args += ["--worker", base / "worker.php"]
    server = askr_server(*args)
    assert "--watch is for development" in server.log
    client = Client(server.url + "/")
    try:
        wait_until(lambda: "v1" in client.bodies, what="the first answers")
        set_version(base, "v2")
        wait_until(lambda: "v2" in client.bodies, timeout=60, what="the edited code to be served")
        server.wait_for_log(r"reload complete", timeout=60)
    finally:
        client.finish()
    assert client.failures == []
    assert len(watch_reloads(server)) == 1, watch_reloads(server)
    assert "watch: lib.php changed: rolling reload" in server.log
    assert httpx.get(server.url + "/", timeout=30).text == "v2"
    status = httpx.get(server.admin_url + "/api/status", timeout=10).json()
    assert status["generation"] == 2


def test_a_burst_of_edits_is_one_reload(askr_server, tmp_path):
    base = make_app(tmp_path / "app")
    server = askr_server("--root", base / "public", "--workers", "2", "--watch", "**/*.php")
    start = len(server.lines)
    for i in range(20):  # 20 files within a few milliseconds: one quiet period
        (base / "public" / f"page{i}.php").write_text(f"<?php echo {i};")
    server.wait_for_log(r"reload complete", timeout=60, start=start)
    reloads = watch_reloads(server)
    assert len(reloads) == 1, reloads
    assert re.search(r"watch: public/page\d+\.php and 19 other files changed", reloads[0])
    (base / "notes.txt").write_text("not watched")
    set_version(base, "v2")  # a later edit: a reload of its own
    server.wait_for_log(r"watch: lib\.php changed", timeout=60, start=start)
    assert "notes.txt" not in server.log
    assert httpx.get(server.url + "/", timeout=30).status_code == 200


def test_edits_during_a_reload_queue_one_more(askr_server, tmp_path):
    base = make_app(tmp_path / "app")
    # each worker takes a second to boot, so the reload is still rolling when the next edits land
    (base / "worker.php").write_text(WORKER.replace("<?php\n", "<?php\nusleep(1000000);\n", 1))
    server = askr_server("--root", base / "public", "--workers", "2", "--worker", base / "worker.php",
                         "--watch", "**/*.php")
    start = len(server.lines)
    set_version(base, "v2")
    server.wait_for_log(r"watch: lib\.php changed: rolling reload", timeout=60, start=start)
    for i in range(5):  # while it rolls
        (base / "public" / f"more{i}.php").write_text(f"<?php echo {i};")
    server.wait_for_log(r"watch: public/more\d\.php and 4 other files changed: a reload is in progress; "
                        r"another one follows it", timeout=60, start=start)
    wait_until(lambda: len(re.findall(r"reload complete", "\n".join(server.lines[start:]))) >= 2, timeout=90,
               what="the reload and the one queued behind it")
    assert "starting the queued reload" in server.log
    assert len([line for line in server.lines if "watch: " in line and " changed: " in line]) == 2
    status = httpx.get(server.admin_url + "/api/status", timeout=10).json()
    assert status["generation"] == 3 and not status["reloading"]
    assert httpx.get(server.url + "/", timeout=30).text == "v2"


def test_a_composer_run_is_one_reload_at_its_end(askr_server, tmp_path):
    base = make_app(tmp_path / "app")
    (base / "vendor" / "acme").mkdir(parents=True)
    server = askr_server("--root", base / "public", "--workers", "1", "--watch")
    start = len(server.lines)
    (base / "vendor" / "acme" / "one.php").write_text("<?php // 1")
    time.sleep(0.8)  # part of the scenario: a pause within the composer run, longer than 0.3 s
    (base / "vendor" / "autoload.php").write_text("<?php // regenerated last")
    server.wait_for_log(r"reload complete", timeout=60, start=start)
    assert [line.split("watch: ")[1] for line in watch_reloads(server)] == [
        "vendor/acme/one.php and 1 other file changed: rolling reload"]


def test_a_symlinked_release_is_followed_after_a_reload(askr_server, tmp_path):
    releases = tmp_path / "releases"
    one, two = make_app(releases / "1"), make_app(releases / "2")
    set_version(two, "two")
    current = tmp_path / "current"
    current.symlink_to(one)
    server = askr_server("--root", current / "public", "--workers", "1", "--watch")
    assert httpx.get(server.url + "/", timeout=30).text == "v1"
    tmp = tmp_path / "current.new"
    tmp.symlink_to(two)
    tmp.replace(current)  # the deploy: an atomic symlink swap, then a reload
    start = len(server.lines)
    set_version(one, "v1-edited")  # an edit in the release watched so far: its reload resolves the swap
    server.wait_for_log(r"reload complete", timeout=60, start=start)
    wait_until(lambda: httpx.get(server.url + "/", timeout=30).text == "two", what="the new release")
    server.wait_for_log(r"watch: now watching .*/releases/2", timeout=30, start=start)
    start = len(server.lines)
    set_version(two, "two-edited")  # the new release's files are the ones watched now
    server.wait_for_log(r"watch: lib\.php changed", timeout=60, start=start)
    wait_until(lambda: httpx.get(server.url + "/", timeout=30).text == "two-edited", what="the edit")


def test_a_watch_glob_under_a_missing_directory_is_a_config_error(tmp_path):
    base = make_app(tmp_path / "app")
    code, out = run_askr(["serve", "--root", str(base / "public"), "--listen", "127.0.0.1:0",
                          "--admin-listen", "127.0.0.1:0", "--watch", "src/**/*.php"])
    assert code == 2, out
    assert "[dev] watch = 'src/**/*.php'" in out and "does not exist" in out
