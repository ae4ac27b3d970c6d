"""Routing: map a request path to a static file, a PHP script, a redirect or a refusal.

The semantics mirror nginx `try_files $uri $uri/ /index.php?$query_string` in front of php-fpm
(with `fastcgi_split_path_info ^(.+?\\.php)(/.*)$`) and Caddy's `php_server`, plus the hardening
rules those setups usually bolt on by hand: dotfiles, PHP source and backups, symlinks that leave
the document root.

This runs once per request, so it is plain string work plus `lstat` calls: one `lstat` for a
top-level file, one per path segment for deeper ones (to see symlinked parents without paying for
`os.path.realpath` on every request). Router caches nothing (files change during deploys);
askr/front/routecache.py keeps PHP routes for one second, and small static files through
askr/front/hotfiles.py.

In worker mode the same rules decide what is static; what would have run a script goes to the
worker script instead (with the CGI variables of that script), and so does what would have been
a 404 for want of a front controller: the app answers it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from stat import S_ISDIR, S_ISLNK, S_ISREG
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes


@dataclass(slots=True, frozen=True)
class StaticFile:
    """A regular file inside the root; `path` is its real absolute path."""

    path: str
    st: os.stat_result


@dataclass(slots=True, frozen=True)
class PhpScript:
    """A PHP script to run; `script_name` is its URL path ("/index.php"), decoded."""

    script_filename: str
    script_name: str
    path_info: str
    # encoded once here rather than per request in the hot path
    script_filename_bytes: bytes = field(init=False, repr=False, compare=False)
    script_name_bytes: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "script_filename_bytes", self.script_filename.encode())
        object.__setattr__(self, "script_name_bytes", self.script_name.encode())


@dataclass(slots=True, frozen=True)
class Redirect:
    """301 to the same directory with a trailing slash; `location` is percent-encoded."""

    location: str


@dataclass(slots=True, frozen=True)
class Refused:
    """400 for a malformed path, 403 for an unreadable one, 404 for anything never served."""

    status: int


Route = StaticFile | PhpScript | Redirect | Refused

_BAD_REQUEST = Refused(400)
_FORBIDDEN = Refused(403)
_NOT_FOUND = Refused(404)

# nginx answers 400 to a malformed escape rather than passing "%zz" through.
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# Control characters would end up in headers (Location, $_SERVER); a backslash is a path
# separator to Windows-minded code and has no business in a URL path.
_BAD_CHAR = re.compile(r"[\x00-\x1f\x7f\\]")
# PHP source that must never go out as bytes: .phtml/.phar/.phps/.php5/.inc..., and backups
# such as x.php~, x.php.bak, x.php.swp, #x.php#. Matched on the lower-cased file name; a plain
# ".php" also matches, callers that run PHP check for that first.
_SOURCE_LIKE = re.compile(r"\.(?:ph(?:p\d*|ps|tml|t|ar)|inc)(?![a-z0-9])")
_WELL_KNOWN = ".well-known"
_DIR_INDEX_PHP = ["index.php"]
_DIR_INDEX_HTML = ["index.html"]
# Sub-delimiters stay literal in the redirect; everything else (spaces, UTF-8, CR/LF) is escaped.
_PATH_SAFE = "/!$&'()*+,;=:@"
_QUERY_SAFE = "/?!$&'()*+,;=:@%"

_Found = tuple[str, os.stat_result, bool]  # (real path, stat of the target, reached via a symlink)


def split_path(raw_path: bytes) -> tuple[list[str], bool] | None:
    """Decode and normalise a request path into segments; None means 400. (X-Accel-Redirect
    URIs go through it too: askr/front/xsendfile.py.)

    Returns the segments with `.`, `..` and empty ones resolved lexically, and whether the path
    names a directory (trailing slash, or ending in `.`/`..`, as nginx normalises it).
    """
    if raw_path[:1] != b"/":
        return None
    if b"%" in raw_path:
        if _BAD_PERCENT.search(raw_path):
            return None
        raw_path = unquote_to_bytes(raw_path)
    try:
        # Only UTF-8 names are routable: the script name travels on to PHP as text.
        path = raw_path.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _BAD_CHAR.search(path):
        return None
    segs: list[str] = []
    for seg in path.split("/"):
        if not seg or seg == ".":
            continue
        if seg == "..":
            if not segs:
                return None  # would climb above the root: nginx answers 400
            segs.pop()
        else:
            segs.append(seg)
    last = path[path.rfind("/") + 1 :]
    return segs, last in ("", ".", "..")


def _hidden(segs: list[str]) -> bool:
    """Any segment starting with "." is private, except a leading /.well-known (ACME, security.txt)."""
    return any(seg[0] == "." and (i or seg != _WELL_KNOWN) for i, seg in enumerate(segs))


def _location(url_path: str, query: bytes) -> str:
    location = quote(url_path, safe=_PATH_SAFE)
    if query:
        location += "?" + quote_from_bytes(query, safe=_QUERY_SAFE)
    return location


class Router:
    """Resolve request paths against one document root (see the module docstring for the rules)."""

    __slots__ = ("_fc_name", "_fc_segs", "_root", "_root_prefix", "_worker_mode")

    def __init__(self, root: str, front_controller: str = "index.php", worker_mode: bool = False) -> None:
        # Resolved once: the containment check compares real paths against this prefix.
        self._root = os.path.realpath(root)
        if not os.path.isdir(self._root):
            raise NotADirectoryError(f"document root is not a directory: {root}")
        self._root_prefix = self._root if self._root.endswith(os.sep) else self._root + os.sep
        self._fc_segs = [s for s in front_controller.split("/") if s]
        if not self._fc_segs:
            raise ValueError(f"front controller must name a file: {front_controller!r}")
        self._fc_name = "/" + "/".join(self._fc_segs)
        self._worker_mode = worker_mode

    @property
    def root(self) -> str:
        return self._root

    def resolve(self, raw_path: bytes, query: bytes = b"") -> Route:
        split = split_path(raw_path)
        if split is None:
            return _BAD_REQUEST
        segs, is_dir = split
        if segs and _hidden(segs):
            return _NOT_FOUND
        if not segs:
            return self._directory(self._root, "/")

        # The script is the first "*.php" segment, PATH_INFO what follows (lazy, like nginx's
        # `^(.+?\.php)(/.*)$`). Classic mode: it must be a regular file, else 404, as nginx's
        # `location ~ [^/]\.php(/|$)` with `try_files $fastcgi_script_name =404` answers.
        # Worker mode: the app routes such URLs, and a directory named x.php does not count.
        n = len(segs)
        for i in range(n):
            if segs[i][-4:].lower() != ".php":
                continue
            found = self._probe(self._root, segs[: i + 1])
            if isinstance(found, Refused):
                return found
            if found is not None and S_ISREG(found[1].st_mode):
                script_name = "/" + "/".join(segs[: i + 1])
                if i + 1 == n and not is_dir:
                    return PhpScript(found[0], script_name, "")
                tail = "/" + "/".join(segs[i + 1 :])
                if is_dir and i + 1 < n:
                    tail += "/"
                return PhpScript(found[0], script_name, tail)
            if not self._worker_mode:
                return _NOT_FOUND
            if found is None or not S_ISDIR(found[1].st_mode):
                return self._fallback()  # nothing below a missing prefix can exist either

        found = self._probe(self._root, segs)
        if found is None:
            return self._fallback()
        if isinstance(found, Refused):
            return found
        real, st, via_link = found
        url = "/" + "/".join(segs)
        mode = st.st_mode
        if S_ISREG(mode):
            # "/style.css/" is not the file (open() would fail ENOTDIR under nginx either).
            return self._fallback() if is_dir else self._file(segs[-1], real, st, url, via_link)
        if S_ISDIR(mode):
            return self._directory(real, url + "/") if is_dir else Redirect(_location(url + "/", query))
        return self._fallback()  # fifo, socket, device: never opened

    def _directory(self, real_dir: str, url_dir: str) -> Route:
        """A directory asked for with its trailing slash: index.php, then index.html, then fall through."""
        found = self._probe(real_dir, _DIR_INDEX_PHP)
        if isinstance(found, Refused):
            return found
        if found is not None and S_ISREG(found[1].st_mode):
            return PhpScript(found[0], url_dir + "index.php", "")
        found = self._probe(real_dir, _DIR_INDEX_HTML)
        if isinstance(found, Refused):
            return found
        if found is not None and S_ISREG(found[1].st_mode):
            return self._file("index.html", found[0], found[1], url_dir + "index.html", found[2])
        return self._fallback()

    def _file(self, name: str, real: str, st: os.stat_result, url: str, via_link: bool) -> Route:
        """A regular file: run it, serve it, or refuse it by name."""
        low = name.lower()
        if low.endswith(".php"):
            return PhpScript(real, url, "")
        if _SOURCE_LIKE.search(low):
            return _NOT_FOUND
        if via_link and _SOURCE_LIKE.search(real[real.rfind(os.sep) + 1 :].lower()):
            # "notes.txt -> config.php" must not hand out PHP source under an innocent name.
            return _NOT_FOUND
        return StaticFile(real, st)

    def _fallback(self) -> Route:
        """The front controller (root/index.php), or 404 when the app has none."""
        found = self._probe(self._root, self._fc_segs)
        if isinstance(found, Refused):
            return found
        if found is not None and S_ISREG(found[1].st_mode):
            return PhpScript(found[0], self._fc_name, "")
        if self._worker_mode:  # the app routes it; no file needs to exist
            return PhpScript(self._root_prefix + "/".join(self._fc_segs), self._fc_name, "")
        return _NOT_FOUND

    def _probe(self, base: str, names: list[str]) -> _Found | Refused | None:
        """Find base/names[0]/.../names[-1]; `base` is a real directory already inside the root.

        Returns the real path and its stat, a Refused (403 unreadable, 404 outside the root or into
        a dot directory), or None when there is nothing there.
        """
        prefix = base if base.endswith(os.sep) else base + os.sep
        path = prefix + "/".join(names)
        try:
            st = os.lstat(path)
        except PermissionError:
            return _FORBIDDEN
        except OSError:  # ENOENT, ENOTDIR, ENAMETOOLONG, ELOOP: all mean "not a file here"
            return None
        if not S_ISLNK(st.st_mode):
            if len(names) == 1:
                return path, st, False
            # The target is no link, but a parent may be: one lstat per parent is still cheaper
            # than realpath, which lstats every component from "/" down.
            parent = prefix
            for name in names[:-1]:
                parent += name
                try:
                    if S_ISLNK(os.lstat(parent).st_mode):
                        break
                except OSError:
                    return None  # changed under us
                parent += os.sep
            else:
                return path, st, False
        real = os.path.realpath(path)
        if real != self._root:
            if not real.startswith(self._root_prefix):
                return _NOT_FOUND
            if _hidden(real[len(self._root_prefix) :].split(os.sep)):
                return _NOT_FOUND  # a link into .git/ is still .git/
        try:
            st = os.stat(real)
        except PermissionError:
            return _FORBIDDEN
        except OSError:  # dangling link
            return None
        return real, st, True
