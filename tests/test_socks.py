"""SOCKS5 proxies (socks5:// and socks5h://): http:// and https:// origins through a
CONNECT tunnel, TLS and HTTP/2 inside it, against Debian's dante and a small Python
SOCKS5 server (``servers/socks.py``) that records what it was asked."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import trustme

import httpcore
from tests.conftest import ROOT
from tests.servers import raw as handlers
from tests.servers.handles import HTTPServer, RawFactory
from tests.servers.raw import RawConnection
from tests.servers.socks import (
    ATYP_DOMAIN,
    ATYP_IPV4,
    ATYP_IPV6,
    DANTED,
    GENERAL_FAILURE,
    AuthAttempt,
    Dante,
    Socks5,
    read_greeting,
    read_request,
    run_dante,
)

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(scope="module")
def dante(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dante]:
    if DANTED is None:
        pytest.skip("danted is not installed (scripts/_env.sh installs dante-server)")
    with run_dante(tmp_path_factory.mktemp("dante")) as server:
        yield server


def echo(response: httpcore.Response | httpcore.AsyncResponse) -> dict:  # type: ignore[type-arg]
    assert response.status_code == 200, response.body
    return json.loads(response.body)  # type: ignore[no-any-return]


def info(client: httpcore.Client) -> list[tuple[str, str, int]]:
    return sorted((c.origin, c.http_version, c.requests_served) for c in client.connections())


# -- through dante --------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_dante_sync_client_reuses_the_tunnel(
    dante: Dante, http_server: HTTPServer, ssl_context: ssl.SSLContext, scheme: str, tls: bool
) -> None:
    url = http_server.https_url if tls else http_server.url
    origin = http_server.https_base_url if tls else http_server.base_url
    with httpcore.Client(proxy=f"{scheme}://{dante.address}", ssl=ssl_context) as client:
        first = echo(client.request("GET", url("/echo?n=1")))
        second = echo(client.request("GET", url("/echo?n=2")))
        assert info(client) == [(origin, "HTTP/1.1", 2)]
    assert (first["query"], second["query"]) == ("n=1", "n=2")
    assert first["client_port"] == second["client_port"]  # one tunnel, kept alive
    target = http_server.tls_port if tls else http_server.port
    assert dante.relayed(first["client_port"], target), dante.log()[-2000:]


def test_dante_h2_threads_share_one_tunnel(
    dante: Dante, h2_server: HTTPServer, ssl_context: ssl.SSLContext
) -> None:
    n = 20
    barrier = threading.Barrier(n)
    with httpcore.Client(proxy=f"socks5://{dante.address}", ssl=ssl_context) as client:

        def get(i: int) -> tuple[str, dict]:  # type: ignore[type-arg]
            barrier.wait(10)
            response = client.request("GET", h2_server.https_url(f"/echo?i={i}"))
            return response.http_version, echo(response)

        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(get, range(n)))
        assert info(client) == [(h2_server.https_base_url, "HTTP/2", n)]
    assert {version for version, _ in results} == {"HTTP/2"}
    assert [data["query"] for _, data in results] == [f"i={i}" for i in range(n)]
    ports = {data["client_port"] for _, data in results}
    assert len(ports) == 1
    assert dante.relayed(ports.pop(), h2_server.tls_port)


def test_dante_async_pool_manager(
    dante: Dante, http_server: HTTPServer, h2_server: HTTPServer, ssl_context: ssl.SSLContext
) -> None:
    async def main() -> tuple[list[dict], list[tuple[str, str, int]]]:  # type: ignore[type-arg]
        proxy = httpcore.Proxy(f"socks5h://{dante.address}")
        async with httpcore.PoolManager(proxy=proxy, ssl=ssl_context) as pool:
            plain = [echo(await pool.request("GET", http_server.url())) for _ in range(2)]
            h2 = await asyncio.gather(
                *(pool.request("GET", h2_server.https_url(f"/echo?i={i}")) for i in range(10))
            )
            assert {r.http_version for r in h2} == {"HTTP/2"}
            infos = await pool.aconnections()
            return plain + [echo(r) for r in h2], sorted(
                (c.origin, c.http_version, c.requests_served) for c in infos
            )

    results, infos = asyncio.run(main())
    assert infos == sorted(
        [(http_server.base_url, "HTTP/1.1", 2), (h2_server.https_base_url, "HTTP/2", 10)]
    )
    assert results[0]["client_port"] == results[1]["client_port"]
    assert len({data["client_port"] for data in results[2:]}) == 1
    assert dante.relayed(results[0]["client_port"], http_server.port)
    assert dante.relayed(results[2]["client_port"], h2_server.tls_port)


def test_dante_tunnel_checks_the_origin_certificate(
    dante: Dante, raw: RawFactory, tls_ca: trustme.CA, ssl_context: ssl.SSLContext
) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("wrong.example").configure_cert(server_ctx)
    origin = raw(handlers.keepalive_ok, tls=server_ctx)
    with httpcore.Client(proxy=f"socks5://{dante.address}", ssl=ssl_context) as client:
        with pytest.raises(httpcore.ConnectError, match=r"(?i)match"):
            client.request("GET", f"https://127.0.0.1:{origin.port}/")
    assert origin.wait_event("tls-failed", timeout=5) is not None
    assert origin.all_requests() == []


def test_dante_target_refused_is_proxy_error(dante: Dante, closed_port: int) -> None:
    with httpcore.Client(proxy=f"socks5://{dante.address}") as client:
        with pytest.raises(httpcore.ProxyError, match=r"(?i)connection.refused"):
            client.request("GET", f"http://127.0.0.1:{closed_port}/")


# -- through the Python server --------------------------------------------------


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_socks5_resolves_locally_socks5h_sends_the_name(
    raw: RawFactory, tls_ca: trustme.CA, ssl_context: ssl.SSLContext, scheme: str
) -> None:
    # The certificate names localhost only: TLS inside the tunnel must check the
    # origin's name, not the address the client resolved it to.
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("localhost").configure_cert(server_ctx)
    origin = raw(handlers.keepalive_ok, tls=server_ctx)
    socks = Socks5(upstream=("127.0.0.1", origin.port))
    proxy = raw(socks)
    with httpcore.Client(proxy=f"{scheme}://127.0.0.1:{proxy.port}", ssl=ssl_context) as client:
        response = client.request("GET", f"https://localhost:{origin.port}/")
    assert (response.status_code, response.body) == (200, b"ok")
    asked = socks.requests.get(timeout=5)
    assert (asked.command, asked.port) == (1, origin.port)
    if scheme == "socks5":
        assert asked.atyp in (ATYP_IPV4, ATYP_IPV6)
        assert ipaddress.ip_address(asked.host).is_loopback
    else:
        assert (asked.atyp, asked.host) == (ATYP_DOMAIN, "localhost")
    assert origin.next_request().header(b"Host") == [f"localhost:{origin.port}".encode()]


@pytest.mark.parametrize("how", ["url", "auth"])
def test_username_password_accepted(raw: RawFactory, http_server: HTTPServer, how: str) -> None:
    socks = Socks5(auth=(b"user", b"p@ss"))
    proxy = raw(socks)
    spec: str | httpcore.Proxy = f"socks5://user:p%40ss@127.0.0.1:{proxy.port}"
    if how == "auth":
        spec = httpcore.Proxy(f"socks5://127.0.0.1:{proxy.port}", auth=("user", "p@ss"))
    with httpcore.Client(proxy=spec) as client:
        data = echo(client.request("GET", http_server.url()))
    assert socks.auth_attempts.get(timeout=5) == AuthAttempt(b"user", b"p@ss", True)
    asked = socks.requests.get(timeout=5)
    assert (asked.host, asked.port, asked.username) == ("127.0.0.1", http_server.port, b"user")
    # the credentials went to the proxy, not to the origin as a header
    assert "proxy-authorization" not in {name.lower() for name, _ in data["headers"]}


@pytest.mark.parametrize("credentials", ["user:wrong@", ""], ids=["wrong", "none"])
def test_username_password_refused(raw: RawFactory, credentials: str) -> None:
    socks = Socks5(auth=(b"user", b"p@ss"))
    proxy = raw(socks)
    with httpcore.Client(proxy=f"socks5://{credentials}127.0.0.1:{proxy.port}") as client:
        with pytest.raises(httpcore.ProxyError):
            client.request("GET", "http://127.0.0.1:1/")
    attempts = [socks.auth_attempts.get_nowait() for _ in range(socks.auth_attempts.qsize())]
    assert attempts == ([AuthAttempt(b"user", b"wrong", False)] if credentials else [])
    assert socks.requests.empty()  # refused before any CONNECT


def test_general_failure_reply_is_proxy_error(raw: RawFactory) -> None:
    socks = Socks5(reply=GENERAL_FAILURE)
    proxy = raw(socks)
    with httpcore.Client(proxy=f"socks5h://127.0.0.1:{proxy.port}") as client:
        with pytest.raises(httpcore.ProxyError, match=r"(?i)general"):
            client.request("GET", "http://origin.example:8080/")
    asked = socks.requests.get(timeout=5)
    assert (asked.atyp, asked.host, asked.port) == (ATYP_DOMAIN, "origin.example", 8080)


def closes_after_greeting(conn: RawConnection) -> None:
    read_greeting(conn.sock)


def closes_in_the_reply(conn: RawConnection) -> None:
    read_greeting(conn.sock)
    conn.send(b"\x05\x00")
    read_request(conn.sock)
    conn.send(b"\x05\x00\x00")  # a reply cut short


@pytest.mark.parametrize("handler", [closes_after_greeting, closes_in_the_reply])
def test_proxy_closing_mid_handshake_is_proxy_error(
    raw: RawFactory, handler: handlers.Handler
) -> None:
    proxy = raw(handler)
    with httpcore.Client(proxy=f"socks5://127.0.0.1:{proxy.port}") as client:
        with pytest.raises(httpcore.ProxyError):
            client.request("GET", "http://127.0.0.1:1/")
    assert proxy.wait_event("conn-done", timeout=5) == 0


def test_proxy_unreachable_names_the_proxy(closed_port: int) -> None:
    with httpcore.Client(proxy=f"socks5://127.0.0.1:{closed_port}") as client:
        with pytest.raises(httpcore.HTTPCoreError) as caught:
            client.request("GET", "http://127.0.0.1:1/")
    assert isinstance(caught.value, (httpcore.ConnectError, httpcore.ProxyError))
    assert f"127.0.0.1:{closed_port}" in str(caught.value)


def test_without_socksio_the_error_says_what_to_install(closed_port: int) -> None:
    code = (
        "import sys\n"
        "sys.modules['socksio'] = None  # import socksio raises ImportError\n"
        "import httpcore\n"
        "try:\n"
        f"    with httpcore.Client(proxy='socks5://127.0.0.1:{closed_port}') as client:\n"
        "        client.request('GET', 'http://127.0.0.1:1/')\n"
        "except httpcore.ProxyError as exc:\n"
        "    print('ProxyError:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=15
    )
    assert done.stdout.startswith("ProxyError:"), done.stdout + done.stderr
    assert "httpcore-actor[socks]" in done.stdout
