"""Who askr's processes run as: [server] user and group for every child, the master as started.

The master keeps root only to bind the listen sockets and supervise; the fronts, PHP workers,
queue workers and the scheduler switch to [server] user when they start.
"""

from __future__ import annotations

import grp
import os
import pwd
from typing import Any

from askr.config import Config


def root_problem(config: Config) -> str | None:
    """Serving as root with no [server] user would run PHP as root: refused unless asked for."""
    if os.geteuid() != 0 or config.server.user is not None:
        return None
    return (f"{config.source}: askr is running as root and [server] user is not set, so PHP would run as "
            'root; set [server] user = "www-data" (or another unprivileged user), or user = "root" to '
            "allow it knowingly (askr serve --user)")


def run_as(config: Config) -> tuple[int, int] | None:
    """(uid, gid) children switch to, or None when they stay as we are."""
    user = config.server.user
    if user is None or os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(user)
    gid = grp.getgrnam(config.server.group).gr_gid if config.server.group else entry.pw_gid
    if entry.pw_uid == 0 and gid == 0:
        return None
    return entry.pw_uid, gid


def popen_user(run_as: tuple[int, int] | None) -> dict[str, Any]:
    """subprocess.Popen arguments that start a child as `run_as` (no supplementary groups)."""
    return {"user": run_as[0], "group": run_as[1], "extra_groups": []} if run_as else {}
