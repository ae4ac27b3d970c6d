"""The zygote's command line: how the config reaches the C program."""

from __future__ import annotations

from pathlib import Path

from askr import config
from askr.master.zygote import Zygote


def command(tmp_path: Path, toml: str) -> list[str]:
    (tmp_path / "public").mkdir(exist_ok=True)
    path = tmp_path / "askr.toml"
    path.write_text('[server]\nroot = "public"\n' + toml)
    return Zygote(config.load(path), 1, lambda z, f: None, [], "/tmp/sb").command(7)


def option(cmd: list[str], name: str) -> str | None:
    return cmd[cmd.index(name) + 1] if name in cmd else None


def test_recycling_and_slowlog_options(tmp_path: Path) -> None:
    toml = '[worker]\nmax_memory = "256M"\nslowlog_timeout = 1.5\nslowlog_file = "slow.log"\n'
    cmd = command(tmp_path, toml)
    assert option(cmd, "--max-memory") == str(256 * 2**20)
    assert option(cmd, "--slowlog-timeout-ms") == "1500"
    assert option(cmd, "--slowlog-file") == str(tmp_path / "slow.log")  # relative to the config file


def test_defaults_pass_none_of_them(tmp_path: Path) -> None:
    cmd = command(tmp_path, "")
    assert not {"--max-memory", "--slowlog-timeout-ms", "--slowlog-file"} & set(cmd)
