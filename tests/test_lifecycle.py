"""Engine and pool lifecycle regressions: eviction, idle HTTP/2 eviction, close()
during in-flight requests, GOAWAY storms, shared SSL contexts, dropped clients,
and the non-blocking async introspection API.

Each test names the bug it guards (numbers from the lifecycle rewrite's list).
Every test has a ``timeout`` mark: a wedged pool or a caller left waiting must
fail fast instead of hanging the run.
"""

from __future__ import annotations

import asyncio
import gc
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from h2.errors import ErrorCodes

import httpcore
from httpcore.engine.runner import default_engine
from tests.servers import h2faults
from tests.servers import raw as handlers
from tests.servers.app import pattern
from tests.servers.h2nginx import CONFIG as NGINX_CONFIG
from tests.servers.h2nginx import SMALL_BODY, Nginx, run_nginx
from tests.servers.h2util import h2c_client, h2c_pool, live, poll_until
from tests.servers.handles import HTTPServer, RawFactory
from tests.servers.raw import RawConnection, RawServer

POOL_TIMEOUT = httpcore.Timeout(5.0, pool=2.0)
"""Short pool phase: a wedged pool shows up as PoolTimeout within 2 s."""


def _origin(server: RawServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def _no_connecting(infos: list[httpcore.ConnectionInfo]) -> None:
    assert not [i for i in infos if i.state == "connecting"], infos


# -- 1. eviction for another origin must not wedge the pool ------------------------------


@pytest.mark.timeout(20)
def test_evict_idle_http11_for_other_origin_sync(raw: RawFactory) -> None:
    """Bug 1: max_connections=1, GET A, B, A, B over HTTP/1.1: every request
    evicts the idle connection to the other origin. Today the second request
    fails with "internal error in the engine: InvalidStateError" and later ones
    with PoolTimeout, two slots left "connecting"."""
    a, b = raw(handlers.keepalive_ok), raw(handlers.keepalive_ok)
    limits = httpcore.Limits(max_connections=1)
    with httpcore.Client(limits=limits, timeout=POOL_TIMEOUT) as client:
        for server in (a, b, a, b):
            response = client.request("GET", server.url("/x"))
            assert (response.status_code, response.body) == (200, b"ok")
        poll_until(lambda: len(live(client.connections())) <= 1)
        _no_connecting(client.connections())
    assert a.accepted == 2 and b.accepted == 2


@pytest.mark.timeout(20)
def test_evict_idle_http11_for_other_origin_async(
    raw: RawFactory, http_server: HTTPServer
) -> None:
    """Bug 1, async frontend: hypercorn (plain HTTP/1.1) and a raw keep-alive
    server alternate through one PoolManager with max_connections=1."""
    other = raw(handlers.keepalive_ok)
    limits = httpcore.Limits(max_connections=1)

    async def main() -> list[httpcore.ConnectionInfo]:
        async with httpcore.PoolManager(limits=limits, timeout=POOL_TIMEOUT) as pool:
            for url in (http_server.url("/echo"), other.url("/x")) * 2:
                response = await pool.request("GET", url)
                assert response.status_code == 200
            return await asyncio.to_thread(pool.connections)

    infos = asyncio.run(main())
    assert len(live(infos)) <= 1, infos
    _no_connecting(infos)


@pytest.mark.timeout(20)
def test_evict_long_alternation_three_origins(raw: RawFactory) -> None:
    """Bug 1, longer: 20 requests round-robin over 3 origins with
    max_connections=2, so nearly every request evicts an idle connection."""
    servers = [raw(handlers.keepalive_ok) for _ in range(3)]
    limits = httpcore.Limits(max_connections=2)
    with httpcore.Client(limits=limits, timeout=POOL_TIMEOUT) as client:
        for i in range(20):
            response = client.request("GET", servers[i % 3].url(f"/{i}"))
            assert (response.status_code, response.body) == (200, b"ok"), i
            poll_until(lambda: len(live(client.connections())) <= 2, timeout=2)
        _no_connecting(client.connections())
    got = sorted(int(r.target[1:]) for s in servers for r in s.all_requests())
    assert got == list(range(20))


# -- 2. idle HTTP/2 connections must be evictable ------------------------------------------


@pytest.mark.timeout(20)
def test_evict_idle_h2_connection_for_other_origin(raw: RawFactory) -> None:
    """Bug 2: a pool full (max_connections=1) of one idle h2c connection; a
    request to another origin must close it and go through. Today: PoolTimeout."""
    a, b = raw(h2faults.ok_server), raw(h2faults.ok_server)
    limits = httpcore.Limits(max_connections=1)
    with h2c_client(limits=limits, timeout=POOL_TIMEOUT) as client:
        assert client.request("GET", a.url("/a")).body == b"conn0:/a"
        assert client.request("GET", b.url("/b")).body == b"conn0:/b"
        poll_until(lambda: [i.origin for i in live(client.connections())] == [_origin(b)])
        infos = client.connections()
        assert [i.http_version for i in live(infos)] == ["HTTP/2"]
        _no_connecting(infos)
        # and back: the b connection is the idle one evicted now
        assert client.request("GET", a.url("/a2")).body == b"conn1:/a2"
    assert a.wait_event("conn-done", timeout=5) == 0  # a's first connection was closed


@pytest.mark.timeout(20)
def test_evict_idle_h2_connection_pool_of_two(raw: RawFactory, h2_server: HTTPServer) -> None:
    """Bug 2 with max_connections=2: idle h2c connections to hypercorn and to a
    raw h2 server fill the pool; a third origin must get one of the places."""
    a, c = raw(h2faults.ok_server), raw(h2faults.ok_server)
    limits = httpcore.Limits(max_connections=2)
    with h2c_client(limits=limits, timeout=POOL_TIMEOUT) as client:
        first = client.request("GET", h2_server.url("/echo"))
        assert (first.status_code, first.http_version) == (200, "HTTP/2")
        assert client.request("GET", a.url("/a")).body == b"conn0:/a"
        assert client.request("GET", c.url("/c")).body == b"conn0:/c"
        poll_until(lambda: len(live(client.connections())) <= 2)
        infos = client.connections()
        origins = {i.origin for i in live(infos)}
        assert _origin(c) in origins, infos
        assert len(origins) == 2, infos
        _no_connecting(infos)


# -- 3. close() while another caller waits ---------------------------------------------------


def _request_in_thread(
    call: Callable[[], httpcore.Response],
) -> tuple[threading.Thread, list[BaseException | httpcore.Response], list[float]]:
    outcome: list[BaseException | httpcore.Response] = []
    finished: list[float] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)
        finished.append(time.monotonic())

    thread = threading.Thread(target=run, name="lifecycle-waiter", daemon=True)
    thread.start()
    return thread, outcome, finished


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("handler", "make_client", "waiting", "closed"),
    [
        pytest.param(h2faults.hang_some, h2c_client, "hanging", "conn-done", id="h2"),
        pytest.param(
            handlers.never_answers,
            httpcore.Client,
            "request-received",
            "client-closed",
            id="http11",
        ),
    ],
)
def test_close_during_inflight_request(
    raw: RawFactory,
    handler: handlers.Handler,
    make_client: Callable[..., httpcore.Client],
    waiting: str,
    closed: str,
) -> None:
    """Bug 3: Client.close() while another thread waits on a request the server
    never answers (``waiting``: the server's event once it has the request).
    The waiter must get EngineClosed promptly, and the server then sees its
    connection closed (event ``closed``). Today, over HTTP/2, the waiter waits
    out its own 30 s read timeout (the request also stays in the engine's
    table); over HTTP/1.1 it gets a misleading RemoteProtocolError, as if the
    server had dropped the connection."""
    server = raw(handler)
    client = make_client(timeout=30)
    thread, outcome, finished = _request_in_thread(
        lambda: client.request("GET", server.url("/hang"))
    )
    server.wait_event(waiting, timeout=5)
    closed_at = time.monotonic()
    client.close()
    thread.join(5)
    assert not thread.is_alive(), "the waiting thread was not released by close()"
    assert finished[0] - closed_at < 3
    [error] = outcome
    assert isinstance(error, httpcore.EngineClosed), repr(error)
    assert server.wait_event(closed, timeout=5) == 0  # its connection was closed


@pytest.mark.timeout(20)
def test_aclose_during_inflight_request_async(raw: RawFactory) -> None:
    """Bug 3, async: PoolManager.aclose() while a task awaits an unanswered
    h2 stream: the task gets EngineClosed promptly."""
    server = raw(h2faults.hang_some)

    async def main() -> tuple[BaseException | None, float]:
        pool = h2c_pool(timeout=30)
        task = asyncio.create_task(pool.request("GET", server.url("/hang")))
        await asyncio.to_thread(server.wait_event, "hanging", 5)
        start = time.monotonic()
        await pool.aclose()
        try:
            await asyncio.wait_for(task, 5)
        except httpcore.HTTPCoreError as exc:
            return exc, time.monotonic() - start
        except asyncio.TimeoutError:
            raise AssertionError("the awaiting task was not released by aclose()") from None
        return None, time.monotonic() - start

    error, elapsed = asyncio.run(main())
    assert isinstance(error, httpcore.EngineClosed), repr(error)
    assert elapsed < 3


# -- 7. GOAWAY storms and refused streams -------------------------------------------------------


@pytest.fixture(scope="module")
def nginx_goaway(
    tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nginx]:
    """nginx with HTTP/2 (TLS and h2c) that sends GOAWAY after every 5 requests
    on a connection (``keepalive_requests 5``)."""
    d: Path = tmp_path_factory.mktemp("nginx-goaway")
    config = NGINX_CONFIG.replace("keepalive_requests 100000000;", "keepalive_requests 5;")
    assert "keepalive_requests 5;" in config
    with run_nginx(d, config, tls_ca.issue_cert("127.0.0.1", "localhost")) as nginx:
        yield nginx


def _storm(pool: httpcore.PoolManager, url: str, n: int) -> list[object]:
    async def main() -> list[object]:
        async with pool:
            results = await asyncio.gather(
                *(pool.request("GET", f"{url}?i={i}") for i in range(n)),
                return_exceptions=True,
            )
        return [r if isinstance(r, BaseException) else (r.status_code, r.body) for r in results]

    return asyncio.run(main())


@pytest.mark.timeout(30)
def test_goaway_storm_h2c(nginx_goaway: Nginx) -> None:
    """Bug 7: 200 concurrent requests over h2c to an nginx that sends GOAWAY
    every 5 requests. Streams the server never processed must be retried, so
    all 200 succeed. Today ~165 fail with RemoteProtocolError (GOAWAY NO_ERROR)."""
    results = _storm(h2c_pool(timeout=10), nginx_goaway.h2c_url("/small"), 200)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} of 200 failed, first: {errors[0]!r}"
    assert all(r == (200, SMALL_BODY) for r in results)


@pytest.mark.timeout(30)
def test_goaway_storm_tls(nginx_goaway: Nginx, ssl_context: ssl.SSLContext) -> None:
    """Bug 7 over TLS (ALPN h2)."""
    pool = httpcore.PoolManager(ssl=ssl_context, timeout=10)
    results = _storm(pool, nginx_goaway.url("/small"), 200)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} of 200 failed, first: {errors[0]!r}"
    assert all(r == (200, SMALL_BODY) for r in results)


def _refuse_every_stream(conn: RawConnection) -> None:
    """h2: RST_STREAM(REFUSED_STREAM) for every request; counts them in shared."""
    lock = conn.server.shared.setdefault("lock", threading.Lock())
    assert isinstance(lock, type(threading.Lock()))

    def on_request(peer: h2faults.H2Peer, req: h2faults.H2Request) -> None:
        with lock:
            peer.server.shared["refused"] = int(peer.server.shared.get("refused", 0)) + 1  # type: ignore[call-overload]
        peer.reset(req.stream_id, ErrorCodes.REFUSED_STREAM)

    h2faults.serve(conn, on_request)


@pytest.mark.timeout(20)
def test_refused_stream_forever_gives_clear_error(raw: RawFactory) -> None:
    """Bug 7, the other side of retrying: a server that refuses every stream
    must give a clear error naming REFUSED_STREAM within the request's own
    timeout (RemoteProtocolError, or a TimeoutException), never a hang nor a
    busy retry loop."""
    server = raw(_refuse_every_stream)
    client = h2c_client()
    thread, outcome, finished = _request_in_thread(
        lambda: client.request("GET", server.url("/x"), timeout=2)
    )
    start = time.monotonic()
    thread.join(6)
    hung = thread.is_alive()
    client.close()
    refused = int(server.shared.get("refused", 0))  # type: ignore[call-overload]
    assert not hung, f"no answer after 6 s with timeout=2 ({refused} streams refused meanwhile)"
    elapsed = finished[0] - start
    assert elapsed < 4.0, elapsed
    [error] = outcome
    assert isinstance(error, (httpcore.RemoteProtocolError, httpcore.TimeoutException)), repr(
        error
    )
    messages = []
    cause: BaseException | None = error
    while cause is not None:
        messages.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    assert any("REFUSED_STREAM" in m for m in messages), messages
    assert 1 <= refused < 500, f"{refused} attempts in {elapsed:.2f}s: a busy retry loop"


# -- 11. http1/http2 must be honoured when clients share an SSLContext -------------------------


@pytest.mark.timeout(20)
def test_shared_ssl_context_http2_false_created_first(
    h2_server: HTTPServer, ssl_context: ssl.SSLContext
) -> None:
    """Bug 11: A = Client(ssl=ctx, http2=False), then B = Client(ssl=ctx):
    B's ALPN setting must not make A speak HTTP/2 (today A gets HTTP/2)."""
    with httpcore.Client(ssl=ssl_context, http2=False) as a:
        with httpcore.Client(ssl=ssl_context) as b:
            assert a.request("GET", h2_server.https_url()).http_version == "HTTP/1.1"
            assert b.request("GET", h2_server.https_url()).http_version == "HTTP/2"
            assert a.request("GET", h2_server.https_url()).http_version == "HTTP/1.1"


@pytest.mark.timeout(20)
def test_shared_ssl_context_http2_false_created_second(
    h2_server: HTTPServer, ssl_context: ssl.SSLContext
) -> None:
    """Bug 11, reverse order: B (http2 on) first, then A (http2=False) on the
    same context: A speaks HTTP/1.1 and B still gets HTTP/2 (today B is
    downgraded to HTTP/1.1)."""
    with httpcore.Client(ssl=ssl_context) as b:
        with httpcore.Client(ssl=ssl_context, http2=False) as a:
            assert b.request("GET", h2_server.https_url()).http_version == "HTTP/2"
            assert a.request("GET", h2_server.https_url()).http_version == "HTTP/1.1"
            assert b.request("GET", h2_server.https_url()).http_version == "HTTP/2"


@pytest.mark.timeout(20)
def test_shared_ssl_context_async_and_sync(
    h2_server: HTTPServer, ssl_context: ssl.SSLContext
) -> None:
    """Bug 11 across frontends: an http2=False PoolManager and an http2 Client
    sharing one context each get the protocol they asked for."""
    with httpcore.Client(ssl=ssl_context) as sync_client:

        async def main() -> str:
            async with httpcore.PoolManager(ssl=ssl_context, http2=False) as pool:
                version = sync_client.request("GET", h2_server.https_url()).http_version
                assert version == "HTTP/2"
                return (await pool.request("GET", h2_server.https_url())).http_version

        assert asyncio.run(main()) == "HTTP/1.1"


# -- 12. clients dropped without close() ------------------------------------------------------


@pytest.mark.timeout(30)
def test_dropped_clients_release_their_pools(raw: RawFactory) -> None:
    """Bug 12: 200 Clients, each used once and dropped without close(). Their
    pools (and connections) must be closed, not kept by the engine forever."""
    server = raw(handlers.keepalive_ok)
    engine = default_engine()
    gc.collect()
    with httpcore.Client() as probe:  # a round trip, so earlier ClosePools are done
        probe.request("GET", server.url("/probe"))
    baseline = len(engine._pools)

    def use_once(i: int) -> None:
        client = httpcore.Client()
        assert client.request("GET", server.url(f"/{i}")).body == b"ok"

    for i in range(200):
        use_once(i)
    gc.collect()
    with httpcore.Client() as fresh:
        assert fresh.request("GET", server.url("/fresh")).body == b"ok"
        try:
            poll_until(lambda: len(engine._pools) <= baseline + 1, timeout=5)
        except AssertionError:
            raise AssertionError(
                f"the engine still holds {len(engine._pools)} pools "
                f"({baseline} before, 200 clients dropped since)"
            ) from None
    # the dropped clients' connections are closed too (the server sees EOF)
    closed: set[object] = set()

    def all_closed() -> bool:
        try:
            while True:
                closed.add(server.wait_event("conn-done", timeout=0.05))
        except Exception:
            pass
        return len(closed) >= 201  # the probe's, and one per dropped client

    poll_until(all_closed, timeout=5)


@pytest.mark.timeout(20)
def test_streamed_response_keeps_dropped_client_alive(http_server: HTTPServer) -> None:
    """Bug 12, the other side: a response still being streamed keeps its
    client's pool alive; dropping the Client must not cut the body short."""
    size = 6_000_000  # more than the engine's 4 MiB stream window

    def start() -> httpcore.Response:
        client = httpcore.Client(timeout=10)
        return client.request("GET", http_server.url(f"/bytes/{size}"), stream=True)

    response = start()
    gc.collect()
    body = response.read()
    assert len(body) == size
    assert body == pattern(size)


# -- 14b. async introspection must not block the caller's loop ---------------------------------


@pytest.mark.timeout(20)
def test_aconnections(http_server: HTTPServer) -> None:
    """Bug 14b: ``await pool.aconnections()`` (API.md) lists the pool's
    connections without blocking the loop. Today: AttributeError."""

    async def main() -> tuple[list[httpcore.ConnectionInfo], list[httpcore.ConnectionInfo]]:
        async with httpcore.PoolManager() as pool:
            before = await pool.aconnections()
            response = await pool.request("GET", http_server.url("/echo"))
            assert response.status_code == 200
            return before, await pool.aconnections()

    before, after = asyncio.run(main())
    assert before == []
    [info] = after
    assert isinstance(info, httpcore.ConnectionInfo)
    assert (info.origin, info.http_version) == (http_server.base_url, "HTTP/1.1")
    assert (info.state, info.requests_served) == ("idle", 1)


@pytest.mark.timeout(20)
def test_repr_pool_manager_does_not_block_loop(http_server: HTTPServer) -> None:
    """Bug 14b: repr(pool) inside a running loop must return at once even while
    the engine thread is busy (today it waits for the engine's answer)."""
    engine = httpcore.Engine()
    release = threading.Event()
    try:

        async def main() -> tuple[str, float]:
            async with httpcore.PoolManager(engine=engine) as pool:
                await pool.request("GET", http_server.url("/echo"))
                assert engine._loop is not None
                engine._loop.call_soon_threadsafe(release.wait, 3)  # the engine is busy
                start = time.monotonic()
                text = repr(pool)
                elapsed = time.monotonic() - start
                release.set()
                return text, elapsed

        text, elapsed = asyncio.run(main())
    finally:
        release.set()
        engine.close()
    assert text.startswith("<PoolManager")
    assert elapsed < 0.5, f"repr(pool) blocked the event loop for {elapsed:.2f}s"


# -- 14. a response collected while the engine holds its inbox lock ---------------------


@pytest.mark.timeout(20)
def test_response_finalizer_takes_no_engine_lock(http_server: HTTPServer) -> None:
    """The garbage collector may finalize an unread response on the engine
    thread while that thread holds the inbox lock: the finalizer must not
    wait for that lock (it would wait for itself forever), and the request
    must still be cancelled and its connection freed."""
    engine = httpcore.Engine()
    try:
        with httpcore.Client(engine=engine) as client:
            response = client.request("GET", http_server.url("/bytes/20000000"), stream=True)
            finished = threading.Event()

            def finalize_under_lock() -> None:
                with engine._lock:  # what the engine thread holds while draining its inbox
                    response.__del__()
                finished.set()

            worker = threading.Thread(target=finalize_under_lock, daemon=True)
            worker.start()
            assert finished.wait(5), "the finalizer waited for the engine's inbox lock"
            # the cancel reached the engine: the unread HTTP/1.1 stream is closed
            poll_until(lambda: all(c.state != "active" for c in client.connections()))
            assert client.request("GET", http_server.url()).status_code == 200
    finally:
        engine.close()
