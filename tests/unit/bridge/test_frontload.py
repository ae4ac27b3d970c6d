"""FrontLoad: each front writes its own words, reads the others', and the master clears a dead one's."""

from __future__ import annotations

import mmap

from askr.bridge import frontload
from askr.bridge.frontload import FrontLoad


def test_a_front_sees_the_others_numbers_not_its_own():
    board = mmap.mmap(-1, frontload.file_size(3))
    fronts = [FrontLoad(board, i) for i in range(3)]
    fronts[0].publish(5, 1)
    fronts[1].publish(2, 7)
    assert (fronts[0].others_in_flight(), fronts[0].others_waiting()) == (2, 7)
    assert (fronts[2].others_in_flight(), fronts[2].others_waiting()) == (7, 8)
    FrontLoad(board).clear(1)  # the master: front 1 died
    assert (fronts[2].others_in_flight(), fronts[2].others_waiting()) == (5, 1)


def test_without_a_board_a_pool_is_alone():
    alone = FrontLoad(None)
    alone.publish(3, 3)
    assert (alone.others_in_flight(), alone.others_waiting()) == (0, 0)
