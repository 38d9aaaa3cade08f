"""Security defaults: verification on, no header injection, bounded response heads.

HTTP/1.1 cases use the raw servers of ``servers/raw.py``; HTTP/2 cases the
``h2`` fault peers of ``servers/h2faults.py`` (h2c with prior knowledge).
"""

from __future__ import annotations

import ssl

import pytest

import httpcore
from tests.servers import h2faults
from tests.servers.handles import RawFactory
from tests.servers.raw import RawConnection


def test_verification_on_by_default(raw: RawFactory, server_tls_context: ssl.SSLContext) -> None:
    # the trustme CA is not in certifi's bundle: a default Client must refuse it
    server = raw(lambda conn: conn.wait_closed_by_peer(timeout=5), tls=server_tls_context)
    with httpcore.Client(timeout=5) as client, pytest.raises(httpcore.ConnectError):
        client.request("GET", server.url("/"))


@pytest.mark.parametrize(
    "headers",
    [
        [("X-A", "v\r\nX-Injected: 1")],
        [("X-A", "v\nX-Injected: 1")],
        [("X-A\r\nX-Injected", "1")],
        [("X-A", "v\x00")],
        [(b"X-A", b"v\r\n\r\nGET /smuggled HTTP/1.1")],
        # A final LF: a regex ending in `$` matches just before it.
        [("X-A\n", "1")],
        [(b"X-A\n", b"1")],
        [(b"X-B", b"1"), (b"X-A", b"1\n")],
        # Names are checked together on the bytes path: a space must not pass
        # as the gap between two of them.
        [(b"X-A X-Injected", b"1")],
        [(b"X-B", b"1"), (b"", b"1")],
    ],
)
@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/2"])
def test_no_header_injection(raw: RawFactory, headers: list, version: str) -> None:
    from tests.servers.raw import keepalive_ok

    h2 = version == "HTTP/2"
    server = raw(h2faults.ok_server if h2 else keepalive_ok)
    with httpcore.Client(timeout=5, http1=not h2, http2=True) as client:
        with pytest.raises(httpcore.LocalProtocolError):
            client.request("GET", server.url("/"), headers=headers)
        assert server.accepted == 0  # refused before a connection was even opened


@pytest.mark.parametrize("method", ["GET\n", b"GET\n", "GET /x HTTP/1.1\r\nX-A:"])
def test_no_method_injection(raw: RawFactory, method: str | bytes) -> None:
    from tests.servers.raw import keepalive_ok

    server = raw(keepalive_ok)
    with httpcore.Client(timeout=5) as client:
        with pytest.raises(httpcore.LocalProtocolError, match="illegal method"):
            client.request(method, server.url("/"))
        assert server.accepted == 0


def _h1_head(lines: bytes):
    def handler(conn: RawConnection) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 2\r\n\r\nok")
        conn.wait_closed_by_peer(timeout=10)

    return handler


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(b"X-Big: " + b"a" * 70_000 + b"\r\n", id="70KiB-one-field"),
        pytest.param(b"a: b\r\n" * 5000, id="5000-fields-30KiB"),
    ],
)
def test_h1_response_head_limits(raw: RawFactory, lines: bytes) -> None:
    server = raw(_h1_head(lines))
    with httpcore.Client(timeout=5) as client, pytest.raises(httpcore.RemoteProtocolError):
        client.request("GET", server.url("/"))


def _h2_head(headers: list[tuple[bytes, bytes]]):
    def on_request(peer: h2faults.H2Peer, req: h2faults.H2Request) -> None:
        peer.respond(req.stream_id, b"ok", headers=headers)

    return lambda conn: h2faults.serve(conn, on_request)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([(b"x-big", b"a" * 70_000)], id="70KiB-one-field"),
        pytest.param([(b"a", b"b")] * 5000, id="5000-fields"),
    ],
)
def test_h2_response_head_limits(raw: RawFactory, headers: list[tuple[bytes, bytes]]) -> None:
    server = raw(_h2_head(headers))
    with httpcore.Client(timeout=5, http1=False, http2=True) as client:
        with pytest.raises(httpcore.RemoteProtocolError):
            client.request("GET", server.url("/"))
