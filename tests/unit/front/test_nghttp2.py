"""askr.front.nghttp2 driven by the pure-Python `h2` package as the client: bytes in, bytes out."""

from __future__ import annotations

import base64

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from hyperframe.frame import Frame, HeadersFrame, RstStreamFrame

from askr.front import nghttp2
from askr.front.nghttp2 import ErrorCodes, Session

GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"example.test"), (b":path", b"/x?y=1"),
       (b"user-agent", b"h2load nghttp2/1.52.0")]


def post(length: int | None = None) -> list[tuple[bytes, bytes]]:
    head = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"example.test"),
            (b":path", b"/up")]
    return head if length is None else [*head, (b"content-length", b"%d" % length)]


def client() -> h2.connection.H2Connection:
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    c.initiate_connection()
    return c


def connect(**kw: int) -> tuple[h2.connection.H2Connection, Session]:
    """Both prefaces and SETTINGS ACKs exchanged: each side knows the other's settings."""
    c, s = client(), Session(**kw)
    assert s.receive_data(c.data_to_send())[0].__class__ is nghttp2.RemoteSettingsChanged
    c.receive_data(s.data_to_send())
    s.receive_data(c.data_to_send())
    assert s.data_to_send() == b""
    return c, s


def to_client(c: h2.connection.H2Connection, s: Session) -> list[h2.events.Event]:
    return c.receive_data(s.data_to_send())


def kinds(events: list) -> list[type]:
    return [type(e) for e in events]


def raw_headers(c: h2.connection.H2Connection, stream_id: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A HEADERS frame the client's own state machine would refuse to send."""
    frame = HeadersFrame(stream_id)
    frame.data = c.encoder.encode(headers)
    frame.flags.add("END_HEADERS")
    return frame.serialize()


def frames(data: bytes) -> list[Frame]:
    out = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9:9 + length]))
        out.append(frame)
        data = data[9 + length:]
    return out


def test_get_response_headers_and_body() -> None:
    c, s = connect()
    c.send_headers(1, GET, end_stream=True)
    events = s.receive_data(c.data_to_send())
    assert kinds(events) == [nghttp2.RequestReceived]
    req = events[0]
    assert req.stream_id == 1 and req.end_stream and not req.headers_too_large
    assert req.headers == GET
    s.send_headers(1, [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"14")])
    assert s.send_data(1, b"hello, world!\n", end_stream=True) == 14
    got = to_client(c, s)
    assert kinds(got) == [h2.events.ResponseReceived, h2.events.DataReceived, h2.events.StreamEnded]
    assert got[0].headers[0] == (b":status", b"200")
    assert got[1].data == b"hello, world!\n"
    assert s.pending(1) == -1  # closed: both sides ended


def test_respond_without_body_ends_on_headers() -> None:
    c, s = connect()
    c.send_headers(1, GET, end_stream=True)
    s.receive_data(c.data_to_send())
    s.respond(1, [(b":status", b"204")], b"")
    got = to_client(c, s)
    assert kinds(got) == [h2.events.ResponseReceived, h2.events.StreamEnded]


def test_post_body_with_manual_window_updates() -> None:
    c, s = connect(initial_window_size=16384, connection_window=1 << 20)
    c.send_headers(1, post(20000))
    c.send_data(1, b"a" * 16384)  # the whole stream window
    assert c.local_flow_control_window(1) == 0
    events = s.receive_data(c.data_to_send())
    assert kinds(events) == [nghttp2.RequestReceived, nghttp2.DataReceived]
    assert not events[0].end_stream
    assert events[1].data == b"a" * 16384 and events[1].flow_controlled_length == 16384
    # Not consumed: the stream's window stays shut (the connection's re-opens at once).
    got = to_client(c, s)
    assert all(e.stream_id == 0 for e in got if isinstance(e, h2.events.WindowUpdated))
    assert c.local_flow_control_window(1) == 0
    s.consume(1, 4000)  # under half the window: nghttp2 waits for more
    assert not [e for e in to_client(c, s) if isinstance(e, h2.events.WindowUpdated)]
    s.consume(1, 12384)
    got = to_client(c, s)
    assert [(e.stream_id, e.delta) for e in got if isinstance(e, h2.events.WindowUpdated)] == [(1, 16384)]
    c.send_data(1, b"b" * 3616, end_stream=True)
    events = s.receive_data(c.data_to_send())
    assert kinds(events) == [nghttp2.DataReceived, nghttp2.StreamEnded]
    assert len(events[0].data) == 3616


def test_padding_is_not_the_callers_to_consume() -> None:
    c, s = connect(initial_window_size=16384)
    c.send_headers(1, post())
    c.send_data(1, b"z" * 100, pad_length=50)
    events = s.receive_data(c.data_to_send())
    assert events[1].data == b"z" * 100 and events[1].flow_controlled_length == 100


def test_informational_103_then_200() -> None:
    c, s = connect()
    c.send_headers(1, GET, end_stream=True)
    s.receive_data(c.data_to_send())
    s.send_informational(1, [(b":status", b"103"), (b"link", b"</a.css>; rel=preload")])
    s.respond(1, [(b":status", b"200")], b"ok")
    got = to_client(c, s)
    assert kinds(got) == [h2.events.InformationalResponseReceived, h2.events.ResponseReceived,
                          h2.events.DataReceived, h2.events.StreamEnded]
    assert got[0].headers == [(b":status", b"103"), (b"link", b"</a.css>; rel=preload")]


def test_large_response_waits_for_window_update() -> None:
    c, s = connect()
    c.send_headers(1, GET, end_stream=True)
    s.receive_data(c.data_to_send())
    body = bytes(range(256)) * 400  # 102400 bytes: more than the client's 65535 window
    s.send_headers(1, [(b":status", b"200")])
    s.send_data(1, body, end_stream=True)
    got = to_client(c, s)
    received = b"".join(e.data for e in got if isinstance(e, h2.events.DataReceived))
    assert len(received) == 65535
    assert s.pending(1) == len(body) - 65535 and s.remote_window(1) == 0
    assert not any(isinstance(e, h2.events.StreamEnded) for e in got)
    assert s.data_to_send() == b""  # nothing more until the client's window re-opens
    c.acknowledge_received_data(65535, 1)
    events = s.receive_data(c.data_to_send())
    assert nghttp2.WindowUpdated in kinds(events)
    got = to_client(c, s)
    received += b"".join(e.data for e in got if isinstance(e, h2.events.DataReceived))
    assert received == body
    assert isinstance(got[-1], h2.events.StreamEnded)


def test_reset_in_the_same_read_as_headers() -> None:
    c, s = connect()
    c.send_headers(1, GET, end_stream=True)
    c.reset_stream(1, error_code=8)
    events = s.receive_data(c.data_to_send())
    assert kinds(events) == [nghttp2.RequestReceived, nghttp2.StreamReset]
    assert (events[1].stream_id, events[1].error_code, events[1].remote) == (1, ErrorCodes.CANCEL, True)
    with pytest.raises(nghttp2.StreamClosedError):
        s.send_headers(1, [(b":status", b"200")])
    with pytest.raises(nghttp2.StreamClosedError):
        s.send_data(1, b"x")


def test_outbound_nul_is_refused_and_own_reset_closes() -> None:
    c, s = connect()
    c.send_headers(1, GET, end_stream=True)
    s.receive_data(c.data_to_send())
    with pytest.raises(ValueError):
        s.send_headers(1, [(b":status", b"200"), (b"x-evil", b"a\0b")])
    s.reset_stream(1, ErrorCodes.INTERNAL_ERROR)
    with pytest.raises(nghttp2.StreamClosedError):
        s.respond(1, [(b":status", b"200")], b"late")
    got = to_client(c, s)
    assert [(type(e), e.error_code) for e in got] == [(h2.events.StreamReset, ErrorCodes.INTERNAL_ERROR)]
    assert s.receive_data(c.data_to_send()) == []  # our own reset is not reported back


def test_reset_of_a_finished_stream_is_not_reported() -> None:
    c, s = connect()
    c.send_headers(1, post())
    s.receive_data(c.data_to_send())
    s.respond(1, [(b":status", b"413")], b"too big")
    s.reset_stream(1, ErrorCodes.NO_ERROR)  # answered before the body: stop the upload
    to_client(c, s)
    assert s.receive_data(c.data_to_send()) == []


def test_client_goaway_and_server_graceful_goaway() -> None:
    c, s = connect()
    c.send_headers(1, GET, end_stream=True)
    s.receive_data(c.data_to_send())
    s.goaway()  # drain: stream 1 may finish, later ones are not served
    (goaway,) = frames(s.data_to_send())  # (h2 as a client would close on any GOAWAY)
    assert (goaway.type, goaway.last_stream_id, goaway.error_code) == (0x7, 1, 0)
    s.respond(1, [(b":status", b"200")], b"done")
    sent = frames(s.data_to_send())
    assert [(f.type, f.stream_id, "END_STREAM" in f.flags) for f in sent] == [(0x1, 1, False), (0x0, 1, True)]
    assert not s.want_read() and not s.want_write()  # nothing open after our GOAWAY: close

    c, s = connect()
    c.close_connection(error_code=0, additional_data=b"bye")
    events = s.receive_data(c.data_to_send())
    assert kinds(events) == [nghttp2.ConnectionTerminated]
    assert (events[0].error_code, events[0].last_stream_id, events[0].additional_data) == (0, 0, b"bye")


def test_streams_past_our_goaway_are_ignored() -> None:
    c, s = connect()
    c.send_headers(1, GET, end_stream=True)
    s.receive_data(c.data_to_send())
    s.goaway(1)
    s.data_to_send()
    c.send_headers(3, GET, end_stream=True)
    assert s.receive_data(c.data_to_send()) == []


def test_bad_preface_is_a_protocol_error() -> None:
    s = Session()
    with pytest.raises(nghttp2.ProtocolError):
        s.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_connection_error_raises_and_leaves_goaway_to_send() -> None:
    c, s = connect()
    data_on_stream_0 = b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x"  # a connection error (RFC 9113 6.1)
    with pytest.raises(nghttp2.ProtocolError) as info:
        s.receive_data(data_on_stream_0)
    assert info.value.error_code == ErrorCodes.PROTOCOL_ERROR
    got = to_client(c, s)
    assert kinds(got) == [h2.events.ConnectionTerminated] and got[0].error_code == ErrorCodes.PROTOCOL_ERROR
    assert not s.want_read()


def test_malformed_headers_reset_without_reaching_us() -> None:
    c = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding=None, validate_outbound_headers=False,
        normalize_outbound_headers=False))
    c.initiate_connection()
    s = Session()
    s.receive_data(c.data_to_send())
    c.receive_data(s.data_to_send())
    c.send_headers(1, [*GET, (b"Upper", b"x")], end_stream=True)
    c.send_headers(3, [*GET, (b"connection", b"close")], end_stream=True)
    c.send_headers(5, GET[1:], end_stream=True)  # no :method
    events = s.receive_data(c.data_to_send())
    assert [e for e in events if not isinstance(e, nghttp2.RemoteSettingsChanged)] == []
    got = to_client(c, s)
    assert [(e.stream_id, e.error_code) for e in got if isinstance(e, h2.events.StreamReset)] == [
        (1, ErrorCodes.PROTOCOL_ERROR), (3, ErrorCodes.PROTOCOL_ERROR), (5, ErrorCodes.PROTOCOL_ERROR)]


def test_body_longer_than_content_length_is_reset_by_nghttp2() -> None:
    c, s = connect()
    c.send_headers(1, post(3))
    c.send_data(1, b"12345", end_stream=True)
    events = s.receive_data(c.data_to_send())
    assert kinds(events)[0] is nghttp2.RequestReceived
    assert isinstance(events[-1], nghttp2.StreamReset)
    assert (events[-1].error_code, events[-1].remote) == (ErrorCodes.PROTOCOL_ERROR, False)


def test_header_list_over_the_limit_is_flagged() -> None:
    c, s = connect(max_header_list_size=4096)
    c.send_headers(1, [*GET, (b"x-big", b"v" * 5000), (b"x-after", b"1")], end_stream=True)
    (req,) = s.receive_data(c.data_to_send())
    assert req.headers_too_large and req.headers == GET


def test_header_block_split_over_many_reads() -> None:
    c, s = connect()
    c.send_headers(1, [*GET, (b"cookie", b"a=1"), (b"cookie", b"b=2")], end_stream=True)
    wire = c.data_to_send()
    events: list = []
    for i in range(len(wire)):
        events += s.receive_data(wire[i:i + 1])
    assert kinds(events) == [nghttp2.RequestReceived]
    assert events[0].headers[-2:] == [(b"cookie", b"a=1"), (b"cookie", b"b=2")]


def test_trailers() -> None:
    c, s = connect()
    c.send_headers(1, post())
    c.send_data(1, b"abc")
    c.send_headers(1, [(b"x-checksum", b"1")], end_stream=True)
    events = s.receive_data(c.data_to_send())
    assert kinds(events) == [nghttp2.RequestReceived, nghttp2.DataReceived, nghttp2.TrailersReceived,
                             nghttp2.StreamEnded]
    assert events[2].headers == [(b"x-checksum", b"1")]


def test_max_concurrent_streams() -> None:
    # Before the client acknowledged our SETTINGS: the extra stream is refused (it may retry).
    c, s = client(), Session(max_concurrent_streams=2)
    events = s.receive_data(c.data_to_send() + b"".join(raw_headers(c, sid, post()) for sid in (1, 3, 5)))
    assert [e.stream_id for e in events if isinstance(e, nghttp2.RequestReceived)] == [1, 3]
    assert [(f.stream_id, f.error_code) for f in frames(s.data_to_send()) if f.type == 0x3] == [
        (5, ErrorCodes.REFUSED_STREAM)]
    # After it: nghttp2 makes it a connection error (h2 raised TooManyStreamsError likewise).
    c, s = connect(max_concurrent_streams=2)
    with pytest.raises(nghttp2.ProtocolError):
        s.receive_data(b"".join(raw_headers(c, sid, post()) for sid in (1, 3, 5)))


def test_rapid_reset_ends_the_connection() -> None:
    c, s = connect(reset_burst=10, reset_rate=1)
    wire = b""
    for sid in range(1, 41, 2):  # 20 streams opened and reset at once
        wire += raw_headers(c, sid, GET) + RstStreamFrame(sid, error_code=8).serialize()
    with pytest.raises(nghttp2.ProtocolError) as info:
        s.receive_data(wire)
    assert info.value.error_code == ErrorCodes.INTERNAL_ERROR  # what Debian's 1.52.0-1+deb12u3 sends
    (goaway,) = [f for f in frames(s.data_to_send()) if f.type == 0x7]
    assert goaway.last_stream_id == 21  # the 11th reset emptied the bucket of 10
    # the same resets within the default burst (1000) are fine
    c, s = connect()
    events = s.receive_data(b"".join(raw_headers(c, sid, GET) + RstStreamFrame(sid, error_code=8).serialize()
                                     for sid in range(1, 41, 2)))
    assert kinds(events) == [nghttp2.RequestReceived, nghttp2.StreamReset] * 20


def test_h2c_upgrade() -> None:
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    settings = base64.urlsafe_b64decode(c.initiate_upgrade_connection() + b"==")
    s = Session()
    s.upgrade(settings)
    c.data_to_send()  # h2's upgrade leaves the preface to send
    s.respond(1, [(b":status", b"200")], b"upgraded")
    got = to_client(c, s)
    assert h2.events.ResponseReceived in kinds(got)
    assert b"".join(e.data for e in got if isinstance(e, h2.events.DataReceived)) == b"upgraded"


def test_many_streams_one_read() -> None:
    c, s = connect()
    for sid in range(1, 21, 2):
        c.send_headers(sid, GET, end_stream=True)
    events = s.receive_data(c.data_to_send())
    assert [e.stream_id for e in events] == list(range(1, 21, 2))
    for e in events:
        s.respond(e.stream_id, [(b":status", b"200")], b"%d" % e.stream_id)
    got = to_client(c, s)
    assert {e.stream_id: e.data for e in got if isinstance(e, h2.events.DataReceived)} == {
        sid: b"%d" % sid for sid in range(1, 21, 2)}


def test_close_is_idempotent() -> None:
    s = Session()
    s.close()
    s.close()


def test_headers_on_a_skipped_lower_stream_id_is_a_connection_error() -> None:
    """RFC 9113 5.1.1 (h2spec 5.1.1/2): after stream 5, HEADERS on 3 (skipped, so closed) is
    PROTOCOL_ERROR. nghttp2 alone would ignore it; trailers on an open lower stream stay fine."""
    c, s = connect()
    opened = s.receive_data(raw_headers(c, 5, GET))
    assert kinds(opened) == [nghttp2.RequestReceived]
    with pytest.raises(nghttp2.ProtocolError) as info:
        s.receive_data(raw_headers(c, 3, GET))
    assert info.value.error_code == ErrorCodes.PROTOCOL_ERROR
    goaway = [f for f in frames(s.data_to_send()) if f.type == 0x07]
    assert goaway and goaway[0].error_code == ErrorCodes.PROTOCOL_ERROR


def test_trailers_on_an_open_lower_stream_are_not_refused() -> None:
    c, s = connect()
    c.send_headers(1, post())
    c.send_headers(3, GET, end_stream=True)
    c.send_headers(1, [(b"x-checksum", b"1")], end_stream=True)  # stream 1 < 3, but open
    events = s.receive_data(c.data_to_send())
    assert nghttp2.TrailersReceived in kinds(events) and s.want_read()
