"""Router: every classic-mode rule against a real docroot built in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pytest

from askr.front.router import PhpScript, Redirect, Refused, Router, StaticFile

# PHP source and its editor/backup copies: never run, never served
SOURCE_LIKE = (
    "t.phtml", "t.phar", "t.phps", "t.php3", "t.php4", "t.php5", "t.php7", "t.pht",
    "config.inc", "Config.INC", "x.php~", "x.php.bak", "x.php.swp", "x.php.orig", "#x.php#", "tpl.phtml~",
)

def _write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    _write(d / "secret.txt", "secret")
    _write(d / "evil.php", "<?php")
    return d


@pytest.fixture
def root(tmp_path: Path, outside: Path) -> Path:
    r = tmp_path / "public"
    _write(r / "index.php", "<?php // front controller")
    _write(r / "app.php", "<?php")
    _write(r / "style.css", "body{}")
    _write(r / "css" / "deep" / "site.css", "a{}")
    _write(r / "hello world.txt", "spaces")
    _write(r / "café" / "menü.txt", "utf8")
    _write(r / "100%.txt", "percent")
    _write(r / ".env", "APP_KEY=x")
    _write(r / ".user.ini", "x")
    _write(r / ".git" / "config", "[core]")
    _write(r / "x" / ".htaccess", "deny")
    _write(r / ".well-known" / "acme-challenge" / "token", "tok")
    _write(r / ".well-known" / ".hidden", "no")
    _write(r / "withphp" / "index.php", "<?php")
    _write(r / "withphp" / "index.html", "<p>")
    _write(r / "withhtml" / "index.html", "<p>")
    (r / "empty").mkdir()
    _write(r / "dir.php" / "inner.php", "<?php")
    _write(r / "Upper.PHP", "<?php")
    for name in SOURCE_LIKE:
        _write(r / "src" / name, "<?php")
    _write(r / "src" / "phpunit.xml", "<phpunit/>")
    _write(r / "src" / "include.js", "js")
    # symlinks inside the root are fine, escaping ones are not
    os.symlink(r / "style.css", r / "alias.css")
    os.symlink(r / "css", r / "css-link")
    os.symlink(outside / "secret.txt", r / "leak.txt")
    os.symlink(outside, r / "outdir")
    os.symlink(outside / "evil.php", r / "evil.php")
    os.symlink(r / ".git" / "config", r / "gitconf.txt")
    os.symlink(r / ".git", r / "gitdir")
    os.symlink(r / "app.php", r / "notes.txt")
    os.symlink(r / "nowhere", r / "dangling.txt")
    os.symlink(r / "app.php", r / "linked.php")
    os.mkfifo(r / "fifo")
    return r


@pytest.fixture
def router(root: Path) -> Router:
    return Router(str(root))


def front(root: Path) -> PhpScript:
    return PhpScript(str(root / "index.php"), "/index.php", "")


# --- static files -----------------------------------------------------------------------------


def test_plain_file_is_static(router: Router, root: Path) -> None:
    route = router.resolve(b"/style.css")
    assert isinstance(route, StaticFile)
    assert route.path == str(root / "style.css")
    assert route.st.st_size == len("body{}")


def test_nested_file_is_static(router: Router, root: Path) -> None:
    route = router.resolve(b"/css/deep/site.css")
    assert isinstance(route, StaticFile)
    assert route.path == str(root / "css" / "deep" / "site.css")


def test_percent_encoded_space(router: Router, root: Path) -> None:
    route = router.resolve(b"/hello%20world.txt")
    assert isinstance(route, StaticFile)
    assert route.path == str(root / "hello world.txt")


def test_percent_encoded_utf8(router: Router, root: Path) -> None:
    raw = "/café/menü.txt".encode()
    encoded = b"/caf%C3%A9/men%c3%bc.txt"
    for path in (raw, encoded):
        route = router.resolve(path)
        assert isinstance(route, StaticFile), path
        assert route.path == str(root / "café" / "menü.txt")


def test_encoded_percent_sign_decoded_once(router: Router, root: Path) -> None:
    route = router.resolve(b"/100%25.txt")
    assert isinstance(route, StaticFile)
    assert route.path == str(root / "100%.txt")


def test_collapses_slashes(router: Router, root: Path) -> None:
    route = router.resolve(b"//css///deep//site.css")
    assert isinstance(route, StaticFile)
    assert route.path == str(root / "css" / "deep" / "site.css")


def test_dot_segments_resolved_lexically(router: Router, root: Path) -> None:
    for path in (b"/css/./deep/../../style.css", b"/css/%2e/deep/%2E%2E/../style.css", b"/nope/../style.css"):
        route = router.resolve(path)
        assert isinstance(route, StaticFile), path
        assert route.path == str(root / "style.css")


def test_file_with_trailing_slash_is_not_the_file(router: Router, root: Path) -> None:
    assert router.resolve(b"/style.css/") == front(root)


def test_fifo_is_never_opened(router: Router, root: Path) -> None:
    assert router.resolve(b"/fifo") == front(root)


# --- malformed paths: 400 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        b"/..",
        b"/../etc/passwd",
        b"/css/../../etc/passwd",
        b"/%2e%2e/etc/passwd",
        b"/%2E%2E%2Fetc%2Fpasswd",
        b"/css/%2e%2e/%2e%2e/outside/secret.txt",
        b"/a/..%2f..%2f",
        b"/style.css%00.php",
        b"/%00",
        b"/a%5c..%5c..%5cetc",
        b"/a\\b",
        b"/a%0d%0aSet-Cookie:x",
        b"/bad%zzescape",
        b"/trailing%",
        b"/trailing%4",
        b"/bad%ff%feutf8",
        b"style.css",
        b"",
        b"*",
    ],
)
def test_bad_paths_are_400(router: Router, path: bytes) -> None:
    assert router.resolve(path) == Refused(400)


# --- dot segments: 404 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        b"/.env",
        b"/%2eenv",
        b"/.user.ini",
        b"/.git/config",
        b"/.git/",
        b"/.git",
        b"/x/.htaccess",
        b"/.env/../style.css/.x",
        b"/.missing",
        b"/app.php/.hidden",
        b"/.well-known/.hidden",
        b"/css/.well-known/x",
    ],
)
def test_dot_segments_are_404(router: Router, path: bytes) -> None:
    assert router.resolve(path) == Refused(404)


def test_well_known_is_allowed(router: Router, root: Path) -> None:
    route = router.resolve(b"/.well-known/acme-challenge/token")
    assert isinstance(route, StaticFile)
    assert route.path == str(root / ".well-known" / "acme-challenge" / "token")


def test_missing_well_known_goes_to_front_controller(router: Router, root: Path) -> None:
    assert router.resolve(b"/.well-known/security.txt") == front(root)


# --- PHP scripts ------------------------------------------------------------------------------


def test_php_file_runs(router: Router, root: Path) -> None:
    assert router.resolve(b"/app.php") == PhpScript(str(root / "app.php"), "/app.php", "")


def test_php_extension_case_insensitive_runs_not_served(router: Router, root: Path) -> None:
    assert router.resolve(b"/Upper.PHP") == PhpScript(str(root / "Upper.PHP"), "/Upper.PHP", "")


def test_path_info(router: Router, root: Path) -> None:
    assert router.resolve(b"/app.php/extra/x") == PhpScript(str(root / "app.php"), "/app.php", "/extra/x")


def test_path_info_trailing_slash_kept(router: Router, root: Path) -> None:
    assert router.resolve(b"/app.php/") == PhpScript(str(root / "app.php"), "/app.php", "/")
    assert router.resolve(b"/app.php/a/b/") == PhpScript(str(root / "app.php"), "/app.php", "/a/b/")


def test_path_info_is_decoded_and_normalised(router: Router, root: Path) -> None:
    route = router.resolve(b"/app.php//a%20b/./c/../d")
    assert route == PhpScript(str(root / "app.php"), "/app.php", "/a b/d")


def test_missing_script_is_404_in_classic_mode(router: Router) -> None:
    """nginx's `location ~ [^/]\\.php(/|$)` + `try_files $fastcgi_script_name =404`: a .php URL
    whose script is not a file is 404, not the front controller; so is a directory named x.php."""
    assert router.resolve(b"/missing.php") == Refused(404)
    assert router.resolve(b"/missing.php/extra") == Refused(404)
    assert router.resolve(b"/sub/missing.PHP") == Refused(404)
    assert router.resolve(b"/dir.php/inner.php/more") == Refused(404)
    assert router.resolve(b"/dir.php") == Refused(404)


def test_missing_script_goes_to_the_app_in_worker_mode(root: Path) -> None:
    router = Router(str(root), worker_mode=True)
    assert router.resolve(b"/missing.php") == front(root)
    assert router.resolve(b"/missing.php/extra") == front(root)
    route = router.resolve(b"/dir.php/inner.php/more")  # a directory named x.php does not count
    assert route == PhpScript(str(root / "dir.php" / "inner.php"), "/dir.php/inner.php", "/more")


def test_path_info_first_script_wins(router: Router, root: Path) -> None:
    route = router.resolve(b"/app.php/index.php/x")
    assert route == PhpScript(str(root / "app.php"), "/app.php", "/index.php/x")


def test_path_info_after_non_php_file_is_front_controller(router: Router, root: Path) -> None:
    assert router.resolve(b"/style.css/extra") == front(root)


@pytest.mark.parametrize("name", SOURCE_LIKE)
def test_php_source_like_files_are_404(router: Router, name: str) -> None:
    assert router.resolve(b"/src/" + quote(name).encode()) == Refused(404)


def test_php_lookalike_names_are_static(router: Router) -> None:
    assert isinstance(router.resolve(b"/src/phpunit.xml"), StaticFile)
    assert isinstance(router.resolve(b"/src/include.js"), StaticFile)


# --- directories ------------------------------------------------------------------------------


def test_directory_without_slash_redirects(router: Router) -> None:
    assert router.resolve(b"/withhtml") == Redirect("/withhtml/")


def test_directory_redirect_keeps_query(router: Router) -> None:
    assert router.resolve(b"/withhtml", b"a=1&b=%20c") == Redirect("/withhtml/?a=1&b=%20c")


def test_directory_redirect_escapes_query_bytes(router: Router) -> None:
    assert router.resolve(b"/withhtml", b"q=a b\r\n#x") == Redirect("/withhtml/?q=a%20b%0D%0A%23x")


def test_directory_redirect_is_normalised_and_encoded(router: Router) -> None:
    assert router.resolve(b"//caf%C3%A9") == Redirect("/caf%C3%A9/")
    assert router.resolve(b"/css/deep/../deep") == Redirect("/css/deep/")


def test_empty_directory_without_slash_still_redirects(router: Router) -> None:
    assert router.resolve(b"/empty") == Redirect("/empty/")


def test_directory_index_php_preferred(router: Router, root: Path) -> None:
    route = router.resolve(b"/withphp/")
    assert route == PhpScript(str(root / "withphp" / "index.php"), "/withphp/index.php", "")


def test_directory_index_html(router: Router, root: Path) -> None:
    route = router.resolve(b"/withhtml/")
    assert isinstance(route, StaticFile)
    assert route.path == str(root / "withhtml" / "index.html")


def test_directory_without_index_falls_through(router: Router, root: Path) -> None:
    assert router.resolve(b"/empty/") == front(root)


def test_root_is_front_controller_index(router: Router, root: Path) -> None:
    assert router.resolve(b"/") == front(root)
    assert router.resolve(b"/css/..") == front(root)


# --- front controller -------------------------------------------------------------------------


def test_unknown_path_goes_to_front_controller(router: Router, root: Path) -> None:
    assert router.resolve(b"/blog/2024/hello-world", b"page=2") == front(root)


def test_no_front_controller_is_404(root: Path) -> None:
    (root / "index.php").unlink()
    router = Router(str(root))
    assert router.resolve(b"/blog/post") == Refused(404)
    assert router.resolve(b"/") == Refused(404)
    assert isinstance(router.resolve(b"/style.css"), StaticFile)


def test_worker_mode_sends_what_is_not_static_to_the_app_without_an_index_php(root: Path) -> None:
    """Worker mode: the worker script answers everything that is not a static file, with the
    CGI variables of the front controller, whether or not index.php exists."""
    (root / "index.php").unlink()
    router = Router(str(root), worker_mode=True)
    expected = PhpScript(os.path.realpath(root) + "/index.php", "/index.php", "")
    assert router.resolve(b"/blog/post") == expected
    assert router.resolve(b"/") == expected
    assert isinstance(router.resolve(b"/style.css"), StaticFile)
    assert router.resolve(b"/.env") == Refused(404)  # still never served, nor handed to the app
    assert router.resolve(b"/../etc/passwd") == Refused(400)


def test_custom_front_controller(root: Path) -> None:
    router = Router(str(root), front_controller="app.php")
    assert router.resolve(b"/blog/post") == PhpScript(str(root / "app.php"), "/app.php", "")


def test_files_are_not_cached(router: Router, root: Path) -> None:
    assert router.resolve(b"/new.css") == front(root)
    _write(root / "new.css", "x")
    assert isinstance(router.resolve(b"/new.css"), StaticFile)
    (root / "new.css").unlink()
    assert router.resolve(b"/new.css") == front(root)


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        Router(str(tmp_path / "nope"))


# --- symlinks ---------------------------------------------------------------------------------


def test_symlink_inside_root_is_served_by_real_path(router: Router, root: Path) -> None:
    route = router.resolve(b"/alias.css")
    assert isinstance(route, StaticFile)
    assert route.path == str(root / "style.css")


def test_symlinked_parent_inside_root(router: Router, root: Path) -> None:
    route = router.resolve(b"/css-link/deep/site.css")
    assert isinstance(route, StaticFile)
    assert route.path == str(root / "css" / "deep" / "site.css")


def test_symlinked_php_inside_root_runs(router: Router, root: Path) -> None:
    assert router.resolve(b"/linked.php") == PhpScript(str(root / "app.php"), "/linked.php", "")


@pytest.mark.parametrize(
    "path", [b"/leak.txt", b"/outdir/secret.txt", b"/evil.php", b"/evil.php/x", b"/outdir/"]
)
def test_symlink_escaping_root_is_404(router: Router, path: bytes) -> None:
    assert router.resolve(path) == Refused(404)


def test_symlink_into_dot_directory_is_404(router: Router) -> None:
    assert router.resolve(b"/gitconf.txt") == Refused(404)
    assert router.resolve(b"/gitdir/config") == Refused(404)


def test_symlink_disguising_php_source_is_404(router: Router) -> None:
    assert router.resolve(b"/notes.txt") == Refused(404)


def test_dangling_symlink_falls_through(router: Router, root: Path) -> None:
    assert router.resolve(b"/dangling.txt") == front(root)


def test_front_controller_escaping_root_is_404(root: Path, outside: Path) -> None:
    (root / "index.php").unlink()
    os.symlink(outside / "evil.php", root / "index.php")
    assert Router(str(root)).resolve(b"/anything") == Refused(404)


def test_root_given_through_symlink(tmp_path: Path, root: Path) -> None:
    link = tmp_path / "current"
    os.symlink(root, link)
    router = Router(str(link))
    assert router.root == str(root)
    route = router.resolve(b"/style.css")
    assert isinstance(route, StaticFile)
    assert route.path == str(root / "style.css")
    assert router.resolve(b"/leak.txt") == Refused(404)


def test_sibling_with_root_prefix_is_outside(tmp_path: Path, root: Path) -> None:
    # "/srv/public-old" starts with "/srv/public" but is not inside it.
    _write(tmp_path / "public-old" / "x.txt")
    os.symlink(tmp_path / "public-old" / "x.txt", root / "sib.txt")
    assert Router(str(root)).resolve(b"/sib.txt") == Refused(404)


def test_unsearchable_directory_is_403(
    router: Router, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root (as CI runs) ignores mode bits, so make the kernel's answer explicit: EACCES on lookup.
    locked = root / "locked"
    _write(locked / "a.txt")
    real_lstat = os.lstat

    def denying_lstat(path, *args, **kwargs):
        if str(path).startswith(str(locked) + os.sep):
            raise PermissionError(13, "Permission denied", str(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", denying_lstat)
    assert router.resolve(b"/locked/a.txt") == Refused(403)
