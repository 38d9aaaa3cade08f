"""User errors: bad input fails in the caller, before a byte is sent, with the right type.

* A malformed URL is ``httpcore.UnsupportedProtocol`` (also a ``ValueError``) and
  never reaches a socket: checked with a recording server, directly and as a
  forward proxy, followed by a "fence" request on the same client (whatever
  the bad request had sent would be in front of the fence).
* Wrong type -> ``TypeError``, wrong value -> ``ValueError``; protocol data (URL,
  method, headers, body) is also an ``HTTPCoreError``.
* Messages name the limit and URL of a timeout, and say what to do about TLS and
  HTTP/2 mismatches; tracebacks print ``httpcore.Name`` without engine frames.
* ``timeout=None`` means no limit; a request naming no timeout uses its pool's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

import httpcore
from tests.conftest import ROOT
from tests.servers import raw as handlers
from tests.servers.handles import HTTPServer, RawFactory
from tests.servers.raw import RawConnection, RawServer

# -- helpers ------------------------------------------------------------------------


def recorder(conn: RawConnection) -> None:
    """Keep every byte received (``shared["received"]``); answer each head with 200 ok."""
    received = conn.server.shared["received"]
    assert isinstance(received, list)
    pending = b""
    while True:
        data = conn.sock.recv(65536)
        if not data:
            return
        received.append(data)
        pending += data
        while b"\r\n\r\n" in pending:  # no request here has a body
            _, _, pending = pending.partition(b"\r\n\r\n")
            conn.respond(b"ok")


def start_recorder(raw: RawFactory, host: str = "127.0.0.1") -> RawServer:
    server = raw(recorder, host=host)
    server.shared["received"] = []
    return server


def received(server: RawServer) -> bytes:
    chunks = server.shared["received"]
    assert isinstance(chunks, list)
    return b"".join(chunks)


def assert_only_fence(server: RawServer, head_start: bytes) -> None:
    """After the fence request was answered: it is all the server ever got."""
    data = received(server)
    assert data.startswith(head_start), data
    assert data.count(b"\r\n\r\n") == 1, data
    assert b"X-Injected" not in data
    assert server.accepted == 1


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")

LONG_LABEL = "a" * 64
LONG_HOST = ".".join(["a" * 63] * 4)  # 255 characters
assert len(LONG_HOST) > 253

# ``{port}`` is the recording server's port (irrelevant through the proxy).
BAD_URLS = [
    # IPv6 zone id: header injection, bad characters
    "http://[::1%\r\nX-Injected: yes]:{port}/",
    "http://[::1%0d%0aX-Injected:%20yes]:{port}/",
    "http://[::1%25a b]:{port}/",
    "http://[::1%25a\x00]:{port}/",
    # IDNA hosts with CR/LF in a label (an ASCII label skips nameprep)
    "http://ü.example\r\nX-Injected: yes/",
    "http://ü\r\nx.example/",
    "http://ü.example\r\nx/",
    "http://ü.ex ample/",
    # DNS shape
    "http://a..b/",
    "http://.a/",
    "http://./",
    f"http://{LONG_LABEL}.example/",
    f"http://ü.{LONG_LABEL}/",
    f"http://{LONG_HOST}/",
    # ports that are not ASCII digits, or out of range
    "http://h:²/",
    "http://h:1٢/",
    "http://h:+80/",
    "http://h:-80/",
    "http://h:8 0/",
    "http://h: 80/",
    "http://h:0/",
    "http://h:65536/",
    "http://h:99999999999999999999/",
    # CR/LF/space/NUL anywhere
    "http://h /",
    "http://h\x00/",
    "http://h\r\n/",
    "http://h/pa th",
    "http://h/a\r\nX-Injected: yes",
    "http://h/a\nX-Injected: yes",
    "http://h/\x00",
    "http://h/?q=a b",
    "http://h/?q=\r\nX-Injected: yes",
    "http://h/#frag ment",
    "http://h/#\r\nX-Injected: yes",
    "http://h/#\x00",
]


def bad_id(url: str) -> str:
    return ascii(url)[1:-1][:48]


def check_bad_url(exc: BaseException) -> None:
    assert isinstance(exc, httpcore.UnsupportedProtocol)
    assert isinstance(exc, ValueError)
    assert "internal error" not in str(exc)


# -- A: URLs validated whole, before anything is sent --------------------------------


@pytest.mark.parametrize("url", BAD_URLS, ids=bad_id)
def test_bad_url_through_forward_proxy_sends_nothing(raw: RawFactory, url: str) -> None:
    proxy = start_recorder(raw)
    with httpcore.Client(proxy=proxy.url()) as client:
        with pytest.raises(httpcore.UnsupportedProtocol) as info:
            client.request("GET", url.format(port=proxy.port), timeout=5)
        check_bad_url(info.value)
        assert client.request("GET", "http://fence.example/", timeout=5).body == b"ok"
    assert_only_fence(proxy, b"GET http://fence.example/ HTTP/1.1\r\n")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/pa th",
        "http://127.0.0.1:{port}/a\r\nX-Injected: yes",
        "http://127.0.0.1:{port}/?q=\x00",
        "http://127.0.0.1:{port}/#a\r\nX-Injected: yes",
        "http://127.0.0.1:{port} /",
        "http://127.0.0.1 :{port}/",
        "http://127.0.0.1:{port}\r\nX-Injected: yes/",
        "http://127.0.0.1:+{port}/",
        "http://127.0.0.1.:{port}:{port}/",
        "http://127.0.0.1:{port}²/",
    ],
    ids=bad_id,
)
def test_bad_url_direct_sends_nothing(raw: RawFactory, url: str) -> None:
    server = start_recorder(raw)
    with httpcore.Client() as client:
        with pytest.raises(httpcore.UnsupportedProtocol) as info:
            client.request("GET", url.format(port=server.port), timeout=5)
        check_bad_url(info.value)
        bad_bytes = url.format(port=server.port).encode("utf-8")
        with pytest.raises(httpcore.UnsupportedProtocol) as info:
            client.request("GET", bad_bytes, timeout=5)
        check_bad_url(info.value)
        assert client.request("GET", server.url("/fence"), timeout=5).body == b"ok"
    assert_only_fence(server, b"GET /fence HTTP/1.1\r\n")


@needs_ipv6
@pytest.mark.parametrize(
    "url",
    [
        "http://[::1%\r\nX-Injected: yes]:{port}/",
        "http://[::1%25\r\nX-Injected: yes]:{port}/",
        "http://[::1%25a b]:{port}/",
        "http://[::1%lo\x00]:{port}/",
    ],
    ids=bad_id,
)
def test_ipv6_zone_id_injection_direct_sends_nothing(raw: RawFactory, url: str) -> None:
    server = start_recorder(raw, host="::1")
    with httpcore.Client() as client:
        with pytest.raises(httpcore.UnsupportedProtocol) as info:
            client.request("GET", url.format(port=server.port), timeout=5)
        check_bad_url(info.value)
        assert client.request("GET", server.url("/fence"), timeout=5).body == b"ok"
    assert_only_fence(server, b"GET /fence HTTP/1.1\r\n")


def test_bad_urls_async_frontend_sends_nothing(raw: RawFactory) -> None:
    proxy = start_recorder(raw)

    async def main() -> bytes:
        async with httpcore.PoolManager(proxy=proxy.url()) as pool:
            for url in BAD_URLS:
                with pytest.raises(httpcore.UnsupportedProtocol) as info:
                    await pool.request("GET", url.format(port=proxy.port), timeout=5)
                check_bad_url(info.value)
            response = await pool.request("GET", "http://fence.example/", timeout=5)
            return response.body

    assert asyncio.run(main()) == b"ok"
    assert_only_fence(proxy, b"GET http://fence.example/ HTTP/1.1\r\n")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/echo",
        "http://localhost:{port}/echo",
        "http://LOCALHOST:{port}/echo",
        "http://LocalHost:{port}/echo",
        "http://localhost.:{port}/echo",
        "HTTP://127.0.0.1:{port}/echo",
        "http://127.0.0.1:{port}/echo?q=1#fragment",
        "http://127.0.0.1:{port}/echo#",
    ],
)
def test_valid_urls_still_work(http_server: HTTPServer, url: str) -> None:
    with httpcore.Client() as client:
        response = client.request("GET", url.format(port=http_server.port), timeout=5)
        assert response.status_code == 200
        assert json.loads(response.body)["path"] == "/echo"


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://127.0.0.1:{port}", b"/"),
        ("http://127.0.0.1:{port}?q=1", b"/?q=1"),
        ("http://127.0.0.1:{port}#frag", b"/"),
        ("http://127.0.0.1:{port}/a/b?c=d#e", b"/a/b?c=d"),
    ],
)
def test_request_target_sent(raw: RawFactory, url: str, target: bytes) -> None:
    server = start_recorder(raw)
    with httpcore.Client() as client:
        assert client.request("GET", url.format(port=server.port), timeout=5).body == b"ok"
    head = received(server)
    assert head.startswith(b"GET " + target + b" HTTP/1.1\r\n"), head
    assert f"\r\nHost: 127.0.0.1:{server.port}\r\n".encode() in head, head


@needs_ipv6
def test_ipv6_literal_works(raw: RawFactory) -> None:
    server = raw(handlers.keepalive_ok, host="::1")
    with httpcore.Client() as client:
        response = client.request("GET", f"http://[::1]:{server.port}/v6", timeout=5)
        assert response.body == b"ok"
    request = server.next_request()
    assert request.target == b"/v6"
    assert request.header(b"Host") == [f"[::1]:{server.port}".encode()]


@pytest.mark.parametrize(
    ("url", "request_line", "host"),
    [
        ("http://ü.example/", b"GET http://xn--tda.example/ HTTP/1.1", b"xn--tda.example"),
        (
            "http://Bücher.example:8080/p?q",
            b"GET http://xn--bcher-kva.example:8080/p?q HTTP/1.1",
            b"xn--bcher-kva.example:8080",
        ),
        ("http://example.com:/x", b"GET http://example.com/x HTTP/1.1", b"example.com"),
        ("http://example.com:80/x", b"GET http://example.com/x HTTP/1.1", b"example.com"),
    ],
)
def test_host_sent_through_forward_proxy(
    raw: RawFactory, url: str, request_line: bytes, host: bytes
) -> None:
    """IDNA hosts go out as A-labels; an empty or default port is left out."""
    proxy = start_recorder(raw)
    with httpcore.Client(proxy=proxy.url()) as client:
        assert client.request("GET", url, timeout=5).body == b"ok"
    head = received(proxy)
    assert head.startswith(request_line + b"\r\n"), head
    assert b"\r\nHost: " + host + b"\r\n" in head, head


def test_idna_host_that_does_not_resolve_is_connect_error() -> None:
    with httpcore.Client() as client, pytest.raises(httpcore.HTTPCoreError) as info:
        client.request("GET", "http://bücher.invalid/", timeout=5)
    assert type(info.value) is httpcore.ConnectError, repr(info.value)


# -- B: the error model ---------------------------------------------------------------

REQUEST_ARG_ERRORS: list[tuple[str, dict[str, Any], type[Exception], type[Exception] | None]] = [
    ("url-int", {"url": 123}, TypeError, httpcore.UnsupportedProtocol),
    ("url-none", {"url": None}, TypeError, httpcore.UnsupportedProtocol),
    ("url-scheme", {"url": "ftp://127.0.0.1/"}, ValueError, httpcore.UnsupportedProtocol),
    ("url-no-scheme", {"url": "127.0.0.1/"}, ValueError, httpcore.UnsupportedProtocol),
    ("method-int", {"method": 123}, TypeError, httpcore.LocalProtocolError),
    ("method-space", {"method": "GE T"}, ValueError, httpcore.LocalProtocolError),
    ("method-crlf", {"method": "GET\r\n"}, ValueError, httpcore.LocalProtocolError),
    ("header-name-crlf", {"headers": [("a\r\n", "b")]}, ValueError, httpcore.LocalProtocolError),
    (
        "header-value-crlf",
        {"headers": [("a", "b\r\nX-Injected: yes")]},
        ValueError,
        httpcore.LocalProtocolError,
    ),
    ("header-value-nul", {"headers": {"a": "b\x00"}}, ValueError, httpcore.LocalProtocolError),
    ("headers-int", {"headers": 5}, TypeError, httpcore.LocalProtocolError),
    ("header-pair-int", {"headers": [5]}, TypeError, httpcore.LocalProtocolError),
    ("header-value-int", {"headers": [("a", 5)]}, TypeError, httpcore.LocalProtocolError),
    ("body-str", {"body": "text"}, TypeError, httpcore.LocalProtocolError),
    ("body-int", {"body": 12}, TypeError, httpcore.LocalProtocolError),
    ("timeout-negative", {"timeout": -2}, ValueError, None),
    ("timeout-str", {"timeout": "5"}, TypeError, None),
]


@pytest.mark.parametrize("frontend", ["sync", "async"])
@pytest.mark.parametrize(
    ("kwargs", "kind", "protocol"),
    [pytest.param(*case[1:], id=case[0]) for case in REQUEST_ARG_ERRORS],
)
def test_request_argument_errors(
    raw: RawFactory,
    frontend: str,
    kwargs: dict[str, Any],
    kind: type[Exception],
    protocol: type[Exception] | None,
) -> None:
    """Type vs value, protocol data also an HTTPCoreError; nothing is sent."""
    server = start_recorder(raw)
    good = {"method": "GET", "url": server.url("/"), "timeout": 5}
    bad = {**good, **kwargs}

    def check(exc: BaseException) -> None:
        assert isinstance(exc, kind), repr(exc)
        if protocol is not None:
            assert isinstance(exc, protocol), repr(exc)

    if frontend == "sync":
        with httpcore.Client() as client:
            with pytest.raises(Exception) as info:
                client.request(**bad)
            check(info.value)
            assert client.request("GET", server.url("/fence"), timeout=5).body == b"ok"
    else:

        async def main() -> None:
            async with httpcore.PoolManager() as pool:
                with pytest.raises(Exception) as info:
                    await pool.request(**bad)
                check(info.value)
                assert (await pool.request("GET", server.url("/fence"), timeout=5)).body == b"ok"

        asyncio.run(main())
    assert_only_fence(server, b"GET /fence HTTP/1.1\r\n")


@pytest.mark.parametrize("cls", [httpcore.Client, httpcore.PoolManager])
@pytest.mark.parametrize(
    ("kwargs", "kind"),
    [
        ({"timeout": "5"}, TypeError),
        ({"timeout": -1}, ValueError),
        ({"timeout": -0.5}, ValueError),
        ({"limits": 5}, TypeError),
        ({"retries": -1}, ValueError),
        ({"retries": "3"}, TypeError),
        ({"ssl": "yes"}, TypeError),
    ],
    ids=repr,
)
def test_constructor_argument_errors(cls: type, kwargs: dict[str, Any], kind: type) -> None:
    with pytest.raises(Exception) as info:
        cls(**kwargs)
    assert isinstance(info.value, kind), repr(info.value)
    assert not isinstance(info.value, {TypeError: ValueError, ValueError: TypeError}[kind])


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((-1.0,), {}), ((-1,), {}), ((5.0,), {"read": -1.0}), ((), {"pool": -0.1})],
    ids=repr,
)
def test_negative_timeout_is_value_error(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``Timeout(-1.0)`` used to silently become the 5 s default."""
    with pytest.raises(ValueError):
        httpcore.Timeout(*args, **kwargs)


def test_unresolvable_name_is_connect_error() -> None:
    with httpcore.Client() as client, pytest.raises(httpcore.ConnectError) as info:
        client.request("GET", "http://nonexistent.invalid/", timeout=5)
    assert "resolve" in str(info.value)


@pytest.mark.parametrize(
    "host",
    [
        f"{LONG_LABEL}.invalid",
        f"ü.{LONG_LABEL}.invalid",
        LONG_HOST,
        "a..b.invalid",
        ".",
        "xn--zz.invalid",
        "under_score.invalid",
        "ü.invalid",
        "-leading.invalid",
        "xn--.invalid",
    ],
    ids=bad_id,
)
def test_names_the_resolver_cannot_take(host: str) -> None:
    """Refused when parsed, or a ConnectError; never an engine bug."""
    with httpcore.Client() as client, pytest.raises(httpcore.HTTPCoreError) as info:
        client.request("GET", f"http://{host}/", timeout=5)
    assert type(info.value) in (httpcore.UnsupportedProtocol, httpcore.ConnectError), repr(
        info.value
    )
    assert "internal error" not in str(info.value)


EXCEPTIONS = [
    obj
    for obj in (getattr(httpcore, name) for name in httpcore.__all__)
    if isinstance(obj, type) and issubclass(obj, BaseException)
]


def test_every_exported_exception_is_listed() -> None:
    assert len(EXCEPTIONS) >= 18
    assert httpcore.HTTPCoreError in EXCEPTIONS


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda cls: cls.__name__)
def test_exceptions_print_as_httpcore_name(cls: type[BaseException]) -> None:
    assert cls.__module__ == "httpcore"
    line = traceback.format_exception_only(cls, cls("boom"))[-1]
    assert line == f"httpcore.{cls.__name__}: boom\n"


SYNC_SCRIPT = """\
import httpcore
httpcore.Client().request("GET", "http://127.0.0.1:{port}/")
"""

ASYNC_SCRIPT = """\
import asyncio, httpcore
asyncio.run(httpcore.request("GET", "http://127.0.0.1:{port}/"))
"""


@pytest.mark.timeout(30)
@pytest.mark.parametrize("script", [SYNC_SCRIPT, ASYNC_SCRIPT], ids=["sync", "async"])
def test_uncaught_error_traceback(closed_port: int, script: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", script.format(port=closed_port)],
        cwd=ROOT,
        capture_output=True,
        timeout=25,
    )
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("httpcore.ConnectError: "), stderr
    assert stderr.count('File "<string>"') == 1, stderr
    assert "httpcore/engine/" not in stderr, stderr


# -- C: messages ----------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_read_timeout_names_limit_and_url(raw: RawFactory) -> None:
    server = raw(handlers.never_answers)
    start = time.monotonic()
    with httpcore.Client() as client, pytest.raises(httpcore.ReadTimeout) as info:
        client.request("GET", server.url("/path"), timeout=0.5)
    assert 0.4 < time.monotonic() - start < 4
    expected = (
        f"timed out after 0.5 s reading the response from http://127.0.0.1:{server.port}/path"
    )
    assert expected in str(info.value)


@pytest.mark.timeout(10)
def test_untrusted_certificate_says_how_to_pass_a_ca(http_server: HTTPServer) -> None:
    with httpcore.Client() as client, pytest.raises(httpcore.ConnectError) as info:
        client.request("GET", http_server.https_url("/echo"), timeout=5)
    message = str(info.value)
    assert "cafile" in message or "ssl=" in message, message


@pytest.mark.timeout(10)
def test_https_to_plain_http_port(http_server: HTTPServer, ssl_context: ssl.SSLContext) -> None:
    url = f"https://127.0.0.1:{http_server.port}/echo"
    with httpcore.Client(ssl=ssl_context) as client, pytest.raises(httpcore.ConnectError) as info:
        client.request("GET", url, timeout=5)
    message = str(info.value)
    assert "TLS" in message, message
    assert "http://" in message, message


def http11_only(conn: RawConnection, *, close: bool) -> None:
    """What an HTTP/1.1-only server answers to the HTTP/2 preface: 400 (then close)."""
    while b"\r\n\r\n" not in conn.buffer:
        conn._fill()
    conn.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n\r\nBad Request")
    if not close:
        conn.wait_closed_by_peer(timeout=10)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("close", [True, False], ids=["400-close", "400-keep-open"])
def test_h2c_prior_knowledge_to_http11_only_server(raw: RawFactory, close: bool) -> None:
    """hypercorn's "HTTP/1.1-only" plain port still accepts h2c, so the HTTP/1.1-only
    server here is a raw one answering the preface the way HTTP/1.1 servers do."""
    server = raw(lambda conn: http11_only(conn, close=close))
    start = time.monotonic()
    with httpcore.Client(http1=False, http2=True) as client:
        with pytest.raises((httpcore.RemoteProtocolError, httpcore.ConnectError)) as info:
            client.request("GET", server.url("/"), timeout=5)
    assert time.monotonic() - start < 4  # an answer, not the read timeout
    assert "HTTP/2" in str(info.value), str(info.value)


@pytest.mark.timeout(10)
def test_http1_false_over_tls_to_http11_only(
    http_server: HTTPServer, ssl_context: ssl.SSLContext
) -> None:
    with httpcore.Client(ssl=ssl_context, http1=False) as client:
        with pytest.raises(httpcore.HTTPCoreError) as info:
            client.request("GET", http_server.https_url("/echo"), timeout=5)
    message = str(info.value)
    assert "HTTP/2" in message and "ALPN" in message, message


# -- D: timeout=None means no limit ----------------------------------------------------


def test_timeout_none_has_no_phase_limits() -> None:
    t = httpcore.Timeout(None)
    assert (t.connect, t.read, t.write, t.pool) == (None, None, None, None)
    t = httpcore.Timeout(None, read=1.0)
    assert (t.connect, t.read, t.write, t.pool) == (None, 1.0, None, None)
    t = httpcore.Timeout(2.0, read=None)
    assert (t.connect, t.read, t.write, t.pool) == (2.0, None, 2.0, 2.0)


def held_until_released(conn: RawConnection) -> None:
    """Read a request, signal, answer only once the test sets ``shared["release"]``."""
    conn.read_request()
    conn.server.signal("request-received", conn.index)
    release = conn.server.shared["release"]
    assert isinstance(release, threading.Event)
    release.wait(20)
    conn.respond(b"late")


@contextlib.contextmanager
def held_server(raw: RawFactory) -> Iterator[tuple[RawServer, threading.Event]]:
    release = threading.Event()
    server = raw(held_until_released)
    server.shared["release"] = release
    try:
        yield server, release
    finally:
        release.set()


@pytest.mark.timeout(15)
@pytest.mark.parametrize(
    ("pool_timeout", "kwargs"),
    [(0.2, {"timeout": None}), (httpcore.Timeout(0.2, read=None), {})],
    ids=["request-timeout-None", "pool-read-None"],
)
def test_timeout_none_waits_for_the_answer(
    raw: RawFactory, pool_timeout: Any, kwargs: dict[str, Any]
) -> None:
    """On this server a 0.2 s limit fires; with no limit the request is still
    waiting long after that, and succeeds once the server is released."""
    with held_server(raw) as (server, _), httpcore.Client() as client:
        with pytest.raises(httpcore.ReadTimeout) as info:
            client.request("GET", server.url("/limited"), timeout=0.2)
        assert "0.2 s" in str(info.value)
    with (
        held_server(raw) as (server, release),
        httpcore.Client(timeout=pool_timeout) as client,
        concurrent.futures.ThreadPoolExecutor(1) as executor,
    ):
        future = executor.submit(client.request, "GET", server.url("/unlimited"), **kwargs)
        server.wait_event("request-received")
        with pytest.raises(concurrent.futures.TimeoutError):
            future.result(timeout=1.0)  # 5x the 0.2 s that applies otherwise
        release.set()
        assert future.result(timeout=10).body == b"late"


@pytest.mark.timeout(15)
def test_request_without_timeout_uses_pools(raw: RawFactory) -> None:
    server = raw(handlers.never_answers)
    start = time.monotonic()
    with httpcore.Client(timeout=0.2) as client, pytest.raises(httpcore.ReadTimeout) as info:
        client.request("GET", server.url("/pool"))
    assert 0.15 < time.monotonic() - start < 3
    assert "0.2 s" in str(info.value)
    assert f"http://127.0.0.1:{server.port}/pool" in str(info.value)


@pytest.mark.timeout(15)
def test_async_request_timeout_none_waits(raw: RawFactory) -> None:
    with held_server(raw) as (server, release):

        async def main() -> bytes:
            async with httpcore.PoolManager(timeout=0.2) as pool:
                task = asyncio.ensure_future(
                    pool.request("GET", server.url("/unlimited"), timeout=None)
                )
                await asyncio.get_running_loop().run_in_executor(
                    None, server.wait_event, "request-received"
                )
                done, _ = await asyncio.wait({task}, timeout=1.0)
                assert not done, task.result()
                release.set()
                return (await asyncio.wait_for(task, 10)).body

        assert asyncio.run(main()) == b"late"
