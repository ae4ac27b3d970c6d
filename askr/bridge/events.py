"""What a front tells the master about its PHP workers (docs/internals.md, "Front ↔ master").

One JSON object per line on the front's control socket, `{"event": NAME, ...fields}`; built and
read only here, so both sides agree on the names and fields. The front's `stats` line (counters
for /metrics) is not a worker event and stays a plain dict.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    worker_id: int  # the worker's scoreboard slot
    pid: int
    name: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.name, **asdict(self)}

    def to_line(self) -> bytes:
        return json.dumps(self.to_dict()).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class WorkerReady(WorkerEvent):
    """Its HELLO arrived: it takes requests."""

    generation: int = 0
    name: ClassVar[str] = "worker_ready"


@dataclass(frozen=True, slots=True)
class WorkerGone(WorkerEvent):
    """Its channel closed."""

    name: ClassVar[str] = "worker_gone"


@dataclass(frozen=True, slots=True)
class WorkerQuota(WorkerEvent):
    """It reached a recycling limit: start its replacement, then retire it."""

    reason: str = "max_requests"  # or "max_memory"
    value: int = 0  # max_memory: the bytes of anonymous memory it held after its request
    name: ClassVar[str] = "worker_quota"


@dataclass(frozen=True, slots=True)
class WorkerBootFailed(WorkerEvent):
    """Worker mode: the worker script ended before its first askr_handle_request()."""

    error: str = ""
    name: ClassVar[str] = "worker_boot_failed"


@dataclass(frozen=True, slots=True)
class RequestTimeout(WorkerEvent):
    """A request on it ran past request_timeout: kill it."""

    uri: str = ""
    name: ClassVar[str] = "request_timeout"


_BY_NAME: dict[str, type[WorkerEvent]] = {
    cls.name: cls for cls in (WorkerReady, WorkerGone, WorkerQuota, WorkerBootFailed, RequestTimeout)
}


def parse(msg: dict[str, Any]) -> WorkerEvent | None:
    """The event a control line carries; None for anything else (or a malformed one)."""
    cls = _BY_NAME.get(msg.get("event", ""))
    if cls is None:
        return None
    try:
        return cls(**{f.name: msg[f.name] for f in fields(cls) if f.name in msg})
    except TypeError:  # a field missing
        return None
