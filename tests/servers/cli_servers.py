"""Servers for ``test_cli.py`` that ``raw.py`` does not have.

* :func:`unix_server`: a :class:`~tests.servers.raw.RawServer` listening on an
  ``AF_UNIX`` path instead of a loopback port (same handlers, same recording).
* :func:`blackhole`: a loopback port whose ``connect()`` hangs: ``listen(0)`` and
  an accept queue filled with connections that are never accepted, so the
  kernel drops further SYNs.
* Handlers: :func:`trickle` (a body that never ends, one byte at a time),
  :func:`closes_unanswered` (empty reply), :func:`socks5_then_http` (a SOCKS5
  server that records the CONNECT it was asked for and then serves HTTP itself).
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Iterator

from tests.servers.raw import Handler, RawConnection, RawServer

TRICKLE_LENGTH = 100_000


@contextlib.contextmanager
def unix_server(handler: Handler, path: str) -> Iterator[RawServer]:
    """``handler`` served on the Unix socket ``path``; ``.port`` and ``.url()`` mean nothing."""
    server = RawServer(handler)
    server.listener.close()
    server.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.listener.bind(path)
    server.listener.listen(16)
    with server:
        yield server
    assert not server.handler_errors, server.handler_errors


def _connects_within(sock: socket.socket, seconds: float) -> bool:
    _, writable, _ = select.select([], [sock], [], seconds)
    return bool(writable) and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0


@contextlib.contextmanager
def blackhole(probe: float = 0.3) -> Iterator[int | None]:
    """A loopback port where connects hang, or None if this kernel completes them anyway.

    Each filler connect either completes (it took the queue's one place) or
    hangs; the first one that still hangs after ``probe`` seconds shows the
    queue is full.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(16):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            fillers.append(filler)
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            if not _connects_within(filler, probe):
                yield port
                return
        yield None
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def trickle(conn: RawConnection) -> None:
    """A head promising TRICKLE_LENGTH bytes, then one byte every 50 ms until the client leaves.

    No read ever waits long, so only a whole-transfer limit stops it.
    """
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % TRICKLE_LENGTH)
    while not conn.server.stopping.wait(0.05):  # pacing, not synchronisation
        conn.send(b"x")


def closes_unanswered(conn: RawConnection) -> None:
    """Read the request, then close without a byte of response."""
    conn.read_request()


def socks5_then_http(conn: RawConnection) -> None:
    """SOCKS5 without authentication (RFC 1928); signals ("socks-connect", (cmd,
    address type, host, port)), grants it and then answers HTTP requests itself."""
    version, n_methods = conn._take(2)
    methods = conn._take(n_methods)
    assert version == 5 and 0 in methods, (version, methods)
    conn.send(b"\x05\x00")
    version, command, _, address_type = conn._take(4)
    if address_type == 1:
        host = socket.inet_ntop(socket.AF_INET, conn._take(4))
    elif address_type == 3:
        host = conn._take(conn._take(1)[0]).decode("ascii")
    else:
        host = socket.inet_ntop(socket.AF_INET6, conn._take(16))
    port = int.from_bytes(conn._take(2), "big")
    conn.server.signal("socks-connect", (command, address_type, host, port))
    conn.send(b"\x05\x00\x00\x01" + bytes(6))  # granted; bound to 0.0.0.0:0
    while True:
        conn.read_request()
        conn.respond(b"via socks\n")
