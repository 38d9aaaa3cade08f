"""The async frontend: PoolManager and httpcore.request, from many loops and tasks at once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import httpcore
from tests.servers.app import pattern
from tests.servers.handles import HTTPServer


def echo(response: httpcore.AsyncResponse) -> dict:  # type: ignore[type-arg]
    assert response.status_code == 200, response.body
    return json.loads(response.body)  # type: ignore[no-any-return]


def test_top_level_request(http_server: HTTPServer) -> None:
    async def main() -> httpcore.AsyncResponse:
        return await httpcore.request("GET", http_server.url("/echo?x=1"))

    response = asyncio.run(main())
    assert isinstance(response, httpcore.AsyncResponse)
    assert response.status_code == 200
    assert response.reason == b""  # hypercorn sends no reason phrase
    assert response.http_version == "HTTP/1.1"
    assert echo(response)["query"] == "x=1"


def test_top_level_request_post_and_timeout(http_server: HTTPServer) -> None:
    async def main() -> httpcore.AsyncResponse:
        return await httpcore.request(
            "POST", http_server.url("/upload"), headers={"X-A": "1"}, body=b"abc", timeout=3.0
        )

    response = asyncio.run(main())
    assert json.loads(response.body) == {
        "length": 3,
        "sha256": hashlib.sha256(b"abc").hexdigest(),
    }


def test_pool_manager_keepalive_and_connections(http_server: HTTPServer) -> None:
    async def main() -> tuple[set[int], list[httpcore.ConnectionInfo], str]:
        async with httpcore.PoolManager() as pool:
            ports = set()
            for _ in range(4):
                ports.add(echo(await pool.request("GET", http_server.url()))["client_port"])
            # repr on the loop does not ask the engine (it would block the loop)
            assert repr(pool) == "<PoolManager>"
            return ports, await pool.aconnections(), await asyncio.to_thread(repr, pool)

    ports, infos, text = asyncio.run(main())
    assert len(ports) == 1
    assert [(c.origin, c.state, c.requests_served) for c in infos] == [
        (http_server.base_url, "idle", 4)
    ]
    assert text == "<PoolManager [active=0 queued=0 idle=1]>"


def test_pool_manager_aconnections(http_server: HTTPServer) -> None:
    async def main() -> int:
        async with httpcore.PoolManager() as pool:
            await pool.request("GET", http_server.url())
            return len(await pool.aconnections())

    assert asyncio.run(main()) == 1


def test_concurrent_tasks_one_pool(http_server: HTTPServer) -> None:
    async def main() -> list[str]:
        async with httpcore.PoolManager() as pool:

            async def one(i: int) -> str:
                return echo(await pool.request("GET", http_server.url(f"/echo?i={i}")))["query"]

            return await asyncio.gather(*(one(i) for i in range(100)))

    assert asyncio.run(main()) == [f"i={i}" for i in range(100)]


def test_concurrent_tasks_respect_max_connections(http_server: HTTPServer) -> None:
    async def main() -> tuple[set[int], int]:
        limits = httpcore.Limits(max_connections=3)
        async with httpcore.PoolManager(limits=limits) as pool:

            async def one(_: int) -> int:
                await pool.request("GET", http_server.url("/slow/50"))
                return echo(await pool.request("GET", http_server.url()))["client_port"]

            ports = set(await asyncio.gather(*(one(i) for i in range(12))))
            return ports, len(pool.connections())

    ports, n = asyncio.run(main())
    assert len(ports) <= 3
    assert n <= 3


def test_several_loops_in_several_threads_default_engine(http_server: HTTPServer) -> None:
    loops, tasks = 4, 10
    barrier = threading.Barrier(loops)

    def run_loop(k: int) -> list[str]:
        async def main() -> list[str]:
            barrier.wait(10)

            async def one(i: int) -> str:
                r = await httpcore.request("GET", http_server.url(f"/echo?k={k}&i={i}"))
                return echo(r)["query"]

            return await asyncio.gather(*(one(i) for i in range(tasks)))

        return asyncio.run(main())

    with ThreadPoolExecutor(loops) as ex:
        results = list(ex.map(run_loop, range(loops)))
    for k, got in enumerate(results):
        assert got == [f"k={k}&i={i}" for i in range(tasks)]
    engines = [t for t in threading.enumerate() if t.name == "httpcore-engine"]
    assert len(engines) == 1  # one default engine served every loop


def test_one_pool_manager_from_two_loops_at_once(http_server: HTTPServer) -> None:
    pool = httpcore.PoolManager()
    barrier = threading.Barrier(2)

    def run_loop(k: int) -> list[str]:
        async def main() -> list[str]:
            barrier.wait(10)
            responses = await asyncio.gather(
                *(pool.request("GET", http_server.url(f"/echo?k={k}&i={i}")) for i in range(10))
            )
            return [echo(r)["query"] for r in responses]

        return asyncio.run(main())

    try:
        with ThreadPoolExecutor(2) as ex:
            results = list(ex.map(run_loop, range(2)))
    finally:
        pool.close()
    for k, got in enumerate(results):
        assert got == [f"k={k}&i={i}" for i in range(10)]


def test_non_stream_response_helpers(http_server: HTTPServer) -> None:
    async def main() -> tuple[bytes, bytes, list[bytes]]:
        async with httpcore.PoolManager() as pool:
            async with await pool.request("GET", http_server.url("/bytes/1000")) as response:
                read = await response.aread()
                parts = [p async for p in response.stream()]
            return response.body, read, parts

    body, read, parts = asyncio.run(main())
    assert body == read == pattern(1000)
    assert b"".join(parts) == pattern(1000)


def test_sync_and_async_share_default_engine(http_server: HTTPServer) -> None:
    async def main() -> int:
        return (await httpcore.request("GET", http_server.url())).status_code

    with httpcore.Client() as client:
        assert client.request("GET", http_server.url()).status_code == 200
        assert asyncio.run(main()) == 200
    assert len([t for t in threading.enumerate() if t.name == "httpcore-engine"]) == 1


def test_caller_loop_is_not_blocked(http_server: HTTPServer) -> None:
    async def main() -> tuple[int, int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        async with httpcore.PoolManager() as pool:
            response = await pool.request("GET", http_server.url("/slow/500"))
        stop.set()
        await task
        return response.status_code, ticks

    status, ticks = asyncio.run(main())
    assert status == 200
    assert ticks >= 10  # ~50 expected; a blocking call would give 1


def test_pool_manager_works_on_uvloop(http_server: HTTPServer) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> bytes:
        async with httpcore.PoolManager() as pool:
            response = await pool.request("GET", http_server.url("/bytes/100000"))
            return response.body

    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(main()) == pattern(100_000)
    finally:
        loop.close()


def test_pool_manager_chunked_and_large(http_server: HTTPServer) -> None:
    async def main() -> tuple[bytes, bytes]:
        async with httpcore.PoolManager() as pool:
            a = await pool.request("GET", http_server.url("/chunked/50000?size=333"))
            b = await pool.request("GET", http_server.url("/bytes/2000000"))
            return a.body, b.body

    a, b = asyncio.run(main())
    assert a == pattern(50_000)
    assert b == pattern(2_000_000)


def test_pool_manager_head_204(http_server: HTTPServer) -> None:
    async def main() -> list[tuple[int, bytes]]:
        async with httpcore.PoolManager(timeout=httpcore.Timeout(5.0, read=2.0)) as pool:
            out = []
            for method, path in (("HEAD", "/head-test"), ("GET", "/status/204")):
                r = await pool.request(method, http_server.url(path))
                out.append((r.status_code, r.body))
            return out

    assert asyncio.run(main()) == [(200, b""), (204, b"")]


def test_closed_pool_manager_raises_engine_closed(http_server: HTTPServer) -> None:
    async def main() -> None:
        pool = httpcore.PoolManager()
        async with pool:
            await pool.request("GET", http_server.url())
        await pool.request("GET", http_server.url())

    with pytest.raises(httpcore.EngineClosed):
        asyncio.run(main())


def test_async_errors_map_like_sync(closed_port: int) -> None:
    async def main() -> None:
        await httpcore.request("GET", f"http://127.0.0.1:{closed_port}/")

    with pytest.raises(httpcore.ConnectError) as info:
        asyncio.run(main())
    assert info.value.__cause__ is not None
