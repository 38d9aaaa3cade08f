"""HTTP/2 flow control: backpressure to a slow reader, full bodies for a fast
one, uploads that respect the server's windows, and cancelling one stream."""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import httpcore
from tests.servers import h2faults
from tests.servers.app import pattern
from tests.servers.h2nginx import BIG_SIZE as NGINX_BIG
from tests.servers.h2nginx import Nginx
from tests.servers.h2util import h2c_client, h2c_pool, live, poll_until
from tests.servers.handles import HTTPServer, RawFactory

UPLOAD = pattern(1_000_000)
UPLOAD_SHA = hashlib.sha256(UPLOAD).hexdigest()


# -- downloads ------------------------------------------------------------------------


def test_slow_reader_holds_about_one_window(raw: RawFactory) -> None:
    """A reader that stops after the first chunk: the server must be held back by
    flow control after about one stream window (the size the client advertised),
    not be allowed to push the 32 MiB body into the client's memory. Reading on
    then gets every byte."""
    server = raw(h2faults.big_body_stall_probe)
    with h2c_client() as client:
        response = client.request("GET", server.url("/big"), stream=True)
        assert response.http_version == "HTTP/2"
        chunks = response.stream()
        first = next(chunks)
        window = server.wait_event("window")
        sent = server.wait_event("stalled", timeout=20)
        assert isinstance(window, int) and isinstance(sent, int)
        assert sent < h2faults.BIG
        held = sent - len(first)
        assert held <= window * 1.25, (
            f"server sent {sent} bytes to a reader that consumed {len(first)}: "
            f"{held / window:.2f} windows of {window} held on the client side"
        )
        rest = b"".join(chunks)
        assert first + rest == pattern(h2faults.BIG)
        assert server.wait_event("sent-all") == h2faults.BIG
        response.close()
        assert client.request("GET", server.url("/after")).body == b"conn0:/after"
    assert server.accepted == 1


def test_fast_reader_gets_large_body_nginx(nginx_h2: Nginx, ssl_context: ssl.SSLContext) -> None:
    expected = pattern(NGINX_BIG)
    with httpcore.Client(ssl=ssl_context) as client:
        with client.request("GET", nginx_h2.url("/big?t=big-stream"), stream=True) as response:
            assert response.http_version == "HTTP/2"
            assert (b"content-length", str(NGINX_BIG).encode()) in response.headers
            received = bytearray()
            for part in response.stream():
                received += part
        assert bytes(received) == expected
        whole = client.request("GET", nginx_h2.url("/big?t=big-whole"))
        assert whole.body == expected
    lines = nginx_h2.log("t=big-", 2)
    assert [line.status for line in lines] == [200, 200]
    assert len({line.connection for line in lines}) == 1


def test_concurrent_large_bodies_on_one_connection(
    h2_server: HTTPServer, ssl_context: ssl.SSLContext
) -> None:
    """Several large streams at once share the connection window byte-exact."""
    sizes = [3_000_000 + i * 123_457 for i in range(6)]

    async def main() -> list[bytes]:
        async with httpcore.PoolManager(ssl=ssl_context, timeout=30) as pool:

            async def get(n: int) -> bytes:
                response = await pool.request(
                    "GET", h2_server.https_url(f"/bytes/{n}"), stream=True
                )
                async with response:
                    out = bytearray()
                    async for part in response.stream():
                        out += part
                    return bytes(out)

            bodies = await asyncio.gather(*(get(n) for n in sizes))
            assert len(await asyncio.to_thread(pool.connections)) == 1
            return list(bodies)

    bodies = asyncio.run(main())
    for n, body in zip(sizes, bodies, strict=True):
        assert body == pattern(n)


def test_parallel_downloads_fit_the_connection_window(raw: RawFactory) -> None:
    """Twenty 1 MiB bodies at once need no WINDOW_UPDATE after the first:
    what sits in the sockets' buffers counts against the connection window,
    and a server that must wait for updates (a 16 MiB window) spends half
    again its CPU per byte and halves the rate (benchmark row (i))."""
    server = raw(h2faults.window_room_probe)
    with h2c_client(timeout=30) as client:

        def get(_: int) -> bytes:
            with client.request("GET", server.url("/1m"), stream=True) as response:
                return b"".join(response.stream())

        with ThreadPoolExecutor(h2faults.PARALLEL) as pool:
            bodies = list(pool.map(get, range(h2faults.PARALLEL)))
        assert server.wait_event("unsent") == 0
        assert bodies == [pattern(h2faults.PARALLEL_SIZE)] * h2faults.PARALLEL
        assert len(client.connections()) == 1


def test_chunked_app_body_over_h2(h2_server: HTTPServer) -> None:
    with h2c_client() as client:
        response = client.request("GET", h2_server.url("/chunked/300000?size=1000"), stream=True)
        parts = list(response.stream())
        assert b"".join(parts) == pattern(300_000)
        assert response.http_version == "HTTP/2"


# -- uploads -----------------------------------------------------------------------------


def _sync_pieces() -> Iterator[bytes]:
    for i in range(0, len(UPLOAD), 70_000):
        yield UPLOAD[i : i + 70_000]


async def _async_pieces() -> AsyncIterator[bytes]:
    for i in range(0, len(UPLOAD), 70_000):
        await asyncio.sleep(0)
        yield UPLOAD[i : i + 70_000]


@pytest.mark.parametrize("kind", ["bytes", "generator"])
def test_upload_through_tiny_windows_sync(raw: RawFactory, kind: str) -> None:
    """The server's windows are 1 KiB: h2 on the server side fails the connection
    (a handler error, checked by the ``raw`` fixture) if the client sends past them."""
    server = raw(h2faults.tiny_windows)
    body = UPLOAD if kind == "bytes" else _sync_pieces()
    with h2c_client(timeout=20) as client:
        response = client.request("POST", server.url("/up"), body=body)
        assert response.status_code == 200
        assert json.loads(response.body) == {"length": len(UPLOAD), "sha256": UPLOAD_SHA}
        # and the connection is still good
        again = client.request("POST", server.url("/up"), body=b"abc")
        assert json.loads(again.body)["length"] == 3
    assert server.accepted == 1


def test_upload_through_tiny_windows_async(raw: RawFactory) -> None:
    server = raw(h2faults.tiny_windows)

    async def main() -> list[dict]:  # type: ignore[type-arg]
        async with h2c_pool(timeout=20) as pool:
            uploads = [
                pool.request("POST", server.url(f"/up{i}"), body=_async_pieces()) for i in range(3)
            ]
            uploads.append(pool.request("POST", server.url("/upb"), body=UPLOAD))
            responses = await asyncio.gather(*uploads)
            return [json.loads(r.body) for r in responses]

    assert asyncio.run(main()) == [{"length": len(UPLOAD), "sha256": UPLOAD_SHA}] * 4
    assert server.accepted == 1


def test_streaming_upload_hypercorn(h2_server: HTTPServer, ssl_context: ssl.SSLContext) -> None:
    size = 8 * 1024 * 1024
    data = pattern(size)

    def pieces() -> Iterator[bytes]:
        for i in range(0, size, 100_000):
            yield data[i : i + 100_000]

    with httpcore.Client(ssl=ssl_context, timeout=20) as client:
        response = client.request("POST", h2_server.https_url("/upload"), body=pieces())
        assert response.http_version == "HTTP/2"
        assert json.loads(response.body) == {
            "length": size,
            "sha256": hashlib.sha256(data).hexdigest(),
        }


def test_async_streaming_upload_hypercorn(h2_server: HTTPServer) -> None:
    async def main() -> dict:  # type: ignore[type-arg]
        async with h2c_pool(timeout=20) as pool:
            response = await pool.request("PUT", h2_server.url("/upload"), body=_async_pieces())
            assert response.http_version == "HTTP/2"
            return json.loads(response.body)  # type: ignore[no-any-return]

    assert asyncio.run(main()) == {"length": len(UPLOAD), "sha256": UPLOAD_SHA}


def test_empty_upload_iterable(h2_server: HTTPServer) -> None:
    with h2c_client() as client:
        response = client.request("POST", h2_server.url("/upload"), body=iter([b"", b""]))
        assert json.loads(response.body)["length"] == 0


def test_write_timeout_when_server_stops_reading(raw: RawFactory) -> None:
    """Windows never re-opened: the upload cannot go on and times out writing."""
    server = raw(h2faults.stops_reading)
    with h2c_client() as client:
        with pytest.raises(httpcore.WriteTimeout) as info:
            client.request(
                "POST",
                server.url("/up"),
                body=_sync_pieces(),
                timeout=httpcore.Timeout(5, write=0.5),
            )
        assert info.value.__cause__ is not None
        assert isinstance(info.value, httpcore.TimeoutException)


# -- cancelling one stream ------------------------------------------------------------------


def test_closing_unread_stream_resets_only_that_stream(raw: RawFactory) -> None:
    server = raw(h2faults.big_body_stall_probe)
    with h2c_client() as client:
        response = client.request("GET", server.url("/big"), stream=True)
        chunks = response.stream()  # kept: a dropped, unfinished iterator closes the response
        next(chunks)
        [info] = client.connections()
        assert info.active_streams == 1
        # another stream on the same connection while the big one is open
        assert client.request("GET", server.url("/other")).body == b"conn0:/other"
        [info] = client.connections()
        assert (info.state, info.active_streams) == ("active", 1)
        response.close()
        _, stream_id, code = server.wait_event("client-reset")  # type: ignore[misc]
        assert stream_id == 1
        assert code == 8  # CANCEL
        [info] = poll_until(lambda: [i for i in client.connections() if i.active_streams == 0])
        assert info.state == "idle"
        assert client.request("GET", server.url("/after")).body == b"conn0:/after"
        assert [i.state for i in live(client.connections())] == ["idle"]
    assert server.accepted == 1


def test_cancelled_task_resets_only_its_stream(raw: RawFactory) -> None:
    server = raw(h2faults.hang_some)

    async def main() -> None:
        async with h2c_pool() as pool:
            hung = asyncio.ensure_future(pool.request("GET", server.url("/hang")))
            stream_id = await asyncio.to_thread(server.wait_event, "hanging")
            slow_body = asyncio.ensure_future(pool.request("GET", server.url("/b")))
            assert (await slow_body).body == b"conn0:/b"
            hung.cancel()
            with pytest.raises(asyncio.CancelledError):
                await hung
            reset = await asyncio.to_thread(server.wait_event, "client-reset")
            assert reset == (0, stream_id, 8)
            results = await asyncio.gather(
                *(pool.request("GET", server.url(f"/c{i}")) for i in range(10))
            )
            assert [r.body for r in results] == [b"conn0:/c%d" % i for i in range(10)]
            [info] = await asyncio.to_thread(pool.connections)
            assert (info.active_streams, info.requests_served) == (0, 11)

    asyncio.run(main())
    assert server.accepted == 1


def test_async_stream_aclose_resets_stream(
    h2_server: HTTPServer, ssl_context: ssl.SSLContext
) -> None:
    async def main() -> None:
        async with httpcore.PoolManager(ssl=ssl_context) as pool:
            response = await pool.request(
                "GET", h2_server.https_url("/bytes/50000000"), stream=True
            )
            async for _ in response.stream():
                break
            other = await pool.request("GET", h2_server.https_url("/bytes/1000"))
            assert other.body == pattern(1000)
            await response.aclose()
            [info] = await asyncio.to_thread(
                poll_until, lambda: [i for i in pool.connections() if i.active_streams == 0]
            )
            assert info.state == "idle"
            again = await pool.request("GET", h2_server.https_url("/bytes/2000"))
            assert again.body == pattern(2000)
            assert len(await asyncio.to_thread(pool.connections)) == 1

    asyncio.run(main())


def test_streams_closed_unread_give_back_the_connection_window(
    h2_server: HTTPServer, ssl_context: ssl.SSLContext
) -> None:
    """Regression: a stream closed after one chunk must hand its received,
    unconsumed bytes back to the connection window, or the connection starves
    (16 MiB window / ~1 MB per abandoned stream: 40 streams would exhaust it)."""
    with httpcore.Client(ssl=ssl_context, timeout=10) as client:
        for _ in range(40):
            with client.request("GET", h2_server.https_url("/bytes/1000000"), stream=True) as r:
                chunks = r.stream()
                assert next(chunks)
        response = client.request("GET", h2_server.https_url("/bytes/2000000"))
        assert len(response.body) == 2_000_000
        (info,) = client.connections()
        assert info.http_version == "HTTP/2"
