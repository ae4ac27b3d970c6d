"""[server] health_path: the host's readiness on the traffic port, answered by the front itself.

The master decides readiness (askr/readiness.py) and sends every front its verdict as it changes
(a `readiness` control line, askr/master/fronts.py); until the first one arrives a front says
"booting". The path is matched before routing, so it never reaches PHP or the document root.
"""

from __future__ import annotations

import json

from askr.front.static import StaticResponse
from askr.readiness import NO_READY_WORKERS, STOPPING, Readiness


def answer(master_says: str, workers_connected: int, front_draining: bool,
           head_only: bool) -> StaticResponse:
    """200 or 503 with the health endpoints' JSON. This front's own view can only lower the
    master's: it is stopping (SIGTERM reached it), or no worker is connected to it yet (just
    restarted), so what it accepts would wait."""
    readiness = Readiness(master_says)
    if front_draining:
        readiness = Readiness(STOPPING)
    elif readiness.ready and not workers_connected:
        readiness = Readiness(NO_READY_WORKERS)
    body = json.dumps(readiness.document()).encode() + b"\n"
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
               (b"cache-control", b"no-store")]
    return StaticResponse(200 if readiness.ready else 503, headers, b"" if head_only else body)
