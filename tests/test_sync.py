"""The sync frontend against real servers: basics, keep-alive, limits, bodies, framing."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import httpcore
from tests.servers import raw as handlers
from tests.servers.app import pattern
from tests.servers.handles import HTTPServer, RawFactory


def echo(response: httpcore.Response) -> dict:  # type: ignore[type-arg]
    assert response.status_code == 200, response.body
    return json.loads(response.body)  # type: ignore[no-any-return]


def test_get_basics(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        response = client.request("GET", http_server.url("/echo?a=1&b=two"))
    assert isinstance(response, httpcore.Response)
    assert response.status_code == 200
    assert response.reason == b""  # hypercorn sends "HTTP/1.1 200 " (see test_reason_phrase)
    assert response.http_version == "HTTP/1.1"
    assert isinstance(response.headers, list)
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in response.headers)
    assert (b"content-type", b"application/json") in [(k.lower(), v) for k, v in response.headers]
    data = echo(response)
    assert data["method"] == "GET"
    assert data["path"] == "/echo"
    assert data["query"] == "a=1&b=two"
    assert data["body_length"] == 0
    sent = {k.lower(): v for k, v in data["headers"]}
    assert sent["host"] == f"127.0.0.1:{http_server.port}"


def test_reason_phrase_and_header_case_kept(raw: RawFactory) -> None:
    server = raw(handlers.no_body_statuses)
    with httpcore.Client() as client:
        ok = client.request("GET", server.url("/ok"))
        not_modified = client.request("GET", server.url("/304"))
    assert ok.reason == b"OK"
    assert ok.headers == [(b"Content-Length", b"2")]  # wire order, names as received
    assert not_modified.reason == b"Not Modified"
    assert not_modified.headers == [(b"Content-Length", b"1000"), (b"ETag", b'"x"')]


def test_custom_headers_arrive(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        data = echo(
            client.request("GET", http_server.url(), headers=[("X-Custom", "1"), ("X-Other", "b")])
        )
    assert ["X-Custom", "1"] in data["headers"]
    assert ["X-Other", "b"] in data["headers"]


def test_keepalive_reuses_connection(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        ports = {echo(client.request("GET", http_server.url()))["client_port"] for _ in range(5)}
        infos = client.connections()
    assert len(ports) == 1
    assert len(infos) == 1
    info = infos[0]
    assert isinstance(info, httpcore.ConnectionInfo)
    assert info.origin == http_server.base_url
    assert info.http_version == "HTTP/1.1"
    assert info.state == "idle"
    assert info.active_streams == 0
    assert info.requests_served == 5


def test_separate_clients_use_separate_connections(http_server: HTTPServer) -> None:
    with httpcore.Client() as a, httpcore.Client() as b:
        pa = echo(a.request("GET", http_server.url()))["client_port"]
        pb = echo(b.request("GET", http_server.url()))["client_port"]
    assert pa != pb


def test_max_connections_bounds_concurrency(http_server: HTTPServer) -> None:
    limits = httpcore.Limits(max_connections=2)
    with httpcore.Client(limits=limits) as client:

        def call(_: int) -> int:
            response = client.request("GET", http_server.url("/slow/100"))
            assert response.body == b"slow"
            return echo(client.request("GET", http_server.url()))["client_port"]

        with ThreadPoolExecutor(6) as ex:
            ports = set(ex.map(call, range(6)))
        assert len(ports) <= 2
        assert len(client.connections()) <= 2


def test_max_keepalive_connections(http_server: HTTPServer) -> None:
    limits = httpcore.Limits(max_connections=10, max_keepalive_connections=1)
    barrier = threading.Barrier(4)
    with httpcore.Client(limits=limits) as client:

        def call(_: int) -> int:
            barrier.wait(10)
            return client.request("GET", http_server.url("/slow/300")).status_code

        with ThreadPoolExecutor(4) as ex:
            assert list(ex.map(call, range(4))) == [200] * 4
        # Excess idle connections are closed after a short grace (so bursts
        # can reuse them); wait for that, bounded, by polling the engine.
        deadline = time.monotonic() + 5
        while True:
            idle = [c for c in client.connections() if c.state == "idle"]
            if len(idle) <= 1 or time.monotonic() > deadline:
                break
        assert len(idle) == 1


def test_keepalive_expiry(http_server: HTTPServer) -> None:
    limits = httpcore.Limits(keepalive_expiry=0.3)
    with httpcore.Client(limits=limits) as client:
        first = echo(client.request("GET", http_server.url()))["client_port"]
        again = echo(client.request("GET", http_server.url()))["client_port"]
        assert again == first
        time.sleep(0.6)  # the feature under test is the passage of time
        later = echo(client.request("GET", http_server.url()))["client_port"]
    assert later != first


def test_max_keepalive_zero_means_no_reuse(http_server: HTTPServer) -> None:
    limits = httpcore.Limits(max_keepalive_connections=0)
    with httpcore.Client(limits=limits) as client:
        a = echo(client.request("GET", http_server.url()))["client_port"]
        b = echo(client.request("GET", http_server.url()))["client_port"]
        assert a != b
        assert [c for c in client.connections() if c.state == "idle"] == []


def test_upload_bytes(http_server: HTTPServer) -> None:
    body = pattern(1_000_003)
    with httpcore.Client() as client:
        response = client.request("POST", http_server.url("/upload"), body=body)
    result = json.loads(response.body)
    assert result == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_upload_bytearray_and_memoryview(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        for body in (bytearray(b"abc"), memoryview(b"defgh")):
            data = echo(client.request("PUT", http_server.url(), body=body))
            assert data["body_length"] == len(bytes(body))
            assert data["body_sha256"] == hashlib.sha256(bytes(body)).hexdigest()


def test_download_content_length(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        response = client.request("GET", http_server.url("/bytes/3000000"))
    assert response.body == pattern(3_000_000)
    assert (b"content-length", b"3000000") in [(k.lower(), v) for k, v in response.headers]


def test_download_chunked(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        response = client.request("GET", http_server.url("/chunked/100000?size=777"))
        assert response.body == pattern(100_000)
        assert (b"transfer-encoding", b"chunked") in [(k.lower(), v) for k, v in response.headers]
        # the connection is still good after a chunked body
        assert len({echo(client.request("GET", http_server.url()))["client_port"]}) == 1
        assert len(client.connections()) == 1


def test_empty_body(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        assert client.request("GET", http_server.url("/bytes/0")).body == b""


def test_head_has_no_body_and_keeps_connection(http_server: HTTPServer) -> None:
    with httpcore.Client(timeout=httpcore.Timeout(5.0, read=2.0)) as client:
        before = echo(client.request("GET", http_server.url()))["client_port"]
        response = client.request("HEAD", http_server.url("/head-test"))
        assert response.status_code == 200
        assert response.body == b""
        assert (b"content-length", b"10") in [(k.lower(), v) for k, v in response.headers]
        after = echo(client.request("GET", http_server.url()))["client_port"]
        assert client.request("GET", http_server.url("/head-test")).body == b"hello head"
    assert before == after


def test_204_and_304_have_no_body(http_server: HTTPServer) -> None:
    with httpcore.Client(timeout=httpcore.Timeout(5.0, read=2.0)) as client:
        first = echo(client.request("GET", http_server.url()))["client_port"]
        for code in (204, 304):
            response = client.request("GET", http_server.url(f"/status/{code}"))
            assert response.status_code == code
            assert response.body == b""
        assert echo(client.request("GET", http_server.url()))["client_port"] == first


def test_304_with_content_length_has_no_body_raw(raw: RawFactory) -> None:
    server = raw(handlers.no_body_statuses)
    with httpcore.Client(timeout=httpcore.Timeout(5.0, read=2.0)) as client:
        r204 = client.request("GET", server.url("/204"))
        r304 = client.request("GET", server.url("/304"))
        ok = client.request("GET", server.url("/ok"))
    assert (r204.status_code, r204.body) == (204, b"")
    assert (r304.status_code, r304.body) == (304, b"")
    assert (b"ETag", b'"x"') in r304.headers
    assert ok.body == b"ok"
    assert server.accepted == 1  # one connection carried all three


def test_other_statuses_are_responses_not_errors(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        for code in (201, 400, 404, 500, 503):
            response = client.request("GET", http_server.url(f"/status/{code}"))
            assert response.status_code == code
            assert response.body == f"status {code}".encode()


def test_informational_responses_are_skipped(raw: RawFactory) -> None:
    server = raw(handlers.informational_then_ok)
    with httpcore.Client() as client:
        response = client.request("GET", server.url("/"))
        second = client.request("GET", server.url("/"))
    assert response.status_code == 200
    assert response.body == b"final"
    assert (b"X-Final", b"yes") in response.headers
    assert all(k.lower() != b"link" for k, _ in response.headers)
    assert second.body == b"final"
    assert server.accepted == 1


def test_connection_close_response(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        first = echo(client.request("GET", http_server.url()))["client_port"]
        closing = client.request("GET", http_server.url("/close"))
        assert closing.body == b"closing"
        assert [c for c in client.connections() if c.state in ("idle", "active")] == []
        after = echo(client.request("GET", http_server.url()))["client_port"]
    assert after != first


def test_connection_close_request_header(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        first = echo(client.request("GET", http_server.url(), headers={"Connection": "close"}))
        second = echo(client.request("GET", http_server.url()))
    assert first["client_port"] != second["client_port"]


def test_http10_body_until_close(raw: RawFactory) -> None:
    server = raw(handlers.http10_until_close)
    with httpcore.Client() as client:
        response = client.request("GET", server.url("/"))
        assert response.http_version == "HTTP/1.0"
        assert response.status_code == 200
        assert response.body == b"0123456789" * 10
        again = client.request("GET", server.url("/"))
        assert again.body == b"0123456789" * 10
    assert server.accepted == 2  # no keep-alive on HTTP/1.0


def test_many_threads_share_one_client(http_server: HTTPServer) -> None:
    threads, per_thread = 32, 20
    barrier = threading.Barrier(threads)
    with httpcore.Client() as client:

        def worker(t: int) -> list[str]:
            barrier.wait(10)
            seen = []
            for i in range(per_thread):
                data = echo(client.request("GET", http_server.url(f"/echo?t={t}&i={i}")))
                seen.append(data["query"])
            return seen

        with ThreadPoolExecutor(threads) as ex:
            results = list(ex.map(worker, range(threads)))
        infos = client.connections()
    for t, seen in enumerate(results):
        assert seen == [f"t={t}&i={i}" for i in range(per_thread)]
    assert 1 <= len(infos) <= threads
    assert sum(c.requests_served for c in infos) <= threads * per_thread


def test_caller_not_blocked_by_another_caller(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        slow_done = threading.Event()

        def slow() -> None:
            client.request("GET", http_server.url("/slow/1500"))
            slow_done.set()

        t = threading.Thread(target=slow)
        t.start()
        try:
            for _ in range(10):
                assert client.request("GET", http_server.url()).status_code == 200
            assert not slow_done.is_set()
        finally:
            t.join()


def test_repr_counts(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        assert repr(client) == "<Client [active=0 queued=0 idle=0]>"
        client.request("GET", http_server.url())
        assert repr(client) == "<Client [active=0 queued=0 idle=1]>"
        # larger than the engine's per-stream window, so the stream stays active
        with client.request("GET", http_server.url("/bytes/8000000"), stream=True):
            assert repr(client) == "<Client [active=1 queued=0 idle=0]>"


def test_default_timeout_object_and_float(http_server: HTTPServer) -> None:
    with httpcore.Client(timeout=2.0) as client:
        assert client.request("GET", http_server.url(), timeout=1.0).status_code == 200
        timeout = httpcore.Timeout(connect=1.0, read=1.0, write=1.0, pool=1.0)
        assert client.request("GET", http_server.url(), timeout=timeout).status_code == 200
        no_limit = httpcore.Timeout(None)
        assert client.request("GET", http_server.url(), timeout=no_limit).status_code == 200


def test_chunked_extensions_trailers_and_repeated_headers(raw: RawFactory) -> None:
    server = raw(handlers.chunked_with_trailers)
    with httpcore.Client() as client:
        response = client.request("GET", server.url("/"))
        again = client.request("GET", server.url("/"))
    assert response.body == b"hello world"
    cookies = [v for k, v in response.headers if k == b"Set-Cookie"]
    assert cookies == [b"a=1", b"b=2"]
    assert again.body == b"hello world"
    assert server.accepted == 1


def test_http11_body_until_close(raw: RawFactory) -> None:
    server = raw(handlers.http11_until_close)
    with httpcore.Client() as client:
        assert client.request("GET", server.url("/")).body == b"until close"
        assert client.request("GET", server.url("/")).body == b"until close"
    assert server.accepted == 2


def test_head_with_stream_true(http_server: HTTPServer) -> None:
    with httpcore.Client(timeout=httpcore.Timeout(5.0, read=2.0)) as client:
        with client.request("HEAD", http_server.url("/head-test"), stream=True) as response:
            assert list(response.stream()) == []
        port = echo(client.request("GET", http_server.url()))["client_port"]
        assert echo(client.request("GET", http_server.url()))["client_port"] == port


def test_response_read_in_another_thread(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        response = client.request("GET", http_server.url("/bytes/3000000"), stream=True)
        with ThreadPoolExecutor(1) as ex:
            body = ex.submit(response.read).result(timeout=20)
    assert body == pattern(3_000_000)


def test_content_length_header_mismatch_is_local_error(raw: RawFactory) -> None:
    server = raw(handlers.keepalive_ok)
    with httpcore.Client(timeout=2.0) as client:
        for declared in ("5", "2"):
            with pytest.raises(httpcore.LocalProtocolError):
                client.request(
                    "POST", server.url("/"), headers={"Content-Length": declared}, body=b"abc"
                )
        # the client is still usable afterwards
        assert client.request("GET", server.url("/")).body == b"ok"


def test_non_bytes_item_in_upload_iterable(http_server: HTTPServer) -> None:
    with httpcore.Client() as client:
        with pytest.raises((TypeError, httpcore.LocalProtocolError)):
            client.request("POST", http_server.url("/upload"), body=iter([b"ok", "text"]))
        assert client.request("GET", http_server.url()).status_code == 200
