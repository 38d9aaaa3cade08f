"""A request on a stale keep-alive connection is retried once when idempotent."""

from __future__ import annotations

import time

import pytest

import httpcore
from tests.servers import raw as handlers
from tests.servers.handles import RawFactory


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"])
def test_stale_connection_retried_for_idempotent(raw: RawFactory, method: str) -> None:
    server = raw(handlers.one_request_then_close_on_next)
    with httpcore.Client() as client:
        assert client.request("GET", server.url("/1")).body == b"first"
        second = client.request(method, server.url("/2"))
    assert second.status_code == 200
    assert second.body == (b"" if method == "HEAD" else b"first")
    assert server.accepted == 2  # exactly one retry, on a fresh connection
    seen = [(r.connection_index, r.target) for r in server.all_requests()]
    assert seen == [(0, b"/1"), (0, b"/2"), (1, b"/2")]


def test_stale_connection_not_retried_for_post(raw: RawFactory) -> None:
    server = raw(handlers.one_request_then_close_on_next)
    with httpcore.Client() as client:
        assert client.request("GET", server.url("/1")).body == b"first"
        with pytest.raises((httpcore.RemoteProtocolError, httpcore.NetworkError)) as info:
            client.request("POST", server.url("/2"), body=b"data")
        assert info.value.__cause__ is not None
        assert server.wait_event("closing-stale") == 0
    assert server.accepted == 1
    assert [r.target for r in server.all_requests()] == [b"/1", b"/2"]


def test_stale_connection_not_retried_for_streaming_upload(raw: RawFactory) -> None:
    server = raw(handlers.one_request_then_close_on_next)
    with httpcore.Client() as client:
        client.request("GET", server.url("/1"))
        with pytest.raises((httpcore.RemoteProtocolError, httpcore.NetworkError)):
            client.request("PUT", server.url("/2"), body=iter([b"a", b"b"]))
    assert server.accepted == 1


def test_retried_only_once(raw: RawFactory) -> None:
    """Every connection dies on its second request: the retry's fresh connection answers."""
    server = raw(handlers.one_request_then_close_on_next)
    with httpcore.Client() as client:
        bodies = [client.request("GET", server.url(f"/{i}")).body for i in range(4)]
    assert bodies == [b"first"] * 4
    # request 0 on conn 0; 1 fails on conn 0, retried on conn 1; 2 fails on 1, retried on 2; ...
    assert server.accepted == 4


def test_no_retry_when_response_bytes_arrived(raw: RawFactory) -> None:
    server = raw(handlers.one_request_then_partial_on_next)
    with httpcore.Client() as client:
        client.request("GET", server.url("/1"))
        with pytest.raises(httpcore.RemoteProtocolError):
            client.request("GET", server.url("/2"))
    assert server.accepted == 1


def test_no_retry_on_fresh_connection(raw: RawFactory) -> None:
    def close_at_once(conn: handlers.RawConnection) -> None:
        conn.read_request()

    server = raw(close_at_once)
    with httpcore.Client() as client, pytest.raises(httpcore.RemoteProtocolError):
        client.request("GET", server.url("/"))
    assert server.accepted == 1


def test_idle_close_noticed_then_post_succeeds(raw: RawFactory) -> None:
    server = raw(handlers.one_request_then_idle_close)
    with httpcore.Client() as client:
        assert client.request("GET", server.url("/1")).body == b"first"
        assert server.wait_event("idle-closed") == 0
        deadline = time.monotonic() + 5
        while any(c.state == "idle" for c in client.connections()):
            assert time.monotonic() < deadline, "engine never noticed the idle connection closed"
            time.sleep(0.01)
        assert client.request("POST", server.url("/2"), body=b"x").body == b"first"
    assert server.accepted == 2
