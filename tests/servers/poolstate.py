"""Scripted servers for the pool's stateful test (``tests/test_pool_state.py``).

One HTTP/1.1 handler and one HTTP/2 (h2c prior knowledge) handler, both run
on ``raw.RawServer``; what a request gets is chosen by its path, whose last
segment is always the test's request id (``rid``):

* ``/ok/<rid>``: 200, body ``ok-<rid>``;
* ``/stream/<rid>``: 200 with ``STREAM_LEN`` bytes of :func:`body_for`, of
  which only the first ``PART`` go out at once; the rest is held until the
  test posts an action for ``rid`` on the shared :class:`Control`:
  ``("release",)`` sends the rest, ``("drop",)`` closes the connection,
  ``("reset", code)`` (HTTP/2) resets the stream, ``("goaway", mode)`` (HTTP/2)
  sends GOAWAY naming the highest stream answered so far (then closes the
  connection if ``mode == "close"``);
* ``/drop/before/<rid>``: the connection is closed without an answer;
  ``/drop/mid/<rid>``: head (Content-Length 100 on HTTP/1.1) and 10 bytes, then close;
* ``/reset/<code>/<rid>`` (HTTP/2): RST_STREAM ``code`` the first time this
  rid arrives, ``ok`` afterwards (a retry after REFUSED_STREAM succeeds);
* ``/goaway/<mode>/<rid>`` (HTTP/2): the first time, GOAWAY whose
  last-stream-id is the highest stream answered so far (below this one, which
  is left unanswered: the client must retry it), then the connection is kept
  (``keep``) or closed (``close``); ``ok`` afterwards.

After a GOAWAY the HTTP/2 handler pings the client; a stream opened after
the PING ACK (so after the client saw the GOAWAY) is refused and recorded in
``Control.violations``. Nothing here sleeps as synchronisation: handlers poll
the ``Control`` at 10 ms while they hold a stream.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable

import h2.errors
import h2.events
import h2.exceptions

from tests.servers.h2faults import H2Peer
from tests.servers.raw import ConnectionClosedByPeer, RawConnection

PART = 1024
STREAM_LEN = 3 * PART
POLL = 0.01

Action = tuple[object, ...]


def body_for(rid: int, n: int = STREAM_LEN) -> bytes:
    unit = b"%d." % rid
    return (unit * (n // len(unit) + 1))[:n]


def ok_body(rid: int) -> bytes:
    return b"ok-%d" % rid


def parse(target: bytes) -> tuple[str, list[str], int]:
    parts = target.decode("ascii").strip("/").split("/")
    return parts[0], parts[1:-1], int(parts[-1])


class Control:
    """What the test tells the servers, and what they report back; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actions: dict[int, Action] = {}
        self._seen: set[str] = set()
        self.violations: list[str] = []
        self.acted: list[tuple[int, Action]] = []

    def post(self, rid: int, action: Action, *, override: bool = True) -> None:
        with self._lock:
            if override or rid not in self._actions:
                self._actions[rid] = action

    def action(self, rid: int) -> Action | None:
        with self._lock:
            return self._actions.get(rid)

    def first(self, key: str) -> bool:
        """True the first time ``key`` is asked about."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            return True

    def violation(self, message: str) -> None:
        with self._lock:
            self.violations.append(message)

    def did(self, rid: int, action: Action) -> None:
        with self._lock:
            self.acted.append((rid, action))

    def reset(self) -> None:
        with self._lock:
            self._actions.clear()
            self.violations.clear()
            self.acted.clear()


def kill_connections(server: object) -> int:
    """Shut down (not close: the handler thread does that) every open
    server-side socket of a RawServer. Returns how many were open."""
    lock = server._lock  # type: ignore[attr-defined]
    with lock:
        conns = list(server._conns)  # type: ignore[attr-defined]
    n = 0
    for conn in conns:
        sock = conn.sock
        if sock.fileno() < 0:
            continue
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
            n += 1
    return n


# -- HTTP/1.1 -------------------------------------------------------------------------


def _wait_action(conn: RawConnection, control: Control, rid: int) -> Action | None:
    """Poll for the test's action on ``rid``; None if the client went away first."""
    while not conn.server.stopping.is_set():
        action = control.action(rid)
        if action is not None:
            return action
        try:
            ready, _, _ = select.select([conn.sock], [], [], POLL)
            if ready:
                data = conn.sock.recv(65536)
                if not data:
                    return None
                conn.buffer += data
        except (OSError, ValueError):
            return None
    return None


def h1_handler(control: Control) -> Callable[[RawConnection], None]:
    def handler(conn: RawConnection) -> None:
        while True:
            req = conn.read_request()
            kind, args, rid = parse(req.target)
            if kind == "ok":
                conn.respond(ok_body(rid))
            elif kind == "stream":
                body = body_for(rid)
                conn.send(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:PART]
                )
                action = _wait_action(conn, control, rid)
                if action is None:
                    return
                if action[0] == "release":
                    conn.send(body[PART:])
                    continue
                control.did(rid, action)
                return  # "drop": RawServer closes the socket
            elif kind == "drop":
                if args[0] == "mid":
                    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
                return
            else:
                control.violation(f"h1: unknown path {req.target!r}")
                return

    return handler


# -- HTTP/2 ---------------------------------------------------------------------------


def h2_handler(control: Control) -> Callable[[RawConnection], None]:
    def handler(conn: RawConnection) -> None:
        with contextlib.suppress(ConnectionClosedByPeer, OSError, ValueError):
            _H2Session(conn, control).run()

    return handler


class _H2Session:
    def __init__(self, conn: RawConnection, control: Control) -> None:
        self.conn = conn
        self.control = control
        self.peer = H2Peer(conn)
        self.held: dict[int, int] = {}
        """Streams answered in part, waiting for the test: stream id -> rid."""
        self.answered = 0
        """Highest stream id the server has acted on (sent a head or reset)."""
        self.goaway_last: int | None = None
        self.ping_acked = False

    def run(self) -> None:
        peer = self.peer
        while not self.conn.server.stopping.is_set():
            events = peer.receive(timeout=POLL)
            if peer.goaway_received:  # the client is closing
                peer.flush()
                peer.drain_until_closed()
                return
            for event in events or ():
                if isinstance(event, h2.events.StreamEnded) and event.stream_id in peer.requests:
                    # the client may have reset it already (a cancelled request)
                    with contextlib.suppress(h2.exceptions.ProtocolError):
                        if self.on_request(event.stream_id):
                            return
                elif isinstance(event, h2.events.StreamReset):
                    self.held.pop(event.stream_id, None)
                elif isinstance(event, h2.events.PingAckReceived):
                    self.ping_acked = True
            for sid, rid in list(self.held.items()):
                action = self.control.action(rid)
                if action is not None:
                    del self.held[sid]
                    with contextlib.suppress(h2.exceptions.ProtocolError):
                        if self.on_action(sid, rid, action):
                            return
            peer.flush()

    def _ok(self, sid: int, rid: int) -> None:
        self.answered = max(self.answered, sid)
        self.peer.respond(sid, ok_body(rid))

    def _goaway(self) -> None:
        last = self.answered
        self.goaway_last = last
        self.peer.send_goaway(last)
        self.peer.h2.ping(b"goaway!!")
        self.peer.flush()

    def on_request(self, sid: int) -> bool:
        """Serve a complete request; True when the connection is to be closed."""
        peer = self.peer
        req = peer.requests[sid]
        if self.goaway_last is not None and sid > self.goaway_last:
            if self.ping_acked:
                self.control.violation(
                    f"h2: stream {sid} ({req.path!r}) opened after GOAWAY "
                    f"(last-stream-id {self.goaway_last}) was acknowledged"
                )
                peer.reset(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
            # else: sent before the client saw the GOAWAY; ignored, as RFC 9113
            # 6.8 says: the client retries it elsewhere
            return False
        kind, args, rid = parse(req.path)
        if kind == "ok":
            self._ok(sid, rid)
        elif kind == "stream":
            self.answered = max(self.answered, sid)
            body = body_for(rid)
            peer.h2.send_headers(
                sid, [(b":status", b"200"), (b"content-length", b"%d" % len(body))]
            )
            peer.h2.send_data(sid, body[:PART])
            self.held[sid] = rid
        elif kind == "drop":
            if args[0] == "mid":
                peer.h2.send_headers(sid, [(b":status", b"200"), (b"content-length", b"100")])
                peer.h2.send_data(sid, b"x" * 10)
                peer.flush()
            return True
        elif kind == "reset":
            if self.control.first(f"reset-{rid}"):
                self.answered = max(self.answered, sid)
                peer.reset(sid, int(args[0]))
            else:
                self._ok(sid, rid)
        elif kind == "goaway":
            if self.control.first(f"goaway-{rid}"):
                self._goaway()
                return args[0] == "close"
            self._ok(sid, rid)
        else:
            self.control.violation(f"h2: unknown path {req.path!r}")
            peer.reset(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
        return False

    def on_action(self, sid: int, rid: int, action: Action) -> bool:
        """The test's action on a held stream; True when the connection is to be closed."""
        peer = self.peer
        name = action[0]
        if name == "release":
            body = body_for(rid)
            peer._out[sid] = [body[PART:]]
            peer._out_end[sid] = None
            return False
        self.control.did(rid, action)
        if name == "reset":
            code = action[1]
            assert isinstance(code, int)
            peer.reset(sid, code)
            return False
        if name == "drop":
            return True
        if name == "goaway":
            self._goaway()
            if action[1] == "close":
                return True
            # The held stream is at or below last-stream-id: it may (and
            # here does) complete after the GOAWAY (RFC 9113 6.8).
            self.held[sid] = rid
            self.control.post(rid, ("release",))
            return False
        self.control.violation(f"h2: unknown action {action!r}")
        return False
