"""X-Sendfile and X-Accel-Redirect: PHP names a file, the front sends it and the worker goes free.

PHP answers with a header instead of the bytes; the front drops PHP's body, lets the worker take
its next request at once (the exchange is cancelled: the rest of PHP's output is discarded as it
arrives), and serves the file the way static.py serves a routed one: validators, Range, 304, HEAD,
sendfile for large bodies on cleartext HTTP/1.1. docs/x-sendfile.md is the user's view.

Two forms, each on only when configured ([static] in askr/config.py); unconfigured, the header is
nothing special and passes through, so a proxy in front of askr can still act on it:
- `X-Sendfile: /abs/path` (Apache mod_xsendfile, lighttpd): a filesystem path, taken literally.
  Served only if its real path (symlinks resolved) lies inside one of `sendfile_roots`.
- `X-Accel-Redirect: /protected/a.pdf` (nginx): a URI, percent-decoded and normalised as request
  paths are (router.split_path), whose prefix names an entry of `internal_locations`; the rest
  maps below that entry's directory (nginx's `location /protected/ { internal; alias DIR/; }`).
  Only PHP's header reaches these directories: client requests are routed from the root as ever.

A path that breaks a rule (outside its root, a symlink leading out, a dot segment, malformed) is
answered 500 with a log line naming the path and the rule; it is never served. A file that is
not there (or no regular file) is 404, an unreadable one 403, both logged.

Headers: PHP's status decides (200: the file's own answer, 206/304/416 included; any other status
goes out with the whole file, without Range or conditionals; 204/304 send no file), and PHP's
headers stay (Content-Disposition, Cache-Control, Set-Cookie, ...), as Apache and lighttpd keep
them, except the ones describing PHP's body or the transfer: Content-Length, the validators (the
file's replace them), X-Sendfile and every X-Accel-* header. PHP's Content-Type is kept unless it
is PHP's own default (`Content-type: text/html...`, spelled as PHP's SAPI adds it when a script
set none): then the static MIME table decides by the file's extension.

Symfony's BinaryFileResponse (Laravel's response()->download()) emits the header only when the
request carries X-Sendfile-Type; with offload configured, every request to PHP gets ours
(X-Sendfile, or X-Accel-Redirect with the X-Accel-Mapping it needs), never the client's.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from stat import S_ISREG

from askr.front.router import StaticFile, split_path
from askr.front.static import Headers, StaticResponse, serve_static

log = logging.getLogger("askr.front")

X_SENDFILE = b"x-sendfile"
X_ACCEL_REDIRECT = b"x-accel-redirect"
# PHP's headers that describe its own body or the transfer: the file's answer has its own.
_DROPPED = frozenset((b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"status",
                      b"date", b"server", b"etag", b"last-modified", b"accept-ranges", b"content-range",
                      X_SENDFILE))
_NO_FILE_STATUS = frozenset((204, 304))
# The request headers Symfony reads to decide whether (and how) to offload; only ours reach PHP.
_ANNOUNCE_NAMES = frozenset((b"x-sendfile-type", b"x-accel-mapping"))

# How a file is answered: static.serve_static, or a variant of it (the front's compression).
Serve = Callable[[bytes, Mapping[bytes, bytes], StaticFile], StaticResponse]


class Refusal(Exception):
    """The header names no file the front may send: the status to answer and why (logged)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class FileOffload:
    """The configured roots and internal locations, and what a response naming a file becomes."""

    __slots__ = ("_announce", "_kinds", "_locations", "_roots", "_trigger")

    def __init__(self, roots: Sequence[str], locations: Mapping[str, str]) -> None:
        # Real paths both (config.py resolves them at load; resolved again here for direct use).
        self._roots = tuple(os.path.realpath(r) for r in roots)
        # (prefix segments, real directory), longest prefix first: the most specific wins.
        self._locations = sorted(((([s for s in prefix.split("/") if s]), os.path.realpath(d))
                                  for prefix, d in locations.items()), key=lambda e: -len(e[0]))
        self._kinds = ((X_SENDFILE,) if roots else ()) + ((X_ACCEL_REDIRECT,) if locations else ())
        self._trigger = re.compile(rb"^(?:%s)[ \t]*:" % b"|".join(self._kinds), re.IGNORECASE | re.MULTILINE)
        if roots:
            announce = [b"X-Sendfile-Type", b"X-Sendfile"]
        else:
            mapping = ",".join(f"{_slash(d)}=/{'/'.join(segs)}/" for segs, d in self._locations)
            announce = [b"X-Sendfile-Type", b"X-Accel-Redirect", b"X-Accel-Mapping", os.fsencode(mapping)]
        self._announce = announce

    @classmethod
    def from_config(cls, roots: Sequence[str], locations: Mapping[str, str]) -> FileOffload | None:
        """None when neither form is configured (the front then pays nothing for the feature)."""
        return cls(roots, locations) if roots or locations else None

    # -- the request to PHP -------------------------------------------------------------------
    def php_headers(self, flat: list[bytes], present: Mapping[bytes, object]) -> list[bytes]:
        """The request's [name, value, ...] for PHP with our X-Sendfile-Type (and X-Accel-Mapping)
        in place of any the client sent: a client must not choose how files are offloaded."""
        if b"x-sendfile-type" in present or b"x-accel-mapping" in present:
            flat = [v for i in range(0, len(flat), 2) if flat[i].lower() not in _ANNOUNCE_NAMES
                    for v in flat[i : i + 2]]
        return [*flat, *self._announce]

    # -- PHP's answer ---------------------------------------------------------------------------
    def wanted(self, header_block: bytes) -> bool:
        """Does PHP's response name a file for us to send?"""
        return self._trigger.search(header_block) is not None

    def answer(self, method: bytes, request_headers: Mapping[bytes, bytes], status: int,
               header_block: bytes, url: bytes, serve: Serve = serve_static) -> StaticResponse | int:
        """The response to send for PHP's head, or an error status to answer (already logged).
        `serve` answers the file as a static one; a file PHP says is encoded already (its own
        Content-Encoding) is served as it is."""
        kind, target, kept, php_type = self._split_head(header_block)
        if status in _NO_FILE_STATUS:
            return StaticResponse(status, kept)
        name = "X-Sendfile" if kind == X_SENDFILE else "X-Accel-Redirect"
        try:
            real = self._resolve_path(target) if kind == X_SENDFILE else self._resolve_uri(target)
            st = _stat_file(real)
        except Refusal as refusal:
            log.error("%s: %r (from %s %s): %s; answering %d", name, target.decode("latin-1"),
                      method.decode("latin-1"), url.decode("latin-1"), refusal.reason, refusal.status)
            return refusal.status
        # Whatever the method, the file is answered as to GET (or HEAD), as nginx does after its
        # internal redirect; PHP's own status turns off Range and conditionals.
        as_method = b"HEAD" if method == b"HEAD" else b"GET"
        if serve is not serve_static and any(name == b"content-encoding" for name, _ in kept):
            serve = serve_static
        resp = serve(as_method, request_headers if status == 200 else {}, StaticFile(real, st))
        if status != 200 and resp.status == 200:
            resp.status = status
        if php_type is not None:
            resp.headers = [(n, php_type) if n == b"content-type" else (n, v) for n, v in resp.headers]
        resp.headers.extend(kept)
        return resp

    def _split_head(self, header_block: bytes) -> tuple[bytes, bytes, Headers, bytes | None]:
        """(which header named the file, its value, PHP's headers to keep, PHP's Content-Type or
        None when PHP set none of its own)."""
        kind = target = b""
        kept: list[tuple[bytes, bytes]] = []
        php_type: bytes | None = None
        for line in header_block.split(b"\n"):
            raw_name, _, value = line.partition(b":")
            name = raw_name.strip().lower()
            value = value.strip()
            if name in self._kinds:
                if not kind:
                    kind, target = name, value
            elif name == b"content-type":
                # PHP's SAPI adds its default_mimetype spelled "Content-type" when the script set
                # none; a type the script chose is kept.
                if not (raw_name == b"Content-type" and value[:9].lower() == b"text/html"):
                    php_type = value
            elif name and name not in _DROPPED and not name.startswith(b"x-accel-"):
                kept.append((name, value))
        return kind, target, kept, php_type

    def _resolve_path(self, target: bytes) -> str:
        """X-Sendfile: an absolute path whose real path lies in a sendfile root."""
        if target[:1] != b"/" or b"\0" in target:
            raise Refusal(500, "not an absolute path")
        real = os.path.realpath(os.fsdecode(target))
        for root in self._roots:
            if _below(real, root):
                return real
        raise Refusal(500, f"{real!r} is outside [static] sendfile_roots (symlinks resolved); not serving it")

    def _resolve_uri(self, target: bytes) -> str:
        """X-Accel-Redirect: a URI under an internal location's prefix, mapped into its directory."""
        split = split_path(target.partition(b"?")[0])
        if split is None:
            raise Refusal(500, "not a valid URI path (bad escape, control character, or .. above /)")
        segs, is_dir = split
        for prefix, directory in self._locations:
            n = len(prefix)
            if segs[:n] == prefix and len(segs) > n:
                if is_dir:
                    raise Refusal(404, "names a directory")
                real = os.path.realpath(os.path.join(directory, *segs[n:]))
                if not _below(real, directory):
                    raise Refusal(500, f"leads to {real!r}, outside its internal location's directory "
                                       f"{directory!r} (symlinks resolved); not serving it")
                return real
        raise Refusal(500, "matches no [static] internal_locations prefix; not serving it")


def _slash(directory: str) -> str:
    return directory if directory.endswith(os.sep) else directory + os.sep


def _below(real: str, root: str) -> bool:
    """`real` lies strictly below `root`; a hidden name on the way down (.git, .env) is refused
    as under the document root, a symlink into one too."""
    prefix = _slash(root)
    if not real.startswith(prefix):
        return False
    if any(seg[:1] == "." for seg in real[len(prefix):].split(os.sep)):
        raise Refusal(500, f"{real!r} has a hidden (dot) name below its root; not serving it")
    return True


def _stat_file(real: str) -> os.stat_result:
    try:
        st = os.stat(real)
    except PermissionError:
        raise Refusal(403, f"{real!r} cannot be read by askr") from None
    except OSError:  # ENOENT, ENOTDIR, ELOOP
        raise Refusal(404, f"{real!r}: no such file") from None
    if not S_ISREG(st.st_mode):
        raise Refusal(404, f"{real!r} is not a regular file")
    return st
