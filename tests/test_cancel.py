"""Cancellation: callers leaving early cancel the request in the engine and free its slot."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import httpcore
from tests.servers import raw as handlers
from tests.servers.handles import HTTPServer, RawFactory

BIG = "/bytes/8000000"  # larger than the engine's per-stream window: stays unfinished


def _wait_no_active(client: httpcore.Client) -> None:
    deadline = time.monotonic() + 5
    while any(c.state == "active" for c in client.connections()):
        assert time.monotonic() < deadline, client.connections()
        time.sleep(0.01)


def test_async_task_cancelled_mid_request_frees_slot(raw: RawFactory) -> None:
    server = raw(handlers.hang_or_ok)

    async def main() -> tuple[bytes, float]:
        limits = httpcore.Limits(max_connections=1)
        timeout = httpcore.Timeout(10.0, pool=2.0)
        async with httpcore.PoolManager(limits=limits, timeout=timeout) as pool:
            task = asyncio.create_task(pool.request("GET", server.url("/hang")))
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, server.wait_event, "hanging") == 0
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            start = time.monotonic()
            response = await pool.request("GET", server.url("/ok"))
            return response.body, time.monotonic() - start

    body, elapsed = asyncio.run(main())
    assert body == b"ok"
    assert elapsed < 1.5
    assert server.wait_event("client-closed") == 0  # the cancelled request's connection closed


def test_async_cancel_during_streamed_body(http_server: HTTPServer) -> None:
    async def main() -> int:
        limits = httpcore.Limits(max_connections=1)
        async with httpcore.PoolManager(limits=limits, timeout=httpcore.Timeout(5, pool=2)) as pool:
            started = asyncio.Event()

            async def reader() -> None:
                response = await pool.request("GET", http_server.url(BIG), stream=True)
                async for _ in response.stream():
                    started.set()
                    await asyncio.sleep(10)

            task = asyncio.create_task(reader())
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return (await pool.request("GET", http_server.url())).status_code

    assert asyncio.run(main()) == 200


def test_async_wait_for_timeout_cancels(raw: RawFactory) -> None:
    server = raw(handlers.hang_or_ok)

    async def main() -> bytes:
        limits = httpcore.Limits(max_connections=1)
        async with httpcore.PoolManager(
            limits=limits, timeout=httpcore.Timeout(10, pool=2)
        ) as pool:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(pool.request("GET", server.url("/hang")), 0.3)
            return (await pool.request("GET", server.url("/ok"))).body

    assert asyncio.run(main()) == b"ok"
    assert server.wait_event("client-closed") == 0


def test_sync_exception_inside_stream_loop_with_context(http_server: HTTPServer) -> None:
    limits = httpcore.Limits(max_connections=1)
    with httpcore.Client(limits=limits, timeout=httpcore.Timeout(5.0, pool=2.0)) as client:
        with pytest.raises(KeyboardInterrupt):
            with client.request("GET", http_server.url(BIG), stream=True) as response:
                for _part in response.stream():
                    raise KeyboardInterrupt
        assert client.request("GET", http_server.url()).status_code == 200


def test_sync_exception_inside_bare_stream_loop(http_server: HTTPServer) -> None:
    """No ``with``, no close(): leaving the loop by an exception still frees the slot."""
    limits = httpcore.Limits(max_connections=1)
    with httpcore.Client(limits=limits, timeout=httpcore.Timeout(5.0, pool=2.0)) as client:

        def consume() -> None:
            response = client.request("GET", http_server.url(BIG), stream=True)
            for _part in response.stream():
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            consume()
        gc.collect()
        assert client.request("GET", http_server.url()).status_code == 200


def test_sync_keyboard_interrupt_in_upload_generator(http_server: HTTPServer) -> None:
    limits = httpcore.Limits(max_connections=1)

    def body():  # type: ignore[no-untyped-def]
        yield b"x" * 100_000
        raise KeyboardInterrupt

    with httpcore.Client(limits=limits, timeout=httpcore.Timeout(5.0, pool=2.0)) as client:
        with pytest.raises(KeyboardInterrupt):
            client.request("POST", http_server.url("/upload"), body=body())
        assert client.request("GET", http_server.url()).status_code == 200


def test_closed_unread_stream_frees_slot_at_once(http_server: HTTPServer) -> None:
    limits = httpcore.Limits(max_connections=1)
    with httpcore.Client(limits=limits, timeout=httpcore.Timeout(5.0, pool=1.0)) as client:
        response = client.request("GET", http_server.url(BIG), stream=True)
        response.close()
        start = time.monotonic()
        assert client.request("GET", http_server.url()).status_code == 200
        assert time.monotonic() - start < 0.5


@pytest.mark.parametrize("how", ["close", "drop", "partial-then-close", "partial-then-drop"])
def test_100_abandoned_streams(http_server: HTTPServer, how: str) -> None:
    limits = httpcore.Limits(max_connections=2)
    timeout = httpcore.Timeout(5.0, pool=1.0)
    with httpcore.Client(limits=limits, timeout=timeout) as client:
        for _ in range(100):
            response = client.request("GET", http_server.url("/bytes/2000000"), stream=True)
            if how.startswith("partial"):
                next(response.stream())
            if how.endswith("close"):
                response.close()
            del response
        start = time.monotonic()
        assert client.request("GET", http_server.url()).status_code == 200
        assert time.monotonic() - start < 0.5
        _wait_no_active(client)
        assert len(client.connections()) <= 2


def test_100_abandoned_async_streams(http_server: HTTPServer) -> None:
    async def main() -> float:
        limits = httpcore.Limits(max_connections=2)
        timeout = httpcore.Timeout(5.0, pool=1.0)
        async with httpcore.PoolManager(limits=limits, timeout=timeout) as pool:
            for i in range(100):
                response = await pool.request("GET", http_server.url("/bytes/2000000"), stream=True)
                if i % 2:
                    await response.aclose()
                del response
            start = time.monotonic()
            assert (await pool.request("GET", http_server.url())).status_code == 200
            return time.monotonic() - start

    assert asyncio.run(main()) < 0.5


def test_read_timeout_while_streaming_frees_slot(raw: RawFactory, http_server: HTTPServer) -> None:
    def head_then_nothing(conn: handlers.RawConnection) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        conn.wait_closed_by_peer()
        conn.server.signal("client-closed", conn.index)

    server = raw(head_then_nothing)
    limits = httpcore.Limits(max_connections=1)
    timeout = httpcore.Timeout(5.0, read=0.3, pool=1.0)
    with httpcore.Client(limits=limits, timeout=timeout) as client:
        response = client.request("GET", server.url("/"), stream=True)
        with pytest.raises(httpcore.ReadTimeout):
            response.read()
        assert server.wait_event("client-closed") == 0
        assert client.request("GET", http_server.url()).status_code == 200


def test_cancelled_queued_request_leaves_queue_clean(http_server: HTTPServer) -> None:
    async def main() -> tuple[str, str, int]:
        limits = httpcore.Limits(max_connections=1)
        async with httpcore.PoolManager(limits=limits, timeout=httpcore.Timeout(5, pool=3)) as pool:
            held = await pool.request("GET", http_server.url(BIG), stream=True)
            queued = [asyncio.create_task(pool.request("GET", http_server.url())) for _ in range(3)]
            for _ in range(100):  # let the requests reach the engine's queue
                if "queued=3" in repr(pool):
                    break
                await asyncio.sleep(0.01)
            during = await asyncio.to_thread(repr, pool)
            for task in queued:
                task.cancel()
            await asyncio.gather(*queued, return_exceptions=True)
            await held.aclose()
            status = (await pool.request("GET", http_server.url())).status_code
            return during, await asyncio.to_thread(repr, pool), status

    during, after, status = asyncio.run(main())
    assert during == "<PoolManager [active=1 queued=3 idle=0]>"
    assert status == 200
    assert "queued=0" in after


def test_pool_timeout_leaves_queue_clean(http_server: HTTPServer) -> None:
    limits = httpcore.Limits(max_connections=1)
    with httpcore.Client(limits=limits) as client:
        with client.request("GET", http_server.url(BIG), stream=True):
            for _ in range(3):
                with pytest.raises(httpcore.PoolTimeout):
                    client.request("GET", http_server.url(), timeout=httpcore.Timeout(5, pool=0.1))
            assert "queued=0" in repr(client)
        assert client.request("GET", http_server.url(), timeout=2.0).status_code == 200


def test_queued_requests_fail_when_engine_closes(http_server: HTTPServer) -> None:
    engine = httpcore.Engine()
    limits = httpcore.Limits(max_connections=1)
    client = httpcore.Client(engine=engine, limits=limits, timeout=30.0)
    held = client.request("GET", http_server.url(BIG), stream=True)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.request("GET", http_server.url())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while "queued=3" not in repr(client) and time.monotonic() < deadline:
        time.sleep(0.01)
    engine.close()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert len(errors) == 3 and all(isinstance(e, httpcore.EngineClosed) for e in errors)
    del held


def test_many_threads_through_a_small_pool(http_server: HTTPServer) -> None:
    limits = httpcore.Limits(max_connections=4)
    with httpcore.Client(limits=limits, timeout=httpcore.Timeout(10.0)) as client:

        def worker(t: int) -> int:
            ok = 0
            for i in range(10):
                r = client.request("GET", http_server.url(f"/echo?t={t}&i={i}"))
                ok += r.status_code == 200 and f"t={t}&i={i}".encode() in r.body
            return ok

        with ThreadPoolExecutor(32) as ex:
            assert sum(ex.map(worker, range(32))) == 320
        assert len(client.connections()) <= 4
        assert "queued=0" in repr(client)


def test_many_tasks_through_a_small_pool(http_server: HTTPServer) -> None:
    async def main() -> list[int]:
        limits = httpcore.Limits(max_connections=2)
        async with httpcore.PoolManager(limits=limits, timeout=10.0) as pool:
            responses = await asyncio.gather(
                *(pool.request("GET", http_server.url(f"/bytes/{i}")) for i in range(200))
            )
            assert len(pool.connections()) <= 2
            return [len(r.body) for r in responses]

    assert asyncio.run(main()) == list(range(200))


def test_async_cancel_during_upload_frees_slot(http_server: HTTPServer) -> None:
    async def main() -> int:
        limits = httpcore.Limits(max_connections=1)
        started = asyncio.Event()

        async def body():  # type: ignore[no-untyped-def]
            yield b"x" * 1000
            started.set()
            await asyncio.sleep(30)
            yield b"never"

        async with httpcore.PoolManager(limits=limits, timeout=httpcore.Timeout(5, pool=2)) as pool:
            task = asyncio.create_task(
                pool.request("POST", http_server.url("/upload"), body=body())
            )
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return (await pool.request("GET", http_server.url())).status_code

    assert asyncio.run(main()) == 200


def test_async_upload_generator_error_propagates(http_server: HTTPServer) -> None:
    async def main() -> int:
        async def body():  # type: ignore[no-untyped-def]
            yield b"x" * 1000
            raise ValueError("async boom")

        limits = httpcore.Limits(max_connections=1)
        async with httpcore.PoolManager(limits=limits, timeout=httpcore.Timeout(5, pool=2)) as pool:
            with pytest.raises(ValueError, match="async boom"):
                await pool.request("POST", http_server.url("/upload"), body=body())
            return (await pool.request("GET", http_server.url())).status_code

    assert asyncio.run(main()) == 200
