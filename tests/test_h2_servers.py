"""HTTP/2 interoperability with more independent servers: nghttpd (nghttp2), h2o and
Apache httpd with mod_http2 (Debian packages nghttp2-server, h2o, apache2).

Each server runs once per session from a config written to a tmp dir
(``servers/h2others.py``), TLS with ALPN ``h2`` plus h2c on a plain port, serving
``/small``, a 32 MiB ``/big`` and ``POST /upload``. A server whose binary is not
installed is skipped; everything else about it is expected to work.

TCP connections are counted by the client (``connections()``) and, where the
server writes an access log (h2o, Apache), by the distinct client ports in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import ssl
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import trustme

import httpcore
from tests.servers import h2others, process
from tests.servers.app import pattern
from tests.servers.h2others import BIG_SIZE, SMALL_BODY, UPLOAD_PATH, H2Server
from tests.servers.h2util import get_from_threads, h2c_client, live

SERVERS = ["nghttpd", "h2o", "apache2"]
BIG_SHA = hashlib.sha256(pattern(BIG_SIZE)).hexdigest()
UPLOAD_SIZE = 5 * 1024 * 1024
UPLOAD_PIECE = 64 * 1024
UPLOAD_SHA = hashlib.sha256(pattern(UPLOAD_SIZE)).hexdigest()

INSTALL_HINT = "(Debian package {pkg}; scripts/_env.sh installs it: APT_PACKAGES)"


def _cert_files(cert: trustme.LeafCert, d: Path) -> tuple[Path, Path]:
    certfile, keyfile = process.write_cert(cert, d)
    keyfile.chmod(0o600)
    return certfile, keyfile


RunServer = Callable[[str, Path, Path, Path], contextlib.AbstractContextManager[H2Server]]

SIMPLE_SERVERS: dict[str, tuple[RunServer, str, tuple[str, ...]]] = {
    "nghttpd": (h2others.run_nghttpd, "nghttp2-server", ("/usr/sbin/nghttpd", "/usr/bin/nghttpd")),
    "h2o": (h2others.run_h2o, "h2o", ("/usr/bin/h2o", "/usr/sbin/h2o")),
}
"""name: (``run(exe, dir, certfile, keyfile)``, Debian package, paths beside PATH)."""


def _start_simple(
    name: str, cert: trustme.LeafCert, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[H2Server]:
    """``SIMPLE_SERVERS[name]`` in a fresh tmp dir; skipped when not installed."""
    run, pkg, extra = SIMPLE_SERVERS[name]
    exe = process.binary(name, extra=extra)
    if exe is None:
        pytest.skip(f"{name} is not installed " + INSTALL_HINT.format(pkg=pkg))
    d = tmp_path_factory.mktemp(name)
    certfile, keyfile = _cert_files(cert, d)
    with run(exe, d, certfile, keyfile) as server:
        yield server


@pytest.fixture(scope="session")
def nghttpd_server(
    server_cert: trustme.LeafCert, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[H2Server]:
    yield from _start_simple("nghttpd", server_cert, tmp_path_factory)


@pytest.fixture(scope="session")
def h2o_server(
    server_cert: trustme.LeafCert, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[H2Server]:
    yield from _start_simple("h2o", server_cert, tmp_path_factory)


@pytest.fixture(scope="session")
def apache2_server(
    server_cert: trustme.LeafCert, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[H2Server]:
    exe = process.binary("apache2", "httpd", extra=("/usr/sbin/apache2", "/usr/sbin/httpd"))
    modules = h2others.apache_modules_dir()
    if exe is None or modules is None:
        pytest.skip(
            "Apache httpd with mod_http2 is not installed " + INSTALL_HINT.format(pkg="apache2")
        )
    with contextlib.ExitStack() as stack:
        if os.geteuid() == 0:
            # Apache's workers then run as www-data: pytest's 0700 tmp dir is out of
            # their reach, so they get a world-readable one (removed afterwards).
            d = stack.enter_context(h2others.world_readable_dir("httpcore-apache2-"))
        else:
            d = tmp_path_factory.mktemp("apache2")
        cert, key = _cert_files(server_cert, d)
        yield stack.enter_context(h2others.run_apache(exe, modules, d, cert, key))


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> H2Server:
    result = request.getfixturevalue(f"{request.param}_server")
    assert isinstance(result, H2Server)
    return result


def _connections_in_log(server: H2Server, marker: str, expect: int) -> set[str]:
    lines = server.access_log(marker, expect)
    assert len(lines) == expect, lines[-5:]
    assert {line.split()[2] for line in lines} == {"200"}, lines[-5:]
    assert all(line.split()[1].startswith("HTTP/2") for line in lines), lines[-5:]
    return {line.split()[0] for line in lines}


def _digest(chunks: Iterable[bytes], sizes: list[int] | None = None) -> tuple[int, str]:
    """(byte count, SHA-256) of a streamed body; the chunk sizes go to ``sizes``."""
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if sizes is not None:
            sizes.append(len(chunk))
    return size, digest.hexdigest()


def _upload_pieces() -> Iterator[bytes]:
    body = pattern(UPLOAD_SIZE)
    for offset in range(0, UPLOAD_SIZE, UPLOAD_PIECE):
        yield body[offset : offset + UPLOAD_PIECE]


# -- 1. many threads, one connection ----------------------------------------------------


def test_32_threads_share_one_connection(server: H2Server, ssl_context: ssl.SSLContext) -> None:
    threads, per_thread = 32, 20
    marker = f"t=threads32-{server.name}"

    with httpcore.Client(ssl=ssl_context, timeout=20) as client:
        results = get_from_threads(
            client, lambda i, j: server.url(f"/small?{marker}-{i}-{j}"), threads, per_thread
        )
        infos = client.connections()

    assert len(results) == threads * per_thread
    assert set(results) == {(200, "HTTP/2", SMALL_BODY)}
    assert len(infos) == 1, infos
    assert infos[0].http_version == "HTTP/2"
    assert infos[0].requests_served == threads * per_thread
    if server.has_access_log:
        ports = _connections_in_log(server, marker, threads * per_thread)
        assert len(ports) == 1, f"{len(ports)} TCP connections seen by {server.name}"


# -- 2. a streamed 32 MiB download ------------------------------------------------------


def test_streamed_download_of_32_mib(server: H2Server, ssl_context: ssl.SSLContext) -> None:
    with httpcore.Client(ssl=ssl_context, timeout=30) as client:
        with client.request("GET", server.url("/big"), stream=True) as response:
            assert response.status_code == 200
            assert response.http_version == "HTTP/2"
            chunks: list[int] = []
            result = _digest(response.stream(), chunks)
        assert result == (BIG_SIZE, BIG_SHA)
        assert len(chunks) > 1, "the body was not streamed"
        [info] = client.connections()
        assert (info.http_version, info.requests_served) == ("HTTP/2", 1)


# -- 3. slow readers do not starve the connection ---------------------------------------


def test_unread_streams_do_not_starve_the_connection(
    server: H2Server, ssl_context: ssl.SSLContext
) -> None:
    """Four 32 MiB responses nobody reads: HTTP/2 flow control holds each of them
    back by its own stream window, so the connection keeps serving others.

    A fifth 32 MiB response is read through first: while it crosses the same
    connection the server fills the four unread streams' windows (it interleaves
    streams), so the small request that follows meets them stalled, not racing
    them. Unread streams that ate the connection window would stall the fifth."""
    with httpcore.Client(ssl=ssl_context, timeout=30) as client:
        responses = [
            client.request("GET", server.url(f"/big?t=unread-{i}"), stream=True) for i in range(4)
        ]
        try:
            assert [(r.status_code, r.http_version) for r in responses] == [(200, "HTTP/2")] * 4
            with client.request(
                "GET", server.url("/big?t=read-beside-unread"), stream=True, timeout=5
            ) as fifth:
                assert _digest(fifth.stream()) == (BIG_SIZE, BIG_SHA)
            small = client.request("GET", server.url("/small?t=beside-unread"), timeout=5)
            assert (small.status_code, small.body) == (200, SMALL_BODY)
            infos = client.connections()
            assert len(infos) == 1, infos
            assert infos[0].active_streams == 4
            for r in responses:
                assert _digest(r.stream()) == (BIG_SIZE, BIG_SHA)
        finally:
            for r in responses:
                r.close()
        [info] = live(client.connections())
        assert info.requests_served == 6


# -- 4. 200 concurrent async requests ---------------------------------------------------


def test_200_concurrent_async_requests(server: H2Server, ssl_context: ssl.SSLContext) -> None:
    n = 200
    marker = f"t=async200-{server.name}"

    async def main() -> tuple[list[httpcore.AsyncResponse], list[httpcore.ConnectionInfo]]:
        async with httpcore.PoolManager(ssl=ssl_context, timeout=30) as pool:
            responses = await asyncio.gather(
                *(pool.request("GET", server.url(f"/small?{marker}-{i}")) for i in range(n))
            )
            return list(responses), await pool.aconnections()

    responses, infos = asyncio.run(main())
    assert {(r.status_code, r.http_version, r.body) for r in responses} == {
        (200, "HTTP/2", SMALL_BODY)
    }
    assert len(responses) == n
    assert {i.http_version for i in infos} == {"HTTP/2"}
    assert sum(i.requests_served for i in infos) == n
    # each server allows 100 concurrent streams: never more connections than needed
    assert 1 <= len(infos) <= 2, infos
    if server.has_access_log:
        _connections_in_log(server, marker, n)


# -- 5. GOAWAY after a few requests: not here ------------------------------------------
# None of these servers can be told to send GOAWAY after N requests on a
# connection (nghttpd has no such option; h2o 2.2 shuts down gracefully only
# when the whole server stops; mod_http2 ignores MaxKeepAliveRequests and its
# GOAWAY comes from a stopping child, where the event MPM also drops fresh
# idle connections without one). nginx's keepalive_requests does it:
# tests/test_lifecycle.py runs the GOAWAY storm there.


# -- 6. a streamed upload ---------------------------------------------------------------


def test_streamed_upload_of_5_mib(server: H2Server, ssl_context: ssl.SSLContext) -> None:
    with httpcore.Client(ssl=ssl_context, timeout=30) as client:
        response = client.request("POST", server.url(UPLOAD_PATH), body=_upload_pieces())
        assert response.status_code == 200, response.body[:200]
        assert response.http_version == "HTTP/2"
        if server.upload_reply == "echo":
            assert len(response.body) == UPLOAD_SIZE
        assert server.upload_digest(response.body) == UPLOAD_SHA
        [info] = client.connections()
        assert info.requests_served == 1


# -- h2c (prior knowledge) --------------------------------------------------------------


def test_h2c_prior_knowledge(server: H2Server) -> None:
    """The same server on its plain port: threads share one h2c connection, and a
    streamed upload goes through."""
    with h2c_client(timeout=30) as client:

        def work(i: int) -> set[tuple[int, str, bytes]]:
            out = set()
            for j in range(5):
                r = client.request("GET", server.h2c_url(f"/small?t=h2c-{i}-{j}"))
                out.add((r.status_code, r.http_version, r.body))
            return out

        with ThreadPoolExecutor(8) as executor:
            results = set().union(*executor.map(work, range(8)))
        assert results == {(200, "HTTP/2", SMALL_BODY)}
        response = client.request("POST", server.h2c_url(UPLOAD_PATH), body=_upload_pieces())
        assert (response.status_code, response.http_version) == (200, "HTTP/2")
        assert server.upload_digest(response.body) == UPLOAD_SHA
        [info] = client.connections()
        assert (info.http_version, info.requests_served) == ("HTTP/2", 41)
