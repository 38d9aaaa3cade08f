"""HTTP/2 multiplexing: many threads, tasks and event loops on one TCP connection.

TCP connections are counted at the server: nginx logs ``$connection`` (its
serial number of the TCP connection) for every request; the ``h2`` fault
servers count ``accepted``.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import httpcore
from tests.servers import h2faults
from tests.servers.app import pattern
from tests.servers.h2faults import H2Peer
from tests.servers.h2nginx import SMALL_BODY, Nginx
from tests.servers.h2util import get_from_threads, h2c_client, live, poll_until
from tests.servers.handles import HTTPServer, RawFactory
from tests.servers.raw import Handler, RawConnection


def test_64_threads_share_one_connection(nginx_h2: Nginx, ssl_context: ssl.SSLContext) -> None:
    threads, per_thread = 64, 20
    marker = "t=threads64"

    with httpcore.Client(ssl=ssl_context) as client:
        results = get_from_threads(
            client, lambda i, j: nginx_h2.url(f"/small?{marker}-{i}-{j}"), threads, per_thread
        )
        infos = client.connections()

    assert len(results) == threads * per_thread
    assert set(results) == {(200, "HTTP/2", SMALL_BODY)}
    assert len(infos) == 1, infos
    assert infos[0].http_version == "HTTP/2"
    assert infos[0].requests_served == threads * per_thread
    lines = nginx_h2.log(marker, threads * per_thread)
    assert len(lines) == threads * per_thread
    assert {line.protocol for line in lines} == {"HTTP/2.0"}
    assert len({line.connection for line in lines}) == 1, "more than one TCP connection"


def test_event_loops_in_threads_share_one_connection(
    nginx_h2: Nginx, ssl_context: ssl.SSLContext
) -> None:
    loops, tasks, per_task = 4, 25, 4
    marker = "t=loops"
    pool = httpcore.PoolManager(ssl=ssl_context)
    barrier = threading.Barrier(loops)

    def run_loop(i: int) -> list[tuple[int, str, bytes]]:
        async def task(k: int) -> list[tuple[int, str, bytes]]:
            out = []
            for j in range(per_task):
                r = await pool.request("GET", nginx_h2.url(f"/small?{marker}-{i}-{k}-{j}"))
                out.append((r.status_code, r.http_version, r.body))
            return out

        async def main() -> list[tuple[int, str, bytes]]:
            parts = await asyncio.gather(*(task(k) for k in range(tasks)))
            return [r for p in parts for r in p]

        barrier.wait()
        return asyncio.run(main())

    try:
        with ThreadPoolExecutor(loops) as executor:
            results = [r for rs in executor.map(run_loop, range(loops)) for r in rs]
        infos = pool.connections()
    finally:
        pool.close()
    total = loops * tasks * per_task
    assert len(results) == total
    assert set(results) == {(200, "HTTP/2", SMALL_BODY)}
    assert [(i.http_version, i.requests_served) for i in infos] == [("HTTP/2", total)]
    lines = nginx_h2.log(marker, total)
    assert len(lines) == total
    assert len({line.connection for line in lines}) == 1


@pytest.mark.parametrize("max_connections", [None, 1])
def test_500_concurrent_requests_on_100_stream_server(
    h2_server: HTTPServer, ssl_context: ssl.SSLContext, max_connections: int | None
) -> None:
    """hypercorn allows 100 streams per connection: 500 at once all succeed,
    waiting for a free stream (max_connections=1) or on extra connections."""
    limits = httpcore.Limits(max_connections=max_connections)

    async def main() -> tuple[list[httpcore.AsyncResponse], list[httpcore.ConnectionInfo]]:
        async with httpcore.PoolManager(ssl=ssl_context, limits=limits, timeout=30) as pool:
            responses = await asyncio.gather(
                *(pool.request("GET", h2_server.https_url(f"/bytes/{i}")) for i in range(500))
            )
            return list(responses), await asyncio.to_thread(pool.connections)

    responses, infos = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * 500
    assert all(r.body == pattern(i) for i, r in enumerate(responses))
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert {i.http_version for i in infos} == {"HTTP/2"}
    assert sum(i.requests_served for i in infos) == 500
    if max_connections == 1:
        assert len(infos) == 1
    else:
        assert 1 <= len(infos) <= 5, infos  # 100 streams each: never more than needed


def test_while_first_connection_is_set_up_others_wait(
    raw: RawFactory, server_h2_context: ssl.SSLContext, ssl_context: ssl.SSLContext
) -> None:
    """The TLS handshake is held until every request is queued behind the
    connecting one: they must wait for it rather than open their own."""
    gate = threading.Event()
    n = 12

    def handler(conn: RawConnection) -> None:
        conn.server.signal("accepted", conn.index)
        if not gate.wait(20):
            return
        conn.sock = server_h2_context.wrap_socket(conn.sock, server_side=True)
        h2faults.serve(conn, h2faults.ok)

    server = raw(handler)
    with httpcore.Client(ssl=ssl_context) as client:
        with ThreadPoolExecutor(n) as executor:
            futures = [
                executor.submit(client.request, "GET", server.url(f"/{i}", "https"))
                for i in range(n)
            ]
            try:
                assert server.wait_event("accepted") == 0
                poll_until(lambda: f"queued={n - 1}" in repr(client))
                assert server.accepted == 1
                [info] = client.connections()
                assert info.state == "connecting"
            finally:
                gate.set()
            bodies = sorted(f.result(timeout=20).body for f in futures)
        assert bodies == sorted(b"conn0:/%d" % i for i in range(n))
        [info] = client.connections()
        assert (info.http_version, info.requests_served) == ("HTTP/2", n)
    assert server.accepted == 1


def test_sync_threads_share_hypercorn_h2c(h2_server: HTTPServer) -> None:
    import json

    with h2c_client() as client:

        def work(i: int) -> set[int]:
            ports = set()
            for _ in range(10):
                r = client.request("POST", h2_server.url("/echo"), body=b"x" * i)
                body = json.loads(r.body)
                assert body["body_length"] == i
                assert body["http_version"] == "2"
                ports.add(body["client_port"])
            return ports

        with ThreadPoolExecutor(16) as executor:
            ports = set().union(*executor.map(work, range(16)))
        assert len(ports) == 1  # one TCP connection, seen from the server
        assert len(client.connections()) == 1


MCS_ONE = [
    pytest.param(h2faults.max_streams_one, id="settings-first"),
    pytest.param(h2faults.max_streams_one_late_settings, id="settings-late"),
]


@pytest.mark.parametrize("handler", MCS_ONE)
def test_streams_beyond_max_concurrent_wait_one_connection(
    raw: RawFactory, handler: Handler
) -> None:
    """SETTINGS_MAX_CONCURRENT_STREAMS=1 and max_connections=1: everything goes
    through one stream at a time; after the client has acknowledged the
    SETTINGS the server never sees two streams open at once. Streams opened
    before the SETTINGS arrived are refused (REFUSED_STREAM) and must be retried."""
    server = raw(handler)
    with h2c_client(limits=httpcore.Limits(max_connections=1), timeout=20) as client:

        def work(i: int) -> list[bytes]:
            return [client.request("GET", server.url(f"/{i}-{j}")).body for j in range(5)]

        with ThreadPoolExecutor(16) as executor:
            bodies = sorted(b for bs in executor.map(work, range(16)) for b in bs)
    assert bodies == sorted(b"conn0:/%d-%d" % (i, j) for i in range(16) for j in range(5))
    assert server.accepted == 1
    assert server.shared["max_open_after_ack"] == 1, server.shared


@pytest.mark.parametrize("handler", MCS_ONE)
def test_streams_beyond_max_concurrent_default_limits(raw: RawFactory, handler: Handler) -> None:
    """Same server, default limits: requests beyond the one stream per connection
    wait or use more connections; none fails, no connection ever has two open."""
    server = raw(handler)

    async def main() -> list[bytes]:
        async with httpcore.PoolManager(http1=False, http2=True, timeout=20) as pool:
            rs = await asyncio.gather(
                *(pool.request("GET", server.url(f"/{i}")) for i in range(150))
            )
            return [r.body.split(b":", 1)[1] for r in rs]

    assert asyncio.run(main()) == [b"/%d" % i for i in range(150)]
    assert server.shared["max_open_after_ack"] == 1, server.shared


def test_pool_timeout_when_the_only_stream_is_taken(raw: RawFactory) -> None:
    def handler(conn: RawConnection) -> None:
        def on_request(peer: H2Peer, req: h2faults.H2Request) -> None:
            if req.path == b"/hang":
                peer.server.signal("hanging", req.stream_id)
            else:
                h2faults.ok(peer, req)

        h2faults.serve(conn, on_request, {h2faults.S.MAX_CONCURRENT_STREAMS: 1})

    server = raw(handler)
    limits = httpcore.Limits(max_connections=1)
    with h2c_client(limits=limits) as client:
        assert client.request("GET", server.url("/warm")).body == b"conn0:/warm"  # SETTINGS seen
        with ThreadPoolExecutor(1) as executor:
            hung = executor.submit(
                client.request, "GET", server.url("/hang"), timeout=httpcore.Timeout(5, read=3)
            )
            server.wait_event("hanging")
            with pytest.raises(httpcore.PoolTimeout) as info:
                client.request("GET", server.url("/x"), timeout=httpcore.Timeout(5, pool=0.3))
            assert info.value.__cause__ is not None
            assert isinstance(info.value, httpcore.TimeoutException)
            with pytest.raises(httpcore.ReadTimeout):
                hung.result(timeout=10)
        # the stream was freed: the connection serves again
        assert client.request("GET", server.url("/after")).body == b"conn0:/after"
        assert len(live(client.connections())) == 1
    assert server.accepted == 1
