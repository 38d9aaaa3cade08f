"""Raw-socket fault servers: a listening socket in a thread, one thread per connection.

A server is parameterised by a handler ``handler(conn: RawConnection) -> None``
that runs on the connection's own thread. Everything observable goes through
thread-safe values on the server (``requests`` queue, ``accepted`` counter,
events), so tests synchronise on those, never on sleeps.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

Handler = Callable[["RawConnection"], None]


@dataclass
class RawRequest:
    """One request as the server read it off the wire."""

    raw: bytes  # head and body exactly as received (body still chunk-encoded)
    head: bytes
    body: bytes  # decoded body
    request_line: bytes
    headers: list[tuple[bytes, bytes]]
    connection_index: int

    def header(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def method(self) -> bytes:
        return self.request_line.split(b" ")[0]

    @property
    def target(self) -> bytes:
        return self.request_line.split(b" ")[1]


class ConnectionClosedByPeer(Exception):
    pass


@dataclass
class RawConnection:
    sock: socket.socket
    server: RawServer
    index: int
    buffer: bytearray = field(default_factory=bytearray)
    requests_served: int = 0

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionClosedByPeer
        self.buffer += data

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    def _take_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        i = self.buffer.index(b"\r\n") + 2
        out = bytes(self.buffer[:i])
        del self.buffer[:i]
        return out

    def read_request(self) -> RawRequest:
        """Read one full request (head + Content-Length or chunked body) and record it."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        end = self.buffer.index(b"\r\n\r\n") + 4
        head = bytes(self.buffer[:end])
        del self.buffer[:end]
        lines = head[:-4].split(b"\r\n")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name, value.strip()))
        raw = bytearray(head)
        body = bytearray()
        te = [v for k, v in headers if k.lower() == b"transfer-encoding"]
        cl = [v for k, v in headers if k.lower() == b"content-length"]
        if te and te[-1].lower() == b"chunked":
            while True:
                size_line = self._take_line()
                raw += size_line
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:  # trailers, then the blank line
                        line = self._take_line()
                        raw += line
                        if line == b"\r\n":
                            break
                    break
                data = self._take(size + 2)
                raw += data
                body += data[:-2]
        elif cl:
            data = self._take(int(cl[0]))
            raw += data
            body += data
        request = RawRequest(
            raw=bytes(raw),
            head=head,
            body=bytes(body),
            request_line=lines[0],
            headers=headers,
            connection_index=self.index,
        )
        self.server.requests.put(request)
        return request

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def respond(self, body: bytes = b"ok", status: bytes = b"200 OK", extra: bytes = b"") -> None:
        self.send(
            b"HTTP/1.1 "
            + status
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n"
            + extra
            + b"\r\n"
            + body
        )
        self.requests_served += 1

    def wait_closed_by_peer(self, timeout: float = 30.0) -> bool:
        """Block until the client closes (EOF/reset: True) or the server stops (False)."""
        self.sock.settimeout(0.1)
        waited = 0.0
        while not self.server.stopping.is_set() and waited < timeout:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                waited += 0.1
                continue
            except OSError:
                return True
            if not data:
                return True
            self.buffer += data
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class RawServer:
    """Listening socket on loopback; each accepted connection runs ``handler`` in a thread."""

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.host = host
        self.tls = tls
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(128)
        self.port: int = self.listener.getsockname()[1]
        self.requests: queue.Queue[RawRequest] = queue.Queue()
        self.stopping = threading.Event()
        self.events: queue.Queue[tuple[str, object]] = queue.Queue()  # handler-defined signals
        self.handler_errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._accepted = 0
        self._accepted_cond = threading.Condition(self._lock)
        self._conns: list[RawConnection] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="raw-accept", daemon=True)
        self.shared: dict[str, object] = {}  # state handlers may keep across connections

    # -- public -----------------------------------------------------------------

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    def wait_accepted(self, n: int, timeout: float = 10.0) -> bool:
        with self._accepted_cond:
            return self._accepted_cond.wait_for(lambda: self._accepted >= n, timeout)

    def url(self, path: str = "/", scheme: str | None = None) -> str:
        scheme = scheme or ("https" if self.tls else "http")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{path}"

    def all_requests(self) -> list[RawRequest]:
        out = []
        while True:
            try:
                out.append(self.requests.get_nowait())
            except queue.Empty:
                return out

    def next_request(self, timeout: float = 10.0) -> RawRequest:
        return self.requests.get(timeout=timeout)

    def wait_event(self, name: str, timeout: float = 10.0) -> object:
        """The value of the next handler signal ``name`` (others are dropped)."""
        while True:
            got, value = self.events.get(timeout=timeout)
            if got == name:
                return value

    def signal(self, name: str, value: object = None) -> None:
        self.events.put((name, value))

    def start(self) -> RawServer:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.close()
        self._acceptor.join(5)
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> RawServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self._accepted_cond:
                index = self._accepted
                self._accepted += 1
                self._accepted_cond.notify_all()
            t = threading.Thread(
                target=self._serve, args=(sock, index), name=f"raw-conn-{index}", daemon=True
            )
            self._threads.append(t)
            t.start()

    def _serve(self, sock: socket.socket, index: int) -> None:
        try:
            if self.tls is not None:
                sock.settimeout(10)
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    self.signal("tls-failed", exc)
                    sock.close()
                    return
                self.signal("tls-ok", sock)
                sock.settimeout(None)
            conn = RawConnection(sock, self, index)
            with self._lock:
                self._conns.append(conn)
            try:
                self.handler(conn)
            except (ConnectionClosedByPeer, OSError):
                pass
            except BaseException as exc:
                self.handler_errors.append(exc)
            finally:
                conn.close()
                self.signal("conn-done", index)
        except BaseException as exc:  # pragma: no cover - diagnostic
            self.handler_errors.append(exc)


@contextlib.contextmanager
def raw_server(
    handler: Handler, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> Iterator[RawServer]:
    server = RawServer(handler, host=host, tls=tls)
    with server:
        yield server
    assert not server.handler_errors, server.handler_errors


# -- handlers -------------------------------------------------------------------


def keepalive_ok(conn: RawConnection) -> None:
    """Answer every request with 200 b"ok", keep-alive (also: the request recorder)."""
    while True:
        conn.read_request()
        conn.respond(b"ok")


def never_answers(conn: RawConnection) -> None:
    """Read the request, then say nothing until the client goes away."""
    with contextlib.suppress(ConnectionClosedByPeer):
        conn.read_request()
    conn.server.signal("request-received", conn.index)
    conn.wait_closed_by_peer()
    conn.server.signal("client-closed", conn.index)


def silent(conn: RawConnection) -> None:
    """Accept the connection and never send or read a byte (stalls a TLS handshake)."""
    conn.wait_closed_by_peer()


def closes_mid_body(conn: RawConnection) -> None:
    """Content-Length: 100, then 10 bytes, then close."""
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)


def garbage_status_line(conn: RawConnection) -> None:
    conn.read_request()
    conn.send(b"SPLAT 99 wibble\r\nfoo\r\n\r\n")


def one_request_then_close_on_next(conn: RawConnection) -> None:
    """Answer the first request on each connection; on a second one read it and close unanswered.

    Seen from the client this is exactly a keep-alive connection the server had
    already closed when the request went out: no response byte arrives.
    """
    conn.read_request()
    conn.respond(b"first")
    conn.read_request()
    conn.server.signal("closing-stale", conn.index)


def one_request_then_partial_on_next(conn: RawConnection) -> None:
    """First request answered; the second gets a partial status line, then close."""
    conn.read_request()
    conn.respond(b"first")
    conn.read_request()
    conn.send(b"HTTP/1.1 20")


def one_request_then_idle_close(conn: RawConnection) -> None:
    """Answer one request with keep-alive, then close the idle connection."""
    conn.read_request()
    conn.respond(b"first")
    conn.close()
    conn.server.signal("idle-closed", conn.index)


def http10_until_close(conn: RawConnection) -> None:
    """HTTP/1.0 response without Content-Length: the body runs until close."""
    conn.read_request()
    conn.send(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
    for _ in range(10):
        conn.send(b"0123456789")


def informational_then_ok(conn: RawConnection) -> None:
    """100 Continue and 103 Early Hints before the final 200, on a keep-alive connection."""
    while True:
        conn.read_request()
        conn.send(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal"
        )


def no_body_statuses(conn: RawConnection) -> None:
    """/204 -> 204; /304 -> 304 with a Content-Length that must be ignored; else 200 ok."""
    while True:
        req = conn.read_request()
        if req.target.startswith(b"/204"):
            conn.send(b"HTTP/1.1 204 No Content\r\n\r\n")
        elif req.target.startswith(b"/304"):
            conn.send(b'HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\nETag: "x"\r\n\r\n')
        else:
            conn.respond(b"ok")


def hang_or_ok(conn: RawConnection) -> None:
    """/hang: never answer, signal when the client closes; anything else: 200 ok."""
    while True:
        req = conn.read_request()
        if req.target.startswith(b"/hang"):
            conn.server.signal("hanging", conn.index)
            closed = conn.wait_closed_by_peer()
            conn.server.signal("client-closed" if closed else "server-stopped", conn.index)
            return
        conn.respond(b"ok")


BIG_SIZE = 64 * 1024 * 1024


def big_body_stall_probe(conn: RawConnection) -> None:
    """Send a 64 MiB body; signal ("stalled", bytes_sent) once a send blocks for 0.5 s.

    If the client stops reading and its engine honours backpressure, the
    socket buffers fill and the server stalls well before the end; if the
    engine buffered everything, the whole body goes out and we signal
    ("finished-without-stall", BIG_SIZE) instead.
    """
    conn.read_request()
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: " + str(BIG_SIZE).encode() + b"\r\n\r\n")
    block = b"\xab" * (256 * 1024)
    sent = 0
    stalled = False
    conn.sock.settimeout(0.5)
    while sent < BIG_SIZE:
        view = memoryview(block)[: min(len(block), BIG_SIZE - sent)]
        try:
            n = conn.sock.send(view)
        except TimeoutError:
            if not stalled:
                stalled = True
                conn.server.signal("stalled", sent)
                conn.sock.settimeout(30)
            continue
        sent += n
    if not stalled:
        conn.server.signal("finished-without-stall", sent)
    conn.server.signal("sent-all", sent)
    conn.wait_closed_by_peer(timeout=10)


def chunked_with_trailers(conn: RawConnection) -> None:
    """Chunked body with a chunk extension and a trailer; keep-alive."""
    while True:
        conn.read_request()
        conn.send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        )


def http11_until_close(conn: RawConnection) -> None:
    """HTTP/1.1 response with neither Content-Length nor chunked: the body runs until close."""
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil ")
    conn.send(b"close")


def early_413(conn: RawConnection) -> None:
    """Answer 413 after the request head, without reading the body, then close."""
    while b"\r\n\r\n" not in conn.buffer:
        conn._fill()
    conn.server.signal("head-received", conn.index)
    conn.send(
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig"
    )
    conn.sock.shutdown(socket.SHUT_WR)
    conn.wait_closed_by_peer(timeout=10)


def unsolicited_same_segment(conn: RawConnection) -> None:
    """Answer with b"resp-" + target and, in the same send, an unsolicited extra response."""
    while True:
        req = conn.read_request()
        body = b"resp-" + req.target
        conn.send(
            b"HTTP/1.1 200 OK\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
            + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"
        )
        conn.server.signal("unsolicited-sent", conn.index)


def unsolicited_later(conn: RawConnection) -> None:
    """Answer with b"resp-" + target; once the test sets shared["go"], push a stray response."""
    while True:
        req = conn.read_request()
        conn.respond(b"resp-" + req.target)
        go = conn.server.shared["go"]
        assert isinstance(go, threading.Event)
        if go.wait(10) and conn.index == 0 and req.target == b"/1":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!")
        conn.server.signal("unsolicited-sent", conn.index)


def huge_header(conn: RawConnection) -> None:
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\nContent-Length: 2\r\n\r\nok")
    conn.wait_closed_by_peer(timeout=10)


def bad_content_length(conn: RawConnection) -> None:
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok")
    conn.wait_closed_by_peer(timeout=10)
