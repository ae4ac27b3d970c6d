"""[dev] watch's pure parts: the glob matcher, the debounce, the reload it asks for, and which
paths the watcher passes on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from askr import config
from askr.master.events import WatchQuiet
from askr.master.watch import Debounce, Watcher, WatchReloads, describe, glob_pattern


@pytest.mark.parametrize(("path", "matched"), [
    ("index.php", True), ("public/index.php", True), ("app/Http/Kernel.php", True),
    ("vendor/laravel/framework/src/x.php", True), (".env", True), ("config/app.php", True),
    ("config/nested/db.php", True), ("public/style.css", False), ("index.phpx", False),
    ("public/.env", False), ("configs/app.yml", False), ("config", False),
])
def test_default_globs(path: str, matched: bool) -> None:
    assert bool(glob_pattern(config.DEFAULT_WATCH).match(path)) is matched


def test_single_star_and_question_mark_stay_in_one_directory() -> None:
    pattern = glob_pattern(["src/*.php", "v?.txt", "[ab].ini"])
    assert pattern.match("src/a.php") and not pattern.match("src/sub/a.php")
    assert pattern.match("v1.txt") and not pattern.match("v10.txt") and not pattern.match("v/.txt")
    assert pattern.match("a.ini") and not pattern.match("c.ini")


def test_a_burst_is_one_reload_after_the_quiet_period() -> None:
    d = Debounce(quiet=0.3, vendor_quiet=2.0)
    assert d.take(0.0) is None  # nothing changed
    for i in range(20):
        assert d.changed([f"page{i}.php"], now=i * 0.01) == 0.3
    assert d.take(0.4) is None  # the last change was at 0.19: not quiet for 0.3 s yet
    assert d.take(0.49) == ("page0.php", 19)
    assert d.take(10.0) is None  # taken: nothing pending


def test_vendor_changes_wait_longer_and_repeats_count_once() -> None:
    d = Debounce(quiet=0.3, vendor_quiet=2.0)
    assert d.changed(["vendor/autoload.php"], now=0.0) == 2.0
    # still a composer run: the long wait again
    assert d.changed(["app/a.php", "app/a.php", "vendor/autoload.php"], now=0.5) == 2.0
    assert d.take(1.0) is None
    assert d.take(2.5) == ("vendor/autoload.php", 1)
    assert d.changed(["app/a.php"], now=3.0) == 0.3  # a new round: back to the short wait


def test_describe() -> None:
    assert describe("lib.php", 0) == "lib.php changed"
    assert describe("lib.php", 1) == "lib.php and 1 other file changed"
    assert describe("lib.php", 4) == "lib.php and 4 other files changed"


class Master:
    """What WatchReloads uses of the arbiter: a clock, timers, the reloads, stopping."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, object]] = []
        self.asked: list[str] = []
        self.stopping = False
        self.reloads = self

    def clock(self) -> float:
        return self.now

    def later(self, delay: float, event: object) -> None:
        self.timers.append((self.now + delay, event))

    def ask(self, why: str) -> str:
        self.asked.append(why)
        return "started"


def test_watch_reloads_asks_once_when_the_last_timer_fires() -> None:
    master = Master()
    watch = WatchReloads(master)  # type: ignore[arg-type]
    watch.files_changed(("a.php",))
    master.now = 0.1
    watch.files_changed(("b.php", "c.php"))
    assert [event for _, event in master.timers] == [WatchQuiet(), WatchQuiet()]
    master.now = master.timers[0][0]  # the first timer: b.php and c.php changed since
    watch.quiet()
    assert master.asked == []
    master.now = master.timers[1][0]
    watch.quiet()
    assert master.asked == ["watch: a.php and 2 other files changed"]
    watch.quiet()  # a stray timer: nothing pending
    assert len(master.asked) == 1
    master.stopping = True
    watch.files_changed(("d.php",))
    master.now += 1
    watch.quiet()
    assert len(master.asked) == 1  # never while stopping


def test_watcher_passes_on_matching_paths_inside_the_resolved_base(tmp_path: Path) -> None:
    release = tmp_path / "releases" / "1"
    (release / "public").mkdir(parents=True)
    (tmp_path / "current").symlink_to(release)
    cfg = config.load(None, {"server.root": str(tmp_path / "current" / "public"), "dev.watch": True})
    watcher = Watcher(cfg, lambda event: None)
    assert watcher.base == str(tmp_path / "current")  # as written: resolved again at each (re)start
    watcher.watching = os.path.realpath(watcher.base)
    assert watcher.accepts(str(release / "public" / "index.php")) == "public/index.php"
    assert watcher.accepts(str(release / "public" / "app.js")) is None
    assert watcher.accepts(str(tmp_path / "elsewhere.php")) is None
