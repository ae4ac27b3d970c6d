"""Where askr finds its own files: the PHP worker program and the bundled example app."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
EXAMPLE_ROOT = PACKAGE_DIR / "example" / "public"


def php_worker_binary() -> Path:
    """The C program built by setup.py; ASKR_PHP_BIN overrides it (development builds)."""
    override = os.environ.get("ASKR_PHP_BIN")
    return Path(override) if override else PACKAGE_DIR / "bin" / "askr-php"
