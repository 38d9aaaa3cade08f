"""HTTP/2 fault servers for the stream-lifecycle regressions (``test_h2_lifecycle.py``).

Built like ``h2faults.py``: ``h2`` over raw sockets, one thread per connection,
started through the ``raw`` fixture, plain sockets speak h2c with prior
knowledge. On top of :class:`~tests.servers.h2faults.H2Peer` they add
:class:`SniffingPeer`, which also parses every byte the client sends with
``hyperframe`` (independently of the server's ``h2`` state machine), so a test
can see frames ``h2`` would swallow (an RST_STREAM on a stream already
closed) and decode request header blocks with its own ``hpack.Decoder``
(to see how each field was encoded: ``hpack.NeverIndexedHeaderTuple`` for a
never-indexed literal).

Everything a test may check goes through the server's ``signal()`` events and
``shared`` dict, never through timing. Frame signals of a :class:`SniffingPeer`:

* ``("client-rst", (connection_index, stream_id, error_code))`` per RST_STREAM;
* ``("client-goaway", (connection_index, error_code, last_stream_id))`` per GOAWAY;
* ``("client-end-stream", (connection_index, stream_id))`` per DATA/HEADERS
  frame carrying END_STREAM.

``EARLY_CONFIG`` is an nginx config (for ``h2nginx.run_nginx``) with h2c and
``location = /early { return 200 "early\\n"; }``, which answers without reading
the request body.
"""

from __future__ import annotations

import contextlib
import json
import select
import time
from collections.abc import Callable

import h2.errors
import h2.events
import h2.exceptions
import hpack
import hyperframe.frame

from tests.servers.app import pattern
from tests.servers.h2faults import (
    H2Peer,
    H2Request,
    _pending,
    answer_until_closed,
    first_connection,
    ok,
)
from tests.servers.h2nginx import config
from tests.servers.raw import ConnectionClosedByPeer, RawConnection

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


# -- frame sniffing --------------------------------------------------------------------


class FrameSniffer:
    """Parses the client-to-server byte stream into hyperframe frames, decodes
    every request header block with its own ``hpack.Decoder`` and reports the
    frames tests care about as server signals."""

    def __init__(self, conn: RawConnection) -> None:
        self.conn = conn
        self.server = conn.server
        self._buf = bytearray()
        self._preface = False
        self.frames: list[hyperframe.frame.Frame] = []
        self.decoder = hpack.Decoder()
        self._block: bytearray | None = None
        self._block_sid = 0
        self.header_blocks: list[tuple[int, list[hpack.HeaderTuple]]] = []
        """(stream_id, fields as hpack decoded them, raw=True), in wire order."""

    def feed(self, data: bytes) -> None:
        self._buf += data
        if not self._preface:
            if len(self._buf) < len(PREFACE):
                return
            assert bytes(self._buf[: len(PREFACE)]) == PREFACE, bytes(self._buf[:24])
            del self._buf[: len(PREFACE)]
            self._preface = True
        while len(self._buf) >= 9:
            frame, length = hyperframe.frame.Frame.parse_frame_header(memoryview(self._buf[:9]))
            if len(self._buf) < 9 + length:
                return
            body = bytes(self._buf[9 : 9 + length])
            del self._buf[: 9 + length]
            frame.parse_body(memoryview(body))
            self._on_frame(frame)

    def _on_frame(self, frame: hyperframe.frame.Frame) -> None:
        self.frames.append(frame)
        idx = self.conn.index
        sid = frame.stream_id
        if isinstance(frame, hyperframe.frame.RstStreamFrame):
            self.server.signal("client-rst", (idx, sid, frame.error_code))
        elif isinstance(frame, hyperframe.frame.GoAwayFrame):
            self.server.signal("client-goaway", (idx, frame.error_code, frame.last_stream_id))
        if isinstance(frame, (hyperframe.frame.DataFrame, hyperframe.frame.HeadersFrame)):
            if "END_STREAM" in frame.flags:
                self.server.signal("client-end-stream", (idx, sid))
        if isinstance(frame, hyperframe.frame.HeadersFrame):
            self._block = bytearray(frame.data)
            self._block_sid = sid
        elif isinstance(frame, hyperframe.frame.ContinuationFrame) and self._block is not None:
            self._block += frame.data
        else:
            return
        if "END_HEADERS" in frame.flags:
            fields = list(self.decoder.decode(bytes(self._block), raw=True))
            self.header_blocks.append((self._block_sid, fields))
            self.server.signal("header-block", (idx, self._block_sid, fields))
            self._block = None


class SniffingPeer(H2Peer):
    """An :class:`H2Peer` whose every received byte also goes through a
    :class:`FrameSniffer` (``self.sniffer``) before ``h2`` sees it."""

    def __init__(self, conn: RawConnection, *args: object, **kwargs: object) -> None:
        self.sniffer = FrameSniffer(conn)
        super().__init__(conn, *args, **kwargs)  # type: ignore[arg-type]

    def _received(self, data: bytes) -> None:
        self.sniffer.feed(data)

    def drain_until_closed(self) -> None:
        """Read until the client goes away with the sniffer only: the server's
        ``h2`` may be bypassed by then, or refuse DATA the client still sends."""
        sniff_raw_until_closed(self)


def sniff_raw_until_closed(peer: SniffingPeer, timeout: float = 10.0) -> None:
    """After the server's ``h2`` state machine has been bypassed (frames sent
    straight onto the wire), keep reading the client's frames with the sniffer
    only, until the client closes or the server stops."""
    sock = peer.conn.sock
    deadline = time.monotonic() + timeout
    with contextlib.suppress(OSError):
        while not peer.server.stopping.is_set() and time.monotonic() < deadline:
            ready, _, _ = select.select([sock], [], [], 0.1)
            if not ready and not _pending(sock):
                continue
            data = sock.recv(65536)
            if not data:
                return
            peer.sniffer.feed(data)


def serve_sniffing(conn: RawConnection, on_request: Callable[[H2Peer, H2Request], None]) -> None:
    """``h2faults.serve`` with a :class:`SniffingPeer`: ``on_request`` for every
    complete request, until the client closes."""
    answer_until_closed(SniffingPeer(conn), on_request)


# -- 4: many unread large streams on one connection ----------------------------------------

BIG_EACH = 8 * 1024 * 1024
"""Body of each /big response: twice the client's per-stream window."""


def big_streams(conn: RawConnection) -> None:
    """Paths starting with /big: ``BIG_EACH`` bytes of ``pattern``, sent as fast
    as the client's windows allow; anything else :func:`h2faults.ok`
    (b"conn{index}:{path}").

    Whenever the server has body data left but no stream of it can send
    anything (stream or connection window closed) it signals ``("stalled",
    {"big": number of /big requests so far, "conn_window": its connection
    send window, "stream_window": the client's INITIAL_WINDOW_SIZE, "sent":
    {stream_id: bytes of body sent}})``, once per number of /big requests.
    """
    peer = H2Peer(conn)
    sizes: dict[int, int] = {}
    signalled: set[int] = set()

    def on_request(peer: H2Peer, req: H2Request) -> None:
        if req.path.startswith(b"/big"):
            sizes[req.stream_id] = BIG_EACH
            peer.respond(req.stream_id, pattern(BIG_EACH))
        else:
            ok(peer, req)

    def signal_stall() -> None:
        pending = [sid for sid in peer._out if peer._out[sid]]
        if pending and len(sizes) not in signalled:
            blocked = all(
                min(peer.h2.local_flow_control_window(sid), peer.h2.max_outbound_frame_size) <= 0
                for sid in pending
            )
            if blocked:
                signalled.add(len(sizes))
                sent = {
                    sid: size - sum(len(p) for p in peer._out.get(sid, []))
                    for sid, size in sizes.items()
                }
                conn.server.signal(
                    "stalled",
                    {
                        "big": len(sizes),
                        "conn_window": peer.h2.outbound_flow_control_window,
                        "stream_window": peer.h2.remote_settings.initial_window_size,
                        "sent": sent,
                    },
                )

    answer_until_closed(peer, on_request, signal_stall)


# -- 6: complete response while the request body is still coming -------------------------------


def early_response(conn: RawConnection) -> None:
    """Answer every request as soon as its HEADERS arrive, with a complete
    response (200 b"early:{path}", END_STREAM), without waiting for the request
    body; go on reading (and acknowledging) whatever the client sends. Signals
    ``("responded", (index, stream_id))``; the sniffer reports what the client
    does with the stream afterwards (``client-rst`` / ``client-end-stream``).
    Records ``shared["body-bytes"]``: request body bytes received per stream.
    """
    peer = SniffingPeer(conn)
    received: dict[int, int] = conn.server.shared.setdefault("body-bytes", {})  # type: ignore[assignment]
    with contextlib.suppress(ConnectionClosedByPeer):
        while True:
            events = peer.receive()
            assert events is not None
            for event in events:
                if isinstance(event, h2.events.RequestReceived):
                    req = peer.requests[event.stream_id]
                    peer.respond(req.stream_id, b"early:" + req.path)
                    peer.flush()
                    conn.server.signal("responded", (conn.index, req.stream_id))
                elif isinstance(event, h2.events.DataReceived):
                    sid = event.stream_id
                    received[sid] = received.get(sid, 0) + len(event.data or b"")
            if peer.goaway_received:
                peer.flush()
                sniff_raw_until_closed(peer)
                return
            peer.flush()


# -- 8: RST_STREAM on a stream the client never opened ---------------------------------------


def rst_idle_stream(idle_stream_id: int) -> Callable[[RawConnection], None]:
    """First connection: when the first request is complete, leave it
    unanswered and send RST_STREAM(CANCEL) for ``idle_stream_id``, a stream the
    client never opened (written straight onto the wire: h2 will not reset a
    stream it does not know). Signals ``("idle-rst-sent", (stream of the
    request, idle_stream_id))``, then sniffs what the client sends until it
    closes (``client-goaway`` carries the GOAWAY's error code). Later
    connections: :func:`h2faults.ok_server`."""

    def handler(conn: RawConnection) -> None:
        peer = SniffingPeer(conn)
        with contextlib.suppress(ConnectionClosedByPeer):
            peer.receive_until_ended(1)
            [sid] = [r.stream_id for r in peer.requests.values() if r.ended]
            frame = hyperframe.frame.RstStreamFrame(idle_stream_id)
            frame.error_code = h2.errors.ErrorCodes.CANCEL
            conn.send(frame.serialize())
            conn.server.signal("idle-rst-sent", (sid, idle_stream_id))
        sniff_raw_until_closed(peer)

    return first_connection(handler)


# -- 9: content-length that does not match the DATA ----------------------------------------------

WRONG_LENGTH: dict[bytes, bytes] = {
    b"/short": b"12345",  # content-length: 10, 5 bytes
    b"/long": b"123456789012345",  # content-length: 10, 15 bytes
}


def wrong_content_length(together: int) -> Callable[[RawConnection], None]:
    """Hold the first ``together`` complete requests until all are in, then
    answer them in one write, in stream order: paths in ``WRONG_LENGTH`` with
    ``content-length: 10`` and that many bytes (DATA + END_STREAM), every
    other path :func:`h2faults.ok`. Later requests are answered as they come.
    Signals ``("answered", {path: stream id})`` for the first batch."""

    def on_request(peer: H2Peer, req: H2Request) -> None:
        body = WRONG_LENGTH.get(req.path)
        if body is None:
            ok(peer, req)
        else:
            peer.respond(req.stream_id, body, headers=[(b"content-length", b"10")])

    def handler(conn: RawConnection) -> None:
        peer = SniffingPeer(conn)
        with contextlib.suppress(ConnectionClosedByPeer):
            peer.receive_until_ended(together)
            held = sorted(peer.requests)
            for sid in held:
                on_request(peer, peer.requests[sid])
            peer.flush()
            conn.server.signal("answered", {peer.requests[sid].path: sid for sid in held})
            answer_until_closed(peer, on_request)

    return handler


# -- 10: request header blocks decoded at the server ---------------------------------------------


def header_recorder(conn: RawConnection) -> None:
    """Answers everything with :func:`h2faults.ok`; its sniffer signals
    ``("header-block", (index, stream_id, fields))`` for every request head,
    decoded by an ``hpack.Decoder`` of its own (raw=True: the field types tell
    how each was encoded)."""
    serve_sniffing(conn, ok)


# -- 13: complete response + RST_STREAM(NO_ERROR) while the client uploads -------------------------

EARLY_BODY = b"early\n"


RESET_WHEN = ("headers", "first-data", "window-used-up")


def respond_and_reset(when: str) -> Callable[[RawConnection], None]:
    """Answer a request whose body is still coming and reset it, all in ONE
    socket write: WINDOW_UPDATE (connection and stream), response HEADERS,
    DATA(END_STREAM) b"early\\n" and RST_STREAM(NO_ERROR) (RFC 9113 §8.1: a
    server may do this to ask the client to stop sending the body).

    The server never acknowledges request data, so a client uploading more
    than 65,535 bytes has body data waiting for window. ``when``: ``"headers"``,
    as soon as the request HEADERS are in (whether the client has data waiting
    then is a race); ``"first-data"``, once HEADERS and some DATA are in (the
    client has pumped what the windows allow and holds the rest);
    ``"window-used-up"``, once the whole connection window (65,535 bytes) has
    been received.

    Signals ``("burst-sent", (index, stream_id, body bytes received))``; then
    only sniffs until the client closes (the server's h2 would refuse the
    DATA a client may still have in flight).
    """
    assert when in RESET_WHEN, when

    def ready(sid: int, received: int) -> bool:
        if when == "headers":
            return bool(sid)
        if when == "first-data":
            return bool(sid) and received > 0
        return bool(sid) and received >= 65535

    def handler(conn: RawConnection) -> None:
        peer = SniffingPeer(conn, ack_data=False)
        received = 0
        sid = 0
        with contextlib.suppress(ConnectionClosedByPeer):
            while not ready(sid, received):
                events = peer.receive()
                assert events is not None
                for event in events:
                    if isinstance(event, h2.events.RequestReceived) and not sid:
                        sid = int(event.stream_id or 0)
                    elif isinstance(event, h2.events.DataReceived):
                        received += int(event.flow_controlled_length or 0)
                peer.flush()  # SETTINGS ACK and the like, in writes of their own
            h = peer.h2
            h.increment_flow_control_window(1024 * 1024)
            h.increment_flow_control_window(1024 * 1024, stream_id=sid)
            h.send_headers(sid, [(b":status", b"200"), (b"content-type", b"text/plain")])
            h.send_data(sid, EARLY_BODY, end_stream=True)
            h.reset_stream(sid, h2.errors.ErrorCodes.NO_ERROR)
            conn.send(h.data_to_send())  # one write
            conn.server.signal("burst-sent", (conn.index, sid, received))
        sniff_raw_until_closed(peer)

    return handler


def body_length(conn: RawConnection) -> None:
    """Reads each request body to its end (acknowledging data as it arrives)
    and answers JSON ``{"length": n}``."""

    def on_request(peer: H2Peer, req: H2Request) -> None:
        peer.respond(req.stream_id, json.dumps({"length": len(req.body)}).encode())

    serve_sniffing(conn, on_request)


# -- nginx with /early ------------------------------------------------------------------------

EARLY_CONFIG = config(
    """\
    keepalive_timeout 600s;
    client_max_body_size 0;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{h2c_port} http2 backlog=1024;
        location = /early {{ return 200 "early\\n"; }}
        location = /small {{ return 200 "hello h2\\n"; }}
    }}
""",
    worker_connections=1024,
)
