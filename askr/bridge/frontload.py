"""What every front has in the shared request queue, so `[limits] max_queue` bounds the server.

All fronts send into one request queue, but each only knows its own requests. Counted per front,
`fronts = N` let N times the queue's depth wait, and with as many connections as workers on each
front the queue held several times what `max_queue` allows. Each front therefore publishes two
numbers in a small shared file the master creates (`<runtime_dir>/front-load`): its requests in
the queue or running, and those waiting in the front for room in the queue; a front adds the
others' numbers to its own before it queues or refuses a request. One writer per word (a front
writes only its own) and word-sized stores keep it lock-free; a reader may see a number a few
requests old, which only moves the bound by as much. The master zeroes the words of a front
that died, so its last numbers do not hold the others back.
"""

from __future__ import annotations

import mmap

WORD = 8
WORDS_PER_FRONT = 2  # requests in the queue or running; requests waiting in the front


def file_size(fronts: int) -> int:
    return fronts * WORDS_PER_FRONT * WORD


class FrontLoad:
    """One front's view of the shared file (or of nothing: a lone pool, as in unit tests)."""

    __slots__ = ("_others", "_words", "index")

    def __init__(self, board: mmap.mmap | None, index: int = 0):
        self.index = index
        self._words = memoryview(board).cast("q") if board is not None else None
        self._others = [i for i in range(len(self._words) // WORDS_PER_FRONT) if i != index] \
            if self._words is not None else []

    def publish(self, in_flight: int, waiting: int) -> None:
        words = self._words
        if words is not None:
            base = self.index * WORDS_PER_FRONT
            words[base] = in_flight
            words[base + 1] = waiting

    def others_in_flight(self) -> int:
        words = self._words
        return sum(words[i * WORDS_PER_FRONT] for i in self._others) if words is not None else 0

    def others_waiting(self) -> int:
        words = self._words
        return sum(words[i * WORDS_PER_FRONT + 1] for i in self._others) if words is not None else 0

    def clear(self, index: int) -> None:
        """The master, for a front that died."""
        if self._words is not None:
            base = index * WORDS_PER_FRONT
            self._words[base] = self._words[base + 1] = 0
