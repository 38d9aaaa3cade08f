"""``response.trailers`` (API.md, "Response"): HTTP/1.1 chunked trailers and
HTTP/2 trailing HEADERS, a ``list[tuple[bytes, bytes]]`` once the body is read
(``[]`` without trailers); before that, with ``stream=True``, ``ResponseNotRead``."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

import httpcore
from tests.conftest import ROOT
from tests.servers import raw as handlers
from tests.servers import trailers as servers
from tests.servers.h2util import h2c_client, h2c_pool
from tests.servers.handles import RawFactory
from tests.servers.process import free_port, stop_process, wait_listening
from tests.servers.trailers import BODY, H1_TRAILERS, H2_TRAILERS

pytestmark = pytest.mark.timeout(20)

Fields = list[tuple[bytes, bytes]]


def _not_read(response: httpcore.Response | httpcore.AsyncResponse) -> bool:
    try:
        response.trailers  # noqa: B018
    except httpcore.ResponseNotRead:
        return True
    return False


def _sync_ways(client: httpcore.Client, url: str) -> list[tuple[str, bytes, Fields]]:
    """(how, body, trailers): stream=False; stream=True + read(); stream=True + stream()."""
    out = []
    response = client.request("GET", url)
    out.append(("stream=False", response.body, response.trailers))
    with client.request("GET", url, stream=True) as response:
        body = response.read()
        out.append(("read()", body, response.trailers))
    with client.request("GET", url, stream=True) as response:
        body = b"".join(response.stream())
        out.append(("stream()", body, response.trailers))
    return out


async def _async_ways(pool: httpcore.PoolManager, url: str) -> list[tuple[str, bytes, Fields]]:
    out = []
    response = await pool.request("GET", url)
    out.append(("stream=False", response.body, response.trailers))
    async with await pool.request("GET", url, stream=True) as response:
        body = await response.aread()
        out.append(("aread()", body, response.trailers))
    async with await pool.request("GET", url, stream=True) as response:
        body = b"".join([part async for part in response.stream()])
        out.append(("stream()", body, response.trailers))
    return out


def _expected(ways: list[str], trailers: Fields) -> list[tuple[str, bytes, Fields]]:
    return [(how, BODY, trailers) for how in ways]


SYNC_WAYS = ["stream=False", "read()", "stream()"]
ASYNC_WAYS = ["stream=False", "aread()", "stream()"]


# -- HTTP/1.1 ---------------------------------------------------------------------------


def test_h1_chunked_trailers_client(raw: RawFactory) -> None:
    server = raw(servers.chunked_trailers)
    with httpcore.Client(timeout=5.0) as client:
        got = _sync_ways(client, server.url("/t"))
        head = client.request("GET", server.url("/t")).headers
    assert got == _expected(SYNC_WAYS, H1_TRAILERS)  # names as received
    assert (b"Trailer", b"grpc-status") in head
    assert server.accepted == 1  # the connection is reused after each set of trailers


def test_h1_chunked_trailers_pool_manager(raw: RawFactory) -> None:
    server = raw(servers.chunked_trailers)

    async def main() -> list[tuple[str, bytes, Fields]]:
        async with httpcore.PoolManager(timeout=5.0) as pool:
            return await _async_ways(pool, server.url("/t"))

    assert asyncio.run(main()) == _expected(ASYNC_WAYS, H1_TRAILERS)
    assert server.accepted == 1


def test_h1_trailers_arrive_after_the_body(raw: RawFactory) -> None:
    """The trailers are not there yet when the head is: reading them then
    raises; once the rest of the body is read they are there."""
    go = threading.Event()
    server = raw(servers.gated_chunked_trailers)
    server.shared["go"] = go
    try:
        with httpcore.Client(timeout=5.0) as client:
            response = client.request("GET", server.url("/t"), stream=True)
            server.wait_event("head-sent")
            assert _not_read(response)
            go.set()
            assert response.read() == BODY
            assert response.trailers == H1_TRAILERS
            response.close()
    finally:
        go.set()


@pytest.mark.parametrize(
    "handler",
    [handlers.keepalive_ok, servers.chunked_no_trailers],
    ids=["content-length", "chunked"],
)
def test_h1_no_trailers_is_empty_list(raw: RawFactory, handler: handlers.Handler) -> None:
    server = raw(handler)
    with httpcore.Client(timeout=5.0) as client:
        response = client.request("GET", server.url("/"))
        assert response.trailers == []
        with client.request("GET", server.url("/"), stream=True) as response:
            response.read()
            assert response.trailers == []


# -- HTTP/2 -----------------------------------------------------------------------------


def test_h2_trailing_headers_client(raw: RawFactory) -> None:
    server = raw(servers.h2_trailers)
    with h2c_client(timeout=5.0) as client:
        got = _sync_ways(client, server.url("/t"))
        response = client.request("GET", server.url("/t"))
    assert got == _expected(SYNC_WAYS, H2_TRAILERS)
    assert response.http_version == "HTTP/2"
    assert (b"trailer", b"grpc-status") in response.headers
    assert not any(name == b"grpc-status" for name, _ in response.headers)
    assert server.accepted == 1


def test_h2_trailing_headers_pool_manager_tls(
    raw: RawFactory, server_h2_context: ssl.SSLContext, ssl_context: ssl.SSLContext
) -> None:
    server = raw(servers.h2_trailers, tls=server_h2_context)

    async def main() -> tuple[str, list[tuple[str, bytes, Fields]]]:
        async with httpcore.PoolManager(ssl=ssl_context, timeout=5.0) as pool:
            version = (await pool.request("GET", server.url("/t"))).http_version
            return version, await _async_ways(pool, server.url("/t"))

    version, got = asyncio.run(main())
    assert version == "HTTP/2"
    assert got == _expected(ASYNC_WAYS, H2_TRAILERS)


def test_h2_trailers_arrive_after_the_body(raw: RawFactory) -> None:
    go = threading.Event()
    server = raw(servers.h2_gated_trailers)
    server.shared["go"] = go
    try:
        with h2c_client(timeout=5.0) as client:
            response = client.request("GET", server.url("/t"), stream=True)
            server.wait_event("head-sent")
            assert _not_read(response)
            go.set()
            assert response.read() == BODY
            assert response.trailers == H2_TRAILERS
            response.close()
    finally:
        go.set()


def test_h2_no_trailers_is_empty_list(raw: RawFactory) -> None:
    server = raw(servers.h2_no_trailers)

    async def main() -> tuple[Fields, Fields]:
        async with h2c_pool(timeout=5.0) as pool:
            plain = (await pool.request("GET", server.url("/"))).trailers
            async with await pool.request("GET", server.url("/"), stream=True) as response:
                await response.aread()
                return plain, response.trailers

    assert asyncio.run(main()) == ([], [])


def test_h2_pseudo_header_in_trailers_is_protocol_error(raw: RawFactory) -> None:
    server = raw(servers.h2_pseudo_header_trailers)
    with h2c_client(timeout=5.0) as client, pytest.raises(httpcore.RemoteProtocolError):
        client.request("GET", server.url("/bad"))


# -- stream=True: not before the caller has read the body ---------------------------------


@pytest.mark.parametrize("h2", [False, True], ids=["h1", "h2"])
def test_stream_trailers_need_read_even_when_all_arrived(raw: RawFactory, h2: bool) -> None:
    """A small response may be complete in the engine by the time its head is
    handed over: with ``stream=True`` the trailers still wait for ``read()``
    (as ``body`` does), so the outcome does not depend on network timing."""
    server = raw(servers.h2_trailers if h2 else servers.chunked_trailers)
    expected = H2_TRAILERS if h2 else H1_TRAILERS
    with httpcore.Client(http1=not h2, http2=h2, timeout=5.0) as client:
        for _ in range(3):
            with client.request("GET", server.url("/t"), stream=True) as response:
                assert _not_read(response), "trailers before read()"
                assert response.read() == BODY
                assert response.trailers == expected


def test_stream_trailers_need_aread_pool_manager(raw: RawFactory) -> None:
    server = raw(servers.chunked_trailers)

    async def main() -> list[tuple[bool, Fields]]:
        out = []
        async with httpcore.PoolManager(timeout=5.0) as pool:
            for _ in range(3):
                async with await pool.request("GET", server.url("/t"), stream=True) as response:
                    before = _not_read(response)
                    await response.aread()
                    out.append((before, response.trailers))
        return out

    assert asyncio.run(main()) == [(True, H1_TRAILERS)] * 3


# -- hypercorn: ASGI http.response.trailers ------------------------------------------------


@pytest.fixture(scope="module")
def hypercorn_trailers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of ``servers/trailers.py``'s app under hypercorn (h2c or HTTP/1.1)."""
    port = free_port()
    log = tmp_path_factory.mktemp("hypercorn-trailers") / "hypercorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.servers.trailers", str(port)],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_listening(port, proc)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process(proc)


def test_hypercorn_h2_trailers(hypercorn_trailers: str) -> None:
    url = hypercorn_trailers + "/t"
    with h2c_client(timeout=5.0) as client:
        response = client.request("GET", url, headers=[("te", "trailers")])
        assert (response.http_version, response.body) == ("HTTP/2", BODY)
        assert response.trailers == H2_TRAILERS
        # hypercorn leaves them out unless the request says "TE: trailers"
        response = client.request("GET", url)
        assert (response.body, response.trailers) == (BODY, [])
