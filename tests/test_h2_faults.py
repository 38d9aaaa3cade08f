"""HTTP/2 connection life and faults, against ``h2`` fault servers on raw sockets:
GOAWAY, RST_STREAM, trailers, idle close, timeouts and protocol garbage."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from h2.errors import ErrorCodes

import httpcore
from tests.servers import h2faults
from tests.servers.h2util import h2c_client, h2c_pool, live, poll_until
from tests.servers.handles import RawFactory


def _outcome(result: object) -> object:
    if isinstance(result, BaseException):
        return result
    assert isinstance(result, httpcore.AsyncResponse)
    assert result.status_code == 200
    return result.body


# -- GOAWAY ---------------------------------------------------------------------------


def test_goaway_retries_streams_above_last_stream_id(raw: RawFactory) -> None:
    """Six streams in flight; GOAWAY names the third as the last one processed:
    streams 1-3 complete on the first connection, 4-6 are retried on a new one."""
    server = raw(h2faults.goaway_after(6, 3))

    async def main() -> list[object]:
        async with h2c_pool(timeout=10) as pool:
            results = await asyncio.gather(
                *(pool.request("GET", server.url(f"/{i}")) for i in range(6)),
                return_exceptions=True,
            )
            # the old connection takes nothing new and is gone
            infos = await asyncio.to_thread(
                poll_until, lambda: len(live(pool.connections())) == 1 and pool.connections()
            )
            assert [i.requests_served for i in live(infos)] == [3]
            return [_outcome(r) for r in results]

    outcomes = asyncio.run(main())
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert not errors, errors
    by_conn: dict[bytes, list[bytes]] = {}
    for body in outcomes:
        assert isinstance(body, bytes)
        conn, path = body.split(b":", 1)
        by_conn.setdefault(conn, []).append(path)
    assert sorted(by_conn) == [b"conn0", b"conn1"]
    assert len(by_conn[b"conn0"]) == 3
    assert len(by_conn[b"conn1"]) == 3
    assert sorted(by_conn[b"conn0"] + by_conn[b"conn1"]) == [b"/%d" % i for i in range(6)]
    last, ids = server.wait_event("goaway-sent")  # type: ignore[misc]
    assert ids == [1, 3, 5, 7, 9, 11]
    assert last == 5
    server.wait_event("goaway-conn-closed")  # the client closed the GOAWAY'd connection
    assert server.accepted == 2


def test_goaway_sync_threads(raw: RawFactory) -> None:
    from concurrent.futures import ThreadPoolExecutor

    server = raw(h2faults.goaway_after(4, 2))
    with h2c_client(timeout=10) as client:
        with ThreadPoolExecutor(4) as executor:
            bodies = list(
                executor.map(lambda i: client.request("GET", server.url(f"/{i}")).body, range(4))
            )
    assert sorted(b.split(b":")[1] for b in bodies) == [b"/0", b"/1", b"/2", b"/3"]
    assert sorted(b.split(b":")[0] for b in bodies) == [b"conn0", b"conn0", b"conn1", b"conn1"]
    assert server.accepted == 2


# -- RST_STREAM -----------------------------------------------------------------------


def test_rst_stream_fails_only_that_request(raw: RawFactory) -> None:
    server = raw(h2faults.reset_some(ErrorCodes.ENHANCE_YOUR_CALM))

    async def main() -> list[object]:
        async with h2c_pool() as pool:
            paths = ["/a", "/b", "/reset", "/c", "/d"]
            results = await asyncio.gather(
                *(pool.request("GET", server.url(p)) for p in paths), return_exceptions=True
            )
            after = await pool.request("GET", server.url("/after"))
            assert after.body == b"conn0:/after"
            [info] = await asyncio.to_thread(pool.connections)
            assert (info.state, info.active_streams) == ("idle", 0)
            return [_outcome(r) for r in results]

    outcomes = asyncio.run(main())
    assert outcomes[:2] == [b"conn0:/a", b"conn0:/b"]
    assert outcomes[3:] == [b"conn0:/c", b"conn0:/d"]
    error = outcomes[2]
    assert isinstance(error, httpcore.RemoteProtocolError)
    assert isinstance(error, httpcore.ProtocolError)
    assert "ENHANCE_YOUR_CALM" in str(error)
    assert error.__cause__ is not None
    assert server.accepted == 1  # a stream error does not cost the connection


def test_rst_stream_not_retried_for_post(raw: RawFactory) -> None:
    server = raw(h2faults.reset_some(ErrorCodes.INTERNAL_ERROR))
    with h2c_client() as client:
        with pytest.raises(httpcore.RemoteProtocolError, match="INTERNAL_ERROR"):
            client.request("POST", server.url("/reset"), body=b"x")
        assert client.request("POST", server.url("/ok"), body=b"x").body == b"conn0:/ok"
    paths = [r.path for r in server.shared["requests"]]  # type: ignore[attr-defined]
    assert paths == [b"/ok"]  # the reset one was not sent again


# -- trailers, idle close ---------------------------------------------------------------


def test_trailers_tolerated(raw: RawFactory) -> None:
    server = raw(h2faults.trailers_server)
    with h2c_client() as client:
        for _ in range(2):
            response = client.request("GET", server.url("/t"))
            assert response.status_code == 200
            assert response.body == b"body before trailers"
            assert (b"trailer", b"x-checksum") in response.headers
        with client.request("GET", server.url("/t"), stream=True) as response:
            assert b"".join(response.stream()) == b"body before trailers"
        [info] = client.connections()
        assert (info.state, info.requests_served) == ("idle", 3)
    assert server.accepted == 1


def test_trailers_tolerated_tls(
    raw: RawFactory, server_h2_context: ssl.SSLContext, ssl_context: ssl.SSLContext
) -> None:
    server = raw(h2faults.trailers_server, tls=server_h2_context)
    with httpcore.Client(ssl=ssl_context) as client:
        response = client.request("GET", server.url("/t"))
        assert (response.http_version, response.body) == ("HTTP/2", b"body before trailers")


@pytest.mark.parametrize("goaway", [True, False], ids=["goaway-then-close", "plain-close"])
def test_server_closing_idle_connection(raw: RawFactory, goaway: bool) -> None:
    server = raw(h2faults.answer_one_then_close(goaway))
    with h2c_client() as client:
        assert client.request("GET", server.url("/first")).body == b"conn0:/first"
        assert server.wait_event("idle-closed") == 0
        # whether or not the engine has noticed the close yet, this must just work
        assert client.request("GET", server.url("/second")).body == b"conn1:/second"
        assert client.request("GET", server.url("/third")).body == b"conn1:/third"
        assert len(live(client.connections())) == 1
    assert server.accepted == 2


def test_server_closing_idle_connection_is_noticed(raw: RawFactory) -> None:
    """Noticed without a request: the pool drops the connection by itself."""
    server = raw(h2faults.answer_one_then_close(True))
    with h2c_client() as client:
        assert client.request("GET", server.url("/first")).body == b"conn0:/first"
        server.wait_event("idle-closed")
        poll_until(lambda: live(client.connections()) == [])
        assert client.request("GET", server.url("/second")).body == b"conn1:/second"


# -- timeouts ---------------------------------------------------------------------------


def test_read_timeout_on_one_stream(raw: RawFactory) -> None:
    server = raw(h2faults.hang_some)
    with h2c_client() as client:
        assert client.request("GET", server.url("/warm")).body == b"conn0:/warm"
        with pytest.raises(httpcore.ReadTimeout) as info:
            client.request("GET", server.url("/hang"), timeout=httpcore.Timeout(5, read=0.4))
        assert info.value.__cause__ is not None
        assert isinstance(info.value, httpcore.TimeoutException)
        stream_id = server.wait_event("hanging")
        assert server.wait_event("client-reset") == (0, stream_id, ErrorCodes.CANCEL)
        # the connection is fine: only that stream was given up
        assert client.request("GET", server.url("/after")).body == b"conn0:/after"
        [info2] = client.connections()
        assert (info2.active_streams, info2.requests_served) == (0, 2)
    assert server.accepted == 1


def test_read_timeout_when_server_stops_reading(raw: RawFactory) -> None:
    server = raw(h2faults.stops_reading)
    with h2c_client() as client:
        with pytest.raises(httpcore.ReadTimeout) as info:
            client.request("GET", server.url("/x"), timeout=httpcore.Timeout(5, read=0.4))
        assert info.value.__cause__ is not None
        assert server.wait_event("stopped-reading") == 0


def test_read_timeout_async(raw: RawFactory) -> None:
    server = raw(h2faults.hang_some)

    async def main() -> None:
        async with h2c_pool() as pool:
            results = await asyncio.gather(
                pool.request("GET", server.url("/hang"), timeout=httpcore.Timeout(5, read=0.4)),
                pool.request("GET", server.url("/fine")),
                return_exceptions=True,
            )
            assert isinstance(results[0], httpcore.ReadTimeout)
            assert isinstance(results[1], httpcore.AsyncResponse)
            assert results[1].body == b"conn0:/fine"

    asyncio.run(main())


# -- protocol garbage -------------------------------------------------------------------


def test_connection_level_garbage(raw: RawFactory) -> None:
    server = raw(h2faults.garbage_after_request)
    with h2c_client() as client:
        with pytest.raises(httpcore.RemoteProtocolError) as info:
            client.request("GET", server.url("/x"))
        error = info.value
        assert isinstance(error, httpcore.ProtocolError)
        assert isinstance(error, httpcore.HTTPCoreError)
        assert error.__cause__ is not None
        assert "protocol" in str(error).lower()
        assert "internal error" not in str(error)
        assert live(client.connections()) == []  # the pool dropped it
        assert client.request("GET", server.url("/y")).body == b"conn1:/y"
    assert server.accepted == 2


def test_connection_level_garbage_fails_all_open_streams(raw: RawFactory) -> None:
    """Streams open when the connection breaks all fail with a clear error;
    nothing hangs."""
    server = raw(h2faults.garbage_after(5))

    async def main() -> list[BaseException | httpcore.AsyncResponse]:
        async with h2c_pool(timeout=10) as pool:
            return await asyncio.gather(
                *(pool.request("POST", server.url(f"/{i}"), body=b"x") for i in range(5)),
                return_exceptions=True,
            )

    results = asyncio.run(main())
    assert all(isinstance(r, httpcore.RemoteProtocolError) for r in results), results
    assert server.wait_event("garbage-sent") == 0
    assert server.accepted == 1


def test_malformed_response_head_is_refused_every_time(raw: RawFactory) -> None:
    """Heads that pass the checks are remembered per connection; one that
    fails must fail again when it comes back, on the same connection."""
    server = raw(h2faults.malformed_headers)
    with h2c_client() as client:
        for _ in range(3):
            with pytest.raises(httpcore.RemoteProtocolError, match="malformed response head"):
                client.request("GET", server.url("/upper"))
            assert client.request("GET", server.url("/ok")).body == b"fine:/ok"
        assert server.accepted == 1


def test_a_repeated_head_still_frames_each_body(raw: RawFactory) -> None:
    """The same head again (remembered once checked) still sets each
    response's content-length: a short body under it is an error, a HEAD
    answer under it has none; and each response gets its own header list."""
    server = raw(h2faults.same_head)
    with h2c_client() as client:
        first = client.request("GET", server.url("/a"))
        assert first.body == b"hello"
        assert first.headers == h2faults.SAME_HEAD
        first.headers.append((b"x-mine", b"1"))
        with pytest.raises(httpcore.RemoteProtocolError, match=r"5 bytes|content-length 5"):
            client.request("GET", server.url("/short"))
        head = client.request("HEAD", server.url("/a"))
        assert (head.status_code, head.body) == (200, b"")
        again = client.request("GET", server.url("/b"))
        assert (again.body, again.headers) == (b"hello", h2faults.SAME_HEAD)
        assert server.accepted == 1


@pytest.mark.parametrize("path", sorted(p.decode() for p in h2faults.MALFORMED))
def test_malformed_response_headers_are_refused(raw: RawFactory, path: str) -> None:
    """RFC 9113 §8.2: a malformed header block is an error for its request,
    never a response; the client goes on working."""
    server = raw(h2faults.malformed_headers)
    with h2c_client() as client:
        with pytest.raises(httpcore.RemoteProtocolError):
            client.request("GET", server.url(path))
        assert client.request("GET", server.url("/ok")).body == b"fine:/ok"
