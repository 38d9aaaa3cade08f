"""Upstreams behind the gateway of ``test_gateway.py``: raw-socket servers and nginx.

The raw handlers run on :class:`tests.servers.raw.RawServer` (one thread per
connection). A server is shared by the tests of a module, so every request
carries a marker of its own in the path and every signal carries the request
target: :func:`wait_signal` waits for one target's signal, ignoring the rest.

* :func:`named` answers ``name:target`` (``/hold`` targets: only once
  ``shared["release"]`` is set), so a test sees which upstream served it.
* :func:`faults` picks a behaviour by a word in the target: ``/hang`` (no
  answer until the client closes), ``/partial`` (part of a large body, then
  wait for the close), ``/reset`` and ``/reset-chunked`` (part of a body, then
  a TCP RST), ``/drip`` (a chunked body, a piece every ``DRIP_GAP`` s),
  ``/gate`` (part of a body, the rest once ``shared["gate"]`` is set),
  ``/hop`` (a response full of hop-by-hop fields), ``/short`` and
  ``/short-reset`` (SHORT_SENT of a small body's SHORT_LENGTH bytes, then
  wait for the close, or a TCP RST), else ``200 ok``.
* :func:`sink` reads a request body piece by piece and signals how much has
  arrived, so a test can tell streaming from buffering.
* :data:`NGINX_HTTP1`: nginx over plain HTTP/1.1 serving ``/big`` (:data:`BIG`
  bytes from ``big.bin``) and ``/small``, for the memory test.
"""

from __future__ import annotations

import queue
import socket
import struct
import threading
import time

from tests.servers.h2nginx import config as nginx_config
from tests.servers.raw import Handler, RawConnection, RawRequest, RawServer

PARTIAL_LENGTH = 10 * 1024 * 1024
"""The Content-Length ``/partial`` and ``/reset`` announce (most of it never comes)."""

PARTIAL_SENT = 256 * 1024
"""Body bytes ``/partial`` and ``/reset`` send before they stop."""

GATE_LENGTH = 300_000
GATE_FIRST = 100_000
"""``/gate``: a body of GATE_LENGTH bytes, GATE_FIRST of them before the gate."""

SHORT_LENGTH = 100
SHORT_SENT = 10
"""``/short``: a Content-Length small enough for the gateway to read the body
whole before it answers, and the bytes of it sent before the stop."""

DRIP_PIECES = 8
DRIP_GAP = 0.2
"""``/drip``: DRIP_PIECES pieces, DRIP_GAP seconds apart (the server's pace,
not a synchronisation: nothing waits on it)."""

SINK_SIGNAL_AT = 100_000
"""``sink`` signals ("sink-partial", target) once this many body bytes are in."""

HOP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Length: 3\r\n"
    b"Connection: keep-alive, X-Hop-Named\r\n"
    b"X-Hop-Named: secret\r\n"
    b"Keep-Alive: timeout=99\r\n"
    b"Proxy-Authenticate: Basic realm=upstream\r\n"
    b"Proxy-Connection: keep-alive\r\n"
    b"Proxy-Whatever: 1\r\n"
    b"Trailer: X-Checksum\r\n"
    b"Upgrade: foo/2\r\n"
    b"TE: trailers\r\n"
    b"X-End-To-End: kept\r\n"
    b"\r\n"
    b"hop"
)


def wait_signal(server: RawServer, name: str, target: bytes, timeout: float = 10.0) -> object:
    """Wait for the signal ``name`` whose value is (or starts with) ``target``:
    signals of other requests are dropped (each test uses targets of its own)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {name!r} signal for {target!r} within {timeout}s")
        try:
            got, value = server.events.get(timeout=left)
        except queue.Empty:
            continue
        key = value[0] if isinstance(value, tuple) else value
        if got == name and key == target:
            return value


def request_for(server: RawServer, marker: bytes, timeout: float = 10.0) -> list[RawRequest]:
    """The recorded requests up to and including the first whose target contains ``marker``."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no request with {marker!r} within {timeout}s")
        try:
            request = server.requests.get(timeout=left)
        except queue.Empty:
            continue
        seen.append(request)
        if marker in request.target:
            return seen


def start_on_port(handler: Handler, port: int) -> RawServer:
    """A raw server listening on a given loopback ``port`` (RawServer picks its own)."""
    server = RawServer(handler)
    server.listener.close()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    server.listener = listener
    server.port = port
    return server.start()


# -- handlers ----------------------------------------------------------------------


def named(name: bytes) -> Handler:
    """Keep-alive: answer ``name:target``; a ``/hold`` target signals ("held",
    target) and is answered only once ``shared["release"]`` (an Event) is set."""

    def handler(conn: RawConnection) -> None:
        while True:
            request = conn.read_request()
            if b"/hold" in request.target:
                conn.server.signal("held", request.target)
                release = conn.server.shared["release"]
                assert isinstance(release, threading.Event)
                release.wait(10)
            conn.respond(name + b":" + request.target)

    return handler


def _reset(conn: RawConnection) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP RST, not a FIN."""
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.sock.close()


def _cut_short(conn: RawConnection, target: bytes, data: bytes, reset: bool, sent: str) -> None:
    """Send ``data`` (a head and the start of its body), then reset the
    connection, or signal ``sent`` and wait for the peer to close it."""
    server = conn.server
    conn.send(data)
    if reset:
        server.signal("reset", target)
        _reset(conn)
        return
    server.signal(sent, target)
    closed = conn.wait_closed_by_peer(timeout=30)
    server.signal("client-closed" if closed else "not-closed", target)


def faults(conn: RawConnection) -> None:
    """Keep-alive; the behaviour is chosen by a word in the target (see the module doc)."""
    while True:
        request = conn.read_request()
        target = request.target
        server = conn.server
        if b"/hang" in target:
            server.signal("hanging", target)
            closed = conn.wait_closed_by_peer(timeout=30)
            server.signal("client-closed" if closed else "not-closed", target)
            return
        if b"/partial" in target or b"/reset" in target:
            chunked = b"/reset-chunked" in target
            if chunked:
                head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                piece = b"%x\r\n%s\r\n" % (PARTIAL_SENT, b"p" * PARTIAL_SENT)
            else:
                head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % PARTIAL_LENGTH
                piece = b"p" * PARTIAL_SENT
            _cut_short(conn, target, head + piece, b"/reset" in target, "partial-sent")
            return
        if b"/short" in target:
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SHORT_LENGTH
            data = head + b"s" * SHORT_SENT
            _cut_short(conn, target, data, b"/short-reset" in target, "short-sent")
            return
        if b"/drip" in target:
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(DRIP_PIECES):
                if i:
                    time.sleep(DRIP_GAP)  # the server's pace; no one synchronises on it
                piece = b"drip %d\n" % i
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.send(b"0\r\n\r\n")
            continue
        if b"/gate" in target:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % GATE_LENGTH)
            conn.send(b"g" * GATE_FIRST)
            server.signal("gate-first-sent", target)
            gate = server.shared["gate"]
            assert isinstance(gate, threading.Event)
            if not gate.wait(10):
                return
            conn.send(b"G" * (GATE_LENGTH - GATE_FIRST))
            continue
        if b"/hop" in target:
            conn.send(HOP_RESPONSE)
            continue
        conn.respond(b"ok")


def sink(conn: RawConnection) -> None:
    """Read a request body (Content-Length or chunked) piece by piece; signal
    ("sink-partial", target) once SINK_SIGNAL_AT bytes are in, then answer with
    the total length. Keep-alive."""
    while True:
        while b"\r\n\r\n" not in conn.buffer:
            conn._fill()
        end = conn.buffer.index(b"\r\n\r\n") + 4
        head = bytes(conn.buffer[:end])
        del conn.buffer[:end]
        lines = head[:-4].split(b"\r\n")
        target = lines[0].split(b" ")[1]
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        total = 0
        signalled = False

        def arrived(n: int, target: bytes = target) -> None:
            nonlocal total, signalled
            total += n
            if not signalled and total >= SINK_SIGNAL_AT:
                signalled = True
                conn.server.signal("sink-partial", target)

        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            while True:
                size = int(conn._take_line().split(b";")[0].strip(), 16)
                if size == 0:
                    while conn._take_line() != b"\r\n":
                        pass
                    break
                left = size
                while left:
                    if not conn.buffer:
                        conn._fill()
                    n = min(left, len(conn.buffer))
                    del conn.buffer[:n]
                    left -= n
                    arrived(n)
                conn._take(2)
        else:
            left = int(fields.get(b"content-length", b"0"))
            while left:
                if not conn.buffer:
                    conn._fill()
                n = min(left, len(conn.buffer))
                del conn.buffer[:n]
                left -= n
                arrived(n)
        conn.server.signal("sink-done", target)
        conn.respond(b"%d" % total)


# -- nginx over HTTP/1.1 -------------------------------------------------------------

BIG = 50 * 1024 * 1024
"""Bytes of ``/big`` on :data:`NGINX_HTTP1`."""

NGINX_HTTP1 = nginx_config("""\
    keepalive_timeout 600s;
    keepalive_requests 100000000;
    default_type application/octet-stream;
    sendfile on;
    server {{
        listen 127.0.0.1:{h2c_port} backlog=1024;
        location = /small {{ default_type text/plain; return 200 "small\\n"; }}
        location = /big {{ alias {d}/big.bin; }}
    }}
""")
"""nginx, plain HTTP/1.1 (the template's ``h2c_port`` is just its port)."""
