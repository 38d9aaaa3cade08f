"""stream=True responses chunk by chunk, with backpressure; uploads read on the caller's side."""

from __future__ import annotations

import asyncio
import hashlib
import json
import queue
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

import httpcore
from httpcore.engine.http11 import READ_SLACK
from httpcore.engine.interfaces import STREAM_WINDOW
from tests.servers import raw as handlers
from tests.servers.app import pattern
from tests.servers.handles import HTTPServer, RawFactory


def test_stream_chunk_by_chunk(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        response = client.request("GET", http_server.url("/chunked/200000?size=1000"), stream=True)
        with pytest.raises(httpcore.ResponseNotRead):
            _ = response.body
        parts = list(response.stream())
        assert b"".join(parts) == pattern(200_000)
        assert len(parts) > 1
        assert all(isinstance(p, bytes) and p for p in parts)
        with pytest.raises(httpcore.StreamConsumed):
            list(response.stream())
        response.close()
        response.close()  # idempotent


def test_stream_read_then_body(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        with client.request("GET", http_server.url("/bytes/500000"), stream=True) as response:
            assert response.status_code == 200
            assert response.read() == pattern(500_000)
            assert response.body == pattern(500_000)
            assert response.read() == pattern(500_000)  # read() again returns the body
        # a fully read stream leaves the connection reusable
        assert [c.state for c in client.connections()] == ["idle"]


def test_stream_partial_read_then_read_rest(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        response = client.request("GET", http_server.url("/bytes/1000000"), stream=True)
        it = response.stream()
        first = next(it)
        rest = b"".join(it)
        assert first + rest == pattern(1_000_000)
        response.close()


def test_stream_false_body_is_complete(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        response = client.request("GET", http_server.url("/bytes/70000"))
        assert response.body == pattern(70_000)
        assert b"".join(response.stream()) == pattern(70_000)


def test_closing_unread_stream_closes_connection(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        response = client.request("GET", http_server.url("/bytes/5000000"), stream=True)
        next(response.stream())
        response.close()
        deadline = time.monotonic() + 5
        while any(c.state != "closed" for c in client.connections()):  # close() may be async
            assert time.monotonic() < deadline, client.connections()
            time.sleep(0.01)
        assert client.request("GET", http_server.url("/bytes/10")).body == pattern(10)


def test_close_is_visible_at_once_in_connections(http_server: HTTPServer) -> None:
    """After close() returns, connections() no longer reports the stream as active."""
    with httpcore.Client() as client:
        response = client.request("GET", http_server.url("/bytes/5000000"), stream=True)
        next(response.stream())
        response.close()
        assert [
            (c.state, c.active_streams) for c in client.connections() if c.state != "closed"
        ] == []


def test_slow_reader_backpressure(raw: RawFactory) -> None:
    server = raw(handlers.big_body_stall_probe)
    with httpcore.Client(timeout=httpcore.Timeout(30.0)) as client:
        with client.request("GET", server.url("/big"), stream=True) as response:
            it = response.stream()
            received = len(next(it))
            # We stop reading: the server must stall long before the end.
            name, sent = server.events.get(timeout=20)
            while name not in ("stalled", "finished-without-stall"):
                name, sent = server.events.get(timeout=20)
            assert name == "stalled", "engine read the whole 64 MiB body without a reader"
            assert isinstance(sent, int)
            assert sent < handlers.BIG_SIZE // 4, f"{sent} bytes left the server unread"
            digest = hashlib.sha256()
            for part in it:
                received += len(part)
                digest.update(part)
    assert received == handlers.BIG_SIZE
    assert server.wait_event("sent-all") == handlers.BIG_SIZE


def test_slow_reader_holds_its_credit_plus_slack(raw: RawFactory) -> None:
    """What the engine hands a caller who reads nothing is its credit plus
    at most READ_SLACK (the most one read may overshoot it by), whatever the
    size of the engine's receive buffer."""
    server = raw(handlers.big_body_stall_probe)
    with httpcore.Client(timeout=httpcore.Timeout(30.0)) as client:
        with client.request("GET", server.url("/big"), stream=True) as response:
            name, _ = server.events.get(timeout=20)
            while name not in ("stalled", "finished-without-stall"):
                name, _ = server.events.get(timeout=20)
            assert name == "stalled"
            # The engine has paused reading: nothing is added to the queue
            # while the chunks in it are counted and put back in order.
            chunks = []
            while True:
                try:
                    chunks.append(response._queue.get_nowait())
                except queue.Empty:
                    break
            for chunk in chunks:
                response._queue.put(chunk)
            held = len(response._first) + sum(len(c.data) for c in chunks)
            assert held <= STREAM_WINDOW + READ_SLACK, held
            assert held >= STREAM_WINDOW, held  # the credit itself was used
            total = sum(len(part) for part in response.stream())
    assert total == handlers.BIG_SIZE


KERNEL_RCVBUF = 256 * 1024
"""The client socket's receive buffer in the backpressure test, fixed: the
kernel doubles it, and autotuning (up to tcp_rmem's maximum, 32 MiB on some
machines) would otherwise decide what the server can send ahead."""


def test_slow_reader_backpressure_async(raw: RawFactory) -> None:
    """A stalled async reader stalls the server: what it sent is the
    caller's credit, the read slack and the two sockets' buffers."""
    server = raw(handlers.big_body_stall_probe)
    options = [(socket.SOL_SOCKET, socket.SO_RCVBUF, KERNEL_RCVBUF)]

    async def main() -> tuple[str, object, int]:
        async with httpcore.PoolManager(timeout=30.0, socket_options=options) as pool:
            response = await pool.request("GET", server.url("/big"), stream=True)
            async with response:
                it = response.stream().__aiter__()
                received = len(await it.__anext__())
                loop = asyncio.get_running_loop()
                name, sent = await loop.run_in_executor(None, server.events.get, True, 20)
                while name not in ("stalled", "finished-without-stall"):
                    name, sent = await loop.run_in_executor(None, server.events.get, True, 20)
                async for part in it:
                    received += len(part)
            return name, sent, received

    name, sent, received = asyncio.run(main())
    assert name == "stalled"
    assert isinstance(sent, int) and sent < STREAM_WINDOW + READ_SLACK + 4 * KERNEL_RCVBUF
    assert received == handlers.BIG_SIZE


def test_async_stream_chunk_by_chunk(http_server: HTTPServer) -> None:
    async def main() -> tuple[list[bytes], bytes]:
        async with httpcore.PoolManager() as pool:
            response = await pool.request(
                "GET", http_server.url("/chunked/100000?size=1000"), stream=True
            )
            with pytest.raises(httpcore.ResponseNotRead):
                _ = response.body
            parts = [p async for p in response.stream()]
            with pytest.raises(httpcore.StreamConsumed):
                async for _ in response.stream():
                    pass
            await response.aclose()
            again = await pool.request("GET", http_server.url("/bytes/300000"), stream=True)
            async with again:
                body = await again.aread()
                assert again.body == body
            return parts, body

    parts, body = asyncio.run(main())
    assert b"".join(parts) == pattern(100_000)
    assert len(parts) > 1
    assert body == pattern(300_000)


# ---- uploads ----------------------------------------------------------------------------


def test_upload_generator_runs_on_caller_thread(http_server: HTTPServer) -> None:
    threads: list[threading.Thread] = []
    data = pattern(4_000_000)

    def gen() -> Iterator[bytes]:
        for i in range(0, len(data), 65536):
            threads.append(threading.current_thread())
            yield data[i : i + 65536]

    with httpcore.Client() as client:
        response = client.request("POST", http_server.url("/upload"), body=gen())
    assert json.loads(response.body) == {
        "length": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert threads
    assert set(threads) == {threading.current_thread()}


def test_upload_generator_chunked_on_the_wire(raw: RawFactory) -> None:
    server = raw(handlers.keepalive_ok)

    def gen() -> Iterator[bytes]:
        yield b"hello "
        yield b"world"

    with httpcore.Client() as client:
        assert client.request("POST", server.url("/"), body=gen()).body == b"ok"
        # with an explicit Content-Length the body is sent as is, not chunked
        r = client.request(
            "PUT", server.url("/"), headers={"Content-Length": "5"}, body=[b"ab", b"cde"]
        )
        assert r.body == b"ok"
    first, second = server.next_request(), server.next_request()
    assert first.header(b"transfer-encoding") == [b"chunked"]
    assert first.body == b"hello world"
    assert first.raw.endswith(b"0\r\n\r\n")
    assert second.header(b"transfer-encoding") == []
    assert second.header(b"content-length") == [b"5"]
    assert second.raw.endswith(b"\r\n\r\nabcde")


def test_upload_list_of_bytes(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        r = client.request("POST", http_server.url("/upload"), body=[b"a" * 10, b"b" * 20])
    assert json.loads(r.body)["length"] == 30


def test_upload_generator_error_propagates(http_server: HTTPServer) -> None:
    def gen() -> Iterator[bytes]:
        yield b"x" * 1000
        raise ValueError("boom from the body")

    with httpcore.Client() as client:
        with pytest.raises(ValueError, match="boom from the body"):
            client.request("POST", http_server.url("/upload"), body=gen())
        # the client is still usable
        assert client.request("GET", http_server.url("/bytes/5")).body == pattern(5)


def test_upload_async_generator_runs_on_caller_loop(http_server: HTTPServer) -> None:
    data = pattern(2_000_000)

    async def main() -> tuple[bytes, set[threading.Thread], threading.Thread]:
        threads: set[threading.Thread] = set()

        async def agen() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 50_000):
                threads.add(threading.current_thread())
                await asyncio.sleep(0)
                yield data[i : i + 50_000]

        async with httpcore.PoolManager() as pool:
            response = await pool.request("POST", http_server.url("/upload"), body=agen())
        return response.body, threads, threading.current_thread()

    body, threads, caller = asyncio.run(main())
    assert json.loads(body) == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert threads == {caller}


def test_upload_and_stream_download_together(http_server: HTTPServer) -> None:
    body = pattern(300_000)
    with httpcore.Client() as client:
        with client.request(
            "POST",
            http_server.url("/echo"),
            body=iter([body[:100_000], body[100_000:]]),
            stream=True,
        ) as response:
            data = json.loads(response.read())
    assert data["body_length"] == len(body)
    assert data["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert ["Transfer-Encoding", "chunked"] in data["headers"]


def test_early_response_stops_upload(raw: RawFactory) -> None:
    server = raw(handlers.early_413)
    produced = 0

    def endless() -> Iterator[bytes]:
        nonlocal produced
        while produced < 1024**3:  # 1 GiB that must not all be produced
            produced += 65536
            yield b"u" * 65536

    with httpcore.Client(timeout=10.0) as client:
        response = client.request("POST", server.url("/"), body=endless())
    assert response.status_code == 413
    assert response.body == b"big"
    assert produced < 256 * 1024 * 1024


def test_client_close_with_held_stream_does_not_hang(http_server: HTTPServer) -> None:
    client = httpcore.Client()
    response = client.request("GET", http_server.url("/bytes/8000000"), stream=True)
    it = response.stream()
    next(it)
    client.close()
    got = 0
    with pytest.raises(httpcore.HTTPCoreError):
        for part in it:
            got += len(part)
    assert got < 8_000_000
