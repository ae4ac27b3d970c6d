"""The Laravel 8 fixture app (tests/laravel), built fresh into a directory and migrated.

No Composer: the app loads Debian's php-laravel-framework (bootstrap/autoload.php). Used by the
Laravel tests and by bench/laravel.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "laravel"
RUNTIME_DIRS = ("storage/framework/sessions", "storage/framework/views", "storage/framework/cache/data",
                "storage/logs", "storage/app/uploads", "bootstrap/cache")


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
    done = subprocess.run(["php", "artisan", "migrate", "--force", "--no-interaction"], cwd=dest,
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise FixtureError(f"php artisan migrate failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return dest
