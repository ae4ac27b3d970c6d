"""The Laravel 8 fixture app (tests/laravel), built fresh into a directory and migrated.

No Composer: the app loads Debian's php-laravel-framework (bootstrap/autoload.php). Used by the
Laravel tests and by bench/laravel.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "laravel"
RUNTIME_DIRS = ("storage/framework/sessions", "storage/framework/views", "storage/framework/cache/data",
                "storage/logs", "storage/app/uploads", "storage/tmp", "bootstrap/cache")
# What the app's PHP may write when sandboxed ([sandbox] writable, relative to the app base):
# Laravel's storage/ and bootstrap/cache/, and database/ for the SQLite file and its journal.
SANDBOX = {"writable": ["storage", "bootstrap/cache", "database"]}


def php_ini(app: Path) -> dict[str, str]:
    """A temporary directory (uploads too) inside storage/, so nothing under /tmp need be writable
    for the fixture's PHP: only what SANDBOX names."""
    return {"sys_temp_dir": str(app / "storage" / "tmp")}


def laravel_args(app: Path) -> list[str]:
    """`askr serve` arguments for the app with its askr.toml (the sandbox's writable directories),
    on free loopback ports."""
    return ["--config", str(app / "askr.toml"), "--root", str(app / "public"), "--listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0"]


class FixtureError(Exception):
    pass


def make_laravel_app(dest: Path) -> Path:
    """Copy the app to `dest`, create its writable directories and SQLite database, run the
    migrations; return the app's base directory (its document root is `<base>/public`)."""
    if not Path("/usr/share/php/Illuminate/autoload.php").exists():
        raise FixtureError("Debian's php-laravel-framework is not installed "
                           "(apt-get install php-laravel-framework)")
    shutil.copytree(SOURCE, dest)
    for d in RUNTIME_DIRS:
        (dest / d).mkdir(parents=True, exist_ok=True)
    (dest / "database" / "database.sqlite").touch()
    (dest / "askr.toml").write_text(
        "# The fixture's own askr.toml (laravel_args): what its PHP may write\n"
        f"[worker]\nini = {{ sys_temp_dir = {json.dumps(php_ini(dest)['sys_temp_dir'])} }}\n"
        f"[sandbox]\nwritable = {json.dumps(SANDBOX['writable'])}\n")
    done = subprocess.run(["php", "artisan", "migrate", "--force", "--no-interaction"], cwd=dest,
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise FixtureError(f"php artisan migrate failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return dest
