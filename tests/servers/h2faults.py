"""HTTP/2 fault servers built on the ``h2`` library over raw sockets.

They run on ``raw.RawServer`` (one thread per connection, started by the
``raw`` fixture); a handler wraps the accepted socket in an :class:`H2Peer`,
the server side of an ``h2`` connection, and decides what to do with each
request. Plain sockets speak h2c with prior knowledge (the client uses
``http1=False, http2=True``); with a TLS context offering ALPN ``h2`` (fixture
``server_h2_context``) the same handlers serve ``https://``.

Everything a test may want to check is reported through the server's
``signal()`` events and ``shared`` dict, never through timing.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame

from tests.servers.raw import ConnectionClosedByPeer, RawConnection

S = h2.settings.SettingCodes


@dataclass
class H2Request:
    stream_id: int
    headers: list[tuple[bytes, bytes]]
    connection_index: int
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    after_settings_ack: bool = False
    """The client had acknowledged our SETTINGS when it sent this request."""

    @property
    def path(self) -> bytes:
        return self.header(b":path")

    def header(self, name: bytes) -> bytes:
        return next(v for k, v in self.headers if k == name)


class H2Peer:
    """The server side of one HTTP/2 connection on a blocking socket."""

    def __init__(
        self,
        conn: RawConnection,
        settings: dict[int, int] | None = None,
        *,
        ack_data: bool = True,
        late_settings: bool = False,
    ) -> None:
        self.conn = conn
        self.server = conn.server
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.initiate_connection()
        if settings:
            # Pending until the client ACKs, as RFC 9113 wants: h2 enforces
            # the new values only from then on.
            self.h2.update_settings(settings)
        self.ack_data = ack_data
        self.settings_acked = not settings
        self.requests: dict[int, H2Request] = {}
        self.resets: list[tuple[int, int]] = []
        """(stream_id, error_code) of every RST_STREAM the client sent."""
        self.goaway_received = False
        self._out: dict[int, list[bytes]] = {}
        self._out_end: dict[int, list[tuple[bytes, bytes]] | None] = {}
        if not late_settings:
            self.flush()
        # else: the SETTINGS go out with the first answer, after the client's
        # first requests are in (allowed: nothing says how soon they must come)

    # -- reading ---------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> list[h2.events.Event] | None:
        """Events from the next read; None when ``timeout`` passed with nothing to read."""
        if timeout is not None:
            ready, _, _ = select.select([self.conn.sock], [], [], timeout)
            if not ready and not _pending(self.conn.sock):
                return None
        data = self.conn.sock.recv(65536)
        if not data:
            raise ConnectionClosedByPeer
        self._received(data)
        events = self.h2.receive_data(data)
        for event in events:
            self._track(event)
        return events

    def _received(self, data: bytes) -> None:
        """Every byte read, before ``h2`` sees it (a hook for subclasses)."""

    def receive_until_ended(self, count: int) -> None:
        """Read, flushing what the reads call for, until ``count`` requests are complete."""
        while sum(1 for r in self.requests.values() if r.ended) < count:
            self.receive()
            self.flush()

    def _track(self, event: h2.events.Event) -> None:
        idx = self.conn.index
        if isinstance(event, h2.events.RequestReceived):
            sid = event.stream_id
            assert sid is not None
            self.requests[sid] = H2Request(
                sid, list(event.headers or []), idx, after_settings_ack=self.settings_acked
            )
        elif isinstance(event, h2.events.DataReceived):
            sid = event.stream_id
            assert sid is not None
            req = self.requests.get(sid)
            if req is not None:
                req.body += event.data or b""
            if self.ack_data and event.flow_controlled_length:
                with contextlib.suppress(h2.exceptions.StreamClosedError):
                    self.h2.acknowledge_received_data(event.flow_controlled_length, sid)
        elif isinstance(event, h2.events.StreamEnded):
            sid = event.stream_id
            assert sid is not None
            if sid in self.requests:
                self.requests[sid].ended = True
        elif isinstance(event, h2.events.StreamReset):
            sid = event.stream_id
            assert sid is not None
            code = int(event.error_code or 0)
            self.resets.append((sid, code))
            self._out.pop(sid, None)
            self._out_end.pop(sid, None)
            self.server.signal("client-reset", (idx, sid, code))
        elif isinstance(event, h2.events.SettingsAcknowledged):
            self.settings_acked = True
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway_received = True

    # -- writing ---------------------------------------------------------------

    def respond(
        self,
        stream_id: int,
        body: bytes = b"ok",
        status: int = 200,
        headers: list[tuple[bytes, bytes]] | None = None,
        trailers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Queue a response; its body goes out as the client's windows allow."""
        head = [(b":status", str(status).encode()), *(headers or [])]
        if not body and trailers is None:
            self.h2.send_headers(stream_id, head, end_stream=True)
            return
        self.h2.send_headers(stream_id, head)
        self._out[stream_id] = [body] if body else []
        self._out_end[stream_id] = trailers

    def send_goaway(self, last_stream_id: int, code: int = 0) -> None:
        """GOAWAY straight onto the wire, bypassing h2's state machine: h2 refuses
        to send anything after its own GOAWAY, but RFC 9113 (6.8) wants the
        streams up to ``last_stream_id`` to be completed after it."""
        self.flush()
        frame = hyperframe.frame.GoAwayFrame(0)
        frame.last_stream_id = last_stream_id
        frame.error_code = code
        self.conn.send(frame.serialize())

    def reset(self, stream_id: int, code: int) -> None:
        self.h2.reset_stream(stream_id, code)

    def sending(self) -> bool:
        return bool(self._out)

    def unsent(self) -> int:
        """Body bytes queued that the client's windows did not let out yet."""
        return sum(len(piece) for pieces in self._out.values() for piece in pieces)

    def _pump(self) -> None:
        for sid in list(self._out):
            pieces = self._out[sid]
            while pieces:
                window = min(
                    self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size
                )
                if window <= 0:
                    break
                piece = pieces[0]
                self.h2.send_data(sid, piece[:window])
                self.server.shared["sent"] = int(self.server.shared.get("sent", 0)) + min(
                    window, len(piece)
                )
                if len(piece) > window:
                    pieces[0] = piece[window:]
                else:
                    pieces.pop(0)
            if not pieces:
                trailers = self._out_end.pop(sid)
                del self._out[sid]
                if trailers is None:
                    self.h2.end_stream(sid)
                else:
                    self.h2.send_headers(sid, trailers, end_stream=True)

    def flush(self) -> None:
        self._pump()
        data = self.h2.data_to_send()
        if data:
            self.conn.send(data)

    def drain_until_closed(self) -> None:
        """Keep reading (and answering nothing) until the client goes away."""
        with contextlib.suppress(ConnectionClosedByPeer, OSError, h2.exceptions.ProtocolError):
            while not self.server.stopping.is_set():
                if self.receive(timeout=0.2) is not None:
                    self.flush()


def _pending(sock: socket.socket) -> bool:
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


OnRequest = Callable[[H2Peer, H2Request], None]


def serve(
    conn: RawConnection,
    on_request: OnRequest,
    settings: dict[int, int] | None = None,
    *,
    on_batch: Callable[[H2Peer, list[H2Request]], None] | None = None,
    late_settings: bool = False,
) -> None:
    """Read frames until the client closes; call ``on_request`` for each complete request.

    Requests completed by one read are handed over together (after every event
    of that read is processed), so streams that arrived together are open at
    the same time as far as the server is concerned.
    """
    peer = H2Peer(conn, settings, late_settings=late_settings)
    with contextlib.suppress(ConnectionClosedByPeer):
        while True:
            events = peer.receive()
            assert events is not None
            done = [
                peer.requests[e.stream_id]
                for e in events
                if isinstance(e, h2.events.StreamEnded) and e.stream_id in peer.requests
            ]
            if peer.goaway_received:
                # the client is closing (h2 sends nothing more after a GOAWAY)
                peer.flush()
                peer.drain_until_closed()
                return
            if on_batch is not None:
                on_batch(peer, done)
            for req in done:
                on_request(peer, req)
            peer.flush()


# -- handlers -------------------------------------------------------------------


def answer_until_closed(
    peer: H2Peer, on_request: OnRequest, after_flush: Callable[[], None] | None = None
) -> None:
    """Read until the client closes: ``on_request`` for each request as its
    StreamEnded comes in (one at a time, not batched as in :func:`serve`), a
    flush after every read, then ``after_flush``. After a client GOAWAY: one
    more flush, then :meth:`H2Peer.drain_until_closed`."""
    with contextlib.suppress(ConnectionClosedByPeer):
        while True:
            events = peer.receive()
            assert events is not None
            for event in events:
                if isinstance(event, h2.events.StreamEnded) and event.stream_id in peer.requests:
                    on_request(peer, peer.requests[event.stream_id])
            if peer.goaway_received:
                peer.flush()
                peer.drain_until_closed()
                return
            peer.flush()
            if after_flush is not None:
                after_flush()


def ok(peer: H2Peer, req: H2Request) -> None:
    """200 with b"conn{index}:{path}"; records the request in ``shared["requests"]``."""
    _record(peer, req)
    peer.respond(req.stream_id, b"conn%d:%s" % (req.connection_index, req.path))


def _record(peer: H2Peer, req: H2Request) -> None:
    requests = peer.server.shared.setdefault("requests", [])
    assert isinstance(requests, list)
    requests.append(req)  # list.append is atomic: handlers of several connections share it


def ok_server(conn: RawConnection) -> None:
    """Answer everything with :func:`ok`."""
    serve(conn, ok)


def first_connection(
    handler: Callable[[RawConnection], None],
) -> Callable[[RawConnection], None]:
    """``handler`` on the server's first connection, :func:`ok_server` on every later one."""

    def dispatch(conn: RawConnection) -> None:
        if conn.index > 0:
            ok_server(conn)
        else:
            handler(conn)

    return dispatch


def echo_server(conn: RawConnection) -> None:
    """200 with JSON: the request headers (pseudo-headers included) and the body length."""

    def on_request(peer: H2Peer, req: H2Request) -> None:
        _record(peer, req)
        payload = {
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in req.headers],
            "body_length": len(req.body),
        }
        peer.respond(
            req.stream_id,
            json.dumps(payload).encode(),
            headers=[(b"content-type", b"application/json"), (b"x-mixed-case", b"Value")],
        )

    serve(conn, on_request)


def goaway_after(count: int, last_index: int) -> Callable[[RawConnection], None]:
    """First connection: once ``count`` requests are in flight, send GOAWAY with
    the id of the ``last_index``-th stream (1-based) as last-stream-id, answer the
    streams up to it, leave the others unanswered, and keep the connection open
    until the client closes it. Later connections answer everything.
    """

    def handler(conn: RawConnection) -> None:
        peer = H2Peer(conn)
        with contextlib.suppress(ConnectionClosedByPeer):
            peer.receive_until_ended(count)
            ids = sorted(peer.requests)
            last = ids[last_index - 1]
            peer.send_goaway(last)
            conn.server.signal("goaway-sent", (last, ids))
            for sid in ids:
                if sid <= last:
                    ok(peer, peer.requests[sid])
            peer.flush()
            peer.drain_until_closed()
            conn.server.signal("goaway-conn-closed", peer.goaway_received)

    return first_connection(handler)


def reset_some(code: int) -> Callable[[RawConnection], None]:
    """RST_STREAM with ``code`` for paths starting with /reset; everything else :func:`ok`."""

    def on_request(peer: H2Peer, req: H2Request) -> None:
        if req.path.startswith(b"/reset"):
            peer.reset(req.stream_id, code)
        else:
            ok(peer, req)

    return lambda conn: serve(conn, on_request)


TINY_WINDOW = 1024


def tiny_windows(conn: RawConnection) -> None:
    """INITIAL_WINDOW_SIZE 1024 (connection window left at 65,535) and
    MAX_FRAME_SIZE at its minimum; data is acknowledged as it arrives, so the
    client can never have more than 1 KiB in flight per stream once it has
    seen the SETTINGS. h2 itself fails the connection if the client sends past
    a window (that shows up as a handler error). Answers JSON length + sha256.
    """
    import hashlib

    def on_request(peer: H2Peer, req: H2Request) -> None:
        _record(peer, req)
        body = json.dumps(
            {"length": len(req.body), "sha256": hashlib.sha256(req.body).hexdigest()}
        ).encode()
        peer.respond(req.stream_id, body)

    serve(conn, on_request, {S.INITIAL_WINDOW_SIZE: TINY_WINDOW})


def max_streams_one(conn: RawConnection, late_settings: bool = False) -> None:
    """SETTINGS_MAX_CONCURRENT_STREAMS = 1 (sent only after the first requests
    are in with ``late_settings``).

    Streams the client opens beyond one are refused (RST_STREAM
    REFUSED_STREAM, which RFC 9113 lets the client retry); that can happen
    legitimately only before the client has seen the SETTINGS. Records in
    ``shared``: ``max_open_after_ack`` (streams open at once at this server
    after the client acknowledged the SETTINGS: must stay 1),
    ``max_open`` (including the time before), ``refused``.
    """
    lock = threading.Lock()
    shared = conn.server.shared
    with lock:
        shared.setdefault("max_open", 0)
        shared.setdefault("max_open_after_ack", 0)
        shared.setdefault("refused", 0)
    open_streams: set[int] = set()

    def on_batch(peer: H2Peer, done: list[H2Request]) -> None:
        # every request of the batch arrived while the others were open
        for req in done:
            open_streams.add(req.stream_id)
            n = len(open_streams)
            shared["max_open"] = max(int(shared["max_open"]), n)  # type: ignore[call-overload]
            if req.after_settings_ack:
                key = "max_open_after_ack"
                shared[key] = max(int(shared[key]), n)  # type: ignore[call-overload]
        first, rest = done[:1], done[1:]
        for req in rest:
            peer.reset(req.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            open_streams.discard(req.stream_id)
            shared["refused"] = int(shared["refused"]) + 1  # type: ignore[call-overload]
        for req in first:
            ok(peer, req)
            open_streams.discard(req.stream_id)

    def nothing(peer: H2Peer, req: H2Request) -> None:
        pass

    try:
        serve(
            conn,
            nothing,
            {S.MAX_CONCURRENT_STREAMS: 1},
            on_batch=on_batch,
            late_settings=late_settings,
        )
    except h2.exceptions.TooManyStreamsError:
        shared["max_open_after_ack"] = 99  # the client broke the acknowledged limit


def max_streams_one_late_settings(conn: RawConnection) -> None:
    max_streams_one(conn, late_settings=True)


def trailers_server(conn: RawConnection) -> None:
    """A body followed by trailers (HEADERS with END_STREAM)."""

    def on_request(peer: H2Peer, req: H2Request) -> None:
        _record(peer, req)
        peer.respond(
            req.stream_id,
            b"body before trailers",
            headers=[(b"trailer", b"x-checksum")],
            trailers=[(b"x-checksum", b"abc"), (b"grpc-status", b"0")],
        )

    serve(conn, on_request)


def answer_one_then_close(goaway: bool) -> Callable[[RawConnection], None]:
    """First connection: answer one request, then (GOAWAY NO_ERROR and) close the
    idle connection, signalling "idle-closed". Later connections: :func:`ok`."""

    def handler(conn: RawConnection) -> None:
        peer = H2Peer(conn)
        while not any(r.ended for r in peer.requests.values()):
            peer.receive()
        req = next(r for r in peer.requests.values() if r.ended)
        ok(peer, req)
        peer.flush()
        if goaway:
            peer.send_goaway(req.stream_id)
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        conn.server.signal("idle-closed", conn.index)

    return first_connection(handler)


def hang_some(conn: RawConnection) -> None:
    """Paths starting with /hang are never answered (signal "hanging" with the
    stream id); everything else :func:`ok`. Client resets arrive as "client-reset"."""

    def on_request(peer: H2Peer, req: H2Request) -> None:
        if req.path.startswith(b"/hang"):
            _record(peer, req)
            peer.server.signal("hanging", req.stream_id)
        else:
            ok(peer, req)

    serve(conn, on_request)


def stops_reading(conn: RawConnection) -> None:
    """Read up to the first complete request, then neither read nor answer anything."""
    peer = H2Peer(conn, {S.INITIAL_WINDOW_SIZE: TINY_WINDOW}, ack_data=False)
    with contextlib.suppress(ConnectionClosedByPeer):
        while not peer.requests:
            peer.receive()
            peer.flush()
    conn.server.signal("stopped-reading", conn.index)
    conn.server.stopping.wait(30)


def garbage_after(count: int) -> Callable[[RawConnection], None]:
    """First connection: once ``count`` requests are complete, a SETTINGS frame of
    illegal length (5) on stream 0, a connection error (FRAME_SIZE_ERROR). Later
    connections: :func:`ok`."""

    def handler(conn: RawConnection) -> None:
        peer = H2Peer(conn)
        with contextlib.suppress(ConnectionClosedByPeer):
            peer.receive_until_ended(count)
            conn.send(b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"\x00" * 5)
            conn.server.signal("garbage-sent", conn.index)
            conn.wait_closed_by_peer(timeout=10)

    return first_connection(handler)


garbage_after_request = garbage_after(1)


BIG = 32 * 1024 * 1024


def big_body_stall_probe(conn: RawConnection) -> None:
    """/big: ``BIG`` bytes of pattern, as fast as the client's windows allow.

    Signals ("window", client's advertised INITIAL_WINDOW_SIZE) once the
    request is in, ("stalled", bytes_sent) the first time it has waited 0.5 s
    for a WINDOW_UPDATE with data left to send, and ("sent-all", bytes) at the
    end. Other paths: :func:`ok`.
    """
    from tests.servers.app import pattern

    peer = H2Peer(conn)
    stalled = False
    with contextlib.suppress(ConnectionClosedByPeer):
        while True:
            events = peer.receive(timeout=0.5 if peer.sending() and not stalled else None)
            if events is None:
                stalled = True
                conn.server.signal("stalled", int(conn.server.shared.get("sent", 0)))
                continue
            for event in events:
                if isinstance(event, h2.events.StreamEnded) and event.stream_id in peer.requests:
                    req = peer.requests[event.stream_id]
                    if req.path == b"/big":
                        conn.server.shared["sent"] = 0
                        window = peer.h2.remote_settings.initial_window_size
                        conn.server.signal("window", window)
                        peer.respond(req.stream_id, pattern(BIG))
                    else:
                        ok(peer, req)
            was_sending = peer.sending()
            peer.flush()
            if was_sending and not peer.sending():
                conn.server.signal("sent-all", int(conn.server.shared.get("sent", 0)))


PARALLEL, PARALLEL_SIZE = 20, 1024 * 1024


def window_room_probe(conn: RawConnection) -> None:
    """Waits for PARALLEL requests, answers each with PARALLEL_SIZE bytes of
    pattern as far as the windows the client opened so far allow, without
    reading on, then signals ("unsent", bytes still waiting for a
    WINDOW_UPDATE) and serves the rest as usual."""
    from tests.servers.app import pattern

    peer = H2Peer(conn)
    with contextlib.suppress(ConnectionClosedByPeer):
        peer.receive_until_ended(PARALLEL)
        for req in peer.requests.values():
            peer.respond(req.stream_id, pattern(PARALLEL_SIZE))
        peer.flush()
        conn.server.signal("unsent", peer.unsent())
        while peer.sending():
            peer.receive()
            peer.flush()
        peer.drain_until_closed()


MALFORMED: dict[bytes, list[tuple[bytes, bytes]]] = {
    b"/upper": [(b"X-Upper", b"v")],
    b"/connection": [(b"connection", b"close")],
    b"/keep-alive": [(b"keep-alive", b"timeout=5")],
    b"/te": [(b"te", b"gzip")],
    b"/pseudo-late": [(b"x-a", b"1"), (b":status", b"200")],
    b"/pseudo-request": [(b":path", b"/x")],
    b"/colon": [(b"x:y", b"1")],
    b"/empty-name": [(b"", b"1")],
    b"/space-name": [(b"x y", b"1")],
    b"/nul": [(b"x-a", b"a\x00b")],
    b"/cr": [(b"x-a", b"a\rb")],
    b"/leading-space": [(b"x-a", b" v")],
    b"/trailing-tab": [(b"x-a", b"v\t")],
}
"""Response header blocks RFC 9113 §8.2 calls malformed, by request path."""


def malformed_headers(conn: RawConnection) -> None:
    """Answer each path in MALFORMED with that header block (h2's own outbound
    checks off so it can be sent); any other path gets a well-formed 200."""
    peer = H2Peer(conn)
    peer.h2.config.validate_outbound_headers = False
    peer.h2.config.normalize_outbound_headers = False

    def on_request(peer: H2Peer, req: H2Request) -> None:
        bad = MALFORMED.get(req.path)
        if bad is None:
            peer.respond(req.stream_id, b"fine:" + req.path)
        elif req.path == b"/pseudo-late":
            peer.h2.send_headers(req.stream_id, bad, end_stream=True)
        else:
            peer.h2.send_headers(req.stream_id, [(b":status", b"200"), *bad], end_stream=True)

    answer_until_closed(peer, on_request)


SAME_HEAD = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
"""The one head :func:`same_head` gives every answer."""


def same_head(conn: RawConnection) -> None:
    """Every answer has the head SAME_HEAD, whatever its body: b"hello" for
    any path but /short, which gets b"hel" (a body shorter than the head
    says); a HEAD request gets the head alone."""
    peer = H2Peer(conn)

    def on_request(peer: H2Peer, req: H2Request) -> None:
        if req.header(b":method") == b"HEAD":
            peer.h2.send_headers(req.stream_id, [(b":status", b"200"), *SAME_HEAD], True)
            return
        body = b"hel" if req.path == b"/short" else b"hello"
        peer.respond(req.stream_id, body, headers=SAME_HEAD)

    answer_until_closed(peer, on_request)
