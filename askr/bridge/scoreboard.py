"""The scoreboard: one slot per worker id in a file the master creates, mapped by the zygote (so by
every PHP worker), by the fronts (read-write: the stop word) and by the master (read-only).

The C worker (csrc/askr_chan.h, `SB_*`) writes a slot as native u64 words: the request id it holds
(0 when idle), its pid, the stop word (set by a front to retire it), requests served, 5xx
responses sent, when its latest request began (Unix µs), then that request's REQUEST_URI
(NUL-terminated, 128 bytes at most), then the latest finished request's duration and CPU time
(µs) and PHP's peak memory during it (bytes), then the requests its slowlog logged, then the
syscalls the sandbox denied it ([sandbox], counted by its SIGSYS handler). This module
is the one Python reader and writer of that layout. A slot counts only while its pid is the
worker's asked about: a replacement may reuse the id, and a dead worker's slot keeps its last
words.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

SLOT = struct.Struct("=QQQQQQ128sQQQQQ")
_HELD = struct.Struct("=QQ")  # the request id and the pid: all the hot paths read
_STOP_WORD = struct.Struct("=Q")
_STOP_OFFSET = 16  # the third word


@dataclass(frozen=True, slots=True)
class SlotState:
    """What a worker's slot says about it (for /api/status and the metrics)."""

    request_id: int  # held now, 0 when idle
    served: int
    errors: int  # 5xx responses sent
    began_us: int  # when the latest request began, Unix µs
    uri: str  # that request's REQUEST_URI
    last_us: int = 0  # the latest finished request: its duration, µs
    last_cpu_us: int = 0  # the CPU time (user + system) the worker used for it, µs
    last_peak: int = 0  # PHP's peak memory during it, bytes
    slowlogged: int = 0  # requests the slowlog logged ([worker] slowlog_timeout)
    denied_syscalls: int = 0  # syscalls the sandbox's seccomp filter denied it


IDLE = SlotState(0, 0, 0, 0, "")


def file_size(worker_ids: int) -> int:
    """Bytes the scoreboard file needs for `worker_ids` slots."""
    return SLOT.size * worker_ids


class Scoreboard:
    """A mapped scoreboard file (or None: no scoreboard, every question answers "nothing")."""

    __slots__ = ("_board",)

    def __init__(self, board: mmap.mmap | None):
        self._board = board

    def _offset(self, worker_id: int, pid: int) -> int:
        """The slot's offset when it belongs to `pid`, else -1."""
        board = self._board
        offset = worker_id * SLOT.size
        if board is None or worker_id < 0 or offset + SLOT.size > len(board):
            return -1
        return offset if _HELD.unpack_from(board, offset)[1] == pid else -1

    def holding(self, worker_id: int, pid: int) -> int:
        """The request id worker `pid` holds in slot `worker_id` (0: none, or not its slot)."""
        board = self._board
        offset = worker_id * SLOT.size
        if board is None or worker_id < 0 or offset + SLOT.size > len(board):
            return 0
        request_id, owner = _HELD.unpack_from(board, offset)
        return request_id if owner == pid else 0

    def stop(self, worker_id: int, pid: int) -> bool:
        """Set worker `pid`'s stop word (it takes no further request); False if not its slot."""
        offset = self._offset(worker_id, pid)
        if offset < 0:
            return False
        _STOP_WORD.pack_into(self._board, offset + _STOP_OFFSET, 1)  # type: ignore[arg-type]
        return True

    def read(self, worker_id: int, pid: int) -> SlotState:
        """Worker `pid`'s slot; IDLE when the slot is not (or no longer) its own."""
        offset = self._offset(worker_id, pid) if pid else -1
        if offset < 0:
            return IDLE
        request_id, _, _, served, errors, began, uri, last_us, last_cpu_us, last_peak, slowlogged, denied = (
            SLOT.unpack_from(self._board, offset))  # type: ignore[arg-type]
        return SlotState(request_id, served, errors, began, uri.split(b"\0", 1)[0].decode("latin-1"),
                         last_us, last_cpu_us, last_peak, slowlogged, denied)
