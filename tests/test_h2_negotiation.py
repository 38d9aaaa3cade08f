"""HTTP/2 negotiation (ALPN, h2c prior knowledge), request headers and introspection."""

from __future__ import annotations

import asyncio
import json
import ssl
import time

import pytest

import httpcore
from tests.servers import h2faults
from tests.servers import raw as handlers
from tests.servers.h2nginx import SMALL_BODY, Nginx
from tests.servers.h2util import h2c_client, live, poll_until
from tests.servers.handles import HTTPServer, RawFactory


def echo(response: httpcore.Response) -> dict:  # type: ignore[type-arg]
    assert response.status_code == 200, response.body
    return json.loads(response.body)  # type: ignore[no-any-return]


# -- negotiation -------------------------------------------------------------------------


def test_alpn_picks_h2(h2_server: HTTPServer, ssl_context: ssl.SSLContext) -> None:
    with httpcore.Client(ssl=ssl_context) as client:
        response = client.request("GET", h2_server.https_url("/echo"))
        assert response.http_version == "HTTP/2"
        assert response.reason == b""
        assert echo(response)["http_version"] == "2"
        [info] = client.connections()
        assert info.http_version == "HTTP/2"
        assert info.origin == h2_server.https_base_url
        assert info.requests_served == 1


def test_alpn_picks_h2_nginx(nginx_h2: Nginx, ssl_context: ssl.SSLContext) -> None:
    with httpcore.Client(ssl=ssl_context) as client:
        response = client.request("GET", nginx_h2.url("/small?t=alpn-nginx"))
        assert response.http_version == "HTTP/2"
        assert response.body == SMALL_BODY
    [line] = nginx_h2.log("t=alpn-nginx", 1)
    assert line.protocol == "HTTP/2.0"


def test_http2_false_speaks_http11(h2_server: HTTPServer, ssl_context: ssl.SSLContext) -> None:
    """The server offers h2 first and picks by its own preference: it can only
    have chosen http/1.1 if the client did not offer h2."""
    with httpcore.Client(ssl=ssl_context, http2=False) as client:
        response = client.request("GET", h2_server.https_url("/echo"))
        assert response.http_version == "HTTP/1.1"
        assert echo(response)["http_version"] == "1.1"
        assert [c.http_version for c in client.connections()] == ["HTTP/1.1"]


def test_http2_false_never_offers_h2(
    raw: RawFactory, server_h2_context: ssl.SSLContext, ssl_context: ssl.SSLContext
) -> None:
    """Against a server that accepts only ALPN h2: with http2=False nothing is
    selected (the client did not offer h2) and HTTP/1.1 is spoken; by default h2 is."""
    server = raw(handlers.keepalive_ok, tls=server_h2_context)
    with httpcore.Client(ssl=ssl_context, http2=False) as client:
        response = client.request("GET", server.url("/"))
        assert response.http_version == "HTTP/1.1"
        assert response.body == b"ok"
    sock = server.wait_event("tls-ok")
    assert isinstance(sock, ssl.SSLSocket)
    assert sock.selected_alpn_protocol() is None

    h2server = raw(h2faults.ok_server, tls=server_h2_context)
    with httpcore.Client(ssl=ssl_context) as client:
        response = client.request("GET", h2server.url("/x"))
        assert response.http_version == "HTTP/2"
        assert response.body == b"conn0:/x"
    sock = h2server.wait_event("tls-ok")
    assert isinstance(sock, ssl.SSLSocket)
    assert sock.selected_alpn_protocol() == "h2"


def test_ssl_context_passed_twice_gets_alpn_each_time(
    h2_server: HTTPServer, ssl_context: ssl.SSLContext
) -> None:
    """The library sets ALPN on the context it is given; a second client with
    other versions on the same context must not inherit the first one's list."""
    with httpcore.Client(ssl=ssl_context) as c1:
        assert c1.request("GET", h2_server.https_url("/echo")).http_version == "HTTP/2"
        with httpcore.Client(ssl=ssl_context, http2=False) as c2:
            assert c2.request("GET", h2_server.https_url("/echo")).http_version == "HTTP/1.1"
        assert c1.request("GET", h2_server.https_url("/echo")).http_version == "HTTP/2"


def test_http1_false_requires_h2(
    h2_server: HTTPServer, http_server: HTTPServer, ssl_context: ssl.SSLContext
) -> None:
    with httpcore.Client(ssl=ssl_context, http1=False) as client:
        assert client.request("GET", h2_server.https_url("/echo")).http_version == "HTTP/2"
        # http_server offers only http/1.1: nothing in common
        with pytest.raises(httpcore.ConnectError) as info:
            client.request("GET", http_server.https_url("/echo"))
        assert info.value.__cause__ is not None
        assert "HTTP/2" in str(info.value)


def test_h2c_prior_knowledge(h2_server: HTTPServer) -> None:
    with h2c_client() as client:
        response = client.request("GET", h2_server.url("/echo"))
        assert response.http_version == "HTTP/2"
        body = echo(response)
        assert body["http_version"] == "2"
        assert response.body == client.request("GET", h2_server.url("/echo")).body
        [info] = client.connections()
        assert (info.http_version, info.requests_served) == ("HTTP/2", 2)


def test_h2c_prior_knowledge_nginx(nginx_h2: Nginx) -> None:
    with h2c_client() as client:
        for _ in range(3):
            response = client.request("GET", nginx_h2.h2c_url("/small?t=h2c-nginx"))
            assert response.http_version == "HTTP/2"
            assert response.body == SMALL_BODY
    lines = nginx_h2.log("t=h2c-nginx", 3)
    assert [line.protocol for line in lines] == ["HTTP/2.0"] * 3
    assert len({line.connection for line in lines}) == 1


def test_plain_http_default_stays_http11(h2_server: HTTPServer) -> None:
    """No prior knowledge unless asked (http1=False): a plain URL speaks HTTP/1.1."""
    with httpcore.Client() as client:
        response = client.request("GET", h2_server.url("/echo"))
        assert response.http_version == "HTTP/1.1"
        assert echo(response)["http_version"] == "1.1"


# -- headers -----------------------------------------------------------------------------


def test_request_headers_lowercased_and_hop_by_hop_dropped(raw: RawFactory) -> None:
    """h2 (like any HTTP/2 server) rejects upper-case names and connection-specific
    fields: the request only goes through if the client normalises them."""
    server = raw(h2faults.echo_server)
    with h2c_client() as client:
        response = client.request(
            "POST",
            server.url("/p?q=1"),
            headers=[
                ("X-Custom-Header", "Value"),
                ("Connection", "keep-alive"),
                ("Keep-Alive", "timeout=5"),
                ("Transfer-Encoding", "chunked"),
                ("Upgrade", "h2c"),
                ("TE", "trailers"),
            ],
            body=b"abc",
        )
        assert response.status_code == 200
        headers = json.loads(response.body)["headers"]
    names = [k for k, _ in headers]
    assert names[:4] == [":method", ":authority", ":scheme", ":path"]
    assert dict(headers)[":method"] == "POST"
    assert dict(headers)[":scheme"] == "http"
    assert dict(headers)[":path"] == "/p?q=1"
    assert ["x-custom-header", "Value"] in headers
    assert ["te", "trailers"] in headers
    for name in ("connection", "keep-alive", "transfer-encoding", "upgrade", "host"):
        assert name not in names
    assert all(name == name.lower() for name in names)


def test_te_other_than_trailers_dropped(raw: RawFactory) -> None:
    server = raw(h2faults.echo_server)
    with h2c_client() as client:
        response = client.request("GET", server.url("/"), headers={"TE": "gzip"})
        assert response.status_code == 200
    assert "te" not in [k for k, _ in json.loads(response.body)["headers"]]


def test_authority_from_host_header(raw: RawFactory) -> None:
    server = raw(h2faults.echo_server)
    with h2c_client() as client:
        default = json.loads(client.request("GET", server.url("/")).body)["headers"]
        custom = json.loads(
            client.request("GET", server.url("/"), headers={"Host": "example.test:8443"}).body
        )["headers"]
    assert dict(default)[":authority"] == f"127.0.0.1:{server.port}"
    assert dict(custom)[":authority"] == "example.test:8443"
    assert [k for k, _ in custom].count(":authority") == 1
    assert "host" not in [k for k, _ in custom]


def test_authority_from_host_header_hypercorn(
    h2_server: HTTPServer, ssl_context: ssl.SSLContext
) -> None:
    """hypercorn turns :authority into the ASGI ``host`` header."""
    with httpcore.Client(ssl=ssl_context) as client:
        response = client.request(
            "GET", h2_server.https_url("/echo"), headers=[(b"Host", b"custom.example")]
        )
        assert response.http_version == "HTTP/2"
        hosts = [v for k, v in echo(response)["headers"] if k == "host"]
    assert hosts == ["custom.example"]


def test_response_headers_lowercase(h2_server: HTTPServer, ssl_context: ssl.SSLContext) -> None:
    with httpcore.Client(ssl=ssl_context) as client:
        response = client.request("GET", h2_server.https_url("/echo"))
    assert response.http_version == "HTTP/2"
    names = [k for k, _ in response.headers]
    assert b"content-type" in names
    assert b"content-length" in names
    assert all(isinstance(k, bytes) and k == k.lower() for k in names)
    assert not any(k.startswith(b":") for k in names)  # no pseudo-headers leak
    assert (b"content-type", b"application/json") in response.headers


def test_response_header_values_kept(raw: RawFactory) -> None:
    server = raw(h2faults.echo_server)
    with h2c_client() as client:
        response = client.request("GET", server.url("/"))
    assert (b"x-mixed-case", b"Value") in response.headers
    assert response.reason == b""


def test_head_and_204_without_body(h2_server: HTTPServer, ssl_context: ssl.SSLContext) -> None:
    with httpcore.Client(ssl=ssl_context) as client:
        head = client.request("HEAD", h2_server.https_url("/head-test"))
        assert (head.status_code, head.body, head.http_version) == (200, b"", "HTTP/2")
        assert (b"content-length", b"10") in head.headers
        no_content = client.request("GET", h2_server.https_url("/status/204"))
        assert (no_content.status_code, no_content.body) == (204, b"")
        assert client.request("GET", h2_server.https_url("/head-test")).body == b"hello head"
        assert len(client.connections()) == 1


# -- introspection and keep-alive ------------------------------------------------------


def test_active_streams_while_in_flight(raw: RawFactory) -> None:
    server = raw(h2faults.hang_some)

    async def main() -> None:
        async with httpcore.PoolManager(http1=False, http2=True) as pool:
            tasks = [
                asyncio.ensure_future(pool.request("GET", server.url(f"/hang-{i}")))
                for i in range(3)
            ]
            for _ in range(3):
                await asyncio.to_thread(server.wait_event, "hanging")
            [info] = await asyncio.to_thread(pool.connections)
            assert info.http_version == "HTTP/2"
            assert info.state == "active"
            assert info.active_streams == 3
            # a fourth stream on the same connection while three are open
            response = await pool.request("GET", server.url("/ok"))
            assert response.body == b"conn0:/ok"
            assert "active=1" in await asyncio.to_thread(repr, pool)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            resets = [await asyncio.to_thread(server.wait_event, "client-reset") for _ in range(3)]
            assert sorted(code for _, _, code in resets) == [8, 8, 8]  # CANCEL
            [info] = await asyncio.to_thread(
                poll_until, lambda: [i for i in pool.connections() if i.active_streams == 0]
            )
            assert info.state == "idle"
            assert info.requests_served == 1
            assert server.accepted == 1

    asyncio.run(main())


def test_idle_connection_closes_after_keepalive_expiry(raw: RawFactory) -> None:
    server = raw(h2faults.ok_server)
    limits = httpcore.Limits(keepalive_expiry=0.3)
    with h2c_client(limits=limits) as client:
        start = time.monotonic()
        assert client.request("GET", server.url("/a")).body == b"conn0:/a"
        assert [c.state for c in client.connections()] == ["idle"]
        assert server.wait_event("conn-done", timeout=5) == 0  # the client closed it
        assert time.monotonic() - start >= 0.3
        assert live(client.connections()) == []
        assert client.request("GET", server.url("/b")).body == b"conn1:/b"
        assert server.accepted == 2


def test_connection_stays_within_keepalive_expiry(h2_server: HTTPServer) -> None:
    with h2c_client(limits=httpcore.Limits(keepalive_expiry=30)) as client:
        ports = {
            json.loads(client.request("GET", h2_server.url("/echo")).body)["client_port"]
            for _ in range(5)
        }
        assert len(ports) == 1
        [info] = client.connections()
        assert (info.state, info.requests_served, info.active_streams) == ("idle", 5, 0)
