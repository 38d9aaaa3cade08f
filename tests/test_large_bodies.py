"""Large Content-Length bodies take the engine's raw path (no h11 copies):
framing, truncation, reuse and stray bytes must be exactly as on the h11 path."""

from __future__ import annotations

import hashlib

import pytest

import httpcore
from tests.servers.handles import RawFactory
from tests.servers.raw import RawConnection

SIZE = 3 * 1024 * 1024 + 17  # well above the raw-path threshold, not a round number


def _body(n: int = SIZE) -> bytes:
    return hashlib.sha256(b"seed").digest() * (n // 32) + b"z" * (n % 32)


def _head(n: int, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: " + str(n).encode() + b"\r\n" + extra + b"\r\n"


def big_keepalive(conn: RawConnection) -> None:
    while True:
        try:
            conn.read_request()
        except Exception:
            return
        body = _body()
        # head and the first bytes together, the rest in pieces: exercises the
        # hand-over from h11's buffer to the raw countdown
        conn.send(_head(len(body)) + body[:1000])
        for i in range(1000, len(body), 65536):
            conn.send(body[i : i + 65536])


def big_truncated(conn: RawConnection) -> None:
    conn.read_request()
    conn.send(_head(SIZE) + _body()[: SIZE // 2])
    conn.close()


def big_then_stray(conn: RawConnection) -> None:
    conn.read_request()
    conn.send(_head(SIZE) + _body() + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!")
    conn.wait_closed_by_peer()


def big_connection_close(conn: RawConnection) -> None:
    conn.read_request()
    conn.send(_head(SIZE, b"Connection: close\r\n") + _body())
    conn.wait_closed_by_peer()


@pytest.mark.parametrize("stream", [False, True])
def test_big_body_exact_and_connection_reused(raw: RawFactory, stream: bool) -> None:
    server = raw(big_keepalive)
    with httpcore.Client() as client:
        for _ in range(3):
            response = client.request("GET", server.url("/"), stream=stream)
            body = response.read() if stream else response.body
            assert body == _body()
        assert server.accepted == 1
        (info,) = client.connections()
        assert info.requests_served == 3 and info.state == "idle"


def test_big_body_truncated_is_an_error(raw: RawFactory) -> None:
    server = raw(big_truncated)
    with httpcore.Client() as client:
        with pytest.raises(httpcore.RemoteProtocolError, match="bytes missing"):
            client.request("GET", server.url("/"))
        response = client.request("GET", server.url("/"), stream=True)
        got = 0
        with pytest.raises(httpcore.RemoteProtocolError):
            for part in response.stream():
                got += len(part)
        assert got == SIZE // 2


def test_bytes_after_big_body_are_not_a_response(raw: RawFactory) -> None:
    server = raw(big_then_stray)
    with httpcore.Client() as client:
        assert client.request("GET", server.url("/")).body == _body()
        assert client.connections() == []


def test_connection_close_after_big_body(raw: RawFactory) -> None:
    server = raw(big_connection_close)
    with httpcore.Client() as client:
        assert client.request("GET", server.url("/")).body == _body()
        assert client.connections() == []


def test_big_body_async_stream(raw: RawFactory) -> None:
    import asyncio

    server = raw(big_keepalive)

    async def main() -> bytes:
        async with httpcore.PoolManager() as pool:
            response = await pool.request("GET", server.url("/"), stream=True)
            return b"".join([part async for part in response.stream()])

    assert asyncio.run(main()) == _body()
