"""The test bed's own promises: it says why it cannot run, and a later run removes what a killed
run left behind."""

from __future__ import annotations

import os
import subprocess

import bed
import netns
import pytest


def test_a_missing_tool_is_named_with_its_package(monkeypatch):
    monkeypatch.setattr(bed.shutil, "which", lambda tool: None if tool == "redis-server" else "/usr/bin/x")
    assert bed.missing() == ("redis-server is not installed "
                             "(apt-get install haproxy redis-server php8.2-redis)")


def test_namespaces_need_root(monkeypatch):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert netns.unavailable() == "network namespaces need root (ip netns add)"


def _dead_pid() -> int:
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid += 1
    return pid


@pytest.mark.skipif(netns.unavailable() is not None, reason=str(netns.unavailable()))
def test_namespaces_of_a_killed_run_are_removed_with_what_runs_in_them():
    stale = netns.Netns(f"{netns.PREFIX}{_dead_pid()}-h1", "")
    subprocess.run(["ip", "netns", "add", stale.name], check=True)
    sleeper = subprocess.Popen(stale.command(["sleep", "60"]))
    try:
        assert stale.name in netns.remove_stale()
        assert sleeper.wait(10) == -9  # what ran inside was killed
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert stale.name not in listed
    finally:
        sleeper.kill()
        subprocess.run(["ip", "netns", "del", stale.name], capture_output=True, check=False)
