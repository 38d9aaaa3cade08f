"""TLS: custom contexts, certificate and hostname verification, SNI, ALPN."""

from __future__ import annotations

import json
import ssl

import pytest
import trustme

import httpcore
from tests.servers import raw as handlers
from tests.servers.handles import HTTPServer, RawFactory


def test_custom_context_trusting_ca(http_server: HTTPServer, ssl_context: ssl.SSLContext) -> None:
    with httpcore.Client(ssl=ssl_context) as client:
        response = client.request("GET", http_server.https_url("/echo?tls=1"))
        again = client.request("GET", http_server.https_url("/echo"))
    assert response.status_code == 200
    assert response.http_version == "HTTP/1.1"
    assert json.loads(response.body)["query"] == "tls=1"
    assert json.loads(again.body)["client_port"] == json.loads(response.body)["client_port"]


def test_custom_context_localhost_name(
    http_server: HTTPServer, ssl_context: ssl.SSLContext
) -> None:
    with httpcore.Client(ssl=ssl_context) as client:
        response = client.request("GET", http_server.https_url("/bytes/100", host="localhost"))
    assert response.status_code == 200
    assert len(response.body) == 100


def test_custom_context_async(http_server: HTTPServer, ssl_context: ssl.SSLContext) -> None:
    import asyncio

    async def main() -> int:
        async with httpcore.PoolManager(ssl=ssl_context) as pool:
            return (await pool.request("GET", http_server.https_url())).status_code

    assert asyncio.run(main()) == 200


def test_default_context_rejects_unknown_ca(http_server: HTTPServer) -> None:
    with httpcore.Client() as client, pytest.raises(httpcore.ConnectError) as info:
        client.request("GET", http_server.https_url())
    assert "certificate" in str(info.value).lower()
    assert info.value.__cause__ is not None


def test_other_ca_rejected(http_server: HTTPServer) -> None:
    ctx = ssl.create_default_context()
    trustme.CA().configure_trust(ctx)
    with httpcore.Client(ssl=ctx) as client, pytest.raises(httpcore.ConnectError):
        client.request("GET", http_server.https_url())


def test_hostname_mismatch(raw: RawFactory, tls_ca: trustme.CA) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("wrong.example").configure_cert(server_ctx)
    server = raw(handlers.keepalive_ok, tls=server_ctx)
    client_ctx = ssl.create_default_context()
    tls_ca.configure_trust(client_ctx)
    with httpcore.Client(ssl=client_ctx) as client:
        for host in ("127.0.0.1", "localhost"):
            with pytest.raises(httpcore.ConnectError) as info:
                client.request("GET", f"https://{host}:{server.port}/")
            assert "mismatch" in str(info.value).lower() or "match" in str(info.value).lower()
    assert server.all_requests() == []  # nothing was sent over a failed handshake


def test_verification_can_be_disabled_by_the_context(raw: RawFactory, tls_ca: trustme.CA) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("wrong.example").configure_cert(server_ctx)
    server = raw(handlers.keepalive_ok, tls=server_ctx)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with httpcore.Client(ssl=ctx) as client:
        assert client.request("GET", server.url("/")).body == b"ok"


def _sni_recording_context(server_cert: trustme.LeafCert, seen: list[str | None]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(ctx)
    ctx.set_alpn_protocols(["http/1.1"])

    def record(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen.append(name)

    ctx.sni_callback = record  # type: ignore[assignment]
    return ctx


def test_sni_and_alpn(
    raw: RawFactory, server_cert: trustme.LeafCert, ssl_context: ssl.SSLContext
) -> None:
    seen: list[str | None] = []
    server = raw(handlers.keepalive_ok, tls=_sni_recording_context(server_cert, seen))
    with httpcore.Client(ssl=ssl_context) as client:
        assert client.request("GET", f"https://localhost:{server.port}/").body == b"ok"
    tls_sock = server.wait_event("tls-ok")
    assert isinstance(tls_sock, ssl.SSLSocket)
    assert tls_sock.selected_alpn_protocol() == "http/1.1"  # the client offered ALPN
    assert seen == ["localhost"]


def test_no_sni_for_ip_address(
    raw: RawFactory, server_cert: trustme.LeafCert, ssl_context: ssl.SSLContext
) -> None:
    seen: list[str | None] = []
    server = raw(handlers.keepalive_ok, tls=_sni_recording_context(server_cert, seen))
    with httpcore.Client(ssl=ssl_context) as client:
        assert client.request("GET", server.url("/")).body == b"ok"
    assert seen == [None]


def test_alpn_with_http1_only(
    raw: RawFactory, server_tls_context: ssl.SSLContext, ssl_context: ssl.SSLContext
) -> None:
    server = raw(handlers.keepalive_ok, tls=server_tls_context)
    with httpcore.Client(ssl=ssl_context, http1=True, http2=False) as client:
        response = client.request("GET", server.url("/"))
    assert response.http_version == "HTTP/1.1"
    tls_sock = server.wait_event("tls-ok")
    assert isinstance(tls_sock, ssl.SSLSocket)
    assert tls_sock.selected_alpn_protocol() == "http/1.1"


def test_https_hypercorn_large_body(http_server: HTTPServer, ssl_context: ssl.SSLContext) -> None:
    from tests.servers.app import pattern

    with httpcore.Client(ssl=ssl_context) as client:
        assert client.request("GET", http_server.https_url("/bytes/3000000")).body == pattern(
            3_000_000
        )
        upload = pattern(1_500_000)
        r = client.request("POST", http_server.https_url("/upload"), body=upload)
    assert json.loads(r.body)["length"] == len(upload)
