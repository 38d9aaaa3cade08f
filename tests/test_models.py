"""Request input: URLs, headers, methods and bodies are validated before anything is sent."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import httpcore
from httpcore._models import normalize_headers, parse_url
from tests.servers import raw as handlers
from tests.servers.handles import HTTPServer, RawFactory


def _host_headers(req: handlers.RawRequest) -> list[bytes]:
    return req.header(b"host")


# ---- header checks (unit level) -----------------------------------------------------

_FIELD_ALPHABET = b"aZ9-_ :\t\r\n\x00\x0b\x0c\x80~("
_FIELD_BYTES = st.binary(max_size=6).map(
    lambda raw: bytes(_FIELD_ALPHABET[x % len(_FIELD_ALPHABET)] for x in raw)
)


def _checked(headers: object) -> object:
    try:
        return normalize_headers(headers)  # type: ignore[arg-type]
    except httpcore.LocalProtocolError as exc:
        return ("refused", str(exc))


_NAMES = st.one_of(st.text("aZ9-_~", min_size=1, max_size=5).map(str.encode), _FIELD_BYTES)
_VALUES = st.one_of(
    st.text("ab \t\x80", max_size=5).map(lambda t: t.encode("latin-1")), _FIELD_BYTES
)


@settings(max_examples=400, deadline=None, database=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=5))
def test_list_headers_are_checked_as_the_long_way_checks_them(
    headers: list[tuple[bytes, bytes]],
) -> None:
    """A list of bytes pairs takes a shortcut (whole-list checks); a tuple of
    the same pairs goes field by field. Same fields out, or the same refusal."""
    assert _checked(list(headers)) == _checked(tuple(headers))


# ---- URL parsing (unit level) -------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "target"),
    [
        ("http://example.com", b"http", b"example.com", 80, b"/"),
        ("https://example.com", b"https", b"example.com", 443, b"/"),
        ("HTTP://EXAMPLE.com:8080/a/b?c=d#frag", b"http", b"example.com", 8080, b"/a/b?c=d"),
        ("http://example.com?x=1", b"http", b"example.com", 80, b"/?x=1"),
        ("http://[::1]:8000/p", b"http", b"::1", 8000, b"/p"),
        ("https://[2001:db8::1]/", b"https", b"2001:db8::1", 443, b"/"),
        ("http://münchen.de/", b"http", b"xn--mnchen-3ya.de", 80, b"/"),
        ("http://BÜCHER.example/", b"http", b"xn--bcher-kva.example", 80, b"/"),
        (b"http://127.0.0.1:1/x", b"http", b"127.0.0.1", 1, b"/x"),
        ("http://h:65535/", b"http", b"h", 65535, b"/"),
    ],
)
def test_parse_url(url: str, scheme: bytes, host: bytes, port: int, target: bytes) -> None:
    parsed = parse_url(url)
    assert parsed.origin.scheme == scheme
    assert parsed.origin.host == host
    assert parsed.origin.port == port
    assert parsed.target == target


@pytest.mark.parametrize(
    ("url", "authority"),
    [
        ("http://example.com/", b"example.com"),
        ("http://example.com:80/", b"example.com"),
        ("https://example.com:443/", b"example.com"),
        ("http://example.com:8080/", b"example.com:8080"),
        ("http://[::1]:8080/", b"[::1]:8080"),
        ("https://[::1]/", b"[::1]"),
    ],
)
def test_authority(url: str, authority: bytes) -> None:
    assert parse_url(url).origin.authority == authority


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "ws://example.com/",
        "example.com/path",
        "127.0.0.1:8000/x",
        "//example.com/",
        "http:/example.com/",
        "http://",
        "http:///path",
        "http://example.com:abc/",
        "http://example.com:0/",
        "http://example.com:65536/",
        "http://example.com:-1/",
        "http://[::1/",
        "http://[not-an-ip]/",
        "http://[::1]x/",
        "http://exa mple.com/",
        "http://example.com/a b",
        "http://example.com/\r\nX-Injected: 1",
        "http://user:pass@example.com/",
        b"http://\xff/",
        "",
    ],
)
def test_bad_urls_raise_unsupported_protocol(url: str | bytes) -> None:
    with pytest.raises(httpcore.UnsupportedProtocol):
        parse_url(url)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "http://", "http://[::1", "nope"])
def test_bad_urls_through_client(url: str) -> None:
    with httpcore.Client() as client, pytest.raises(httpcore.UnsupportedProtocol) as info:
        client.request("GET", url)
    assert str(info.value)  # a message, not an empty error


async def _async_bad_url() -> None:
    async with httpcore.PoolManager() as pool:
        await pool.request("GET", "gopher://127.0.0.1/")


def test_bad_url_async() -> None:
    import asyncio

    with pytest.raises(httpcore.UnsupportedProtocol):
        asyncio.run(_async_bad_url())


# ---- URLs against a real server -------------------------------------------------------


def test_ipv6_literal_request(raw: RawFactory) -> None:
    server = raw(handlers.keepalive_ok, host="::1")
    with httpcore.Client() as client:
        response = client.request("GET", f"http://[::1]:{server.port}/six?x=1")
    assert response.status_code == 200
    assert response.body == b"ok"
    req = server.next_request()
    assert req.request_line == b"GET /six?x=1 HTTP/1.1"
    assert _host_headers(req) == [f"[::1]:{server.port}".encode()]


FULLWIDTH_LOCALHOST = "".join(chr(ord(c) + 0xFEE0) for c in "localhost")


def test_idna_host_is_encoded_before_use(raw: RawFactory) -> None:
    # Full-width "localhost" maps (IDNA / nameprep) to plain "localhost", which resolves.
    server = raw(handlers.keepalive_ok)
    with httpcore.Client() as client:
        response = client.request("GET", f"http://{FULLWIDTH_LOCALHOST}:{server.port}/")
    assert response.status_code == 200
    assert _host_headers(server.next_request()) == [f"localhost:{server.port}".encode()]


def test_bytes_method_and_url(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        response = client.request(b"PATCH", http_server.url("/echo?q=1").encode())
    echo = json.loads(response.body)
    assert echo["method"] == "PATCH"
    assert echo["query"] == "q=1"


# ---- what goes on the wire ------------------------------------------------------------


def test_host_added_and_no_framing_headers_without_body(raw: RawFactory) -> None:
    server = raw(handlers.keepalive_ok)
    with httpcore.Client() as client:
        client.request("GET", server.url("/a"))
    req = server.next_request()
    assert req.raw.startswith(b"GET /a HTTP/1.1\r\n")
    assert _host_headers(req) == [f"127.0.0.1:{server.port}".encode()]
    assert req.header(b"content-length") == []
    assert req.header(b"transfer-encoding") == []
    assert req.raw.endswith(b"\r\n\r\n")
    assert req.body == b""


def test_explicit_host_header_not_duplicated(raw: RawFactory) -> None:
    server = raw(handlers.keepalive_ok)
    with httpcore.Client() as client:
        client.request("GET", server.url("/"), headers=[("Host", "example.org")])
    assert _host_headers(server.next_request()) == [b"example.org"]


def test_bytes_body_sends_content_length(raw: RawFactory) -> None:
    server = raw(handlers.keepalive_ok)
    with httpcore.Client() as client:
        client.request("POST", server.url("/"), body=b"hello world")
    req = server.next_request()
    assert req.header(b"content-length") == [b"11"]
    assert req.header(b"transfer-encoding") == []
    assert req.body == b"hello world"
    assert req.raw.endswith(b"\r\n\r\nhello world")


def test_iterable_body_sends_chunked(raw: RawFactory) -> None:
    server = raw(handlers.keepalive_ok)
    with httpcore.Client() as client:
        client.request("POST", server.url("/"), body=iter([b"abc", b"", b"defg"]))
    req = server.next_request()
    assert req.header(b"transfer-encoding") == [b"chunked"]
    assert req.header(b"content-length") == []
    assert req.body == b"abcdefg"
    assert req.raw.endswith(b"0\r\n\r\n")


def test_empty_bytes_body_sends_content_length_zero_for_post(raw: RawFactory) -> None:
    server = raw(handlers.keepalive_ok)
    with httpcore.Client() as client:
        client.request("POST", server.url("/"), body=b"")
    req = server.next_request()
    assert req.header(b"transfer-encoding") == []
    assert req.header(b"content-length") in ([b"0"], [])


@pytest.mark.parametrize(
    "headers",
    [
        [("X-A", "1"), (b"X-B", b"2")],
        {"X-A": "1", "X-B": "2"},
        {b"X-A": b"1", "X-B": b"2"},
    ],
)
def test_header_forms_sent_in_order(raw: RawFactory, headers: object) -> None:
    server = raw(handlers.keepalive_ok)
    with httpcore.Client() as client:
        client.request("GET", server.url("/"), headers=headers)  # type: ignore[arg-type]
    req = server.next_request()
    names = [k for k, _ in req.headers]
    assert req.header(b"x-a") == [b"1"]
    assert req.header(b"x-b") == [b"2"]
    assert names.index(b"X-A") < names.index(b"X-B")


# ---- bad input fails before anything is sent ---------------------------------------------


BAD_HEADERS = [
    [("X-Bad\r\n", "v")],
    [("X-Ok", "a\r\nInjected: 1")],
    [("X-Ok", "a\nb")],
    [("X-Ok", "a\rb")],
    [("X-Ok", "a\x00b")],
    [(b"X-Ok", b"a\r\n\r\nGET /smuggled HTTP/1.1")],
    [("Bad Name", "v")],
    [("Bad:Name", "v")],
    [("", "v")],
    {"X-Ok": "x\r\ny"},
]


def _assert_nothing_sent(server: handlers.RawServer) -> None:
    """A good request afterwards is the first and only connection/request the server saw."""
    with httpcore.Client() as client:
        assert client.request("GET", server.url("/after")).status_code == 200
    assert server.accepted == 1
    assert [r.target for r in server.all_requests()] == [b"/after"]


@pytest.mark.parametrize("headers", BAD_HEADERS)
def test_bad_header_raises_before_sending(raw: RawFactory, headers: object) -> None:
    server = raw(handlers.keepalive_ok)
    with httpcore.Client() as client, pytest.raises(httpcore.LocalProtocolError) as info:
        client.request("GET", server.url("/bad"), headers=headers)  # type: ignore[arg-type]
    assert "header" in str(info.value).lower()
    _assert_nothing_sent(server)


@pytest.mark.parametrize("headers", BAD_HEADERS[:3])
def test_bad_header_raises_before_sending_async(raw: RawFactory, headers: object) -> None:
    import asyncio

    server = raw(handlers.keepalive_ok)

    async def main() -> None:
        async with httpcore.PoolManager() as pool:
            await pool.request("GET", server.url("/bad"), headers=headers)  # type: ignore[arg-type]

    with pytest.raises(httpcore.LocalProtocolError):
        asyncio.run(main())
    _assert_nothing_sent(server)


@pytest.mark.parametrize("method", ["GET\r\n", "GE T", "", "G\x00T", b"GET /x HTTP/1.1\r\n"])
def test_bad_method_raises_before_sending(raw: RawFactory, method: str | bytes) -> None:
    server = raw(handlers.keepalive_ok)
    with httpcore.Client() as client, pytest.raises(httpcore.LocalProtocolError):
        client.request(method, server.url("/bad"))
    _assert_nothing_sent(server)


@pytest.mark.parametrize("body", [123, "text", {"a": 1}, 1.5, object()])
def test_wrong_body_type_raises_before_sending(raw: RawFactory, body: object) -> None:
    server = raw(handlers.keepalive_ok)
    with (
        httpcore.Client() as client,
        pytest.raises((TypeError, httpcore.LocalProtocolError)) as info,
    ):
        client.request("POST", server.url("/bad"), body=body)  # type: ignore[arg-type]
    assert "body" in str(info.value)
    _assert_nothing_sent(server)


def test_async_iterable_body_rejected_by_sync_client(raw: RawFactory) -> None:
    server = raw(handlers.keepalive_ok)

    async def agen():  # type: ignore[no-untyped-def]
        yield b"x"

    gen = agen()
    with httpcore.Client() as client, pytest.raises((TypeError, httpcore.LocalProtocolError)):
        client.request("POST", server.url("/bad"), body=gen)  # type: ignore[arg-type]
    _assert_nothing_sent(server)


def test_non_latin1_header_value_rejected(raw: RawFactory) -> None:
    server = raw(handlers.keepalive_ok)
    with httpcore.Client() as client, pytest.raises(httpcore.LocalProtocolError):
        client.request("GET", server.url("/bad"), headers={"X-Name": "名前"})
    _assert_nothing_sent(server)


def test_timeout_and_limits_values() -> None:
    t = httpcore.Timeout(2.0, pool=None)
    assert (t.connect, t.read, t.write, t.pool) == (2.0, 2.0, 2.0, None)
    t2 = httpcore.Timeout(connect=1, read=2, write=3, pool=4)
    assert (t2.connect, t2.read, t2.write, t2.pool) == (1.0, 2.0, 3.0, 4.0)
    assert httpcore.Timeout(5.0) == httpcore.Timeout(5.0)
    with pytest.raises((AttributeError, TypeError)):
        t.read = 1.0  # type: ignore[misc]
    limits = httpcore.Limits()
    assert (limits.max_connections, limits.max_keepalive_connections, limits.keepalive_expiry) == (
        100,
        20,
        5.0,
    )
    with pytest.raises(ValueError):
        httpcore.Limits(max_connections=0)


def test_public_names() -> None:
    expected = {
        "request", "PoolManager", "Client", "Engine", "Response", "AsyncResponse", "Timeout",
        "Limits", "Proxy", "ConnectionInfo", "__version__", "HTTPCoreError", "TimeoutException",
        "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "NetworkError",
        "ConnectError", "ReadError", "WriteError", "ProtocolError", "RemoteProtocolError",
        "LocalProtocolError", "ProxyError", "UnsupportedProtocol", "ResponseNotRead",
        "StreamConsumed", "EngineClosed",
    }  # fmt: skip
    assert expected <= set(httpcore.__all__)
    for name in httpcore.__all__:
        assert hasattr(httpcore, name), name
    assert isinstance(httpcore.__version__, str)
