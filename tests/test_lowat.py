"""The receive low-water mark (``Transport.expect``, SO_RCVLOWAT): while a
large body is sure to come the kernel wakes the engine per LOWAT bytes, and
what a server sends short of the mark (a stall, a reset, another stream's
head) still reaches the caller, through the backstop, long before any read
timeout. Each test stalls its server below the mark and would end in
ReadTimeout if the mark were left raised."""

from __future__ import annotations

import ssl
import sys
import threading
from collections.abc import Callable, Iterator

import h2.events
import pytest
import trustme

import httpcore
from httpcore.engine.transport import LOWAT
from tests.servers.app import pattern
from tests.servers.h2faults import H2Peer
from tests.servers.h2util import h2c_client
from tests.servers.handles import RawFactory
from tests.servers.raw import RawConnection

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the mark is raised on Linux only"
)

SIZE = 4 * 1024 * 1024
FIRST = 1024 * 1024
TAIL = 1000
"""Bytes the server sends after FIRST and then stalls on: far below LOWAT."""
assert FIRST >= 2 * LOWAT and TAIL < LOWAT

TIMEOUT = httpcore.Timeout(10.0, read=3.0)
"""A stuck tail shows as ReadTimeout after 3 s; the backstop frees it in ms."""

# Each server first sends one whole BODY on the connection: a young TCP
# connection's receive window is small, and the kernel signals a socket
# whose window is nearly closed whatever the mark (tcp_epollin_ready), which
# would free the tail without the backstop.


class Steps:
    """The test's side of the handshake with a stalling server."""

    def __init__(self) -> None:
        self.got_first = threading.Event()
        self.got_tail = threading.Event()

    def read(self, chunks: Iterator[bytes]) -> bytes:
        """Read the body, telling the server when FIRST and then the tail
        arrived (it sends nothing more until then)."""
        body = bytearray()
        for chunk in chunks:
            body += chunk
            if len(body) >= FIRST:
                self.got_first.set()
            if len(body) >= FIRST + TAIL:
                self.got_tail.set()
        return bytes(body)


BODY = pattern(SIZE)


def h1_stall(steps: Steps) -> Callable[[RawConnection], None]:
    def handler(conn: RawConnection) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE
        conn.read_request()
        conn.send(head + BODY)
        conn.read_request()
        conn.send(head + BODY[:FIRST])
        assert steps.got_first.wait(10)
        conn.send(BODY[FIRST : FIRST + TAIL])
        assert steps.got_tail.wait(10)
        conn.send(BODY[FIRST + TAIL :])
        conn.wait_closed_by_peer(timeout=10)

    return handler


def test_h1_tail_below_the_mark_arrives(raw: RawFactory) -> None:
    steps = Steps()
    server = raw(h1_stall(steps))
    with httpcore.Client(timeout=TIMEOUT) as client:
        assert client.request("GET", server.url("/warm")).body == BODY
        with client.request("GET", server.url("/"), stream=True) as response:
            assert steps.read(response.stream()) == BODY


def test_h1_tls_tail_below_the_mark_arrives(
    raw: RawFactory, server_cert: trustme.LeafCert, ssl_context: ssl.SSLContext
) -> None:
    """Over TLS the mark counts ciphertext, which is longer than the body
    bytes the connection is sure of: the tail's one record still arrives."""
    steps = Steps()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_ctx)
    server = raw(h1_stall(steps), tls=server_ctx)
    url = f"https://localhost:{server.port}"
    with httpcore.Client(timeout=TIMEOUT, ssl=ssl_context) as client:
        assert client.request("GET", url + "/warm").body == BODY
        with client.request("GET", url + "/", stream=True) as response:
            assert steps.read(response.stream()) == BODY


def _next_request(peer: H2Peer) -> int:
    """The stream id of the next request read (WINDOW_UPDATEs go on
    meanwhile: H2Peer acknowledges what it receives)."""
    while True:
        for event in peer.receive() or []:
            if isinstance(event, h2.events.RequestReceived):
                assert event.stream_id is not None
                return event.stream_id
        peer.flush()


def _send(peer: H2Peer, sid: int, data: bytes, end: bool = False) -> None:
    frame = peer.h2.max_outbound_frame_size
    for at in range(0, len(data), frame):
        last = at + frame >= len(data)
        peer.h2.send_data(sid, data[at : at + frame], end_stream=end and last)
    peer.conn.send(peer.h2.data_to_send())


def _head(peer: H2Peer, sid: int, size: int) -> None:
    peer.h2.send_headers(sid, [(b":status", b"200"), (b"content-length", b"%d" % size)])


def h2_stall(steps: Steps, then: str) -> Callable[[RawConnection], None]:
    """One bulk stream: FIRST, then (``then``) the tail and the rest, or a
    RST_STREAM; or ("second") the answer to a second request while the bulk
    stream stays stalled."""

    def handler(conn: RawConnection) -> None:
        peer = H2Peer(conn)
        warm = _next_request(peer)
        peer.respond(warm, BODY, headers=[(b"content-length", b"%d" % SIZE)])
        while peer.sending():
            peer.flush()
            if peer.sending():
                peer.receive()
        sid = _next_request(peer)
        _head(peer, sid, SIZE)
        _send(peer, sid, BODY[:FIRST])
        assert steps.got_first.wait(10)
        if then == "reset":
            peer.reset(sid, 2)  # INTERNAL_ERROR
            peer.flush()
        elif then == "second":
            small = _next_request(peer)
            _head(peer, small, 5)
            _send(peer, small, b"small", end=True)
            assert steps.got_tail.wait(10)
            _send(peer, sid, BODY[FIRST:], end=True)
        else:
            _send(peer, sid, BODY[FIRST : FIRST + TAIL])
            assert steps.got_tail.wait(10)
            _send(peer, sid, BODY[FIRST + TAIL :], end=True)
        peer.drain_until_closed()

    return handler


def test_h2_tail_below_the_mark_arrives(raw: RawFactory) -> None:
    steps = Steps()
    server = raw(h2_stall(steps, "tail"))
    with h2c_client(timeout=TIMEOUT) as client:
        assert client.request("GET", server.url("/warm")).body == BODY
        with client.request("GET", server.url("/"), stream=True) as response:
            assert response.http_version == "HTTP/2"
            assert steps.read(response.stream()) == BODY


def test_h2_reset_below_the_mark_arrives(raw: RawFactory) -> None:
    """A RST_STREAM (13 bytes) ends the stream with the server's error,
    not with a read timeout."""
    steps = Steps()
    server = raw(h2_stall(steps, "reset"))
    with h2c_client(timeout=TIMEOUT) as client:
        assert client.request("GET", server.url("/warm")).body == BODY
        with client.request("GET", server.url("/"), stream=True) as response:
            with pytest.raises(httpcore.RemoteProtocolError, match="reset by the server"):
                steps.read(response.stream())
            assert steps.got_first.is_set()


def test_h2_head_of_another_stream_is_not_held(raw: RawFactory) -> None:
    """A second request's answer comes while the first body is stalled
    with more than LOWAT sure to come."""
    steps = Steps()
    server = raw(h2_stall(steps, "second"))
    with h2c_client(timeout=TIMEOUT) as client:
        assert client.request("GET", server.url("/warm")).body == BODY
        with client.request("GET", server.url("/big"), stream=True) as response:
            chunks = response.stream()
            body = bytearray()
            while len(body) < FIRST:
                body += next(chunks)
            steps.got_first.set()
            assert client.request("GET", server.url("/small")).body == b"small"
            steps.got_tail.set()
            body += b"".join(chunks)
            assert body == BODY
