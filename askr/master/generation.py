"""PHP generations: which zygote new workers fork from, and the older ones still serving.

A generation is one zygote (one module startup: the code, php.ini and OPcache as they were when
it started; worker mode resolves the release path then too, so a later symlink swap does not
leak into it) and the workers forked from it. A reload starts the next generation and makes it
current; a rollback makes the previous one current again. Each is one call here, so the
current/old bookkeeping never goes half-way. An old zygote is closed once its last worker exits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from askr.master.zygote import Zygote

log = logging.getLogger("askr.master")


class Generations:
    def __init__(self, make: Callable[[int], Zygote]):
        self.make = make  # a zygote, not yet started, for the given generation number
        self.current: Zygote | None = None  # new workers fork from it
        self.old: list[Zygote] = []  # previous generations, kept until their workers are gone
        self.starting: list[Zygote] = []  # booting, not yet current (closed on shutdown too)
        self.number = 0  # the current generation: what every worker should run
        self._next = 1  # numbers stay unique, even after a rollback

    async def start_next(self) -> Zygote:
        """Boot the next generation's zygote; it becomes current only by `promote`."""
        zygote = self.make(self._next)
        self._next += 1
        self.starting.append(zygote)
        try:
            await zygote.start()
        except BaseException:
            self.starting.remove(zygote)
            zygote.close()
            raise
        log.info("PHP generation %d ready (zygote pid %d)", zygote.generation, zygote.pid)
        return zygote

    def promote(self, zygote: Zygote) -> Zygote | None:
        """`zygote` becomes current; the previous current one (returned) becomes old."""
        previous = self.current
        if previous is not None:
            self.old.append(previous)
        self._take(zygote)
        return previous

    def rollback(self, to: Zygote) -> None:
        """The old generation `to` becomes current again; the current one becomes old."""
        self.old.remove(to)
        if self.current is not None:
            self.old.append(self.current)
        self._take(to)

    def replace_lost(self, zygote: Zygote) -> None:
        """The current zygote died: `zygote` (freshly started) takes its place. The dead one's
        workers serve on as orphans, reaped by the master."""
        self._take(zygote)

    def lose_current(self) -> None:
        """The current zygote exited unexpectedly; `replace_lost` follows once another starts."""
        self.current = None

    def _take(self, zygote: Zygote) -> None:
        if zygote in self.starting:
            self.starting.remove(zygote)
        self.current = zygote
        self.number = zygote.generation

    def close_idle(self, live: set[int]) -> None:
        """Close every old zygote whose generation has no live worker left (`live`)."""
        for zygote in list(self.old):
            if zygote.generation not in live:
                zygote.close()
                self.old.remove(zygote)

    def all(self) -> list[Zygote]:
        return [*([self.current] if self.current else []), *self.old, *self.starting]

    def find_pid(self, pid: int) -> Zygote | None:
        return next((z for z in self.all() if z.proc is not None and z.proc.pid == pid), None)
