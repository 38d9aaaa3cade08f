"""httpcore.RequestsAdapter under requests, against real servers: hypercorn
(HTTP/1.1 and HTTP/2), raw-socket servers for what hypercorn will not send
(redirects, cookies, encoded bodies, broken bodies, client certificates),
tinyproxy and dante. No transport is mocked: every request crosses a socket.

requests' own test suite runs on the adapter too: tests/requests_suite/."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import pickle
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time
import warnings
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import trustme

requests = pytest.importorskip("requests")

import urllib3  # noqa: E402  (requests is installed, so urllib3 is)

import httpcore  # noqa: E402
from tests.servers import raw as handlers  # noqa: E402
from tests.servers.app import pattern  # noqa: E402
from tests.servers.handles import HTTPServer, RawFactory  # noqa: E402
from tests.servers.raw import RawConnection  # noqa: E402
from tests.test_proxy import tinyproxy  # noqa: E402, F401  (a fixture)
from tests.test_socks import dante  # noqa: E402, F401  (a fixture)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def adapter() -> Iterator[httpcore.RequestsAdapter]:
    adapter = httpcore.RequestsAdapter()
    yield adapter
    adapter.close()


@pytest.fixture
def session(adapter: httpcore.RequestsAdapter) -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        s.trust_env = False  # no proxies or CA bundle from the environment
        yield s


@pytest.fixture(scope="module")
def ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


def echo(response: requests.Response) -> dict:  # type: ignore[type-arg]
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def header(data: dict, name: str) -> list[str]:  # type: ignore[type-arg]
    return [v for k, v in data["headers"] if k.lower() == name.lower()]


# -- the package -------------------------------------------------------------------


def test_import_httpcore_does_not_import_requests() -> None:
    code = (
        "import sys, httpcore\n"
        "assert 'requests' not in sys.modules, 'imported by httpcore'\n"
        "assert 'RequestsAdapter' in httpcore.__all__ and 'RequestsAdapter' in dir(httpcore)\n"
        "httpcore.RequestsAdapter\n"
        "assert 'requests' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_the_adapter_is_a_requests_adapter() -> None:
    import requests.adapters

    assert issubclass(httpcore.RequestsAdapter, requests.adapters.BaseAdapter)
    assert httpcore.RequestsAdapter.__module__ == "httpcore._requests"
    with pytest.raises(ValueError):
        httpcore.RequestsAdapter(http1=False, http2=False)


# -- basics ----------------------------------------------------------------------


def test_get_and_post_over_http_and_https(
    session: requests.Session, http_server: HTTPServer, ca_file: str
) -> None:
    r = session.get(http_server.url("/echo?a=1"), headers={"X-Test": "yes"})
    data = echo(r)
    assert (data["method"], data["query"], header(data, "x-test")) == ("GET", "a=1", ["yes"])
    assert header(data, "user-agent") == [requests.utils.default_user_agent()]
    assert r.reason == ""  # as hypercorn (h11) sends it: "HTTP/1.1 200 "
    assert r.url == http_server.url("/echo?a=1")
    assert isinstance(r.raw, urllib3.HTTPResponse) and r.raw.version == 11
    assert r.elapsed.total_seconds() > 0
    assert r.connection is session.get_adapter(r.url)
    # r.content was read through raw, as with urllib3: raw is at its end
    assert (r.raw.read(), r.raw.tell()) == (b"", len(r.content))

    r = session.post(http_server.https_url("/echo"), json={"x": 1}, verify=ca_file)
    data = echo(r)
    assert data["method"] == "POST"
    assert data["body_sha256"] == hashlib.sha256(b'{"x": 1}').hexdigest()
    assert header(data, "content-type") == ["application/json"]


def test_request_bodies(session: requests.Session, http_server: HTTPServer) -> None:
    url = http_server.url("/echo")
    payload = pattern(300_000)

    def digest(r: requests.Response) -> tuple[int, str]:
        data = echo(r)
        return data["body_length"], data["body_sha256"]

    want = (len(payload), hashlib.sha256(payload).hexdigest())
    assert digest(session.post(url, data=payload)) == want
    assert digest(session.post(url, data=io.BytesIO(payload))) == want  # Content-Length
    chunks = (payload[i : i + 70_000] for i in range(0, len(payload), 70_000))
    assert digest(session.post(url, data=chunks)) == want  # chunked
    text = "grüße"
    assert digest(session.post(url, data=text)) == (7, hashlib.sha256(text.encode()).hexdigest())
    data = echo(session.post(url, data={"k": "v w"}))
    assert data["body_length"] == len(b"k=v+w")
    data = echo(session.post(url, files={"f": ("a.txt", b"hello")}))
    assert header(data, "content-type")[0].startswith("multipart/form-data; boundary=")


def test_head_and_no_body_statuses(session: requests.Session, http_server: HTTPServer) -> None:
    r = session.head(http_server.url("/head-test"))
    assert (r.status_code, r.headers["content-length"], r.content) == (200, "10", b"")
    assert session.get(http_server.url("/status/204")).content == b""
    r = session.get(http_server.url("/status/404"))
    assert (r.status_code, r.text) == (404, "status 404")
    with pytest.raises(requests.HTTPError):
        r.raise_for_status()


# -- one adapter, many sessions and threads ------------------------------------------


def test_one_adapter_many_sessions_and_threads_share_one_http2_connection(
    adapter: httpcore.RequestsAdapter, h2_server: HTTPServer, ca_file: str
) -> None:
    sessions = [requests.Session() for _ in range(2)]
    for s in sessions:
        s.mount("https://", adapter)
    url = h2_server.https_url("/echo")

    def work(i: int) -> set[str]:
        seen = set()
        for _ in range(4):
            r = sessions[i % 2].get(url, verify=ca_file, timeout=10)
            assert r.raw.version == 20 and r.reason == "OK"
            seen.add(echo(r)["http_version"])
        return seen

    with ThreadPoolExecutor(16) as pool:
        versions = set().union(*pool.map(work, range(16)))
    assert versions == {"2"}
    infos = adapter.connections()
    assert [(i.http_version, i.requests_served) for i in infos] == [("HTTP/2", 64)]
    # a generator body: requests adds Transfer-Encoding: chunked, which HTTP/2 drops
    r = sessions[0].post(url, data=iter([b"ab", b"cd"]), verify=ca_file, timeout=10)
    assert (echo(r)["body_length"], echo(r)["http_version"]) == (4, "2")
    for s in sessions:
        s.close()


def test_each_tls_configuration_gets_its_own_client(
    session: requests.Session,
    adapter: httpcore.RequestsAdapter,
    http_server: HTTPServer,
    ca_file: str,
) -> None:
    url = http_server.https_url("/echo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        echo(session.get(url, verify=False))
    echo(session.get(url, verify=ca_file))
    echo(session.get(url, verify=ca_file))
    echo(session.get(http_server.url("/echo"), verify=False))  # verify means nothing for http
    assert len(adapter._clients) == 3
    assert sum(i.requests_served for i in adapter.connections()) == 4
    with pytest.raises(requests.exceptions.SSLError):
        session.get(url)  # certifi's bundle does not know the test CA


def test_close_keeps_the_adapter_usable_and_a_read_in_progress_alive(
    session: requests.Session, adapter: httpcore.RequestsAdapter, http_server: HTTPServer
) -> None:
    r = session.get(http_server.url("/bytes/3000000"), stream=True)
    first = r.raw.read(1000)
    session.close()  # closes the adapter: idle connections go, this one finishes first
    assert first + r.raw.read() == pattern(3_000_000)
    assert echo(session.get(http_server.url("/echo")))["method"] == "GET"


def test_pickled_session_keeps_the_adapter(http_server: HTTPServer) -> None:
    s = requests.Session()
    s.mount("http://", httpcore.RequestsAdapter(http2=False, retries=1))
    copy = pickle.loads(pickle.dumps(s))
    adapter = copy.get_adapter("http://x/")
    assert isinstance(adapter, httpcore.RequestsAdapter)
    assert (adapter._http2, adapter._retries) == (False, 1)
    echo(copy.get(http_server.url("/echo")))


# -- timeouts ------------------------------------------------------------------------


def test_read_timeout_number_and_pair(session: requests.Session, raw: RawFactory) -> None:
    server = raw(handlers.never_answers)
    start = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout) as info:
        session.get(server.url("/"), timeout=0.3)
    assert "Read timed out" in str(info.value)
    assert isinstance(info.value.__cause__, httpcore.ReadTimeout)
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(server.url("/"), timeout=(5, 0.3))
    assert time.monotonic() - start < 5


def test_connect_timeout_from_the_pair(session: requests.Session, backlogged_port: int) -> None:
    start = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectTimeout) as info:
        session.get(f"http://127.0.0.1:{backlogged_port}/", timeout=(0.3, 30))
    assert isinstance(info.value, requests.exceptions.Timeout)
    assert time.monotonic() - start < 5


def test_timeout_none_is_no_limit_and_bad_timeouts_are_value_errors(
    session: requests.Session, http_server: HTTPServer
) -> None:
    assert session.get(http_server.url("/slow/300"), timeout=None).text == "slow"
    assert session.get(http_server.url("/slow/10"), timeout=urllib3.Timeout(5, 5)).ok
    with pytest.raises(ValueError, match=r"\(connect, read\)"):
        session.get(http_server.url("/echo"), timeout=(1, 2, 3))
    with pytest.raises(ValueError):
        session.get(http_server.url("/echo"), timeout=-1)


def test_read_timeout_mid_body_is_connection_error(
    session: requests.Session, raw: RawFactory
) -> None:
    def head_then_nothing(conn: RawConnection) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        conn.wait_closed_by_peer()

    server = raw(head_then_nothing)
    r = session.get(server.url("/"), stream=True, timeout=0.3)
    assert r.raw.read(10) == b"0123456789"
    with pytest.raises(requests.exceptions.ConnectionError, match="Read timed out"):
        b"".join(r.iter_content(10))  # as with urllib3: a ConnectionError, not a Timeout


# -- TLS: verify and cert ------------------------------------------------------------


def test_verify_false_warns_and_verify_path_trusts(
    session: requests.Session, http_server: HTTPServer, ca_file: str
) -> None:
    url = http_server.https_url("/echo")
    with pytest.warns(urllib3.exceptions.InsecureRequestWarning):
        echo(session.get(url, verify=False))
    echo(session.get(url, verify=ca_file))
    with pytest.raises(OSError, match="Could not find a suitable TLS CA certificate bundle"):
        session.get(url, verify="/nonexistent/ca.pem")


def test_verify_with_a_ca_directory(
    session: requests.Session, http_server: HTTPServer, tls_ca: trustme.CA, tmp_path: Path
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to name the CA file by its subject hash")
    pem = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(pem))
    digest = subprocess.run(
        [openssl, "x509", "-hash", "-noout", "-in", str(pem)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    directory = tmp_path / "capath"
    directory.mkdir()
    shutil.copy(pem, directory / f"{digest}.0")
    echo(session.get(http_server.https_url("/echo"), verify=str(directory)))


def mtls_handler(conn: RawConnection) -> None:
    conn.read_request()
    peer = conn.sock.getpeercert()  # type: ignore[attr-defined]
    names = [v for k, v in peer.get("subjectAltName", ())] if peer else []
    conn.respond(json.dumps(names).encode())


def test_client_certificate(
    session: requests.Session,
    raw: RawFactory,
    tls_ca: trustme.CA,
    server_cert: trustme.LeafCert,
    ca_file: str,
    tmp_path: Path,
) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(ctx)
    tls_ca.configure_trust(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    server = raw(mtls_handler, tls=ctx)
    client_cert = tls_ca.issue_cert("client.example")
    both = tmp_path / "client.pem"
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(both))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    client_cert.cert_chain_pems[0].write_to_path(str(cert_file))
    client_cert.private_key_pem.write_to_path(str(key_file))
    url = server.url("/", scheme="https")
    assert session.get(url, verify=ca_file, cert=str(both)).json() == ["client.example"]
    got = session.get(url, verify=ca_file, cert=(str(cert_file), str(key_file)))
    assert got.json() == ["client.example"]
    with pytest.raises(OSError, match="Could not find the TLS certificate file"):
        session.get(url, verify=ca_file, cert="/nonexistent/cert.pem")


# -- proxies ---------------------------------------------------------------------------


def test_http_proxy_forwards_http_and_tunnels_https(
    session: requests.Session,
    adapter: httpcore.RequestsAdapter,
    tinyproxy: int,  # noqa: F811
    http_server: HTTPServer,
    ca_file: str,
) -> None:
    proxy = f"http://user:secret@127.0.0.1:{tinyproxy}"
    proxies = {"http": proxy, "https": proxy}
    data = echo(session.get(http_server.url("/echo?via=proxy"), proxies=proxies))
    assert data["query"] == "via=proxy"
    assert header(data, "proxy-authorization") == []
    data = echo(session.get(http_server.https_url("/echo"), proxies=proxies, verify=ca_file))
    assert header(data, "proxy-authorization") == []
    bad = f"http://user:wrong@127.0.0.1:{tinyproxy}"
    with pytest.raises(requests.exceptions.ProxyError):
        session.get(http_server.https_url("/echo"), proxies={"https": bad}, verify=ca_file)


def test_unreachable_proxy_is_proxy_error(
    session: requests.Session, http_server: HTTPServer, closed_port: int
) -> None:
    proxies = {"http": f"127.0.0.1:{closed_port}"}  # no scheme: http://, as requests reads it
    with pytest.raises(requests.exceptions.ProxyError):
        session.get(http_server.url("/echo"), proxies=proxies)
    with pytest.raises(requests.exceptions.InvalidSchema):
        session.get(http_server.url("/echo"), proxies={"http": "socks4://127.0.0.1:1"})


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_socks_proxies(
    session: requests.Session,
    dante: object,  # noqa: F811
    http_server: HTTPServer,
    ca_file: str,
    scheme: str,
) -> None:
    proxy = f"{scheme}://{dante.address}"  # type: ignore[attr-defined]
    proxies = {"http": proxy, "https": proxy}
    assert echo(session.get(http_server.url("/echo"), proxies=proxies))["method"] == "GET"
    r = session.get(http_server.https_url("/echo"), proxies=proxies, verify=ca_file)
    assert echo(r)["method"] == "GET"


# -- streaming -------------------------------------------------------------------------


def test_stream_iter_content_and_raw_read(
    session: requests.Session, adapter: httpcore.RequestsAdapter, http_server: HTTPServer
) -> None:
    body = pattern(1_000_000)
    r = session.get(http_server.url("/bytes/1000000"), stream=True)
    assert r.raw.read(7) == body[:7]
    assert r.raw.read(100_000) == body[7:100_007]
    parts = list(r.iter_content(65536))
    assert max(len(p) for p in parts) <= 65536
    assert body[:100_007] + b"".join(parts) == body
    assert r.raw.tell() == len(body)

    r = session.get(http_server.url("/chunked/300000?size=1000"), stream=True)
    assert r.raw.read(5000) == pattern(5000)  # whole, across 1000-byte chunks, as http.client
    piece = r.raw.read1(5000)  # what one read from the connection had, at most 5000
    assert 0 < len(piece) <= 5000 and piece == pattern(5000 + len(piece))[5000:]
    r = session.get(http_server.url("/chunked/300000?size=1000"), stream=True)
    out = io.BytesIO()
    shutil.copyfileobj(r.raw, out)  # raw is a file-like object
    assert out.getvalue() == pattern(300_000)


def test_closing_a_stream_early_frees_its_connection(
    session: requests.Session, adapter: httpcore.RequestsAdapter, http_server: HTTPServer
) -> None:
    with session.get(http_server.url("/bytes/20000000"), stream=True) as r:
        assert len(r.raw.read(1000)) == 1000
    # the unread HTTP/1.1 body closed its connection; the next request opens another
    assert echo(session.get(http_server.url("/echo")))["method"] == "GET"
    assert [i.state for i in adapter.connections()] == ["idle"]


def lines_handler(conn: RawConnection) -> None:
    conn.read_request()
    conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for piece in (b"first li", b"ne\nsecond line\r\n", b"third", b""):
        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))


def test_iter_lines(session: requests.Session, raw: RawFactory) -> None:
    server = raw(lines_handler)
    r = session.get(server.url("/"), stream=True)
    assert list(r.iter_lines()) == [b"first line", b"second line", b"third"]


# -- redirects, cookies, hooks ------------------------------------------------------------


def app_handler(conn: RawConnection) -> None:
    """/start -> 302 /target; /cookie sets a cookie; anything else: the Cookie header."""
    while True:
        request = conn.read_request()
        if request.target == b"/start":
            conn.respond(b"", status=b"302 Found", extra=b"Location: /target\r\n")
        elif request.target == b"/cookie":
            conn.respond(b"set", extra=b"Set-Cookie: flavour=ginger; Path=/\r\n")
        else:
            conn.respond(b";".join(request.header(b"cookie")) or b"-")


def test_redirects_are_requests_own(session: requests.Session, raw: RawFactory) -> None:
    server = raw(app_handler)
    r = session.get(server.url("/start"))
    assert (r.status_code, r.url, r.text) == (200, server.url("/target"), "-")
    assert [h.status_code for h in r.history] == [302]
    r = session.get(server.url("/start"), allow_redirects=False)
    assert (r.status_code, r.is_redirect, r.next.url) == (302, True, server.url("/target"))


def test_cookies_and_hooks(session: requests.Session, raw: RawFactory) -> None:
    server = raw(app_handler)
    seen: list[int] = []
    r = session.get(server.url("/cookie"), hooks={"response": lambda r, **kw: seen.append(1)})
    assert r.cookies["flavour"] == "ginger" and session.cookies["flavour"] == "ginger"
    assert session.get(server.url("/echo")).text == "flavour=ginger"
    assert seen == [1]


# -- content decoding ---------------------------------------------------------------------


PLAIN = b"the quick brown fox jumps over the lazy dog\n" * 200


def _encoders() -> dict[bytes, bytes]:
    out = {b"gzip": gzip.compress(PLAIN), b"deflate": zlib.compress(PLAIN)}
    try:
        import brotli

        out[b"br"] = brotli.compress(PLAIN)
    except ImportError:
        pass
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+
    except ImportError:
        try:
            from backports import zstd  # type: ignore[import-not-found,no-redef]
        except ImportError:
            zstd = None
    if zstd is not None:
        out[b"zstd"] = zstd.compress(PLAIN)
    return out


ENCODED = _encoders()


def encoding_handler(conn: RawConnection) -> None:
    while True:
        request = conn.read_request()
        coding = request.target.strip(b"/")
        conn.respond(ENCODED[coding], extra=b"Content-Encoding: " + coding + b"\r\n")


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_content_encoding_is_decoded_as_urllib3_does(
    session: requests.Session, raw: RawFactory, coding: str
) -> None:
    if coding.encode() not in ENCODED:
        pytest.skip(f"no {coding} package installed")
    accepted = requests.utils.default_headers()["Accept-Encoding"]
    if coding not in accepted:
        pytest.skip(f"urllib3 here does not decode {coding}")
    server = raw(encoding_handler)
    assert session.get(server.url(f"/{coding}")).content == PLAIN
    r = session.get(server.url(f"/{coding}"), stream=True)
    assert r.raw.read(decode_content=False) == ENCODED[coding.encode()]  # as sent
    r = session.get(server.url(f"/{coding}"), stream=True)
    assert r.raw.read(100, decode_content=True) == PLAIN[:100]


def test_bad_encoding_is_content_decoding_error(
    session: requests.Session, raw: RawFactory
) -> None:
    def handler(conn: RawConnection) -> None:
        conn.read_request()
        conn.respond(b"not gzip at all", extra=b"Content-Encoding: gzip\r\n")

    with pytest.raises(requests.exceptions.ContentDecodingError):
        session.get(raw(handler).url("/"))


# -- errors -----------------------------------------------------------------------------------


def test_connection_refused(session: requests.Session, closed_port: int) -> None:
    with pytest.raises(requests.exceptions.ConnectionError) as info:
        session.get(f"http://127.0.0.1:{closed_port}/")
    assert type(info.value) is requests.exceptions.ConnectionError
    assert isinstance(info.value.__cause__, httpcore.ConnectError)
    assert info.value.request is not None


def test_untrusted_certificate_is_ssl_error(
    session: requests.Session, http_server: HTTPServer
) -> None:
    with pytest.raises(requests.exceptions.SSLError) as info:
        session.get(http_server.https_url("/echo"))
    assert "certificate verify failed" in str(info.value)


def test_truncated_bodies_are_chunked_encoding_errors(
    session: requests.Session, raw: RawFactory
) -> None:
    server = raw(handlers.closes_mid_body)  # Content-Length: 100, 10 bytes, close
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        session.get(server.url("/"))

    def chunked_then_close(conn: RawConnection) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")

    r = session.get(raw(chunked_then_close).url("/"), stream=True)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        b"".join(r.iter_content(1024))


def test_reset_mid_body_is_chunked_encoding_error(
    session: requests.Session, raw: RawFactory
) -> None:
    def reset(conn: RawConnection) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.sock.close()

    r = session.get(raw(reset).url("/"), stream=True)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        b"".join(r.iter_content(1024))


def test_invalid_url_and_invalid_header(session: requests.Session, raw: RawFactory) -> None:
    with pytest.raises(requests.exceptions.InvalidURL):
        session.get("http://a..b/")  # requests lets it through; httpcore's IDNA check does not
    server = raw(handlers.keepalive_ok)
    with pytest.raises(requests.exceptions.InvalidHeader):
        session.get(server.url("/"), headers={"X-Name": "\u2603"})  # not latin-1

    def conflicting(conn: RawConnection) -> None:
        conn.read_request()
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\nContent-Length: 32\r\n\r\n"
        conn.send(head + b"x" * 32)

    with pytest.raises(requests.exceptions.InvalidHeader):
        session.get(raw(conflicting).url("/"))


def test_many_threads_one_session_http11(
    session: requests.Session, adapter: httpcore.RequestsAdapter, http_server: HTTPServer
) -> None:
    url = http_server.url("/echo")

    def work(i: int) -> int:
        return sum(echo(session.get(url))["method"] == "GET" for _ in range(5))

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(work, range(8))) == 40
    assert len(adapter._clients) == 1
    versions = [i.http_version for i in adapter.connections()]
    assert set(versions) == {"HTTP/1.1"} and 1 <= len(versions) <= 8
