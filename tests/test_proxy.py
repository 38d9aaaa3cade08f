"""Proxies: forwarding for http://, CONNECT tunnels for https://, against a real
proxy (Debian's tinyproxy) and a raw recording proxy; credentials reach the proxy
and never the origin."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator

import pytest

import httpcore
from tests.servers.handles import HTTPServer, RawFactory
from tests.servers.process import run_tinyproxy
from tests.servers.raw import RawConnection


@pytest.fixture(scope="module")
def tinyproxy(tmp_path_factory: pytest.TempPathFactory, http_server: HTTPServer) -> Iterator[int]:
    directory = tmp_path_factory.mktemp("tinyproxy")
    with run_tinyproxy(directory, http_server.tls_port, ("user", "secret")) as port:
        yield port


def _headers(response: httpcore.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in json.loads(response.body)["headers"]}


def test_forwarding_with_auth_in_url(tinyproxy: int, http_server: HTTPServer) -> None:
    with httpcore.Client(proxy=f"http://user:secret@127.0.0.1:{tinyproxy}") as client:
        response = client.request("GET", http_server.url("/echo?via=proxy"))
    assert response.status_code == 200
    data = json.loads(response.body)
    assert data["query"] == "via=proxy"
    assert "proxy-authorization" not in _headers(response)


def test_tunnel_with_auth_object(
    tinyproxy: int, http_server: HTTPServer, ssl_context: ssl.SSLContext
) -> None:
    proxy = httpcore.Proxy(f"http://127.0.0.1:{tinyproxy}", auth=("user", "secret"))
    with httpcore.Client(proxy=proxy, ssl=ssl_context) as client:
        first = client.request("GET", http_server.https_url("/echo"))
        second = client.request("GET", http_server.https_url("/echo"))
    assert first.status_code == second.status_code == 200
    assert "proxy-authorization" not in _headers(first)
    # the tunnel is kept alive and reused like any connection to the origin
    assert json.loads(first.body)["client_port"] == json.loads(second.body)["client_port"]


def test_tunnel_refused_is_proxy_error(
    tinyproxy: int, http_server: HTTPServer, ssl_context: ssl.SSLContext
) -> None:
    with httpcore.Client(proxy=f"http://127.0.0.1:{tinyproxy}", ssl=ssl_context) as client:
        with pytest.raises(httpcore.ProxyError, match="407"):
            client.request("GET", http_server.https_url())
        # forwarding without credentials: the proxy's 407 is just a response
        assert client.request("GET", http_server.url()).status_code == 407


def recording_forward_proxy(conn: RawConnection) -> None:
    conn.read_request()
    conn.respond(b"proxied")


def test_forwarding_sends_absolute_form_and_credentials_to_the_proxy(raw: RawFactory) -> None:
    proxy = raw(recording_forward_proxy)
    spec = httpcore.Proxy(
        f"http://127.0.0.1:{proxy.port}", auth=("ann", "pw"), headers=((b"X-Proxy", b"1"),)
    )
    with httpcore.Client(proxy=spec) as client:
        response = client.request("GET", "http://origin.example:8080/a?b=1")
    assert response.body == b"proxied"
    seen = proxy.requests.get(timeout=5)
    assert seen.request_line == b"GET http://origin.example:8080/a?b=1 HTTP/1.1"
    assert seen.header(b"Host") == [b"origin.example:8080"]
    assert seen.header(b"Proxy-Authorization") == [b"Basic YW5uOnB3"]
    assert seen.header(b"X-Proxy") == [b"1"]


def refusing_connect_proxy(conn: RawConnection) -> None:
    request = conn.read_request()
    assert request.method == b"CONNECT"
    conn.send(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")


def test_connect_request_and_refusal(raw: RawFactory) -> None:
    proxy = raw(refusing_connect_proxy)
    with httpcore.Client(proxy=f"http://u:p@127.0.0.1:{proxy.port}") as client:
        with pytest.raises(httpcore.ProxyError, match="502"):
            client.request("GET", "https://origin.example/")
    seen = proxy.requests.get(timeout=5)
    assert seen.request_line == b"CONNECT origin.example:443 HTTP/1.1"
    assert seen.header(b"Proxy-Authorization") == [b"Basic dTpw"]


def test_socks4_proxy_refused_at_construction() -> None:
    with pytest.raises(httpcore.ProxyError, match="socks4"):
        httpcore.Client(proxy="socks4://127.0.0.1:1080")
