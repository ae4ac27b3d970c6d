"""The scoreboard layout, read and written the way the C worker and the fronts share it."""

from __future__ import annotations

import mmap

from askr.bridge.scoreboard import IDLE, SLOT, Scoreboard, SlotState


def write_slot(board: mmap.mmap, worker_id: int, request_id: int, pid: int, stop: int = 0, served: int = 0,
               errors: int = 0, began: int = 0, uri: bytes = b"", last_us: int = 0, last_cpu_us: int = 0,
               last_peak: int = 0, slowlogged: int = 0, denied: int = 0) -> None:
    """As csrc/askr_chan.h stores a slot (native u64 words, the URI, the latest finished request's
    three words, then the slowlog count and the sandbox's denied syscalls)."""
    SLOT.pack_into(board, worker_id * SLOT.size, request_id, pid, stop, served, errors, began, uri,
                   last_us, last_cpu_us, last_peak, slowlogged, denied)


def test_a_slot_answers_only_for_its_own_pid(board: mmap.mmap) -> None:
    write_slot(board, 2, request_id=77, pid=4242, served=9, errors=1, began=1_700_000_000_000_000,
               uri=b"/orders?id=5", last_us=12_300, last_cpu_us=4_000, last_peak=3 << 20, slowlogged=3,
               denied=2)
    sb = Scoreboard(board)
    assert sb.holding(2, 4242) == 77
    assert sb.holding(2, 4243) == 0  # a replacement with the same id, or a stale slot
    assert sb.read(2, 4242) == SlotState(77, 9, 1, 1_700_000_000_000_000, "/orders?id=5",
                                        last_us=12_300, last_cpu_us=4_000, last_peak=3 << 20, slowlogged=3,
                                        denied_syscalls=2)
    assert sb.read(2, 4243) == IDLE
    assert sb.read(2, 0) == IDLE


def test_stop_sets_the_stop_word_of_that_worker_only(board: mmap.mmap) -> None:
    write_slot(board, 1, request_id=0, pid=10)
    sb = Scoreboard(board)
    assert sb.stop(1, 11) is False
    assert SLOT.unpack_from(board, SLOT.size)[2] == 0
    assert sb.stop(1, 10) is True
    assert SLOT.unpack_from(board, SLOT.size)[2] == 1


def test_out_of_range_and_absent_boards_answer_nothing(board: mmap.mmap) -> None:
    sb = Scoreboard(board)
    assert sb.holding(4, 1) == 0 and sb.holding(-1, 1) == 0
    assert sb.stop(99, 1) is False
    none = Scoreboard(None)
    assert none.holding(0, 1) == 0 and none.stop(0, 1) is False and none.read(0, 1) == IDLE
