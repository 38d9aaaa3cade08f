"""HTTP/2 stream lifecycle regressions: connection-window starvation by unread
streams, deadlines of uploads that make progress, responses that arrive before
the upload is finished (with and without RST_STREAM(NO_ERROR)), RST_STREAM on
an idle stream, a wrong content-length as a stream error, and never-indexed
HPACK literals for secrets.

Fault servers are in ``servers/h2lifecycle.py`` (``h2`` over raw sockets, run
through the ``raw`` fixture, h2c with prior knowledge); what the client put on
the wire is observed there by parsing its frames, and reported through server
signals. Requests carry short timeouts (and tests a pytest timeout) so that a
hang shows up as a fast failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import queue
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import hpack
import pytest
from h2.errors import ErrorCodes

import httpcore
from tests.servers import h2lifecycle
from tests.servers.app import pattern
from tests.servers.h2nginx import Nginx, run_nginx
from tests.servers.h2util import h2c_client, h2c_pool
from tests.servers.handles import HTTPServer, RawFactory
from tests.servers.raw import RawServer


class Events:
    """Every signal of a server, kept (``RawServer.wait_event`` drops the ones
    it skips): tests look events up by name and predicate, with a deadline."""

    def __init__(self, server: RawServer) -> None:
        self.server = server
        self.seen: list[tuple[str, object]] = []

    def _drain(self, timeout: float) -> None:
        try:
            self.seen.append(self.server.events.get(timeout=timeout))
        except queue.Empty:
            return
        while True:
            try:
                self.seen.append(self.server.events.get_nowait())
            except queue.Empty:
                return

    def find(self, name: str, match: Callable[[object], bool] = lambda v: True) -> list[object]:
        self._drain(0)
        return [v for n, v in self.seen if n == name and match(v)]

    def wait(
        self,
        names: str | tuple[str, ...],
        match: Callable[[object], bool] = lambda v: True,
        timeout: float = 5.0,
    ) -> tuple[str, object] | None:
        """The first event with one of ``names`` whose value ``match``es, or
        None when there is none within ``timeout`` seconds."""
        wanted = (names,) if isinstance(names, str) else names
        deadline = time.monotonic() + timeout
        while True:
            for name, value in self.seen:
                if name in wanted and match(value):
                    return name, value
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._drain(left)


def _for_stream(index: int, stream_id: int) -> Callable[[object], bool]:
    return lambda v: isinstance(v, tuple) and v[0] == index and v[1] == stream_id


# -- 4: unread streams must not starve the connection ----------------------------------------


@pytest.mark.timeout(30)
def test_unread_streams_do_not_starve_the_connection(raw: RawFactory) -> None:
    """Five large responses opened with stream=True and not read: each may hold
    back its own stream window, but the connection window must be re-opened as
    the engine receives data, so a small request on the same connection is
    answered at once (today the unread streams use up the 16 MiB connection
    window and the small one times out)."""
    server = raw(h2lifecycle.big_streams)
    events = Events(server)
    with h2c_client(timeout=10) as client:
        responses = [client.request("GET", server.url(f"/big{i}"), stream=True) for i in range(5)]
        try:
            assert all(r.http_version == "HTTP/2" for r in responses)
            got = events.wait("stalled", lambda v: v["big"] == 5, timeout=10)  # type: ignore[index]
            assert got is not None, "the server never ran out of window"
            stall = got[1]
            assert isinstance(stall, dict)
            # flow control still holds each unread stream to about its own window
            window = stall["stream_window"]
            assert all(n <= window * 1.25 for n in stall["sent"].values()), stall
            assert window * 1.25 < h2lifecycle.BIG_EACH

            started = time.monotonic()
            small = client.request("GET", server.url("/small"), timeout=3)
            assert small.status_code == 200
            assert small.body == b"conn0:/small"  # on the one connection
            assert time.monotonic() - started < 2.0

            # and the unread streams are intact
            for response in responses:
                assert response.read() == pattern(h2lifecycle.BIG_EACH)
        finally:
            for response in responses:
                response.close()
    assert server.accepted == 1


# -- 5: an upload that keeps making progress does not time out -----------------------------------

PACED_PIECE = 32 * 1024
PACED_PIECES = 12
PACED_GAP = 0.25
"""12 pieces 0.25 s apart: about 2.75 s of upload, no gap near the 1 s timeout."""

PACED_TIMEOUTS = {
    "timeout-1s": httpcore.Timeout(1.0),
    "read-write-1s": httpcore.Timeout(connect=5.0, read=1.0, write=1.0, pool=5.0),
}


def _paced_upload() -> Iterator[bytes]:
    for i in range(PACED_PIECES):
        if i:
            time.sleep(PACED_GAP)  # the workload: a slow producer, not synchronisation
        yield pattern(PACED_PIECE)


async def _apaced_upload() -> AsyncIterator[bytes]:
    for i in range(PACED_PIECES):
        if i:
            await asyncio.sleep(PACED_GAP)  # the workload, not synchronisation
        yield pattern(PACED_PIECE)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("timeout", list(PACED_TIMEOUTS.values()), ids=list(PACED_TIMEOUTS))
def test_slow_upload_making_progress_h2(raw: RawFactory, timeout: httpcore.Timeout) -> None:
    server = raw(h2lifecycle.body_length)
    with h2c_client() as client:
        started = time.monotonic()
        response = client.request("POST", server.url("/up"), body=_paced_upload(), timeout=timeout)
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert json.loads(response.body) == {"length": PACED_PIECE * PACED_PIECES}
        assert elapsed > 2 * timeout.read  # type: ignore[operator]  # longer than one timeout
    assert server.accepted == 1


@pytest.mark.timeout(20)
def test_slow_upload_making_progress_h2_async(raw: RawFactory) -> None:
    server = raw(h2lifecycle.body_length)

    async def main() -> bytes:
        async with h2c_pool() as pool:
            response = await pool.request(
                "POST", server.url("/up"), body=_apaced_upload(), timeout=httpcore.Timeout(1.0)
            )
            assert response.status_code == 200
            return response.body

    assert json.loads(asyncio.run(main())) == {"length": PACED_PIECE * PACED_PIECES}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("timeout", list(PACED_TIMEOUTS.values()), ids=list(PACED_TIMEOUTS))
def test_slow_upload_making_progress_http11_control(
    http_server: HTTPServer, timeout: httpcore.Timeout
) -> None:
    """The same upload over HTTP/1.1 (hypercorn): the control, passes today."""
    with httpcore.Client(http1=True, http2=False) as client:
        response = client.request(
            "POST", http_server.url("/upload"), body=_paced_upload(), timeout=timeout
        )
        assert response.http_version == "HTTP/1.1"
        expected = pattern(PACED_PIECE) * PACED_PIECES
        assert json.loads(response.body) == {
            "length": len(expected),
            "sha256": hashlib.sha256(expected).hexdigest(),
        }


# -- 6: a response before the upload is finished must not leak the server's stream ---------------

EARLY_PIECE = 64 * 1024
EARLY_PIECES = 256  # at most 16 MiB: far more than goes out before the response


def _long_upload() -> Iterator[bytes]:
    for _ in range(EARLY_PIECES):
        yield b"u" * EARLY_PIECE


async def _along_upload() -> AsyncIterator[bytes]:
    for _ in range(EARLY_PIECES):
        await asyncio.sleep(0)
        yield b"u" * EARLY_PIECE


def _assert_stream_released(events: Events, index: int, stream_id: int) -> None:
    got = events.wait(("client-rst", "client-end-stream"), _for_stream(index, stream_id), timeout=3)
    assert got is not None, (
        f"the client sent neither RST_STREAM nor END_STREAM for stream {stream_id} after "
        "its complete response: the stream stays open at the server"
    )


@pytest.mark.timeout(20)
def test_response_before_upload_end_releases_stream(raw: RawFactory) -> None:
    server = raw(h2lifecycle.early_response)
    events = Events(server)
    with h2c_client(timeout=5) as client:
        response = client.request("POST", server.url("/up"), body=_long_upload())
        assert response.status_code == 200
        assert response.body == b"early:/up"
        got = events.wait("responded", timeout=5)
        assert got is not None
        index, stream_id = got[1]  # type: ignore[misc]
        _assert_stream_released(events, index, stream_id)
        # the connection goes on working
        assert client.request("GET", server.url("/after")).body == b"early:/after"
    assert server.accepted == 1


@pytest.mark.timeout(20)
def test_response_before_upload_end_releases_stream_async(raw: RawFactory) -> None:
    server = raw(h2lifecycle.early_response)
    events = Events(server)

    async def main() -> None:
        async with h2c_pool(timeout=5) as pool:
            response = await pool.request("PUT", server.url("/up"), body=_along_upload())
            assert (response.status_code, response.body) == (200, b"early:/up")
            got = await asyncio.to_thread(events.wait, "responded", timeout=5)
            assert got is not None
            index, stream_id = got[1]  # type: ignore[misc]
            await asyncio.to_thread(_assert_stream_released, events, index, stream_id)

    asyncio.run(main())


# -- 8: RST_STREAM on an idle stream is a connection error ----------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("idle_stream", [99, 2], ids=["odd-99", "even-2"])
def test_rst_stream_on_idle_stream_is_connection_error(raw: RawFactory, idle_stream: int) -> None:
    """RFC 9113 §5.1: RST_STREAM on an idle stream is a connection error of type
    PROTOCOL_ERROR. The in-flight request fails with RemoteProtocolError at once
    (not at its timeout), the client sends GOAWAY(PROTOCOL_ERROR), and the next
    request goes out on a new connection."""
    server = raw(h2lifecycle.rst_idle_stream(idle_stream))
    events = Events(server)
    with h2c_client() as client:
        with pytest.raises(httpcore.RemoteProtocolError):
            client.request("GET", server.url("/x"), timeout=3)
        got = events.wait("idle-rst-sent", timeout=1)
        assert got is not None and got[1] == (1, idle_stream)
        goaway = events.wait("client-goaway", lambda v: v[0] == 0, timeout=3)  # type: ignore[index]
        assert goaway is not None, "the client sent no GOAWAY"
        _, code, _ = goaway[1]  # type: ignore[misc]
        assert code == ErrorCodes.PROTOCOL_ERROR, ErrorCodes(code)
        assert client.request("GET", server.url("/after"), timeout=3).body == b"conn1:/after"
    assert server.accepted == 2


# -- 9: a wrong content-length fails that stream only ---------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("bad_path", ["/short", "/long"])
def test_wrong_content_length_is_a_stream_error(raw: RawFactory, bad_path: str) -> None:
    """RFC 9113 §8.1.1: DATA that does not add up to content-length makes the
    response malformed, a stream error: that request fails with
    RemoteProtocolError and its stream is reset with PROTOCOL_ERROR; the other
    stream in flight and the connection are unaffected."""
    server = raw(h2lifecycle.wrong_content_length(2))
    events = Events(server)

    async def main() -> None:
        async with h2c_pool(timeout=5) as pool:
            bad, good = await asyncio.gather(
                pool.request("GET", server.url(bad_path)),
                pool.request("GET", server.url("/good")),
                return_exceptions=True,
            )
            assert isinstance(bad, httpcore.RemoteProtocolError), bad
            assert not isinstance(good, BaseException), f"the other stream failed too: {good!r}"
            assert (good.status_code, good.body) == (200, b"conn0:/good")
            third = await pool.request("GET", server.url("/third"))
            assert third.body == b"conn0:/third"  # the same connection

    asyncio.run(main())
    answered = events.wait("answered", timeout=1)
    assert answered is not None
    bad_stream = answered[1][bad_path.encode()]  # type: ignore[index]
    rst = events.wait("client-rst", lambda v: v[:2] == (0, bad_stream), timeout=3)  # type: ignore[index]
    assert rst is not None, f"no RST_STREAM for stream {bad_stream}"
    assert rst[1][2] == ErrorCodes.PROTOCOL_ERROR, ErrorCodes(rst[1][2])  # type: ignore[index]
    assert not events.find("client-goaway", lambda v: v[1] != ErrorCodes.NO_ERROR)  # type: ignore[index]
    assert server.accepted == 1


# -- 10: secrets are HPACK never-indexed literals ------------------------------------------------

SECRET_HEADERS = [
    ("Authorization", "Bearer s3cret-t0ken-value"),
    ("Proxy-Authorization", "Basic dXNlcjpwYXNzd29yZA=="),
    ("Cookie", "sid=abc123"),  # short (< 20 bytes): guessable, so never indexed
    ("X-Plain", "visible"),
]
NEVER_INDEXED = {b"authorization", b"proxy-authorization", b"cookie"}


def _check_never_indexed(events: Events, paths: list[bytes]) -> None:
    blocks = events.find("header-block")
    by_path: dict[bytes, list[hpack.HeaderTuple]] = {}
    for _, _, fields in blocks:  # type: ignore[misc]
        path = next(v for k, v in fields if k == b":path")
        by_path[path] = fields
    assert sorted(by_path) == sorted(paths)
    expected = {k.lower().encode(): v.encode() for k, v in SECRET_HEADERS}
    indexable = []
    for path in paths:
        fields = by_path[path]
        for name in sorted(NEVER_INDEXED):
            [field] = [f for f in fields if f[0] == name]
            assert field[1] == expected[name]
            if not isinstance(field, hpack.NeverIndexedHeaderTuple):
                indexable.append(f"{path.decode()} {name.decode()}: {type(field).__name__}")
    assert not indexable, f"secrets encoded as indexable fields, not never-indexed: {indexable}"


@pytest.mark.timeout(20)
def test_secrets_are_never_indexed(raw: RawFactory) -> None:
    server = raw(h2lifecycle.header_recorder)
    events = Events(server)
    paths = [b"/first", b"/second", b"/third"]  # repeats: not indexed the second time either
    with h2c_client(timeout=5) as client:
        for path in paths:
            response = client.request("GET", server.url(path.decode()), headers=SECRET_HEADERS)
            assert response.body == b"conn0:" + path
    _check_never_indexed(events, paths)


@pytest.mark.timeout(20)
def test_secrets_are_never_indexed_async(raw: RawFactory) -> None:
    server = raw(h2lifecycle.header_recorder)
    events = Events(server)
    paths = [b"/a1", b"/a2"]

    async def main() -> None:
        async with h2c_pool(timeout=5) as pool:
            for path in paths:
                response = await pool.request(
                    "GET", server.url(path.decode()), headers=dict(SECRET_HEADERS)
                )
                assert response.body == b"conn0:" + path

    asyncio.run(main())
    _check_never_indexed(events, paths)


# -- 13: a complete response followed by RST_STREAM(NO_ERROR) during the upload --------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("when", ["first-data", "window-used-up"])
def test_response_then_rst_no_error_while_uploading(raw: RawFactory, when: str) -> None:
    """RFC 9113 §8.1: a server may answer before the request body is complete
    and then reset the stream with NO_ERROR; the client must stop sending and
    must not discard the response. Here WINDOW_UPDATEs, the response and the
    RST_STREAM(NO_ERROR) arrive in one write, while the client holds body data
    that was waiting for window."""
    server = raw(h2lifecycle.respond_and_reset(when))
    events = Events(server)
    with h2c_client(timeout=5) as client:
        response = client.request("POST", server.url("/up"), body=_long_upload())
        assert response.status_code == 200
        assert response.body == h2lifecycle.EARLY_BODY
    got = events.wait("burst-sent", timeout=1)
    assert got is not None
    received = got[1][2]  # type: ignore[index]
    assert 0 < received <= 65535  # the rest of the first 64 KiB piece was waiting


@pytest.mark.timeout(20)
def test_response_then_rst_no_error_while_uploading_async(raw: RawFactory) -> None:
    server = raw(h2lifecycle.respond_and_reset("window-used-up"))

    async def main() -> tuple[int, bytes]:
        async with h2c_pool(timeout=5) as pool:
            response = await pool.request("POST", server.url("/up"), body=_along_upload())
            return response.status_code, response.body

    assert asyncio.run(main()) == (200, h2lifecycle.EARLY_BODY)


@pytest.fixture(scope="module")
def nginx_early(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """nginx over h2c with ``location = /early { return 200 "early\\n"; }``."""
    directory: Path = tmp_path_factory.mktemp("nginx-early")
    with run_nginx(directory, h2lifecycle.EARLY_CONFIG) as nginx:
        yield nginx


@pytest.mark.timeout(20)
def test_response_then_rst_no_error_while_uploading_nginx(
    nginx_early: Nginx,
) -> None:
    """nginx answers /early without reading the body, then resets the stream
    (NO_ERROR) while the client is still uploading 16 MiB."""
    with h2c_client(timeout=5) as client:
        response = client.request("POST", nginx_early.h2c_url("/early"), body=_long_upload())
        assert response.http_version == "HTTP/2"
        assert (response.status_code, response.body) == (200, b"early\n")
        small = client.request("GET", nginx_early.h2c_url("/small"))
        assert small.body == b"hello h2\n"
