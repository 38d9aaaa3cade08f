"""The HTTP/1.1 fast lane against h11, its reference.

``engine/http11.py`` writes plain requests and parses common response heads
itself, and hands every other exchange to h11. These tests hold it to that:
whatever the fast lane accepts, h11 must accept with the same status,
reason, headers, body and keep-alive decision, and every request it writes
must be byte for byte what h11 writes. Heads come from a grammar with the
corner cases mixed in (bare LF, obs-fold, odd versions, bad and conflicting
Content-Length, Transfer-Encoding, control bytes, 1xx, HEAD, 204/304).
The end-to-end side (real servers, both lanes) is in ``test_sync.py``,
``test_errors.py`` and ``test_fuzz.py``; the last tests here send heads
that must leave the fast lane through a raw server.
"""

from __future__ import annotations

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import httpcore
from httpcore.engine.h1wire import HeadMemo, parse_head, wire_request
from tests.servers.handles import RawFactory
from tests.servers.raw import RawConnection

CHECK = settings(max_examples=1500, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])

TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
NAMES = st.sampled_from(
    [b"Content-Length", b"content-length", b"Transfer-Encoding", b"Connection",
     b"Server", b"X-A", b"Date", b"Set-Cookie"]
) | st.text(TOKEN, min_size=1, max_size=8).map(str.encode) | st.sampled_from(
    [b"Bad Name", b"", b"X:Y", b"\xff"]
)
VALUE_BYTES = st.sampled_from(
    [b"a", b"Z", b" ", b"\t", b",", b"0", b"7", b"\x7f", b"\x80", b"\xff", b"\x01",
     b"\x00", b"\x0b", b"close", b"chunked", b"keep-alive", b"-", b"\r", b"\n"]
)
VALUES = st.lists(VALUE_BYTES, max_size=6).map(b"".join) | st.sampled_from(
    [b"12", b"0", b"12, 12", b"12,13", b"-1", b"1" * 19, b"1" * 21, b"close",
     b"Keep-Alive, CLOSE", b"chunked", b"gzip, chunked", b" 5 "]
)
HEADER = st.tuples(NAMES, st.sampled_from([b": ", b":", b":\t", b" : "]), VALUES,
                   st.sampled_from([b"", b" ", b"\t "]))
EOL = st.sampled_from([b"\r\n"] * 8 + [b"\n"])


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    version = draw(st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/2.0", b"http/1.1"]))
    status = draw(st.sampled_from([b"200", b"204", b"304", b"100", b"101", b"404", b"099",
                                   b"999", b"20", b"2000"]))
    reason = draw(st.sampled_from([b" OK", b"", b" ", b" Not\tFound", b" \x80\xff", b" a\x7f",
                                   b" a\x01", b"OK"]))
    lines = [version + b" " + status + reason]
    for name, sep, value, tail in draw(st.lists(HEADER, max_size=6)):
        lines.append(name + sep + value + tail)
        if draw(st.integers(0, 30)) == 0:
            lines.append(b" folded")
    out = b""
    for line in lines:
        out += line + draw(EOL)
    return out + draw(EOL)


def h11_reading(method: bytes, close: bool, data: bytes) -> tuple[object, ...] | None:
    """What h11 makes of ``data`` as the response to ``method``; None: no
    complete response, or an error."""
    conn = h11.Connection(h11.CLIENT)
    headers = [(b"Host", b"example")] + ([(b"Connection", b"close")] if close else [])
    conn.send(h11.Request(method=method, target=b"/", headers=headers))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    body = b""
    try:
        head = conn.next_event()
        if not isinstance(head, h11.Response):
            return None
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return None
    except h11.RemoteProtocolError:
        return None
    keep = conn.our_state is h11.DONE and conn.their_state is h11.DONE
    return (head.status_code, head.reason, list(head.headers.raw_items()),
            head.http_version, body, keep)


def fast_reading(method: bytes, close: bool, data: bytes) -> tuple[object, ...] | None:
    parsed = parse_head(data, method, close)
    # The same head parsed again through a connection's memo (twice: the
    # second comes from it), after a different request's reading of it.
    memo: HeadMemo = {}
    other = b"HEAD" if method != b"HEAD" else b"GET"
    parse_head(data, other, not close, memo)
    for _ in range(2):
        assert parse_head(data, method, close, memo) == parsed
    if parsed is None:
        return None
    (status, reason, headers, length, keep), start = parsed
    body = data[start:start + length]
    if len(body) < length:
        return None
    return status, reason, headers, b"1.1", body, keep


@CHECK
@given(head=heads(), body=st.sampled_from([b"", b"hello world\n", b"x" * 40]),
       method=st.sampled_from([b"GET", b"HEAD", b"POST"]), close=st.booleans())
def test_fast_lane_reads_every_head_it_accepts_as_h11_does(
    head: bytes, body: bytes, method: bytes, close: bool
) -> None:
    data = head + body
    fast = fast_reading(method, close, data)
    if fast is not None:
        assert fast == h11_reading(method, close, data)


COMMON = [
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n"
    b"hello world\n",
    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    b"HTTP/1.1 200\r\nContent-Length: 2\r\nX-Empty:\r\nX-Bin: \x80\xff\r\n\r\nok",
]


@pytest.mark.parametrize("data", COMMON)
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_fast_lane_takes_the_common_heads(data: bytes, method: bytes) -> None:
    fast = fast_reading(method, False, data)
    assert fast is not None
    assert fast == h11_reading(method, False, data)


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",  # chunked
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na",  # HTTP/1.0
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",  # 1xx
    b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",  # obs-fold
    b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",  # bare LF
    b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\na",  # a list
    b"HTTP/1.1 200 OK\r\n\r\nuntil close",  # no framing
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",  # incomplete head
])
def test_fast_lane_declines_the_rest(data: bytes) -> None:
    assert parse_head(data, b"GET", False) is None


HEADER_VALUES = st.text("abc XYZ019-,;=\t/\x80\xff", max_size=12).map(
    lambda text: text.encode("latin-1").strip(b" \t"))


@CHECK
@given(
    method=st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"X-M"]),
    target=st.sampled_from([b"/", b"/a?b=c", b"http://example/x", b"*"]),
    headers=st.lists(st.tuples(
        st.sampled_from([b"Host", b"host", b"Content-Length", b"Transfer-Encoding", b"Accept",
                         b"X-A", b"Connection"]) | st.text(TOKEN, min_size=1, max_size=6)
        .map(str.encode),
        HEADER_VALUES | st.sampled_from([b"0", b"3", b"chunked"]),
    ), max_size=5),
    body=st.sampled_from([b"", b"abc", None]),
    host_first=st.booleans(),
)
def test_fast_lane_writes_requests_as_h11_does(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes | None,
    host_first: bool,
) -> None:
    if host_first:
        headers = [(b"Host", b"example:8080"), *headers]
    made = wire_request(method, target, headers, body)
    if made is None:
        return
    wire, close = made
    conn = h11.Connection(h11.CLIENT)
    expected = conn.send(h11.Request(method=method, target=target, headers=headers))
    assert body is not None
    if body:
        expected += conn.send(h11.Data(data=body))
    expected += conn.send(h11.EndOfMessage())
    assert wire == expected
    assert close == (conn.our_state is h11.MUST_CLOSE)


def test_fast_lane_writes_the_common_requests() -> None:
    host = (b"Host", b"example")
    assert wire_request(b"GET", b"/", [host], b"") == (
        b"GET / HTTP/1.1\r\nHost: example\r\n\r\n", False
    )
    assert wire_request(b"POST", b"/", [(b"Content-Length", b"3"), host], b"abc") == (
        b"POST / HTTP/1.1\r\nHost: example\r\nContent-Length: 3\r\n\r\nabc", False
    )
    assert wire_request(b"GET", b"/", [host, (b"Connection", b"keep-alive, Close")], b"") == (
        b"GET / HTTP/1.1\r\nHost: example\r\nConnection: keep-alive, Close\r\n\r\n", True
    )
    assert wire_request(b"POST", b"/", [host, (b"Transfer-Encoding", b"chunked")], None) is None


# -- end to end: heads that leave the fast lane, from a raw server -------------------


def _answer_in_pieces(pieces: list[bytes]) -> object:
    def handler(conn: RawConnection) -> None:
        conn.read_request()
        for piece in pieces:
            conn.send(piece)
        conn.close()
    return handler


@pytest.mark.timeout(10)
@pytest.mark.parametrize("pieces, body", [
    ([b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 5\r\n\r\nhello"], b"hello"),
    ([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"], b"ok"),
    ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"], b"abc"),
    ([b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 1\r\n\r\nz"], b"z"),
])
def test_heads_outside_the_fast_lane_are_read_by_h11(
    raw: RawFactory, pieces: list[bytes], body: bytes
) -> None:
    server = raw(_answer_in_pieces(pieces))
    with httpcore.Client() as client:
        response = client.request("GET", server.url("/"))
        assert response.status_code == 200
        assert response.read() == body


@pytest.mark.timeout(10)
def test_bad_head_outside_the_fast_lane_fails_with_h11s_error(raw: RawFactory) -> None:
    server = raw(_answer_in_pieces([b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx"]))
    with httpcore.Client() as client, pytest.raises(httpcore.RemoteProtocolError) as info:
        client.request("GET", server.url("/"))
    assert "Content-Length" in str(info.value)
