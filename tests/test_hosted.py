"""``Engine.hosted()``: the engine on the caller's own running loop.

Coroutines on that loop reach it without a thread hop; sync threads and
other loops still share it through messages; the sync API refuses to run
on the hosting thread (it would block the loop the engine needs).
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import httpcore
from tests.servers import raw as handlers
from tests.servers.handles import HTTPServer, RawFactory


@pytest.mark.timeout(20)
def test_hosted_engine_serves_its_loop_threads_and_other_loops(http_server: HTTPServer) -> None:
    url = http_server.url("/echo")
    results: dict[str, object] = {}

    async def main() -> None:
        engine = httpcore.Engine.hosted()
        threads_before = {t.name for t in threading.enumerate()}
        try:
            async with httpcore.PoolManager(engine=engine) as pool:
                responses = await asyncio.gather(*(pool.request("GET", url) for _ in range(20)))
                results["loop"] = {r.status_code for r in responses}
                client = httpcore.Client(engine=engine)

                def sync_thread() -> None:
                    results["thread"] = client.request("GET", url).status_code

                def other_loop() -> None:
                    async def go() -> int:
                        async with httpcore.PoolManager(engine=engine) as other:
                            return (await other.request("GET", url)).status_code

                    results["other-loop"] = asyncio.run(go())

                workers = [threading.Thread(target=f) for f in (sync_thread, other_loop)]
                for worker in workers:
                    worker.start()
                while any(worker.is_alive() for worker in workers):
                    await asyncio.sleep(0.01)  # the engine runs on this loop: keep it turning
                with pytest.raises(RuntimeError, match="engine thread"):
                    client.request("GET", url)  # would block the engine's own loop
                client.close()
                results["infos"] = await pool.aconnections()
        finally:
            engine.close()
        results["new-threads"] = {t.name for t in threading.enumerate()} - threads_before

    asyncio.run(main())
    assert results["loop"] == {200}
    assert results["thread"] == 200
    assert results["other-loop"] == 200
    new_threads = results["new-threads"]
    assert isinstance(new_threads, set)
    assert not any(name.startswith("httpcore-engine") for name in new_threads)
    infos = results["infos"]
    assert isinstance(infos, list) and infos
    assert sum(info.requests_served for info in infos) == 20


@pytest.mark.timeout(20)
def test_closing_a_hosted_engine_fails_what_is_in_flight(raw: RawFactory) -> None:
    server = raw(handlers.never_answers)

    async def main() -> BaseException:
        engine = httpcore.Engine.hosted()
        pool = httpcore.PoolManager(engine=engine, timeout=None)
        task = asyncio.ensure_future(pool.request("GET", server.url("/")))
        while not server.accepted:
            await asyncio.sleep(0.01)
        engine.close()
        try:
            await task
        except BaseException as exc:
            error = exc
        else:
            raise AssertionError("the request outlived its engine")
        with pytest.raises(httpcore.EngineClosed):
            await pool.request("GET", server.url("/"))
        return error

    error = asyncio.run(main())
    assert isinstance(error, httpcore.EngineClosed)


def test_hosted_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        httpcore.Engine.hosted()
