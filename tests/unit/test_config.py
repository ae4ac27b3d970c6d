"""askr.toml parsing: defaults, types, sizes, paths, and errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from askr import config
from askr.config import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "public").mkdir(exist_ok=True)
    path = tmp_path / "askr.toml"
    path.write_text(text)
    return path


def test_defaults_with_public_dir(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[server]\nroot = "public"\n'))
    assert cfg.server.root == str((tmp_path / "public").resolve())
    assert cfg.server.listen == (config.Listen("127.0.0.1", 8080),)
    assert cfg.limits.max_body_size == 8 * 1024 * 1024
    assert cfg.server.workers >= 1


def test_sizes_and_listen_list(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, """
[server]
root = "public"
listen = ["127.0.0.1:9001", "[::1]:9002"]
workers = 3
[limits]
max_body_size = "64M"
max_header_size = 2048
[worker]
ini = { memory_limit = "256M", "opcache.enable" = true }
"""))
    assert cfg.server.listen == (config.Listen("127.0.0.1", 9001), config.Listen("::1", 9002))
    assert cfg.server.workers == 3
    assert cfg.limits.max_body_size == 64 * 1024**2
    assert cfg.limits.max_header_size == 2048
    assert cfg.worker.ini == (("memory_limit", "256M"), ("opcache.enable", "1"))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[server]\nworkrs = 2\n", "unknown key [server] workrs. Did you mean 'workers'?"),
        ("[servr]\n", "unknown section [servr]. Did you mean 'server'?"),
        ("[server]\nworkers = -1\n", '[server] workers = -1: expected a positive integer or "auto"'),
        ("[server]\nworkers = \"many\"\n", "[server] workers = 'many'"),
        ("[limits]\nmax_body_size = \"lots\"\n", "[limits] max_body_size = 'lots': expected a size"),
        ("[server]\nlisten = \"nowhere\"\n", "[server] listen = 'nowhere': expected \"HOST:PORT\""),
        ("[server]\nlisten = \"127.0.0.1:70000\"\n", "between 0 and 65535"),
        ("[server]\nhttps = \"yes\"\n", "[server] https = 'yes': expected true or false"),
        ("[limits]\nheader_timeout = 0\n", "[limits] header_timeout = 0: expected a number of seconds > 0"),
        ("[server]\nroot = \"missing\"\n", "no such directory"),
        ("[server\n", "not valid TOML"),
        ("[server]\nfronts = 65\n", "[server] fronts = 65: expected an integer from 1 to 64, or \"auto\""),
        ("[server]\nfronts = \"many\"\n", "[server] fronts = 'many'"),
        ("[limits]\nmax_header_size = \"1M\"\n", "[limits] max_header_size = '1M': at most 64K"),
        ("[worker]\nscript = \"w.php\"\n", "[worker] script = '"),
        ("[worker]\napp_base = \".\"\n[sandbox]\nenabled = false\n", "app_base is set but no script is"),
        ("[queue]\nscript = \"q.php\"\n", "[queue] script = '"),
        ("[scheduler]\nscript = \"s.php\"\n", "[scheduler] script = '"),
        ("[queue]\nworkers = -1\n", "[queue] workers = -1: expected an integer >= 0"),
        ("[queue]\nargs = \"--tries=3\"\n", "[queue] args = '--tries=3': expected a list of strings"),
        ("[scheduler]\ninterval = 0\n", "[scheduler] interval = 0: expected a number of seconds > 0"),
        ("[queue]\nstop_timout = 5\n", "unknown key [queue] stop_timout. Did you mean 'stop_timeout'?"),
        ("[worker]\nmax_memory = \"lots\"\n", "[worker] max_memory = 'lots': expected a size"),
        ("[worker]\nslowlog_timeout = \"soon\"\n", "slowlog_timeout = 'soon': expected a duration"),
        ("[worker]\nslowlog_file = \"nowhere/slow.log\"\n", "slowlog_file = '"),
        ("[server]\nretry_crashed = \"always\"\n",
         '[server] retry_crashed = \'always\': expected "idempotent" or "never"'),
    ],
)
def test_errors_name_file_key_and_fix(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    message = str(err.value)
    assert needle in message
    assert str(path) in message


def test_recycling_and_slowlog_settings(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[worker]\nmax_memory = "256M"\nslowlog_timeout = "500ms"\n'))
    assert (cfg.worker.max_memory, cfg.worker.slowlog_timeout) == (256 * 2**20, 0.5)
    assert cfg.worker.slowlog_file is None  # the error log
    default = config.load(write(tmp_path, ""))
    assert (default.worker.max_memory, default.worker.slowlog_timeout) == (0, None)  # both off


def test_retry_crashed_defaults_to_idempotent(tmp_path: Path) -> None:
    assert config.load(write(tmp_path, "")).server.retry_crashed == "idempotent"
    assert config.load(write(tmp_path, '[server]\nretry_crashed = "never"\n')).server.retry_crashed == "never"


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="file not found"):
        config.load("/nonexistent/askr.toml")


def test_overrides_win_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nworkers = 2\n")
    cfg = config.load(path, {"server.workers": 5, "limits.max_body_size": "1K"})
    assert cfg.server.workers == 5
    assert cfg.limits.max_body_size == 1024


def test_dump_restore_round_trip(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, "[server]\nroot = \"public\"\nlisten = [\"127.0.0.1:1\"]\n"))
    assert config.restore(config.dump(cfg)) == cfg


def test_every_setting_is_documented() -> None:
    docs = DOCS.read_text()
    assert config.reference_markdown() in docs, "regenerate docs/configuration.md (reference_markdown)"
    for setting in config.SETTINGS:
        assert f"`[{setting.section}] {setting.key}`" in docs


def test_worker_mode_paths_are_relative_to_the_config_and_app_base_defaults(tmp_path: Path) -> None:
    (tmp_path / "app" / "public").mkdir(parents=True)
    (tmp_path / "app" / "worker.php").write_text("<?php")
    path = write(tmp_path, '[server]\nroot = "app/public"\n[worker]\nscript = "app/worker.php"\n')
    cfg = config.load(path)
    assert cfg.worker.script == str(tmp_path / "app" / "worker.php")
    assert cfg.worker.app_base == str(tmp_path / "app")  # the parent of the document root


def test_queue_and_scheduler(tmp_path: Path) -> None:
    (tmp_path / "app" / "public").mkdir(parents=True)
    for name in ("queue.php", "scheduler.php"):
        (tmp_path / "app" / name).write_text("<?php")
    cfg = config.load(write(tmp_path, """
[server]
root = "app/public"
[queue]
script = "app/queue.php"
workers = 3
args = ["--tries=3"]
[scheduler]
script = "app/scheduler.php"
interval = 30
"""))
    assert (cfg.queue.script, cfg.queue.workers, cfg.queue.args) == (str(tmp_path / "app" / "queue.php"), 3,
                                                                     ("--tries=3",))
    assert (cfg.queue.max_jobs, cfg.queue.max_time, cfg.queue.stop_timeout) == (1000, 3600, 60)
    assert (cfg.scheduler.script, cfg.scheduler.interval) == (str(tmp_path / "app" / "scheduler.php"), 30)
    assert cfg.worker.app_base == str(tmp_path / "app")  # they run in the app's base directory
    assert config.restore(config.dump(cfg)) == cfg


def test_queue_needs_the_php_cli(tmp_path: Path) -> None:
    (tmp_path / "q.php").write_text("<?php")
    path = write(tmp_path, '[queue]\nscript = "q.php"\n[worker]\nphp_cli = "no-such-php"\n')
    with pytest.raises(ConfigError, match=r"\[worker\] php_cli = 'no-such-php': no such program"):
        config.load(path)


def test_ini_as_php_ini_lines_keeps_order_and_repeats(tmp_path: Path) -> None:
    """The seed deployment's `ini = "zend_extension=opcache.so\\nopcache.enable=1..."`."""
    lines = ("zend_extension=opcache.so\\nopcache.enable=1\\n; a comment\\n\\n"
             'extension = a.so\\nextension=b.so\\nsession.save_path = \\"/var/lib/x\\"')
    cfg = config.load(write(tmp_path, f'[server]\nroot = "public"\n[worker]\nini = "{lines}"\n'))
    assert cfg.worker.ini == (("zend_extension", "opcache.so"), ("opcache.enable", "1"),
                              ("extension", "a.so"), ("extension", "b.so"),
                              ("session.save_path", "/var/lib/x"))
    assert config.restore(config.dump(cfg)).worker.ini == cfg.worker.ini


@pytest.mark.parametrize(("text", "line"), [
    ("memory_limit=1G\\nopcache.enable", "line 2 ('opcache.enable')"),
    ("=1", "line 1 ('=1')"),
    ("memory limit=1G", "line 1 ('memory limit=1G')"),
])
def test_a_bad_ini_line_is_named(tmp_path: Path, text: str, line: str) -> None:
    _, problems = config.validate(write(tmp_path, f'[server]\nroot = "public"\n[worker]\nini = "{text}"\n'))
    assert len(problems) == 1 and "[worker] ini" in problems[0] and line in problems[0], problems
    assert "KEY=VALUE" in problems[0]


def test_static_settings(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[server]\nroot = "public"\n[static]\ncharset = "utf-8"\n'
                                      'types = { MJS = "text/javascript", ".map" = "application/json" }\n'))
    assert cfg.static.charset == "utf-8"
    assert "text/html" in cfg.static.charset_types
    assert cfg.static.types == {"mjs": "text/javascript", "map": "application/json"}
    bad = '[server]\nroot = "public"\n[static]\ntypes = { js = "nope" }\n'
    _, problems = config.validate(write(tmp_path, bad))
    assert len(problems) == 1 and "[static] types" in problems[0]


def test_every_setting_names_its_type() -> None:
    """Each parser carries its type name (a renamed parser cannot silently become "value")."""
    names = {s.name: s.type_name for s in config.SETTINGS}
    assert names["[server] workers"] == 'integer or "auto"' and names["[server] root"] == "path"
    assert names["[limits] max_header_size"] == "size" and names["[log] access"] == "choice"
    assert all(names.values())


def test_every_setting_survives_dump_and_restore(tmp_path: Path) -> None:
    """The master hands its children each value in its parser's input form; restore parses it
    again with the same parsers, so every key (not only the defaults) must come back equal."""
    (tmp_path / "public").mkdir()
    (tmp_path / "w.php").write_text("<?php")
    (tmp_path / "token").write_text("s3cret\n")
    cfg = config.load(write(tmp_path, """
[server]
root = "public"
listen = ["127.0.0.1:1", "[::1]:2"]
workers = 4
fronts = 2
retry_crashed = "never"
trusted_proxies = ["10.0.0.0/8"]
[worker]
script = "w.php"
ini = "a=1\\nextension=x.so\\nextension=y.so\\nquoted=\\"  spaced  \\""
[static]
types = { mjs = "text/javascript" }
charset = "utf-8"
[admin]
listen = "0.0.0.0:9999"
token_file = "token"
[queue]
args = ["--tries=3"]
[limits]
max_body_size = "1M"
"""))
    assert cfg.worker.ini[-1] == ("quoted", "  spaced  ") and cfg.admin.token == "s3cret"
    restored = config.restore(config.dump(cfg))
    assert restored == cfg
    for setting in config.SETTINGS:
        section = setting.section
        assert getattr(getattr(restored, section), setting.key) == getattr(getattr(cfg, section), setting.key)


def test_combinations_are_judged_without_the_filesystem() -> None:
    """_check_values is pure: it reads only the parsed values."""
    parsed = {s: {} for s in config.SECTIONS}
    for setting in config.SETTINGS:
        default = setting.default
        parsed[setting.section][setting.key] = None if default is None else setting.parse(default)
    # more fronts than workers is fine: every front reaches every worker
    parsed["server"].update(workers=1, fronts=2, redirect_http=config.parse_listen("127.0.0.1:80"))
    parsed["admin"]["listen"] = config.parse_listen("0.0.0.0:9000")
    problems = config._check_values("askr.toml", parsed)
    assert [p.split(": ", 2)[1][:28] for p in problems] == [
        "[server] redirect_http is se", "[admin] listen = '0.0.0.0:90"]


def test_fronts_auto_is_one_per_core_up_to_64() -> None:
    assert [config.auto_fronts(n) for n in (1, 2, 3, 16, 64, 256)] == [1, 2, 3, 16, 64, 64]


def test_durations_take_units_and_drain_delay_may_be_zero(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[server]\ndrain_delay = "4s"\nrequest_timeout = "2m"\n'
                                      '[admin]\ndrain_quiet = "500ms"\n'))
    assert (cfg.server.drain_delay, cfg.server.request_timeout, cfg.admin.drain_quiet) == (4.0, 120.0, 0.5)
    defaults = config.load()
    assert (defaults.server.drain_delay, defaults.admin.drain_quiet) == (0.0, 5.0)
    assert (defaults.server.health_path, defaults.admin.health_public) == ("", False)
    assert config.restore(config.dump(cfg)) == cfg


@pytest.mark.parametrize(("toml", "needle"), [
    ('[server]\ndrain_delay = "-1s"\n', "[server] drain_delay = '-1s': expected a duration"),
    ("[server]\ndrain_delay = -1\n", "[server] drain_delay = -1: expected a number of seconds >= 0"),
    ('[admin]\ndrain_quiet = "0s"\n', "[admin] drain_quiet = '0s': expected a number of seconds > 0"),
    ('[admin]\ndrain_quiet = "5 minutes"\n', "expected a duration"),
    ('[server]\nhealth_path = "askr-health"\n', "[server] health_path = 'askr-health': expected \"\" (off)"),
    ('[server]\nhealth_path = "/h?x=1"\n', "without ?, # or spaces"),
    ("[admin]\nhealth_public = 1\n", "[admin] health_public = 1: expected true or false"),
])
def test_bad_health_and_drain_settings(tmp_path: Path, toml: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path, toml))
    assert needle in str(err.value)


def test_dev_watch_globs(tmp_path) -> None:
    (tmp_path / "public").mkdir()
    (tmp_path / "src").mkdir()
    root = {"server.root": str(tmp_path / "public")}
    assert config.load(None, root).dev.watch == ()  # off by default
    assert config.load(None, {**root, "dev.watch": True}).dev.watch == config.DEFAULT_WATCH
    assert config.load(None, {**root, "dev.watch": ["src/**/*.php"]}).dev.watch == ("src/**/*.php",)
    with pytest.raises(config.ConfigError, match=r"\[dev\] watch = 'lib/\*\*/\*.php': .*lib' does not exist"):
        config.load(None, {**root, "dev.watch": ["lib/**/*.php"]})
    with pytest.raises(config.ConfigError, match=r"\[dev\] watch.*relative to the app base"):
        config.load(None, {**root, "dev.watch": ["/etc/*.conf"]})
    with pytest.raises(config.ConfigError, match=r"\[dev\] watch.*expected a list of globs"):
        config.load(None, {**root, "dev.watch": "**/*.php"})


def test_watch_literal_prefix() -> None:
    assert config.watch_literal_prefix("src/**/*.php") == "src"
    assert config.watch_literal_prefix("a/b/*.php") == "a/b"
    assert config.watch_literal_prefix("**/*.php") == ""
    assert config.watch_literal_prefix(".env") == ""
