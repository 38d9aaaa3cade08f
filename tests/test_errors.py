"""Errors: every failure reaches the caller as an HTTPCoreError subclass with ``__cause__``."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

import httpcore
from tests.servers import raw as handlers
from tests.servers.handles import HTTPServer, RawFactory

HIERARCHY = {
    httpcore.TimeoutException: httpcore.HTTPCoreError,
    httpcore.ConnectTimeout: httpcore.TimeoutException,
    httpcore.ReadTimeout: httpcore.TimeoutException,
    httpcore.WriteTimeout: httpcore.TimeoutException,
    httpcore.PoolTimeout: httpcore.TimeoutException,
    httpcore.NetworkError: httpcore.HTTPCoreError,
    httpcore.ConnectError: httpcore.NetworkError,
    httpcore.ReadError: httpcore.NetworkError,
    httpcore.WriteError: httpcore.NetworkError,
    httpcore.ProtocolError: httpcore.HTTPCoreError,
    httpcore.RemoteProtocolError: httpcore.ProtocolError,
    httpcore.LocalProtocolError: httpcore.ProtocolError,
    httpcore.ProxyError: httpcore.HTTPCoreError,
    httpcore.UnsupportedProtocol: httpcore.HTTPCoreError,
    httpcore.ResponseNotRead: httpcore.HTTPCoreError,
    httpcore.StreamConsumed: httpcore.HTTPCoreError,
    httpcore.EngineClosed: httpcore.HTTPCoreError,
}


VALUE_ERRORS = {httpcore.LocalProtocolError, httpcore.UnsupportedProtocol}


@pytest.mark.parametrize(("child", "parent"), list(HIERARCHY.items()))
def test_hierarchy(child: type[Exception], parent: type[Exception]) -> None:
    # Bad protocol data from the caller is also a ValueError (API.md).
    also = (ValueError,) if child in VALUE_ERRORS else ()
    assert child.__bases__ == (parent, *also)
    assert child.__module__ == "httpcore"
    assert issubclass(child, httpcore.HTTPCoreError)
    assert issubclass(httpcore.HTTPCoreError, Exception)


def test_connect_error_on_closed_port(closed_port: int) -> None:
    with httpcore.Client() as client, pytest.raises(httpcore.ConnectError) as info:
        client.request("GET", f"http://127.0.0.1:{closed_port}/")
    assert isinstance(info.value.__cause__, BaseException)
    assert str(info.value)


def test_connect_timeout(backlogged_port: int) -> None:
    timeout = httpcore.Timeout(5.0, connect=0.3)
    start = time.monotonic()
    with httpcore.Client(timeout=timeout) as client, pytest.raises(httpcore.ConnectTimeout) as info:
        client.request("GET", f"http://127.0.0.1:{backlogged_port}/")
    assert time.monotonic() - start < 3
    assert info.value.__cause__ is not None


def test_retries_retry_connect_failures(backlogged_port: int) -> None:
    url = f"http://127.0.0.1:{backlogged_port}/"
    timeout = httpcore.Timeout(5.0, connect=0.2)
    start = time.monotonic()
    with httpcore.Client(timeout=timeout, retries=2) as client:
        with pytest.raises(httpcore.ConnectTimeout):
            client.request("GET", url)
    elapsed = time.monotonic() - start
    assert 0.6 <= elapsed < 5, elapsed  # three attempts of 0.2 s each, plus backoff
    start = time.monotonic()
    with httpcore.Client(timeout=timeout) as client, pytest.raises(httpcore.ConnectTimeout):
        client.request("GET", url)
    assert time.monotonic() - start < 0.6  # retries=0: one attempt only


def test_retries_on_refused_connection(closed_port: int) -> None:
    with httpcore.Client(retries=2) as client, pytest.raises(httpcore.ConnectError):
        client.request("GET", f"http://127.0.0.1:{closed_port}/")


def test_tls_handshake_stall_is_connect_timeout(raw: RawFactory) -> None:
    server = raw(handlers.silent)  # accepts TCP, never speaks TLS
    timeout = httpcore.Timeout(5.0, connect=0.3)
    with httpcore.Client(timeout=timeout) as client, pytest.raises(httpcore.ConnectTimeout):
        client.request("GET", server.url("/", scheme="https"))


def test_read_timeout_never_answers(raw: RawFactory) -> None:
    server = raw(handlers.never_answers)
    timeout = httpcore.Timeout(5.0, read=0.3)
    start = time.monotonic()
    with httpcore.Client(timeout=timeout) as client:
        with pytest.raises(httpcore.ReadTimeout) as info:
            client.request("GET", server.url("/"))
        assert info.value.__cause__ is not None
        assert time.monotonic() - start < 3
        # the timed-out connection is not reused
        assert server.wait_event("client-closed") == 0
        assert all(c.state != "idle" for c in client.connections())


def test_read_timeout_per_request_overrides_client(raw: RawFactory) -> None:
    server = raw(handlers.never_answers)
    with httpcore.Client(timeout=30.0) as client, pytest.raises(httpcore.ReadTimeout):
        client.request("GET", server.url("/"), timeout=httpcore.Timeout(30.0, read=0.2))


def test_read_timeout_async(raw: RawFactory) -> None:
    server = raw(handlers.never_answers)

    async def main() -> None:
        async with httpcore.PoolManager(timeout=httpcore.Timeout(5.0, read=0.3)) as pool:
            await pool.request("GET", server.url("/"))

    with pytest.raises(httpcore.ReadTimeout):
        asyncio.run(main())


def test_read_timeout_during_streamed_body(raw: RawFactory) -> None:
    def head_then_nothing(conn: handlers.RawConnection) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        conn.wait_closed_by_peer()

    server = raw(head_then_nothing)
    with httpcore.Client(timeout=httpcore.Timeout(5.0, read=0.3)) as client:
        response = client.request("GET", server.url("/"), stream=True)
        got = b""
        with pytest.raises(httpcore.ReadTimeout):
            for part in response.stream():
                got += part
        assert got == b"0123456789"


def test_write_timeout_server_never_reads(raw: RawFactory) -> None:
    def never_reads(conn: handlers.RawConnection) -> None:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.server.stopping.wait(30)

    server = raw(never_reads)
    body = b"x" * (64 * 1024 * 1024)
    with httpcore.Client(timeout=httpcore.Timeout(10.0, write=0.3)) as client:
        with pytest.raises(httpcore.WriteTimeout) as info:
            client.request("POST", server.url("/"), body=body)
    assert info.value.__cause__ is not None


def test_pool_timeout_with_held_stream(http_server: HTTPServer) -> None:
    limits = httpcore.Limits(max_connections=1)
    with httpcore.Client(limits=limits) as client:
        held = client.request("GET", http_server.url("/bytes/8000000"), stream=True)
        start = time.monotonic()
        with pytest.raises(httpcore.PoolTimeout):
            client.request("GET", http_server.url(), timeout=httpcore.Timeout(5.0, pool=0.2))
        assert time.monotonic() - start < 3
        held.close()
        assert client.request("GET", http_server.url(), timeout=2.0).status_code == 200


def test_pool_timeout_async(http_server: HTTPServer) -> None:
    async def main() -> None:
        limits = httpcore.Limits(max_connections=1)
        async with httpcore.PoolManager(limits=limits) as pool:
            held = await pool.request("GET", http_server.url("/bytes/8000000"), stream=True)
            async with held:
                with pytest.raises(httpcore.PoolTimeout):
                    await pool.request(
                        "GET", http_server.url(), timeout=httpcore.Timeout(5, pool=0.2)
                    )
            assert (await pool.request("GET", http_server.url(), timeout=2.0)).status_code == 200

    asyncio.run(main())


def test_truncated_body_is_remote_protocol_error(raw: RawFactory) -> None:
    server = raw(handlers.closes_mid_body)
    with httpcore.Client() as client:
        with pytest.raises(httpcore.RemoteProtocolError) as info:
            client.request("GET", server.url("/"))
        assert info.value.__cause__ is not None
        response = client.request("GET", server.url("/"), stream=True)
        got = b""
        with pytest.raises(httpcore.RemoteProtocolError):
            for part in response.stream():
                got += part
        assert got == b"x" * 10


def test_truncated_body_async(raw: RawFactory) -> None:
    server = raw(handlers.closes_mid_body)

    async def main() -> None:
        async with httpcore.PoolManager() as pool:
            await pool.request("GET", server.url("/"))

    with pytest.raises(httpcore.RemoteProtocolError):
        asyncio.run(main())


def test_garbage_status_line(raw: RawFactory) -> None:
    server = raw(handlers.garbage_status_line)
    with httpcore.Client() as client, pytest.raises(httpcore.RemoteProtocolError) as info:
        client.request("GET", server.url("/"))
    assert info.value.__cause__ is not None


def test_close_before_any_response(raw: RawFactory) -> None:
    def close_at_once(conn: handlers.RawConnection) -> None:
        conn.read_request()

    server = raw(close_at_once)
    with httpcore.Client() as client, pytest.raises(httpcore.RemoteProtocolError):
        client.request("POST", server.url("/"), body=b"x")


def test_errors_on_caller_side_are_fresh_instances(closed_port: int) -> None:
    """Two failures give two distinct exceptions, each with its own cause."""
    url = f"http://127.0.0.1:{closed_port}/"
    errors = []
    with httpcore.Client() as client:
        for _ in range(2):
            try:
                client.request("GET", url)
            except httpcore.ConnectError as exc:
                errors.append(exc)
    assert len(errors) == 2
    assert errors[0] is not errors[1]
    assert errors[0].__cause__ is not None
    assert errors[0].__cause__ is not errors[1].__cause__


def test_request_error_does_not_poison_client(raw: RawFactory, http_server: HTTPServer) -> None:
    server = raw(handlers.garbage_status_line)
    with httpcore.Client() as client:
        for _ in range(3):
            with pytest.raises(httpcore.RemoteProtocolError):
                client.request("GET", server.url("/"))
        assert client.request("GET", http_server.url()).status_code == 200


@pytest.mark.parametrize("handler", [handlers.huge_header, handlers.bad_content_length])
def test_malformed_response_heads(raw: RawFactory, handler: handlers.Handler) -> None:
    server = raw(handler)
    with httpcore.Client(timeout=5.0) as client, pytest.raises(httpcore.RemoteProtocolError):
        client.request("GET", server.url("/"))


@pytest.mark.parametrize("handler", [handlers.unsolicited_same_segment, handlers.unsolicited_later])
def test_unsolicited_data_on_idle_connection_is_not_a_response(
    raw: RawFactory, handler: handlers.Handler
) -> None:
    """Bytes after a complete response must never be taken as the next request's response."""
    server = raw(handler)
    go = server.shared["go"] = threading.Event()
    with httpcore.Client() as client:
        assert client.request("GET", server.url("/1")).body == b"resp-/1"
        go.set()
        assert server.wait_event("unsolicited-sent") == 0
        deadline = time.monotonic() + 2
        while any(c.state == "idle" for c in client.connections()):
            if time.monotonic() > deadline:
                break  # the engine did not notice; the next request must still not see it
            time.sleep(0.01)
        try:
            response = client.request("GET", server.url("/2"))
        except httpcore.HTTPCoreError:
            return  # refusing is acceptable; answering with the stray bytes is not
        assert response.body == b"resp-/2"
