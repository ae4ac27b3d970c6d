"""Builds the C PHP worker program (csrc/*.c) into askr/bin/askr-php during `pip install .`.

It links against Debian's libphp8.2 embed library; `php-config8.2` (package php8.2-dev) gives
the include flags. csrc/askr_chan.c is compiled without them: the transport must not use PHP.

It also builds askr.front._nghttp2, the cffi (API mode) extension behind askr.front.nghttp2, against
Debian's libnghttp2 (package libnghttp2-dev: nghttp2/nghttp2.h and libnghttp2.so; the Python
headers come from python3-dev for a Debian Python). The C source lives in
askr/front/_nghttp2_build.py.

And askr._hotpath, the front's per-request hot path (csrc/front/hotpath.c), a plain CPython
extension compiled with the same Python headers. These are the only three compile steps.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _php_config(flag: str) -> list[str]:
    for exe in ("php-config8.2", "php-config"):
        if shutil.which(exe):
            return subprocess.check_output([exe, flag], text=True).split()
    raise SystemExit("askr: php-config8.2 not found; install the Debian package php8.2-dev")


CFLAGS = ["-O2", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"]
PHP_FREE = ("askr_chan.c", "askr_sandbox.c")  # compiled without PHP's include flags (docs/building.md)


def build_php_worker(out: Path) -> None:
    csrc = HERE / "csrc"
    out.parent.mkdir(parents=True, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    includes = _php_config("--includes")
    with tempfile.TemporaryDirectory(prefix="askr-build-") as tmp:
        objects = []
        for src in sorted(csrc.glob("*.c")):
            obj = Path(tmp) / (src.stem + ".o")
            flags = [] if src.name in PHP_FREE else includes
            cmd = [cc, *CFLAGS, *flags, "-c", str(src), "-o", str(obj)]
            print("askr: compiling:", " ".join(cmd))
            subprocess.check_call(cmd)
            objects.append(str(obj))
        cmd = [cc, *objects, "-o", str(out), "-L/usr/lib", "-lphp8.2", "-Wl,-rpath,/usr/lib"]
        print("askr: linking PHP worker:", " ".join(cmd))
        subprocess.check_call(cmd)


def build_nghttp2_codec(package_dir: Path) -> Path:
    """Compile askr.front._nghttp2 into package_dir (askr/front of the build or source tree)."""
    if not Path("/usr/include/nghttp2/nghttp2.h").exists() and not os.environ.get("CFLAGS"):
        raise SystemExit("askr: nghttp2/nghttp2.h not found; install the Debian package libnghttp2-dev")
    builder = HERE / "askr" / "front" / "_nghttp2_build.py"
    spec = importlib.util.spec_from_file_location("_nghttp2_build", builder)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    package_dir.mkdir(parents=True, exist_ok=True)
    target = module.build(package_dir)
    print("askr: built HTTP/2 codec:", target)
    return target


def build_front_hotpath(package_dir: Path) -> Path:
    """Compile askr._hotpath (csrc/front/hotpath.c) into package_dir (askr/ of the build or source tree)."""
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        raise SystemExit(f"askr: {include}/Python.h not found; install the Debian package python3-dev")
    package_dir.mkdir(parents=True, exist_ok=True)
    target = package_dir / ("_hotpath" + sysconfig.get_config_var("EXT_SUFFIX"))
    cc = os.environ.get("CC", "cc")
    cmd = [cc, *CFLAGS, "-fPIC", "-shared", f"-I{include}", str(HERE / "csrc" / "front" / "hotpath.c"),
           "-o", str(target)]
    print("askr: compiling the front's hot path:", " ".join(cmd))
    subprocess.check_call(cmd)
    return target


class BuildWithPhpWorker(build_py):
    def run(self) -> None:
        super().run()
        # An editable install (`pip install -e .`) imports askr from the source tree, so the
        # program goes there; a regular install puts it inside the built package.
        base = HERE if getattr(self, "editable_mode", False) else Path(self.build_lib)
        build_php_worker(base / "askr" / "bin" / "askr-php")
        build_nghttp2_codec(base / "askr" / "front")
        build_front_hotpath(base / "askr")


if __name__ == "__main__":  # pip's build backend runs this file as __main__; tests import build_php_worker
    setup(cmdclass={"build_py": BuildWithPhpWorker})
