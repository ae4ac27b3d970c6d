"""The front <-> worker frame codec (docs/internals.md), byte for byte."""

from __future__ import annotations

import random

import pytest

from askr.bridge import wire


def test_request_round_trip_with_prefix_and_headers() -> None:
    prefix = wire.encode_params([b"GATEWAY_INTERFACE", b"CGI/1.1", b"REMOTE_PORT", b"5000"])
    frame = wire.encode_request([b"REQUEST_METHOD", b"GET", b"QUERY_STRING", b""],
                                [b"Host", b"x", b"Accept", b"*/*"], prefix)
    kind, length = wire.HEADER.unpack_from(frame)
    assert kind == wire.REQUEST
    payload = frame[wire.HEADER_SIZE :]
    assert length == len(payload)
    # the exact layout the C worker parses in place: name\0value\0 ... \0 (empty name) headers
    assert payload == (b"GATEWAY_INTERFACE\0CGI/1.1\0REMOTE_PORT\x005000\0REQUEST_METHOD\0GET\0"
                       b"QUERY_STRING\0\0\0Host\0x\0Accept\0*/*\0")
    params, headers = wire.decode_request(payload)
    assert params == [(b"GATEWAY_INTERFACE", b"CGI/1.1"), (b"REMOTE_PORT", b"5000"),
                      (b"REQUEST_METHOD", b"GET"), (b"QUERY_STRING", b"")]
    assert headers == [(b"Host", b"x"), (b"Accept", b"*/*")]


def test_request_without_headers() -> None:
    frame = wire.encode_request([b"REQUEST_METHOD", b"GET"], [])
    params, headers = wire.decode_request(frame[wire.HEADER_SIZE :])
    assert params == [(b"REQUEST_METHOD", b"GET")]
    assert headers == []


def reference_request(params: list[bytes], headers: list[bytes], prefix: bytes) -> bytes:
    """The REQUEST layout, spelled out in Python (encode_request builds it in C)."""
    nul_terminated = b"".join(item + b"\0" for item in params)
    payload = prefix + nul_terminated + b"\0" + b"".join(item + b"\0" for item in headers)
    return wire.HEADER.pack(wire.REQUEST, len(payload)) + payload


def test_requests_are_encoded_as_the_layout_says() -> None:
    rng = random.Random(1208)
    for _ in range(500):
        def fields() -> list[bytes]:
            return [bytes(rng.choice(b"ab:/ =\xff") for _ in range(rng.randrange(12)))
                    for _ in range(2 * rng.randrange(12))]
        params, headers, prefix = fields(), fields(), wire.encode_params(fields())
        assert wire.encode_request(params, headers, prefix) == reference_request(params, headers, prefix)
    with pytest.raises(TypeError):
        wire.encode_request([b"A", "str"], [])
    with pytest.raises(TypeError):
        wire.encode_request((b"A", b"B"), [])  # type: ignore[arg-type]


MAX = wire.MAX_BODY_FRAME


@pytest.mark.parametrize("size", [0, 1, MAX, MAX + 1, 3 * MAX + 7])
def test_body_is_split_into_bounded_frames(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    encoded = wire.encode_body(data)
    pos, pieces = 0, []
    while pos < len(encoded):
        kind, length = wire.HEADER.unpack_from(encoded, pos)
        assert kind == wire.BODY
        assert length <= wire.MAX_BODY_FRAME
        pieces.append(encoded[pos + wire.HEADER_SIZE : pos + wire.HEADER_SIZE + length])
        pos += wire.HEADER_SIZE + length
    assert b"".join(pieces) == data


def test_hello_and_head() -> None:
    hello = wire.frame(wire.HELLO, bytes.fromhex("000000030000303900000002"))
    assert wire.decode_hello(hello[wire.HEADER_SIZE :]) == (3, 12345, 2)
    status, lines = wire.decode_head(b"\x00\xc8Content-type: text/html\nX-A: 1")
    assert status == 200
    assert lines == [b"Content-type: text/html", b"X-A: 1"]


def test_split_frames_takes_only_complete_frames() -> None:
    """The pool's parser: what a read holds may end mid-header or mid-payload."""
    head = wire.frame(wire.HEAD, b"\x00\xc8X-A: 1")
    body = wire.frame(wire.RESP_BODY, b"hello")
    end = wire.frame(wire.END, b"\x00")
    data = head + body + end
    frames, consumed = wire.split_frames(data)
    assert consumed == len(data)
    assert [(kind, data[start:stop]) for kind, start, stop in frames] == [
        (wire.HEAD, b"\x00\xc8X-A: 1"), (wire.RESP_BODY, b"hello"), (wire.END, b"\x00")]
    assert wire.decode_status(data, frames[0][1]) == 200
    for cut in range(len(data)):
        frames, consumed = wire.split_frames(bytearray(data[:cut]))
        assert consumed <= cut
        whole = [len(head), len(head) + len(body), len(data)]
        assert consumed == max([0, *(n for n in whole if n <= cut)])
        assert len(frames) == sum(n <= cut for n in whole)
    assert wire.split_frames(wire.frame(wire.END)) == ([(wire.END, wire.HEADER_SIZE, wire.HEADER_SIZE)],
                                                       wire.HEADER_SIZE)


def test_recycle_reasons() -> None:
    assert wire.decode_recycle(bytes([1]) + (5 << 20).to_bytes(8, "big")) == ("max_memory", 5 << 20)
    assert wire.decode_recycle(bytes([9]) + bytes(8)) == ("reason 9", 0)
