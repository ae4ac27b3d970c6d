"""One log line per event: `time LEVEL [component] message`, on stderr, for every askr process.

The C worker writes the same shape itself (`[php#N]`), so the master's stderr is one readable stream.
"""

from __future__ import annotations

import logging
import sys


class _ComponentFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.component = record.name.rpartition(".")[2]
        return super().format(record)


def setup(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ComponentFormatter("%(asctime)s %(levelname)s [%(component)s] %(message)s"))
    root = logging.getLogger("askr")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
