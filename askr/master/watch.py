"""[dev] watch (askr serve --watch): a rolling reload when a watched file changes, for development.

watchfiles (Rust's notify: inotify on Linux) runs as a task of the master's loop; `awatch` waits
for the kernel in a thread of its own and hands each batch back to the loop, where `Watcher`
only posts FilesChanged. The arbiter's loop does the rest (`WatchReloads`, driven by events like
every other decision): it waits until the files have been quiet for WATCH_QUIET seconds
(WATCH_VENDOR_QUIET when vendor/ changed, so a composer run gives one reload, at its end), then
asks for the same rolling reload as SIGHUP. A reload asked for during one runs once after it
(Reloads.ask), so a stream of edits never becomes a stream of reloads.

The globs are relative to the app base (config.watch_base). The base is resolved when the
watch starts and again after every reload, so with symlink deploys (`current -> releases/N`)
the watch follows the release being served.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from askr.config import WATCH_QUIET, WATCH_VENDOR_QUIET, Config, watch_base
from askr.master.events import Event, FilesChanged, WatchQuiet

if TYPE_CHECKING:
    from askr.master.arbiter import Arbiter

log = logging.getLogger("askr.master")

RETRY = 1.0  # the base directory is missing (a deploy in progress): look again after this long


def glob_pattern(globs: Iterable[str]) -> re.Pattern[str]:
    """One regex for `globs`, matched against '/'-separated paths relative to the base: `**/`
    is any number of directories (none too), `**` at the end anything, `*` and `?` stay within
    one path component, [...] is a character class."""
    alternatives = []
    for glob in globs:
        out, i = [], 0
        while i < len(glob):
            if glob.startswith("**/", i):
                out.append("(?:.*/)?")
                i += 3
            elif glob.startswith("**", i):
                out.append(".*")
                i += 2
            elif glob[i] == "*":
                out.append("[^/]*")
                i += 1
            elif glob[i] == "?":
                out.append("[^/]")
                i += 1
            elif glob[i] == "[" and "]" in glob[i + 1:]:
                end = glob.index("]", i + 1)
                out.append("[" + glob[i + 1:end].replace("\\", "\\\\") + "]")
                i = end + 1
            else:
                out.append(re.escape(glob[i]))
                i += 1
        alternatives.append("".join(out))
    return re.compile("(?:" + "|".join(alternatives) + r")\Z")


def in_vendor(path: str) -> bool:
    return path == "vendor" or path.startswith("vendor/")


class Debounce:
    """Changed paths come in; one reload goes out once they have been quiet long enough. Pure:
    the caller says what time it is."""

    def __init__(self, quiet: float = WATCH_QUIET, vendor_quiet: float = WATCH_VENDOR_QUIET):
        self.quiet = quiet
        self.vendor_quiet = vendor_quiet
        self.first: str | None = None  # the first path changed since the last reload
        self.others: set[str] = set()
        self.vendor = False  # a path under vendor/ is among them
        self.due_at = 0.0

    def changed(self, paths: Iterable[str], now: float) -> float:
        """Record `paths` (relative to the base) changing at `now`; the delay until a reload
        would be due, if nothing else changes."""
        for path in paths:
            if self.first is None:
                self.first = path
            elif path != self.first:
                self.others.add(path)
            self.vendor = self.vendor or in_vendor(path)
        delay = self.vendor_quiet if self.vendor else self.quiet
        self.due_at = now + delay
        return delay

    def take(self, now: float) -> tuple[str, int] | None:
        """(the first changed path, how many others) when a reload is due at `now`, and forget
        them; None when nothing changed or the files are not quiet yet."""
        if self.first is None or now < self.due_at:
            return None
        due = (self.first, len(self.others))
        self.first, self.others, self.vendor = None, set(), False
        return due


def describe(first: str, others: int) -> str:
    if not others:
        return f"{first} changed"
    return f"{first} and {others} other file{'s' if others > 1 else ''} changed"


class WatchReloads:
    """The arbiter's side: FilesChanged and WatchQuiet events in, Reloads.ask out."""

    def __init__(self, master: Arbiter):
        self.master = master
        self.debounce = Debounce()
        self.reloads_asked = 0

    def files_changed(self, paths: tuple[str, ...]) -> None:
        delay = self.debounce.changed(paths, self.master.clock())
        self.master.later(delay, WatchQuiet())

    def quiet(self) -> None:
        due = self.debounce.take(self.master.clock())
        if due is None or self.master.stopping:
            return
        self.reloads_asked += 1
        self.master.reloads.ask(f"watch: {describe(*due)}")


class Watcher:
    """The watchfiles task: FilesChanged onto the master's queue, nothing else."""

    def __init__(self, config: Config, post: Callable[[Event], None]):
        self.base = watch_base(config)
        self.globs = config.dev.watch
        self.pattern = glob_pattern(self.globs)
        self.post = post
        self.watching = ""  # the resolved base being watched
        self.restart = asyncio.Event()  # set: the base moved (rebase) or askr stops
        self.stopped = False
        self.polling = False  # inotify refused (its watch limit): look every 300 ms instead

    def accepts(self, path: str) -> str | None:
        """`path` (absolute, as notify reports it) relative to the base if a glob matches it."""
        rel = os.path.relpath(path, self.watching)
        if rel.startswith(".."):
            return None
        rel = rel.replace(os.sep, "/")
        return rel if self.pattern.match(rel) else None

    def rebase(self) -> None:
        """A reload re-resolved the root: follow a symlink swap of the base."""
        if os.path.realpath(self.base) != self.watching:
            self.restart.set()

    def stop(self) -> None:
        self.stopped = True
        self.restart.set()  # the Rust watcher looks at it every step (50 ms) and returns

    async def run(self) -> None:
        from watchfiles import awatch  # imported only when watching: development only

        log.warning("--watch is for development: a change to %s under %s reloads every PHP worker",
                    ", ".join(self.globs), self.base)
        while not self.stopped:
            self.restart.clear()
            self.watching = os.path.realpath(self.base)
            try:
                async for changes in awatch(self.watching, stop_event=self.restart, debounce=1600, step=50,
                                            watch_filter=lambda _c, p: self.accepts(p) is not None,
                                            force_polling=self.polling):
                    paths = sorted({rel for _, path in changes if (rel := self.accepts(path)) is not None})
                    if paths:
                        self.post(FilesChanged(tuple(paths)))
            except FileNotFoundError as e:  # mid-deploy, say
                log.error("watch: cannot watch %s (%s); trying again in %g s", self.watching, e, RETRY)
                await asyncio.sleep(RETRY)
            except OSError as e:
                if self.polling:
                    raise
                log.error("watch: inotify refused %s (%s: raise fs.inotify.max_user_watches); polling "
                          "every 300 ms instead", self.watching, e)
                self.polling = True
            else:
                if not self.stopped:
                    log.info("watch: now watching %s", os.path.realpath(self.base))
