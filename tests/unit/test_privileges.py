"""askr/privileges.py: who the children run as."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from askr import config, privileges


def load(tmp_path: Path, server: str = "") -> config.Config:
    (tmp_path / "public").mkdir(exist_ok=True)
    path = tmp_path / "askr.toml"
    path.write_text(f'[server]\nroot = "public"\n{server}')
    return config.load(path)


def test_popen_user_switches_only_when_asked() -> None:
    assert privileges.popen_user(None) == {}
    assert privileges.popen_user((33, 33)) == {"user": 33, "group": 33, "extra_groups": []}


def test_children_run_as_server_user_only_when_started_as_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:  # nothing to switch: children stay as we are, and nothing is refused
        cfg = load(tmp_path)
        assert privileges.root_problem(cfg) is None and privileges.run_as(cfg) is None
        return
    assert privileges.root_problem(load(tmp_path)) is not None  # PHP as root: refused unless asked
    cfg = load(tmp_path, 'user = "nobody"\n')
    assert privileges.root_problem(cfg) is None
    assert privileges.run_as(cfg) == (pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
    assert privileges.run_as(load(tmp_path, 'user = "root"\n')) is None  # root, knowingly: no switch
