"""Engine faults: a bug inside the engine, the engine thread dying, and the deadlock guard."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

import httpcore
from httpcore.engine import runner
from httpcore.engine.http2 import HTTP2Connection
from httpcore.engine.http11 import HTTP11Connection
from httpcore.engine.messages import Failed
from httpcore.engine.pool import Pool
from tests.servers import raw as handlers
from tests.servers.handles import HTTPServer, RawFactory
from tests.servers.raw import RawServer

MARKER = b"x-inject-bug"
BUG = "injected bug for this request only"
BIG = 2_000_000


def _marked(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() == MARKER for name, _ in headers)


def _inject(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """Make one engine-side function raise RuntimeError(BUG) for marked requests only."""
    if where == "http11-response":  # a transport callback: response bytes in
        original_on_data = HTTP11Connection.on_data

        def on_data(self: HTTP11Connection, data: memoryview) -> None:
            if self.ex is not None and _marked(self.ex.request.headers):
                raise RuntimeError(BUG)
            original_on_data(self, data)

        monkeypatch.setattr(HTTP11Connection, "on_data", on_data)
    elif where == "http2-response":  # HTTP/2: a response HEADERS frame
        original_head = HTTP2Connection._on_head

        def on_head(self: HTTP2Connection, stream: Any, headers: Any) -> None:
            if _marked(stream.ex.request.headers):
                raise RuntimeError(BUG)
            original_head(self, stream, headers)

        monkeypatch.setattr(HTTP2Connection, "_on_head", on_head)
    elif where == "dispatch":  # the engine's inbox dispatch, before any pool work
        original_submit = Pool.submit

        def submit(self: Pool, ex: Any, fresh: bool = False) -> None:
            if _marked(ex.request.headers):
                raise RuntimeError(BUG)
            original_submit(self, ex, fresh)

        monkeypatch.setattr(Pool, "submit", submit)
    elif where == "connect-task":  # the task that opens a connection for a request
        original_connect = Pool._new_connection

        async def connect(self: Pool, slot: Any, ex: Any) -> Any:
            if _marked(ex.request.headers):
                raise RuntimeError(BUG)
            return await original_connect(self, slot, ex)

        monkeypatch.setattr(Pool, "_new_connection", connect)
    else:  # pragma: no cover
        raise AssertionError(where)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__


def _assert_carries_bug(exc: BaseException) -> None:
    assert isinstance(exc, httpcore.HTTPCoreError), repr(exc)
    bugs = [e for e in _chain(exc) if type(e) is RuntimeError]
    assert bugs and str(bugs[0]) == BUG, [repr(e) for e in _chain(exc)]


FAULTS = ["http11-response", "http2-response", "dispatch", "connect-task"]


@pytest.mark.parametrize("where", FAULTS)
def test_engine_bug_fails_only_its_request_sync(
    monkeypatch: pytest.MonkeyPatch, http_server: HTTPServer, where: str
) -> None:
    h2 = where == "http2-response"
    with httpcore.Client() as other, httpcore.Client(http1=not h2, http2=True) as client:
        # another caller's request is in flight (on its own connection) while the bug hits
        held = other.request("GET", http_server.url(f"/bytes/{BIG}"), stream=True)
        parts = held.stream()
        got = len(next(parts))
        engine = runner.default_engine()
        _inject(monkeypatch, where)

        with pytest.raises(httpcore.HTTPCoreError) as info:
            client.request("GET", http_server.url(), headers=[(MARKER, b"1")])
        _assert_carries_bug(info.value)

        # the engine goes on: same engine, same client, other clients, the held stream
        for _ in range(3):
            response = client.request("GET", http_server.url())
            assert response.status_code == 200
            assert response.http_version == ("HTTP/2" if h2 else "HTTP/1.1")
        assert got + sum(len(p) for p in parts) == BIG
        assert other.request("GET", http_server.url()).status_code == 200
        if where != "connect-task":  # (an idle connection now exists: no connect to fail)
            with pytest.raises(httpcore.HTTPCoreError) as again:  # the bug hits its own again
                client.request("GET", http_server.url(), headers=[(MARKER, b"2")])
            _assert_carries_bug(again.value)
        assert client.request("GET", http_server.url()).status_code == 200
        assert runner.default_engine() is engine and engine.alive
        assert all(c.state != "active" for c in client.connections())


@pytest.mark.parametrize("where", FAULTS)
def test_engine_bug_fails_only_its_request_async(
    monkeypatch: pytest.MonkeyPatch, http_server: HTTPServer, where: str
) -> None:
    h2 = where == "http2-response"

    async def main() -> None:
        async with (
            httpcore.PoolManager() as other,
            httpcore.PoolManager(http1=not h2, http2=True) as pool,
        ):
            held = await other.request("GET", http_server.url(f"/bytes/{BIG}"), stream=True)
            parts = held.stream()
            got = len(await parts.__anext__())
            _inject(monkeypatch, where)

            bad, good = await asyncio.gather(
                pool.request("GET", http_server.url(), headers=[(MARKER, b"1")]),
                other.request("GET", http_server.url()),
                return_exceptions=True,
            )
            assert isinstance(bad, BaseException)
            _assert_carries_bug(bad)
            assert isinstance(good, httpcore.AsyncResponse) and good.status_code == 200

            for _ in range(3):
                response = await pool.request("GET", http_server.url())
                assert response.status_code == 200
            assert got + sum([len(p) async for p in parts]) == BIG

    asyncio.run(main())


# -- the engine thread dies ---------------------------------------------------------------


def _kill_engine_thread(engine: httpcore.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``run_forever`` itself raise on the engine thread: the thread ends.

    The SystemExit leaving that thread is expected; any other exception
    leaving any thread still reaches pytest's hook.
    """
    previous = threading.excepthook

    def hook(args: Any) -> None:
        if args.exc_type is SystemExit and args.thread is engine._thread:
            return
        previous(args)

    monkeypatch.setattr(threading, "excepthook", hook)

    def die() -> None:
        raise SystemExit("engine thread killed by the test")

    engine._loop.call_soon_threadsafe(die)  # type: ignore[union-attr]
    engine._thread.join(5)
    assert not engine._thread.is_alive()


def _wait_events(server: RawServer, name: str, n: int) -> list[object]:
    return [server.wait_event(name, timeout=10) for _ in range(n)]


class _Callers:
    """Sync threads and async tasks (on a loop in another thread), each blocked in a request."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.results: list[Future[BaseException | None]] = []

    def sync(self, fn: Callable[[], object]) -> None:
        result: Future[BaseException | None] = Future()

        def run() -> None:
            try:
                fn()
                result.set_result(None)
            except BaseException as exc:
                result.set_result(exc)

        self.results.append(result)
        self.threads.append(threading.Thread(target=run))

    def aio(self, fns: list[Callable[[], Awaitable[object]]]) -> None:
        results: list[Future[BaseException | None]] = [Future() for _ in fns]

        async def one(
            fn: Callable[[], Awaitable[object]], out: Future[BaseException | None]
        ) -> None:
            try:
                await fn()
                out.set_result(None)
            except BaseException as exc:
                out.set_result(exc)

        async def main() -> None:
            await asyncio.gather(*(one(fn, out) for fn, out in zip(fns, results, strict=True)))

        self.results.extend(results)
        self.threads.append(threading.Thread(target=asyncio.run, args=(main(),)))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> list[BaseException | None]:
        for t in self.threads:
            t.join(5)
        assert not any(t.is_alive() for t in self.threads), "a caller is still blocked"
        return [r.result(timeout=0) for r in self.results]


def test_default_engine_thread_death_wakes_callers_and_restarts(
    raw: RawFactory, http_server: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hang = raw(handlers.hang_or_ok)
    client = httpcore.Client(timeout=60)
    manager = httpcore.PoolManager(timeout=60)
    engine = runner.default_engine()
    old_thread = engine._thread

    held = client.request("GET", http_server.url("/bytes/8000000"), stream=True)
    parts = held.stream()
    next(parts)

    callers = _Callers()
    for i in range(3):
        callers.sync(functools.partial(client.request, "GET", hang.url(f"/hang-sync-{i}")))
    callers.aio(
        [functools.partial(manager.request, "GET", hang.url(f"/hang-async-{i}")) for i in range(3)]
    )
    callers.start()
    _wait_events(hang, "hanging", 6)

    _kill_engine_thread(engine, monkeypatch)

    errors = callers.join()
    assert all(isinstance(e, httpcore.EngineClosed) for e in errors), errors
    with pytest.raises(httpcore.EngineClosed):
        for _ in parts:
            pass
    assert not engine.alive
    assert len(_wait_events(hang, "client-closed", 6)) == 6  # its sockets were closed

    # the next call starts a fresh default engine: new thread, same name
    assert client.request("GET", http_server.url()).status_code == 200
    fresh = runner.default_engine()
    assert fresh is not engine and fresh.alive
    assert fresh._thread is not old_thread and fresh._thread.is_alive()
    assert fresh._thread.name == "httpcore-engine" and fresh._thread.daemon
    named = [t for t in threading.enumerate() if t.name == "httpcore-engine"]
    assert named == [fresh._thread]

    async def after() -> tuple[int, int]:
        first = await manager.request("GET", http_server.url())
        second = await httpcore.request("GET", http_server.url())
        return first.status_code, second.status_code

    assert asyncio.run(after()) == (200, 200)
    with httpcore.Client() as new_client:
        assert new_client.request("GET", http_server.url()).status_code == 200
    client.close()
    manager.close()


def test_explicit_engine_thread_death_wakes_callers(
    raw: RawFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    hang = raw(handlers.hang_or_ok)
    engine = httpcore.Engine()
    client = httpcore.Client(engine=engine, timeout=60)
    manager = httpcore.PoolManager(engine=engine, timeout=60)
    callers = _Callers()
    callers.sync(lambda: client.request("GET", hang.url("/hang-sync")))
    callers.sync(client.connections)  # a query answered before the death: returns normally
    callers.aio([lambda: manager.request("GET", hang.url("/hang-async"))])
    callers.start()
    _wait_events(hang, "hanging", 2)

    _kill_engine_thread(engine, monkeypatch)

    first, query, last = callers.join()
    assert isinstance(first, httpcore.EngineClosed) and isinstance(last, httpcore.EngineClosed)
    assert query is None
    assert not engine.alive  # an explicit engine is not restarted behind its owner's back
    with pytest.raises(httpcore.EngineClosed):
        client.request("GET", hang.url("/ok"))
    engine.close()  # still fine to call


# -- the deadlock guard --------------------------------------------------------------------

GUARD = "httpcore: the sync API cannot be called from the engine thread (it would deadlock)"


def _on_engine_thread(engine: httpcore.Engine, fn: Callable[[], object]) -> Future[object]:
    done: Future[object] = Future()

    def run() -> None:
        try:
            done.set_result(fn())
        except BaseException as exc:
            done.set_result(exc)

    engine._loop.call_soon_threadsafe(run)  # type: ignore[union-attr]
    return done


def test_sync_request_on_default_engine_thread_raises_exact_runtime_error(
    http_server: HTTPServer,
) -> None:
    # test_engine.py covers an explicit engine (message substring); this pins the exact
    # message, on the default engine, from a plain callback and from a task on its loop
    with httpcore.Client() as client:
        engine = runner.default_engine()
        error = _on_engine_thread(engine, lambda: client.request("GET", http_server.url()))
        got = error.result(timeout=5)
        assert type(got) is RuntimeError and str(got) == GUARD

        async def in_task() -> object:
            try:
                return client.request("GET", http_server.url())
            except RuntimeError as exc:
                return exc

        loop = engine._loop
        assert loop is not None
        got = asyncio.run_coroutine_threadsafe(in_task(), loop).result(timeout=5)
        assert type(got) is RuntimeError and str(got) == GUARD
        assert client.request("GET", http_server.url()).status_code == 200
        assert runner.default_engine() is engine


def test_reading_a_sync_response_on_the_engine_thread_raises(http_server: HTTPServer) -> None:
    """Response.read()/stream() wait for the engine: on its own thread they must not block it."""
    with httpcore.Engine() as engine:
        client = httpcore.Client(engine=engine)
        response = client.request("GET", http_server.url("/bytes/8000000"), stream=True)
        done = _on_engine_thread(engine, response.read)
        try:
            got = done.result(timeout=3)
        except TimeoutError:
            # the engine thread is stuck waiting on itself: release it, then fail
            response._queue.put(Failed(httpcore.EngineClosed("released by the test")))
            done.result(timeout=5)
            pytest.fail("Response.read() on the engine thread deadlocked the engine")
        assert type(got) is RuntimeError and str(got) == GUARD
        response.close()
