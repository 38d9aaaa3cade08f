"""Servers that send trailers, for ``test_trailers.py``.

HTTP/1.1 handlers for ``raw.RawServer`` (the ``raw`` fixture): chunked bodies
with trailer fields after the last chunk, keep-alive. HTTP/2 handlers built on
``h2faults.H2Peer``: HEADERS, DATA, then HEADERS with END_STREAM (h2c prior
knowledge on a plain socket, ALPN ``h2`` with ``server_h2_context``).

The ``gated_*`` handlers send the head and the first part of the body, then
wait for ``server.shared["go"]`` (a ``threading.Event`` the test sets) before
the rest and the trailers, so a test can look at a response whose trailers
have not arrived yet. They signal ``("head-sent", connection_index)`` first.

``python -m tests.servers.trailers PORT`` runs hypercorn with :func:`app` on
127.0.0.1:PORT (h2c prior knowledge, or HTTP/1.1): an ASGI app that sends its
trailers through the ``http.response.trailers`` extension (hypercorn sends
them on HTTP/2 only, and only when the request carries ``TE: trailers``).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

from tests.servers.h2faults import H2Peer, H2Request, answer_until_closed, serve
from tests.servers.raw import RawConnection

BODY = b"hello world"
H1_TRAILERS = [(b"grpc-status", b"0"), (b"grpc-message", b"ok"), (b"X-Checksum", b"Abc")]
"""As sent on the wire (names as received: ``X-Checksum`` keeps its case)."""
H2_TRAILERS = [(b"grpc-status", b"0"), (b"grpc-message", b"ok")]

_CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n"
_CHUNKS = b"5\r\nhello\r\n6\r\n world\r\n"


def _fields(fields: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(name + b": " + value + b"\r\n" for name, value in fields)


# -- HTTP/1.1 ---------------------------------------------------------------------------


def chunked_trailers(conn: RawConnection) -> None:
    """b"hello world", chunked, then :data:`H1_TRAILERS`; keep-alive."""
    while True:
        conn.read_request()
        conn.send(_CHUNKED_HEAD + _CHUNKS + b"0\r\n" + _fields(H1_TRAILERS) + b"\r\n")


def chunked_no_trailers(conn: RawConnection) -> None:
    """b"hello world", chunked, no trailer fields; keep-alive."""
    while True:
        conn.read_request()
        conn.send(_CHUNKED_HEAD + _CHUNKS + b"0\r\n\r\n")


def gated_chunked_trailers(conn: RawConnection) -> None:
    """The head and b"hello"; once ``shared["go"]`` is set, b" world" and the trailers."""
    go = conn.server.shared["go"]
    assert isinstance(go, threading.Event)
    conn.read_request()
    conn.send(_CHUNKED_HEAD + b"5\r\nhello\r\n")
    conn.server.signal("head-sent", conn.index)
    assert go.wait(10), "the test never released the body"
    conn.send(b"6\r\n world\r\n0\r\n" + _fields(H1_TRAILERS) + b"\r\n")
    conn.wait_closed_by_peer(timeout=10)


# -- HTTP/2 -----------------------------------------------------------------------------


def h2_trailers(conn: RawConnection) -> None:
    """HEADERS, DATA b"hello world", HEADERS :data:`H2_TRAILERS` with END_STREAM."""

    def on_request(peer: H2Peer, req: H2Request) -> None:
        peer.respond(
            req.stream_id, BODY, headers=[(b"trailer", b"grpc-status")], trailers=H2_TRAILERS
        )

    serve(conn, on_request)


def h2_no_trailers(conn: RawConnection) -> None:
    """HEADERS, DATA b"hello world" with END_STREAM."""
    serve(conn, lambda peer, req: peer.respond(req.stream_id, BODY))


def h2_gated_trailers(conn: RawConnection) -> None:
    """HEADERS and DATA b"hello"; once ``shared["go"]`` is set, DATA b" world"
    and the trailing HEADERS."""
    go = conn.server.shared["go"]
    assert isinstance(go, threading.Event)

    def on_request(peer: H2Peer, req: H2Request) -> None:
        sid = req.stream_id
        peer.h2.send_headers(sid, [(b":status", b"200")])
        peer.h2.send_data(sid, b"hello")
        peer.flush()
        conn.server.signal("head-sent", conn.index)
        assert go.wait(10), "the test never released the body"
        peer.h2.send_data(sid, b" world")
        peer.h2.send_headers(sid, H2_TRAILERS, end_stream=True)

    serve(conn, on_request)


def h2_pseudo_header_trailers(conn: RawConnection) -> None:
    """A body, then trailers carrying a pseudo-header (malformed, RFC 9113 §8.1):
    h2's own outbound checks are off so it can be sent."""
    peer = H2Peer(conn)
    peer.h2.config.validate_outbound_headers = False
    peer.h2.config.normalize_outbound_headers = False

    def on_request(peer: H2Peer, req: H2Request) -> None:
        peer.h2.send_headers(req.stream_id, [(b":status", b"200")])
        peer.h2.send_data(req.stream_id, BODY)
        peer.h2.send_headers(
            req.stream_id, [(b"grpc-status", b"0"), (b":path", b"/x")], end_stream=True
        )

    answer_until_closed(peer, on_request)


# -- hypercorn ---------------------------------------------------------------------------


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """b"hello world" with trailers :data:`H2_TRAILERS` (``http.response.trailers``)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    while (await receive()).get("more_body", False):
        pass
    trailers = "http.response.trailers" in scope.get("extensions", {})
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"trailer", b"grpc-status")],
            "trailers": trailers,
        }
    )
    await send({"type": "http.response.body", "body": BODY})
    if trailers:
        await send({"type": "http.response.trailers", "headers": H2_TRAILERS})


def main() -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{sys.argv[1]}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    asyncio.run(hypercorn_serve(app, config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
