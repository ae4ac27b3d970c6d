"""The C PHP worker (csrc/) driven directly, without the Python front.

The test plays both Python roles of docs/internals.md: the master (a socketpair as the zygote's
control socket) and the front (a unix listener the workers connect to; frames via
askr/bridge/wire.py). Every wait is on an event with a 30 s timeout; no sleeps.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from askr import paths
from askr.bridge import scoreboard, wire
from askr.master import workers

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0
GENERATION = 7
INI_MEMORY_LIMIT = "77M"

pytestmark = pytest.mark.skipif(
    shutil.which("php-config8.2") is None and not os.environ.get("ASKR_PHP_BIN"),
    reason="needs php8.2-dev (php-config8.2) or ASKR_PHP_BIN",
)


# ---------------------------------------------------------------------------------------------
# Building and driving the program
# ---------------------------------------------------------------------------------------------


def _build_php_worker(out: Path) -> None:
    """setup.py's own build function (its setup() call only runs as __main__)."""
    spec = importlib.util.spec_from_file_location("_askr_setup", REPO / "setup.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build_php_worker(out)


@pytest.fixture(scope="module")
def php_bin(tmp_path_factory) -> Path:
    if os.environ.get("ASKR_PHP_BIN"):
        return paths.php_worker_binary()
    out = tmp_path_factory.mktemp("bin") / "askr-php"
    _build_php_worker(out)
    return out


@dataclass
class Response:
    status: int
    headers: list[str]
    body: bytes
    end_flags: int
    frames: list[tuple[int, bytes]] = field(default_factory=list)

    def header(self, name: str) -> list[str]:
        prefix = name.lower() + ":"
        return [h.split(":", 1)[1].strip() for h in self.headers if h.lower().startswith(prefix)]

    def json(self):
        return json.loads(self.body)


class Worker:
    """The front's end of one worker channel."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sock.settimeout(TIMEOUT)
        self.buf = b""
        kind, payload = self.read_frame()
        assert kind == wire.HELLO, kind
        self.worker_id, self.pid, self.generation = wire.decode_hello(payload)

    def _recv_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError("worker closed the channel")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        kind, length = wire.HEADER.unpack(self._recv_exact(wire.HEADER_SIZE))
        return kind, self._recv_exact(length)

    def at_eof(self) -> bool:
        """True once the worker has closed its end (waits up to TIMEOUT)."""
        if self.buf:
            return False
        return self.sock.recv(1) == b""

    def send_request(self, params, headers=(), body_chunks=(), end_body: bool = True) -> None:
        flat = [item for pair in params for item in pair]
        data = wire.encode_request(flat, [item for pair in headers for item in pair])
        data += b"".join(wire.frame(wire.BODY, c) for c in body_chunks)
        if end_body:
            data += wire.BODY_END_FRAME
        self.sock.sendall(data)

    def read_until_end(self) -> list[tuple[int, bytes]]:
        frames = []
        while True:
            frames.append(self.read_frame())
            if frames[-1][0] == wire.END:
                return frames

    def read_response(self) -> Response:
        frames = self.read_until_end()
        assert frames[0][0] == wire.HEAD, frames
        assert all(k == wire.RESP_BODY for k, _ in frames[1:-1]), frames
        status, lines = wire.decode_head(frames[0][1])
        return Response(
            status=status,
            headers=[x.decode() for x in lines],
            body=b"".join(p for _, p in frames[1:-1]),
            end_flags=frames[-1][1][0],
            frames=frames,
        )

    def request(self, params, headers=(), body_chunks=()) -> Response:
        self.send_request(params, headers, body_chunks)
        return self.read_response()

    def close(self) -> None:
        self.sock.close()


class Zygote:
    """The master's end: a running `askr-php --zygote` and its control socket."""

    def __init__(self, binary: Path, workdir: Path, extra_args: list[str], extra_fds: tuple[int, ...] = ()):
        self.workdir = workdir
        self.channel_path = str(workdir / "front.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.channel_path)
        self.listener.listen(16)
        self.listener.settimeout(TIMEOUT)
        self.ctl, child = socket.socketpair()
        self.ctl.settimeout(TIMEOUT)
        self.stderr_path = workdir / "zygote.stderr"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    str(binary),
                    "--zygote",
                    "--control-fd",
                    str(child.fileno()),
                    "--generation",
                    str(GENERATION),
                    "--worker-log-name",
                    "php",
                    *extra_args,
                ],
                pass_fds=(child.fileno(), *extra_fds),
                stdin=subprocess.DEVNULL,
                stderr=err,
            )
        child.close()
        self._buf = b""
        self.lines: list[str] = []
        line = self.next_line()
        assert line == f"ready {self.proc.pid}", (line, self.stderr)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def next_line(self) -> str:
        while b"\n" not in self._buf:
            chunk = self.ctl.recv(4096)
            if not chunk:
                raise EOFError(f"zygote closed its control socket; stderr:\n{self.stderr}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        self.lines.append(line.decode())
        return self.lines[-1]

    def wait_line(self, pattern: str) -> re.Match:
        for line in self.lines:
            if m := re.fullmatch(pattern, line):
                self.lines.remove(line)
                return m
        while True:
            line = self.next_line()
            if m := re.fullmatch(pattern, line):
                self.lines.remove(line)
                return m

    def spawn(self, worker_id: int, max_requests: int = 0) -> Worker:
        self.ctl.sendall(f"spawn {worker_id} {self.channel_path} {max_requests}\n".encode())
        pid = int(self.wait_line(rf"spawned {worker_id} (\d+)").group(1))
        conn, _ = self.listener.accept()
        worker = Worker(conn)
        assert (worker.worker_id, worker.pid, worker.generation) == (worker_id, pid, GENERATION)
        return worker

    def stop(self) -> None:
        self.ctl.close()  # EOF: the zygote exits (its workers would keep running)
        try:
            self.proc.wait(TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.listener.close()


# ---------------------------------------------------------------------------------------------
# Fixtures: one zygote and one long-lived worker for the module; PHP scripts in a docroot
# ---------------------------------------------------------------------------------------------

SCRIPTS = {
    # holds the request until the file ?gate= exists (at most 30 s)
    "wait_gate.php": "<?php $t = microtime(true) + 30;"
                     " while (!file_exists($_GET['gate']) && microtime(true) < $t) usleep(2000); echo 'ok';",
    "hello.php": '<?php echo "Hello, world\\n";',
    # runs (in usleep() or microtime(), inside hold_on()) for 30 s once it has touched ?started=
    "hold.php": "<?php\n"
                "function hold_on(float $until) { while (microtime(true) < $until) { usleep(2000); } }\n"
                "touch($_GET['started']); hold_on(microtime(true) + 30); echo 'held';",
    "headers.php": """<?php
header('X-Askr: yes');
http_response_code(201);
setcookie('a', '1');
setcookie('b', '2');
echo 'created';
""",
    "vars.php": """<?php
header('Content-Type: application/json');
$keys = ['REQUEST_METHOD', 'QUERY_STRING', 'SCRIPT_FILENAME', 'SCRIPT_NAME', 'REQUEST_URI',
         'PHP_SELF', 'SERVER_PROTOCOL', 'CONTENT_TYPE', 'CONTENT_LENGTH', 'REMOTE_ADDR',
         'HTTP_X_CUSTOM', 'HTTP_ACCEPT_LANGUAGE', 'HTTP_X_WEIRD', 'HTTP_PROXY',
         'HTTP_CONTENT_TYPE', 'HTTP_CONTENT_LENGTH', 'PHP_AUTH_USER', 'PHP_AUTH_PW', 'AUTH_TYPE'];
$server = [];
foreach ($keys as $k) { $server[$k] = $_SERVER[$k] ?? null; }
echo json_encode([
    'get' => $_GET, 'post' => $_POST, 'cookie' => $_COOKIE, 'server' => $server,
    'getenv' => getenv('SERVER_NAME'),
    'request_time_float' => is_float($_SERVER['REQUEST_TIME_FLOAT']),
    'sapi' => PHP_SAPI,
]);
""",
    "input.php": """<?php
$raw = file_get_contents('php://input');
echo json_encode(['raw' => $raw, 'decoded' => json_decode($raw, true)]);
""",
    "upload.php": """<?php
$f = $_FILES['doc'];
$dest = $_POST['dest'];
echo json_encode([
    'name' => $f['name'], 'size' => $f['size'], 'error' => $f['error'],
    'is_uploaded' => is_uploaded_file($f['tmp_name']),
    'moved' => move_uploaded_file($f['tmp_name'], $dest),
    'field' => $_POST['title'],
]);
""",
    "stream.php": """<?php
while (ob_get_level()) { ob_end_flush(); }
echo "first";
flush();
echo "second:" . file_get_contents('php://input');
""",
    "fatal.php": "<?php echo 'before'; undefined_function_askr();",
    "opcache.php": "<?php echo json_encode(opcache_get_status(false)['opcache_enabled'] ?? null);",
    "ini.php": "<?php echo ini_get('memory_limit');",
    "ignore.php": "<?php echo 'ignored';",
    "log.php": "<?php error_log('hello from error_log'); echo 'logged';",
}


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    # Short path: a unix socket path must fit in 108 bytes.
    d = Path(tempfile.mkdtemp(prefix="askr-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def docroot(workdir: Path) -> Path:
    root = workdir / "public"
    root.mkdir()
    for name, code in SCRIPTS.items():
        (root / name).write_text(code)
    return root


@pytest.fixture(scope="module")
def zygote(php_bin: Path, workdir: Path) -> Iterator[Zygote]:
    # No --ini opcache.enable=1: Debian's embed php.ini leaves opcache.enable commented out and
    # conf.d/10-opcache.ini only loads the extension, so the compiled-in default (1) applies.
    z = Zygote(php_bin, workdir, ["--ini", f"memory_limit={INI_MEMORY_LIMIT}"])
    yield z
    z.stop()


@pytest.fixture(scope="module")
def worker(zygote: Zygote) -> Iterator[Worker]:
    w = zygote.spawn(1)
    yield w
    w.close()


def params(
    docroot: Path,
    script: str,
    method: str = "GET",
    query: str = "",
    content_type: str | None = None,
    content_length: int | None = None,
) -> list[tuple[bytes, bytes]]:
    uri = "/" + script + ("?" + query if query else "")
    p = {
        "REQUEST_METHOD": method,
        "REQUEST_URI": uri,
        "QUERY_STRING": query,
        "SCRIPT_FILENAME": str(docroot / script),
        "SCRIPT_NAME": "/" + script,
        "PHP_SELF": "/" + script,
        "DOCUMENT_URI": "/" + script,
        "DOCUMENT_ROOT": str(docroot),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "askr",
        "SERVER_NAME": "example.test",
        "SERVER_ADDR": "127.0.0.1",
        "SERVER_PORT": "8080",
        "REMOTE_ADDR": "127.0.0.2",
        "REMOTE_PORT": "40000",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_SCHEME": "http",
        "REDIRECT_STATUS": "200",
    }
    if content_type is not None:
        p["CONTENT_TYPE"] = content_type
    if content_length is not None:
        p["CONTENT_LENGTH"] = str(content_length)
    return [(k.encode(), v.encode()) for k, v in p.items()]


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_hello_world(worker: Worker, docroot: Path) -> None:
    r = worker.request(params(docroot, "hello.php"))
    assert r.status == 200
    assert r.body == b"Hello, world\n"
    assert r.header("Content-type") == ["text/html; charset=UTF-8"]
    assert r.end_flags == 0
    # A small response is HEAD, one BODY, END.
    assert [k for k, _ in r.frames] == [wire.HEAD, wire.RESP_BODY, wire.END]


def test_headers_status_and_cookies(worker: Worker, docroot: Path) -> None:
    r = worker.request(params(docroot, "headers.php"))
    assert r.status == 201
    assert r.header("X-Askr") == ["yes"]
    assert r.header("Set-Cookie") == ["a=1", "b=2"]
    assert r.body == b"created"


def test_superglobals_and_server_vars(worker: Worker, docroot: Path) -> None:
    body = b"p=2&q=hello+world"
    r = worker.request(
        params(docroot, "vars.php", "POST", "g=1&h[]=x", "application/x-www-form-urlencoded", len(body)),
        headers=[
            (b"Cookie", b"c=3; d=4"),
            (b"X-Custom", b"custom value"),
            (b"Accept-Language", b"de, en;q=0.5"),
            (b"X_Weird", b"dropped: ambiguous after conversion"),
            (b"Proxy", b"http://evil.example/"),
            (b"Content-Type", b"application/x-www-form-urlencoded"),
            (b"Content-Length", str(len(body)).encode()),
            (b"Authorization", b"Basic dXNlcjpwYXNz"),  # user:pass
        ],
        body_chunks=[body],
    )
    assert r.status == 200, r
    data = r.json()
    assert data["get"] == {"g": "1", "h": ["x"]}
    assert data["post"] == {"p": "2", "q": "hello world"}
    assert data["cookie"] == {"c": "3", "d": "4"}
    s = data["server"]
    assert s["REQUEST_METHOD"] == "POST"
    assert s["QUERY_STRING"] == "g=1&h[]=x"
    assert s["SCRIPT_FILENAME"] == str(docroot / "vars.php")
    assert s["PHP_SELF"] == "/vars.php"
    assert s["REQUEST_URI"] == "/vars.php?g=1&h[]=x"
    assert s["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert s["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert s["CONTENT_LENGTH"] == str(len(body))
    assert s["REMOTE_ADDR"] == "127.0.0.2"
    assert s["HTTP_X_CUSTOM"] == "custom value"
    assert s["HTTP_ACCEPT_LANGUAGE"] == "de, en;q=0.5"
    assert s["HTTP_X_WEIRD"] is None
    assert s["HTTP_PROXY"] is None
    # nginx passes every request header to php-fpm, these two included (test_fpm_fidelity)
    assert s["HTTP_CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert s["HTTP_CONTENT_LENGTH"] == str(len(body))
    # PHP's own; AUTH_TYPE is Apache's, and nginx + php-fpm do not set it (test_fpm_fidelity)
    assert (s["PHP_AUTH_USER"], s["PHP_AUTH_PW"], s["AUTH_TYPE"]) == ("user", "pass", None)
    assert data["getenv"] == "example.test"
    assert data["request_time_float"] is True
    assert data["sapi"] == "fpm-fcgi"


def test_php_input_json_over_several_body_frames(worker: Worker, docroot: Path) -> None:
    payload = json.dumps({"name": "askr", "items": list(range(200))}).encode()
    r = worker.request(
        params(docroot, "input.php", "POST", content_type="application/json", content_length=len(payload)),
        body_chunks=chunks(payload, 97),
    )
    assert r.status == 200
    assert r.json() == {"raw": payload.decode(), "decoded": json.loads(payload)}


def test_multipart_upload_with_move_uploaded_file(worker: Worker, docroot: Path, workdir: Path) -> None:
    dest = workdir / "moved.bin"
    content = os.urandom(50_000)
    boundary = "----askrboundary1234"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nmy doc\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="dest"\r\n\r\n{dest}\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="doc"; filename="doc.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    body = b"".join(parts)
    r = worker.request(
        params(
            docroot,
            "upload.php",
            "POST",
            content_type=f"multipart/form-data; boundary={boundary}",
            content_length=len(body),
        ),
        body_chunks=chunks(body, 7000),
    )
    assert r.status == 200, r.body
    assert r.json() == {
        "name": "doc.bin",
        "size": len(content),
        "error": 0,
        "is_uploaded": True,
        "moved": True,
        "field": "my doc",
    }
    assert dest.read_bytes() == content


def test_flush_sends_body_before_end(worker: Worker, docroot: Path) -> None:
    # PUT: PHP does not pre-read the body, so the script blocks in php://input after flush()
    # until we send it -- the first BODY frame must arrive while the request is still running.
    worker.send_request(params(docroot, "stream.php", "PUT"), end_body=False)
    kind, payload = worker.read_frame()
    assert kind == wire.HEAD
    assert wire.decode_head(payload)[0] == 200
    assert worker.read_frame() == (wire.RESP_BODY, b"first")
    worker.sock.sendall(wire.encode_body(b"late body") + wire.BODY_END_FRAME)
    frames = worker.read_until_end()
    assert b"".join(p for k, p in frames if k == wire.RESP_BODY) == b"second:late body"
    assert frames[-1] == (wire.END, b"\x00")


def test_fatal_error_is_500_and_worker_survives(worker: Worker, zygote: Zygote, docroot: Path) -> None:
    r = worker.request(params(docroot, "fatal.php"))
    assert r.status == 500
    assert r.end_flags == 0
    assert worker.request(params(docroot, "hello.php")).status == 200
    assert re.search(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ERROR \[php#1\] PHP Fatal error: .*undefined_function_askr",
        zygote.stderr,
        re.M,
    ), zygote.stderr


def test_error_log_goes_to_stderr(worker: Worker, zygote: Zygote, docroot: Path) -> None:
    assert worker.request(params(docroot, "log.php")).body == b"logged"
    assert re.search(r" WARNING \[php#1\] hello from error_log$", zygote.stderr, re.M), zygote.stderr


def test_missing_script_is_404(worker: Worker, docroot: Path) -> None:
    r = worker.request(params(docroot, "nope.php"), body_chunks=[b"x" * 100])
    assert r.status == 404
    assert r.body == b"File not found.\n"
    assert worker.request(params(docroot, "hello.php")).status == 200


def test_head_request_has_no_body(worker: Worker, docroot: Path) -> None:
    r = worker.request(params(docroot, "hello.php", "HEAD"))
    assert (r.status, r.body) == (200, b"")


def test_opcache_is_enabled(worker: Worker, docroot: Path) -> None:
    assert worker.request(params(docroot, "opcache.php")).json() is True


def test_ini_override_wins_over_php_ini(worker: Worker, docroot: Path) -> None:
    assert worker.request(params(docroot, "ini.php")).body == INI_MEMORY_LIMIT.encode()


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_unread_large_body_is_drained(worker: Worker, docroot: Path, method: str) -> None:
    body = os.urandom(1024 * 1024)
    r = worker.request(
        params(docroot, "ignore.php", method, "", "application/octet-stream", len(body)),
        body_chunks=chunks(body, wire.MAX_BODY_FRAME),
    )
    assert (r.status, r.body) == (200, b"ignored")
    assert worker.request(params(docroot, "hello.php")).body == b"Hello, world\n"


def test_large_response_body(worker: Worker, docroot: Path) -> None:
    (docroot / "big.php").write_text("<?php echo str_repeat('a', 300000); echo str_repeat('b', 5);")
    r = worker.request(params(docroot, "big.php"))
    assert r.body == b"a" * 300000 + b"bbbbb"


def test_max_requests_flags_quota_then_serves_until_stopped(zygote: Zygote, docroot: Path) -> None:
    """At its quota a worker says so (END_FLAG_QUOTA) but keeps serving until STOP: its
    replacement gets time to boot, so ready capacity never dips."""
    w = zygote.spawn(50, max_requests=2)
    try:
        assert w.request(params(docroot, "hello.php")).end_flags == 0
        at_quota = w.request(params(docroot, "hello.php"))
        assert at_quota.status == 200
        assert at_quota.end_flags == wire.END_FLAG_QUOTA
        beyond = w.request(params(docroot, "hello.php"))
        assert (beyond.status, beyond.end_flags) == (200, 0)
        w.sock.sendall(wire.STOP_FRAME)
        assert w.at_eof()
    finally:
        w.close()
    zygote.wait_line(rf"exited 50 {w.pid} 0 0")


def rss_anon(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))


def test_max_memory_sends_recycle_once_after_the_response(php_bin: Path, workdir: Path,
                                                          docroot: Path) -> None:
    """Over --max-memory after a response: a RECYCLE frame after END (reason max_memory, the
    bytes of RssAnon it holds), once; the worker serves on until it is stopped."""
    sub = workdir / "recycle"
    sub.mkdir()
    z = Zygote(php_bin, sub, ["--max-memory", str(2**20)])  # a worker holds more than 1 MiB
    try:
        w = z.spawn(80)
        first = w.request(params(docroot, "hello.php"))
        assert (first.status, first.end_flags) == (200, 0)
        kind, payload = w.read_frame()
        assert kind == wire.RECYCLE
        reason, held = wire.decode_recycle(payload)
        assert reason == "max_memory" and held > 2**20
        assert abs(held - rss_anon(w.pid)) < 4 * 2**20  # what /proc says it holds
        for _ in range(2):  # asked once: the next frames are plain responses
            assert w.request(params(docroot, "hello.php")).status == 200
        w.sock.sendall(wire.STOP_FRAME)
        assert w.at_eof()
        z.wait_line(rf"exited 80 {w.pid} 0 0")
    finally:
        z.stop()


def test_trace_signal_logs_the_backtrace_then_the_worker_exits(php_bin: Path, workdir: Path,
                                                               docroot: Path) -> None:
    """The master's request_timeout signal to a worker with a slowlog (whose watchdog thread takes
    the trace): the thread logs where PHP is (blocked in usleep() here), then the worker kills
    itself."""
    sub = workdir / "trace"
    sub.mkdir()
    z = Zygote(php_bin, sub, ["--slowlog-timeout-ms", "600000"])  # started, too long to fire
    try:
        w = z.spawn(90)
        try:
            started = docroot.parent / "hold.started"
            w.send_request(params(docroot, "hold.php", query=f"started={started}"))
            deadline = time.monotonic() + TIMEOUT
            while not started.exists():  # bounded: the request is running once it exists
                assert time.monotonic() < deadline, z.stderr
                time.sleep(0.01)
            os.kill(w.pid, workers.TRACE_SIGNAL)
            z.wait_line(rf"exited 90 {w.pid} -1 9")
        finally:
            w.close()
        err = z.stderr
    finally:
        z.stop()
    assert re.search(r"\[php#90\] request_timeout: GET \? running [\d.]+ s in pid \d+ \(php#90\); "
                     r"PHP backtrace:", err), err
    assert f"] hold_on() {docroot / 'hold.php'}:3" in err, err


def test_kill_9_is_reported(zygote: Zygote) -> None:
    w = zygote.spawn(60)
    try:
        os.kill(w.pid, signal.SIGKILL)
        zygote.wait_line(rf"exited 60 {w.pid} -1 9")
    finally:
        w.close()


def test_channel_close_retires_worker(zygote: Zygote) -> None:
    w = zygote.spawn(70)
    w.close()
    zygote.wait_line(rf"exited 70 {w.pid} 0 0")


def test_bad_startup_reports_failed(php_bin: Path) -> None:
    a, b = socket.socketpair()
    a.settimeout(TIMEOUT)
    proc = subprocess.Popen(
        [str(php_bin), "--zygote", "--control-fd", str(b.fileno()), "--generation", "1", "--mode", "nope"],
        pass_fds=(b.fileno(),),
        stderr=subprocess.DEVNULL,
    )
    b.close()
    try:
        assert a.recv(4096).startswith(b"failed ")
        assert proc.wait(TIMEOUT) == 1
    finally:
        a.close()


def test_hello_frame_layout() -> None:
    # The HELLO payload the tests decode is exactly three big-endian u32.
    assert wire.decode_hello(struct.pack("!III", 1, 2, 3)) == (1, 2, 3)


def test_ini_file_replaces_php_ini_and_ini_flags_still_win(php_bin: Path, docroot: Path) -> None:
    d = Path(tempfile.mkdtemp(prefix="askr-ini-", dir="/tmp"))
    try:
        ini = d / "custom.ini"
        ini.write_text("memory_limit = 55M\ndefault_charset = ISO-8859-1\n")
        (docroot / "ini2.php").write_text(
            "<?php echo json_encode([ini_get('memory_limit'), ini_get('default_charset'),"
            " php_ini_loaded_file(), extension_loaded('Zend OPcache')]);"
        )
        z = Zygote(php_bin, d, ["--ini-file", str(ini), "--ini", "memory_limit=66M"])
        try:
            w = z.spawn(1)
            # memory_limit: --ini beats the file; default_charset: from the file; the conf.d scan
            # (which loads OPcache) still happens, as with php -c.
            assert w.request(params(docroot, "ini2.php")).json() == ["66M", "ISO-8859-1", str(ini), True]
            w.close()
        finally:
            z.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Queue mode: requests come from a SOCK_SEQPACKET queue shared by workers (as the front uses it)
# ---------------------------------------------------------------------------------------------


SLOT = scoreboard.SLOT  # request id, pid, stop word, requests served, 5xx sent


class QueueZygote(Zygote):
    """A zygote whose workers take requests from a shared queue and keep a scoreboard."""

    def __init__(self, binary: Path, workdir: Path, slots: int = 4):
        self.scoreboard = workdir / "scoreboard"
        self.scoreboard.write_bytes(b"\0" * SLOT.size * slots)
        self.queue_front, self.queue_workers = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        super().__init__(binary, workdir, ["--scoreboard", str(self.scoreboard)],
                         extra_fds=(self.queue_workers.fileno(),))

    def spawn_queued(self, worker_id: int) -> Worker:
        line = f"spawn {worker_id} {self.channel_path} 0 {self.queue_workers.fileno()}\n"
        self.ctl.sendall(line.encode())
        self.wait_line(rf"spawned {worker_id} (\d+)")
        conn, _ = self.listener.accept()
        return Worker(conn)

    def second_front(self) -> socket.socket:
        """Another front's channel socket (as the master binds one per front)."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.workdir / "front-1.sock"))
        listener.listen(16)
        listener.settimeout(TIMEOUT)
        return listener

    def spawn_two_fronts(self, worker_id: int, other: socket.socket) -> tuple[Worker, Worker]:
        """A worker with a channel to each of two fronts: (front 0's end, front 1's end)."""
        paths = f"{self.channel_path},{other.getsockname()}"
        self.ctl.sendall(f"spawn {worker_id} {paths} 0 {self.queue_workers.fileno()}\n".encode())
        self.wait_line(rf"spawned {worker_id} (\d+)")
        return Worker(self.listener.accept()[0]), Worker(other.accept()[0])

    def enqueue(self, request_id: int, frames: bytes, flags: int = 0, front: int = 0) -> None:
        self.queue_front.sendall(wire.QUEUE_HEADER.pack(request_id, flags, front) + frames)

    def slot(self, worker_id: int) -> tuple[int, int]:
        """(request id, pid) of the worker's scoreboard slot."""
        return SLOT.unpack_from(self.scoreboard.read_bytes(), SLOT.size * worker_id)[:2]

    def set_stop(self, worker_id: int) -> None:
        with open(self.scoreboard, "r+b") as f:
            f.seek(SLOT.size * worker_id + 16)
            f.write(struct.pack("=Q", 1))

    def stop(self) -> None:
        self.queue_front.close()  # the queue ends: workers waiting on it exit
        super().stop()


@pytest.fixture
def queue_zygote(php_bin: Path) -> Iterator[QueueZygote]:
    d = Path(tempfile.mkdtemp(prefix="askr-q-", dir="/tmp"))
    z = QueueZygote(php_bin, d)
    yield z
    z.stop()
    shutil.rmtree(d, ignore_errors=True)


def _request_frames(docroot: Path, script: str, body: bytes = b"", end: bool = True, **kw) -> bytes:
    flat = [item for pair in params(docroot, script, **kw) for item in pair]
    data = wire.encode_request(flat, [])
    if body:
        data += wire.encode_body(body)
    return data + (wire.BODY_END_FRAME if end else b"")


def test_queued_request_answers_with_taken_then_response(queue_zygote: QueueZygote, docroot: Path) -> None:
    worker = queue_zygote.spawn_queued(2)
    assert queue_zygote.slot(2) == (0, worker.pid)  # claimed, idle
    queue_zygote.enqueue(0xABCDEF0000000001, _request_frames(docroot, "hello.php"))
    kind, payload = worker.read_frame()
    assert kind == wire.TAKEN
    assert wire.decode_taken(payload) == (0xABCDEF0000000001, 0)
    resp = worker.read_response()
    assert (resp.status, resp.body) == (200, b"Hello, world\n")
    # cleared just after the response is written (before would lose it to a crash in between)
    deadline = time.monotonic() + TIMEOUT
    while queue_zygote.slot(2)[0] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert queue_zygote.slot(2) == (0, worker.pid)
    worker.close()


def test_queue_hands_each_request_to_one_worker(queue_zygote: QueueZygote, docroot: Path) -> None:
    workers = [queue_zygote.spawn_queued(i) for i in range(2)]
    for i in range(6):
        queue_zygote.enqueue(100 + i, _request_frames(docroot, "vars.php", query=f"n={i}"))
    seen: dict[int, int] = {}
    sel = selectors.DefaultSelector()
    for w in workers:
        sel.register(w.sock, selectors.EVENT_READ, w)
    deadline = time.monotonic() + TIMEOUT
    while len(seen) < 6 and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            w = key.data
            while True:  # one recv may bring several answers: take all that are buffered
                kind, payload = w.read_frame()
                assert kind == wire.TAKEN
                request_id, _ = wire.decode_taken(payload)
                resp = w.read_response()
                assert resp.json()["get"] == {"n": str(request_id - 100)}
                assert request_id not in seen
                seen[request_id] = w.pid
                if not w.buf:
                    break
    assert sorted(seen) == list(range(100, 106))
    for w in workers:
        w.close()


def test_body_on_channel_after_taken(queue_zygote: QueueZygote, docroot: Path) -> None:
    worker = queue_zygote.spawn_queued(1)
    head = _request_frames(docroot, "input.php", method="POST", content_type="application/json",
                           content_length=len(b'{"a": 1}'), end=False)
    queue_zygote.enqueue(7, head, wire.QUEUE_FLAG_BODY_ON_CHANNEL)
    kind, payload = worker.read_frame()  # sent at once: we must know who to stream the body to
    # it echoes the flags: a front that does not know the id can tell the worker waits for a body
    assert (kind, wire.decode_taken(payload)) == (wire.TAKEN, (7, wire.QUEUE_FLAG_BODY_ON_CHANNEL))
    assert queue_zygote.slot(1) == (7, worker.pid)  # holding request 7 while it waits for the body
    worker.sock.sendall(wire.encode_body(b'{"a": 1}') + wire.BODY_END_FRAME)
    assert worker.read_response().json() == {"raw": '{"a": 1}', "decoded": {"a": 1}}
    worker.close()


def test_worker_exits_when_the_queue_ends(queue_zygote: QueueZygote) -> None:
    worker = queue_zygote.spawn_queued(3)
    queue_zygote.queue_front.close()
    queue_zygote.wait_line(rf"exited 3 {worker.pid} 0 0")
    worker.close()


def test_idle_worker_stops_on_stop_frame(queue_zygote: QueueZygote) -> None:
    """An idle worker waits on the queue and its channel: STOP wakes it and it exits."""
    worker = queue_zygote.spawn_queued(0)
    worker.sock.sendall(wire.STOP_FRAME)
    queue_zygote.wait_line(rf"exited 0 {worker.pid} 0 0")
    worker.close()


def test_busy_worker_sees_stop_word_and_takes_no_more(queue_zygote: QueueZygote, docroot: Path) -> None:
    """The stop word reaches a worker that is busy (it never reads its channel then): it finishes
    the request in hand, then exits, leaving the next queued request for another worker."""
    gate = docroot / "gate.txt"
    gate.unlink(missing_ok=True)
    worker = queue_zygote.spawn_queued(1)
    queue_zygote.enqueue(11, _request_frames(docroot, "wait_gate.php", query=f"gate={gate}"))
    deadline = time.monotonic() + TIMEOUT
    while queue_zygote.slot(1)[0] != 11 and time.monotonic() < deadline:  # TAKEN comes with the answer
        time.sleep(0.005)
    queue_zygote.set_stop(1)
    queue_zygote.enqueue(12, _request_frames(docroot, "hello.php"))
    gate.write_text("go")
    kind, payload = worker.read_frame()
    assert (kind, wire.decode_taken(payload)) == (wire.TAKEN, (11, 0))
    assert worker.read_response().status == 200
    queue_zygote.wait_line(rf"exited 1 {worker.pid} 0 0")
    other = queue_zygote.spawn_queued(2)
    kind, payload = other.read_frame()
    assert (kind, wire.decode_taken(payload)) == (wire.TAKEN, (12, 0))
    assert other.read_response().status == 200
    worker.close()
    other.close()


def test_worker_answers_on_the_channel_of_the_front_that_queued(queue_zygote: QueueZygote,
                                                                 docroot: Path) -> None:
    """One queue, a channel per front: the message's front index picks where the answer goes."""
    other = queue_zygote.second_front()
    front0, front1 = queue_zygote.spawn_two_fronts(1, other)
    assert front0.pid == front1.pid  # one worker, HELLO on both
    queue_zygote.enqueue(21, _request_frames(docroot, "vars.php", query="to=1"), front=1)
    kind, payload = front1.read_frame()
    assert (kind, wire.decode_taken(payload)) == (wire.TAKEN, (21, 0))
    assert front1.read_response().json()["get"] == {"to": "1"}
    queue_zygote.enqueue(22, _request_frames(docroot, "vars.php", query="to=0"), front=0)
    kind, payload = front0.read_frame()
    assert (kind, wire.decode_taken(payload)) == (wire.TAKEN, (22, 0))
    assert front0.read_response().json()["get"] == {"to": "0"}
    front0.close()
    front1.close()
    other.close()


def test_idle_worker_reconnects_to_a_front_that_restarted(queue_zygote: QueueZygote, docroot: Path) -> None:
    """A front that dies closes its channels; the worker connects again (the master keeps the
    socket listening for the front's next process), says HELLO, and serves that front again."""
    other = queue_zygote.second_front()
    front0, front1 = queue_zygote.spawn_two_fronts(2, other)
    front1.close()  # that front's process died
    again = Worker(other.accept()[0])
    assert again.pid == front1.pid
    queue_zygote.enqueue(31, _request_frames(docroot, "hello.php"), front=1)
    kind, payload = again.read_frame()
    assert (kind, wire.decode_taken(payload)) == (wire.TAKEN, (31, 0))
    assert again.read_response().body == b"Hello, world\n"
    queue_zygote.enqueue(32, _request_frames(docroot, "hello.php"), front=0)  # the other front still served
    assert front0.read_frame()[0] == wire.TAKEN
    assert front0.read_response().status == 200
    for end in (front0, again):
        end.close()
    other.close()


def test_queue_message_naming_an_unknown_front_is_refused(queue_zygote: QueueZygote, docroot: Path) -> None:
    worker = queue_zygote.spawn_queued(3)
    queue_zygote.enqueue(41, _request_frames(docroot, "hello.php"), front=5)
    queue_zygote.wait_line(rf"exited 3 {worker.pid} 1 0")
    assert "bad queue message" in queue_zygote.stderr
    worker.close()
