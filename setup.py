"""Builds the C PHP worker program (csrc/askr_php.c) into askr/bin/askr-php during `pip install .`.

It links against Debian's libphp8.2 embed library; `php-config8.2` (package php8.2-dev) gives
the include flags. There is no other compile step anywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _php_config(flag: str) -> list[str]:
    for exe in ("php-config8.2", "php-config"):
        if shutil.which(exe):
            return subprocess.check_output([exe, flag], text=True).split()
    raise SystemExit("askr: php-config8.2 not found; install the Debian package php8.2-dev")


def build_php_worker(out: Path) -> None:
    src = HERE / "csrc" / "askr_php.c"
    out.parent.mkdir(parents=True, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    cmd = [
        cc, "-O2", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11",
        *_php_config("--includes"), str(src), "-o", str(out),
        "-L/usr/lib", "-lphp8.2", "-Wl,-rpath,/usr/lib",
    ]
    print("askr: building PHP worker:", " ".join(cmd))
    subprocess.check_call(cmd)


class BuildWithPhpWorker(build_py):
    def run(self) -> None:
        super().run()
        # An editable install (`pip install -e .`) imports askr from the source tree, so the
        # program goes there; a regular install puts it inside the built package.
        base = HERE if getattr(self, "editable_mode", False) else Path(self.build_lib)
        build_php_worker(base / "askr" / "bin" / "askr-php")


if __name__ == "__main__":  # pip's build backend runs this file as __main__; tests import build_php_worker
    setup(cmdclass={"build_py": BuildWithPhpWorker})
