"""In-process HTTP/2 codec cost per request, server side: h2 (as askr.front.http2 drives it) against
libnghttp2 through cffi, API mode (askr.front.nghttp2) and ABI mode (a minimal dlopen variant here).

Usage (from the repository root, after `python askr/front/_nghttp2_build.py` or `pip install .`):

    .venv/bin/python bench/h2_codec.py [--requests 20000] [--runs 5] [--batch 1]

One request = decode an h2load-style GET (HPACK-indexed after the first, as on a long-lived
connection) + encode a 200 with 5 headers and a 14-byte body + take the bytes to send. The client
side is prepared beforehand with the h2 package and is not timed. No sockets, no servers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# bench/h2.py would shadow the h2 package: import from the repository root instead of bench/
sys.path[0] = str(Path(__file__).resolve().parents[1])

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402

REQUEST = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"127.0.0.1:8443"),
           (b":path", b"/hello.php"), (b"user-agent", b"h2load nghttp2/1.52.0")]
RESPONSE = [(b":status", b"200"), (b"content-type", b"text/html; charset=UTF-8"),
            (b"date", b"Tue, 02 Dec 2025 10:00:00 GMT"), (b"server", b"askr"), (b"content-length", b"14"),
            (b"x-powered-by", b"PHP/8.2.29")]
BODY = b"Hello, world!\n"


def client_reads(n: int, batch: int) -> tuple[bytes, list[bytes]]:
    """The preface (with a huge connection WINDOW_UPDATE) and n requests, `batch` per read."""
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    c.initiate_connection()
    c.increment_flow_control_window(2**31 - 1 - 65535)
    c.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100})
    preface = c.data_to_send()
    reads = []
    for i in range(0, n, batch):
        for j in range(i, min(n, i + batch)):
            c.send_headers(2 * j + 1, REQUEST, end_stream=True)
            c.streams.pop(2 * j + 1)  # the client never sees answers: keep it from counting them
        reads.append(c.data_to_send())
    return preface, reads


def run_h2(preface: bytes, reads: list[bytes]) -> float:
    """What askr.front.http2 does per request with h2 (its configuration, send path)."""
    config = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                       validate_inbound_headers=False, validate_outbound_headers=False,
                                       normalize_outbound_headers=False)
    conn = h2.connection.H2Connection(config=config)
    conn.local_settings = h2.settings.Settings(client=False, initial_values={
        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
        h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 256 * 1024,
    })
    conn.initiate_connection()
    conn.receive_data(preface)
    conn.data_to_send()
    request_received = h2.events.RequestReceived
    t0 = time.perf_counter()
    for data in reads:
        for event in conn.receive_data(data):
            if type(event) is request_received:
                sid = event.stream_id
                conn.send_headers(sid, RESPONSE, end_stream=False)
                window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                assert window >= len(BODY)
                conn.send_data(sid, BODY, end_stream=True)
        conn.data_to_send()
    return time.perf_counter() - t0


def run_api(preface: bytes, reads: list[bytes], one_call: bool) -> float:
    from askr.front import nghttp2

    s = nghttp2.Session(max_concurrent_streams=100, initial_window_size=256 * 1024)
    s.receive_data(preface)
    s.data_to_send()
    request_received = nghttp2.RequestReceived
    t0 = time.perf_counter()
    for data in reads:
        for event in s.receive_data(data):
            if type(event) is request_received:
                if one_call:
                    s.respond(event.stream_id, RESPONSE, BODY)
                else:
                    s.send_headers(event.stream_id, RESPONSE)
                    s.send_data(event.stream_id, BODY, end_stream=True)
        s.data_to_send()
    return time.perf_counter() - t0


# -- ABI mode: dlopen libnghttp2.so.14, Python callbacks (what a no-compiler binding would do) ----
ABI_CDEF = """
typedef struct { size_t length; int32_t stream_id; uint8_t type; uint8_t flags; uint8_t reserved; }
    nghttp2_frame_hd;
typedef struct { int32_t stream_id; int32_t weight; uint8_t exclusive; } nghttp2_priority_spec;
typedef struct { uint8_t *name; uint8_t *value; size_t namelen; size_t valuelen; uint8_t flags; } nghttp2_nv;
typedef struct { nghttp2_frame_hd hd; size_t padlen; nghttp2_priority_spec pri_spec; nghttp2_nv *nva;
                 size_t nvlen; int cat; } nghttp2_headers;
typedef union { nghttp2_frame_hd hd; nghttp2_headers headers; char _pad[128]; } nghttp2_frame;
typedef union { int fd; void *ptr; } nghttp2_data_source;
typedef ssize_t (*nghttp2_data_source_read_callback)(void *session, int32_t stream_id, uint8_t *buf,
    size_t length, uint32_t *data_flags, nghttp2_data_source *source, void *user_data);
typedef struct { nghttp2_data_source source; nghttp2_data_source_read_callback read_callback; }
    nghttp2_data_provider;
typedef struct { int32_t settings_id; uint32_t value; } nghttp2_settings_entry;
typedef int (*hdr_cb)(void *, const nghttp2_frame *, const uint8_t *, size_t, const uint8_t *, size_t,
                      uint8_t, void *);
typedef int (*frame_cb)(void *, const nghttp2_frame *, void *);
int nghttp2_session_callbacks_new(void **cb);
void nghttp2_session_callbacks_set_on_header_callback(void *cb, hdr_cb f);
void nghttp2_session_callbacks_set_on_begin_headers_callback(void *cb, frame_cb f);
void nghttp2_session_callbacks_set_on_frame_recv_callback(void *cb, frame_cb f);
int nghttp2_option_new(void **opt);
void nghttp2_option_set_no_auto_window_update(void *opt, int val);
int nghttp2_session_server_new2(void **session, void *cb, void *user_data, void *opt);
ssize_t nghttp2_session_mem_recv(void *session, const uint8_t *in, size_t inlen);
ssize_t nghttp2_session_mem_send(void *session, const uint8_t **data_ptr);
int nghttp2_submit_settings(void *session, uint8_t flags, const nghttp2_settings_entry *iv, size_t niv);
int nghttp2_submit_response(void *session, int32_t stream_id, const nghttp2_nv *nva, size_t nvlen,
                            const nghttp2_data_provider *data_prd);
"""


def run_abi(preface: bytes, reads: list[bytes]) -> float:
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(ABI_CDEF)
    lib = ffi.dlopen("libnghttp2.so.14")
    events: list = []
    headers: list = []
    bodies: dict[int, bytes] = {}

    @ffi.callback("frame_cb")
    def on_begin(session, frame, ud):  # type: ignore[no-untyped-def]
        headers.clear()
        return 0

    @ffi.callback("hdr_cb")
    def on_header(session, frame, name, namelen, value, valuelen, flags, ud):  # type: ignore[no-untyped-def]
        headers.append((ffi.unpack(ffi.cast("char *", name), namelen),
                        ffi.unpack(ffi.cast("char *", value), valuelen)))
        return 0

    @ffi.callback("frame_cb")
    def on_frame(session, frame, ud):  # type: ignore[no-untyped-def]
        if frame.hd.type == 1 and frame.headers.cat == 0:
            events.append((frame.hd.stream_id, list(headers), bool(frame.hd.flags & 1)))
        return 0

    @ffi.callback("nghttp2_data_source_read_callback")
    def read_body(session, sid, buf, length, flags, source, ud):  # type: ignore[no-untyped-def]
        data = bodies.pop(sid, b"")
        ffi.memmove(buf, data, len(data))
        flags[0] |= 1
        return len(data)

    cb = ffi.new("void **")
    lib.nghttp2_session_callbacks_new(cb)
    lib.nghttp2_session_callbacks_set_on_begin_headers_callback(cb[0], on_begin)
    lib.nghttp2_session_callbacks_set_on_header_callback(cb[0], on_header)
    lib.nghttp2_session_callbacks_set_on_frame_recv_callback(cb[0], on_frame)
    opt = ffi.new("void **")
    lib.nghttp2_option_new(opt)
    lib.nghttp2_option_set_no_auto_window_update(opt[0], 1)
    sp = ffi.new("void **")
    assert lib.nghttp2_session_server_new2(sp, cb[0], ffi.NULL, opt[0]) == 0
    session = sp[0]
    iv = ffi.new("nghttp2_settings_entry[]", [(3, 100), (4, 256 * 1024)])
    lib.nghttp2_submit_settings(session, 0, iv, 2)
    prd = ffi.new("nghttp2_data_provider *")
    prd.read_callback = read_body
    out = ffi.new("const uint8_t **")

    def mem_send() -> bytes:
        parts = []
        while True:
            n = lib.nghttp2_session_mem_send(session, out)
            if n <= 0:
                return b"".join(parts)
            parts.append(ffi.buffer(out[0], n)[:])

    def respond(sid: int, head: list[tuple[bytes, bytes]], body: bytes) -> None:
        blob = b"".join(part for field in head for part in field)
        base = ffi.from_buffer("uint8_t[]", blob)
        nva = ffi.new("nghttp2_nv[]", len(head))
        pos = 0
        for i, (name, value) in enumerate(head):
            nv = nva[i]
            nv.name = base + pos
            nv.namelen = len(name)
            nv.value = base + pos + len(name)
            nv.valuelen = len(value)
            pos += len(name) + len(value)
        bodies[sid] = body
        lib.nghttp2_submit_response(session, sid, nva, len(head), prd)

    lib.nghttp2_session_mem_recv(session, preface, len(preface))
    mem_send()
    t0 = time.perf_counter()
    for data in reads:
        assert lib.nghttp2_session_mem_recv(session, data, len(data)) == len(data)
        batch = events[:]
        events.clear()
        for sid, _head, _end in batch:
            respond(sid, RESPONSE, BODY)
        mem_send()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1, help="requests per read (h2load -m)")
    args = parser.parse_args()
    preface, reads = client_reads(args.requests, args.batch)
    cases: dict[str, Callable[[], float]] = {
        "h2 (askr today)": lambda: run_h2(preface, reads),
        "nghttp2 cffi ABI (Python callbacks)": lambda: run_abi(preface, reads),
        "nghttp2 cffi API (send_headers+send_data)": lambda: run_api(preface, reads, False),
        "nghttp2 cffi API (respond)": lambda: run_api(preface, reads, True),
    }
    print(f"{args.requests} requests, {args.batch} per read, {args.runs} runs; us/request")
    print("| codec | runs | median |")
    print("|---|---|---|")
    for name, fn in cases.items():
        runs = [fn() / args.requests * 1e6 for _ in range(args.runs)]
        print(f"| {name} | {' '.join(f'{r:.2f}' for r in runs)} | {statistics.median(runs):.2f} |")


if __name__ == "__main__":
    main()
