"""The gateway of ``examples/gateway``, run as a subprocess against real servers.

One uvicorn gateway (HTTP/1.1 downstream) is started for the module, with a
config of many routes: raw-socket upstreams (``servers/gateway_upstreams.py``:
recorders, named servers, fault servers for stalls, resets, drips, hangs;
``servers/h2faults.py``'s ``hang_some`` for RST_STREAM), hypercorn
(``http_server``, HTTP/1.1; ``h2_server``, h2 over TLS with the trustme CA as
the route's ``ca_file``) and nginx (``nginx_h2``, h2c). A hypercorn gateway
(h2c downstream), a two-worker gateway and the memory test's gateway (with an
nginx of its own serving 50 MiB over HTTP/1.1) are started where needed.

Memory: 200 clients each start a 50 MiB download, read 1 MiB and stop reading.
The engine holds at most STREAM_WINDOW (4 MiB) of a response ahead of the
gateway, and uvicorn's transport a little more, so the gateway's VmRSS, read
once it has stopped growing, must stay under baseline + 200 x (4 MiB + 2 MiB).

Shared upstreams see the requests of every test: each test puts a marker of its
own in its paths and waits only for its own signals. Nothing waits on a sleep:
waits are on server signals, sockets, or a polled log file / status page with a
deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

import httpcore
from examples.gateway.config import DOWN_FOR
from httpcore.engine.interfaces import STREAM_WINDOW
from tests.servers import gateway_upstreams as up
from tests.servers.app import pattern
from tests.servers.blackhole import Blackhole
from tests.servers.gateway_process import (
    ROOT,
    Gateway,
    connect,
    exchange,
    get,
    parse_response,
    read_head,
    read_until_closed,
    run_gateway,
    toml_config,
    vm,
)
from tests.servers.h2faults import hang_some
from tests.servers.h2nginx import Nginx, run_nginx
from tests.servers.handles import HTTPServer
from tests.servers.process import free_port
from tests.servers.raw import RawServer, keepalive_ok

_marks = itertools.count(1)


def mark() -> str:
    """A marker for this test's paths on the shared upstreams."""
    return f"m{next(_marks)}"


@dataclass
class Upstreams:
    recorder: RawServer
    a: RawServer
    b: RawServer
    c: RawServer
    lb1: RawServer
    lb2: RawServer
    live: RawServer
    faults: RawServer
    sink: RawServer
    h2hang: RawServer
    blackhole: Blackhole
    """connect() to it hangs once the test fills its accept queue."""
    health_port: int
    """Nothing listens here when the module starts (the health test starts a server on it)."""
    down_port: int
    """Nothing ever listens here."""


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    release, gate = threading.Event(), threading.Event()
    servers = {
        "recorder": RawServer(keepalive_ok),
        "a": RawServer(up.named(b"A")),
        "b": RawServer(up.named(b"B")),
        "c": RawServer(up.named(b"C")),
        "lb1": RawServer(up.named(b"lb1")),
        "lb2": RawServer(up.named(b"lb2")),
        "live": RawServer(up.named(b"live")),
        "faults": RawServer(up.faults),
        "sink": RawServer(up.sink),
        "h2hang": RawServer(hang_some),
    }
    for server in servers.values():
        server.shared["release"] = release
        server.shared["gate"] = gate
        server.start()
    hole = Blackhole("127.0.0.1")
    try:
        yield Upstreams(
            **servers,  # type: ignore[arg-type]
            blackhole=hole,
            health_port=free_port(),
            down_port=free_port(),
        )
    finally:
        hole.close()
        release.set()
        gate.set()
        for server in servers.values():
            server.stop()
    errors = [e for s in servers.values() for e in s.handler_errors]
    assert not errors, errors


@pytest.fixture(scope="module")
def config_path(
    upstreams: Upstreams,
    http_server: HTTPServer,
    h2_server: HTTPServer,
    nginx_h2: Nginx,
    tls_ca: trustme.CA,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    d = tmp_path_factory.mktemp("gateway")
    ca_file = d / "upstream-ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    u = upstreams
    hyper = http_server.base_url
    routes: list[dict[str, Any]] = [
        {"prefix": "/rec", "upstreams": [base(u.recorder)]},
        {
            "prefix": "/rec",
            "host": "keep.test",
            "preserve_host": True,
            "upstreams": [base(u.recorder)],
        },
        {"prefix": "/api", "upstreams": [base(u.a)]},
        {"prefix": "/api/v2", "upstreams": [base(u.b)]},
        {"prefix": "/", "host": "other.test", "upstreams": [base(u.c)]},
        {"prefix": "/lb", "upstreams": [base(u.lb1), base(u.lb2)]},
        {"prefix": "/health", "upstreams": [f"http://127.0.0.1:{u.health_port}", base(u.live)]},
        {"prefix": "/down", "upstreams": [f"http://127.0.0.1:{u.down_port}"]},
        {
            "prefix": "/blackhole",
            "upstreams": [f"http://127.0.0.1:{u.blackhole.port}"],
            "connect_timeout": 0.3,
        },
        {"prefix": "/fault", "upstreams": [base(u.faults)], "read_timeout": 30.0},
        {"prefix": "/stall", "upstreams": [base(u.faults)], "read_timeout": 0.5},
        {"prefix": "/sink", "upstreams": [base(u.sink)]},
        {"prefix": "/limit", "upstreams": [base(u.sink)], "max_body": 1000},
        {"prefix": "/echo", "upstreams": [hyper]},
        {"prefix": "/upload", "upstreams": [hyper]},
        {"prefix": "/bytes", "upstreams": [hyper]},
        {"prefix": "/chunked", "upstreams": [hyper]},
        {"prefix": "/slow", "upstreams": [hyper], "read_timeout": 0.3},
        {"prefix": "/slow", "host": "patient.test", "upstreams": [hyper], "read_timeout": 5.0},
        {
            "prefix": "/",
            "host": "h2.test",
            "upstreams": [h2_server.https_base_url],
            "ca_file": str(ca_file),
        },
        {
            "prefix": "/",
            "host": "nginx.test",
            "upstreams": [f"http://127.0.0.1:{nginx_h2.h2c_port}"],
            "protocol": "h2c",
        },
        {"prefix": "/", "host": "h2hang.test", "upstreams": [base(u.h2hang)], "protocol": "h2c"},
    ]
    path = d / "routes.toml"
    path.write_text(toml_config(routes))
    return path


@pytest.fixture(scope="module")
def gw(config_path: Path) -> Iterator[Gateway]:
    """The module's gateway: uvicorn, one worker, HTTP/1.1 downstream."""
    with run_gateway(config_path, config_path.parent) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def gw_h2(config_path: Path) -> Iterator[Gateway]:
    """The same routes behind hypercorn: h2c (prior knowledge) downstream."""
    with run_gateway(config_path, config_path.parent, server="hypercorn") as gateway:
        yield gateway


@pytest.fixture(scope="module")
def client() -> Iterator[httpcore.Client]:
    # idle connections expire before uvicorn's keep-alive timeout (5 s) closes them
    with httpcore.Client(timeout=10, limits=httpcore.Limits(keepalive_expiry=2.0)) as c:
        yield c


def base(server: RawServer) -> str:
    """A raw server's base URL, as the config and the access log spell it."""
    return f"http://127.0.0.1:{server.port}"


def host(name: str) -> list[tuple[bytes, bytes]]:
    return [(b"host", name.encode())]


def concurrent_gets(url: str, n: int, headers: list[tuple[bytes, bytes]]) -> list[Any]:
    """``n`` GETs at once (``url`` formatted with ``i``) from one PoolManager: (status, body)."""

    async def main() -> list[Any]:
        limits = httpcore.Limits(max_connections=n)
        async with httpcore.PoolManager(limits=limits, timeout=20) as pool:

            async def one(i: int) -> tuple[int, bytes]:
                r = await pool.request("GET", url.format(i=i), headers=headers)
                return r.status_code, r.body

            return await asyncio.gather(*(one(i) for i in range(n)))

    return asyncio.run(main())


def upstream_connections(gateway: Gateway, origin: str) -> list[dict[str, Any]]:
    return [c for c in gateway.status()["connections"] if c["origin"] == origin]


# -- routes --------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_routes_by_host_and_longest_prefix(gw: Gateway, client: httpcore.Client) -> None:
    m = mark()
    cases = [
        (f"/api/{m}", None, b"A"),
        (f"/api/v2/{m}", None, b"B"),  # the longest prefix wins
        ("/api/v2", None, b"B"),
        (f"/api/v20/{m}", None, b"A"),  # a prefix matches whole segments only
        (f"/api/{m}", "other.test", b"C"),  # a route for the Host comes first
        (f"/api/{m}", "other.test:8080", b"C"),
    ]
    for path, host_name, name in cases:
        r = client.request("GET", gw.url(path), headers=host(host_name) if host_name else None)
        assert r.status_code == 200, (path, host_name, r.body)
        assert r.body == name + b":" + path.encode(), (path, host_name)
    r = client.request("GET", gw.url(f"/apix/{m}"))
    assert (r.status_code, r.body) == (404, b"no route\n")
    line = gw.access(f"/apix/{m}")
    assert (line.method, line.upstream, line.status) == ("GET", "-", 404)


@pytest.mark.timeout(20)
def test_least_outstanding_requests(
    gw: Gateway, client: httpcore.Client, upstreams: Upstreams
) -> None:
    """While lb1 holds a request, everything else goes to lb2; then lb1 again."""
    m = mark()
    release = upstreams.lb1.shared["release"]
    assert isinstance(release, threading.Event)
    release.clear()
    held = f"/lb/hold-{m}"
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.request, "GET", gw.url(held))
        up.wait_signal(upstreams.lb1, "held", held.encode())
        try:
            for i in range(4):
                r = client.request("GET", gw.url(f"/lb/{m}-{i}"))
                assert r.body == f"lb2:/lb/{m}-{i}".encode()
        finally:
            release.set()
        assert pending.result(10).body == f"lb1:{held}".encode()
    r = client.request("GET", gw.url(f"/lb/{m}-after"))
    assert r.body == f"lb1:/lb/{m}-after".encode()  # nothing outstanding: the first again


@pytest.mark.timeout(30)
def test_passive_health_marks_down_then_retries(
    gw: Gateway, client: httpcore.Client, upstreams: Upstreams
) -> None:
    """A refused upstream is skipped for DOWN_FOR seconds (even once it listens
    again), the request goes to the next one; afterwards it is tried again."""
    m = mark()
    dead = f"http://127.0.0.1:{upstreams.health_port}"
    r = client.request("GET", gw.url(f"/health/{m}-0"))
    assert (r.status_code, r.body) == (200, f"live:/health/{m}-0".encode())
    gw.wait_log(rf"gateway upstream {dead} down for {DOWN_FOR:g}s")
    revived = up.start_on_port(up.named(b"revived"), upstreams.health_port)
    try:
        status = next(
            u for route in gw.status()["routes"] for u in route["upstreams"] if u["url"] == dead
        )
        assert status["failures"] == 1 and status["down_for"] > 0
        for i in range(1, 4):
            r = client.request("GET", gw.url(f"/health/{m}-{i}"))
            assert r.body == f"live:/health/{m}-{i}".encode()
        assert revived.accepted == 0

        def down_for() -> float:
            routes = gw.status()["routes"]
            return next(u["down_for"] for rt in routes for u in rt["upstreams"] if u["url"] == dead)

        deadline = time.monotonic() + DOWN_FOR + 3
        while down_for() > 0:
            assert time.monotonic() < deadline, "still down"
            time.sleep(0.1)  # polling the status page for the end of the down time
        r = client.request("GET", gw.url(f"/health/{m}-back"))
        assert r.body == f"revived:/health/{m}-back".encode()
        routes = gw.status()["routes"]
        failures = next(u["failures"] for rt in routes for u in rt["upstreams"] if u["url"] == dead)
        assert failures == 0
    finally:
        revived.stop()


# -- errors: 502, 504, 413 ----------------------------------------------------------------


@pytest.mark.timeout(20)
def test_connect_error_is_502(gw: Gateway, client: httpcore.Client, upstreams: Upstreams) -> None:
    m = mark()
    dead = f"http://127.0.0.1:{upstreams.down_port}"
    r = client.request("GET", gw.url(f"/down/{m}"))
    assert (r.status_code, r.body) == (502, b"bad gateway\n")
    line = gw.access(f"/down/{m}")
    assert (line.upstream, line.status, line.nbytes) == (dead, 502, len(b"bad gateway\n"))
    gw.wait_log(rf"gateway GET /down/{m} -> {dead}: ")
    # a streamed request body cannot be replayed elsewhere: 502 too
    r = client.request("POST", gw.url(f"/down/{m}-stream"), body=iter([b"x" * 70_000] * 2))
    assert (r.status_code, r.body) == (502, b"bad gateway\n")


@pytest.mark.timeout(20)
def test_connect_timeout_is_per_route(
    gw: Gateway, client: httpcore.Client, upstreams: Upstreams
) -> None:
    """A connect that hangs gives up after the route's connect_timeout (0.3 s,
    not the default 2 s): nothing was sent, so the upstream is marked down as
    for any connect error, and the answer is 504, as nginx gives."""
    if not upstreams.blackhole.fill():
        pytest.skip("this kernel completes connects beyond the listen backlog")
    m = mark()
    started = time.monotonic()
    r = client.request("GET", gw.url(f"/blackhole/{m}"))
    elapsed = time.monotonic() - started
    assert (r.status_code, r.body) == (504, b"upstream timed out\n")
    assert 0.25 < elapsed < 1.5, elapsed
    hole = f"http://127.0.0.1:{upstreams.blackhole.port}"
    gw.wait_log(rf"gateway upstream {hole} down for {DOWN_FOR:g}s")
    assert gw.access(f"/blackhole/{m}").status == 504


@pytest.mark.timeout(20)
def test_upstream_timeout_is_504(
    gw: Gateway, client: httpcore.Client, upstreams: Upstreams
) -> None:
    """A stalled upstream (reads the request, never answers): 504 after the
    route's read_timeout, and the upstream sees its connection closed."""
    m = mark()
    target = f"/stall/hang-{m}"
    started = time.monotonic()
    r = client.request("GET", gw.url(target))
    elapsed = time.monotonic() - started
    assert (r.status_code, r.body) == (504, b"upstream timed out\n")
    assert 0.4 < elapsed < 3, elapsed  # read_timeout = 0.5
    up.wait_signal(upstreams.faults, "client-closed", target.encode())
    line = gw.access(target)
    assert (line.upstream, line.status) == (base(upstreams.faults), 504)
    gw.wait_log(rf"gateway GET {target} -> \S+: ")


@pytest.mark.timeout(20)
def test_read_timeout_is_per_route(gw: Gateway, client: httpcore.Client) -> None:
    """hypercorn's /slow/600: 504 on the route with read_timeout 0.3, 200 on
    the one for Host patient.test with read_timeout 5."""
    r = client.request("GET", gw.url("/slow/600"))
    assert r.status_code == 504
    r = client.request("GET", gw.url("/slow/600"), headers=host("patient.test"))
    assert (r.status_code, r.body) == (200, b"slow")


@pytest.mark.timeout(20)
def test_read_timeout_is_between_bytes(
    gw: Gateway, client: httpcore.Client, upstreams: Upstreams
) -> None:
    """A slow drip (a piece every 0.2 s, 1.4 s in all) under read_timeout 0.5 goes through."""
    m = mark()
    started = time.monotonic()
    r = client.request("GET", gw.url(f"/stall/drip-{m}"))
    assert r.status_code == 200
    assert r.body == b"".join(b"drip %d\n" % i for i in range(up.DRIP_PIECES))
    assert time.monotonic() - started > 0.5 * 2


@pytest.mark.timeout(20)
def test_max_body_is_413(gw: Gateway, client: httpcore.Client, upstreams: Upstreams) -> None:
    """Route /limit has max_body = 1000: a larger Content-Length is refused
    before the upstream is contacted; a chunked body is cut off at the limit."""
    m = mark()
    r = client.request("POST", gw.url(f"/limit/{m}-cl"), body=b"x" * 2000)
    assert (r.status_code, r.body) == (413, b"request body too large\n")
    assert gw.access(f"/limit/{m}-cl").status == 413
    chunked = (
        (
            f"POST /limit/{m}-chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        + b"3e8\r\n"
        + b"y" * 1000
        + b"\r\n"
    )
    with connect(gw.port) as sock:
        sock.sendall(chunked)
        sock.sendall(b"3e8\r\n" + b"y" * 1000 + b"\r\n" + b"0\r\n\r\n")
        response = parse_response(read_until_closed(sock))
    assert (response.status, response.body) == (413, b"request body too large\n")
    assert gw.access(f"/limit/{m}-chunked").status == 413
    r = client.request("POST", gw.url(f"/limit/{m}-ok"), body=b"z" * 1000)
    assert (r.status_code, r.body) == (200, b"1000")
    done = []
    while not upstreams.sink.events.empty():
        name, value = upstreams.sink.events.get_nowait()
        if name == "sink-done":
            done.append(value)
    assert f"/limit/{m}-ok".encode() in done
    assert not [t for t in done if t.startswith(f"/limit/{m}-c".encode())], done


# -- streaming ----------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_request_body_streams_upstream(gw: Gateway, upstreams: Upstreams, framing: str) -> None:
    """The upstream has the first 100 KB of a 1 MiB body while the client still
    holds back the rest."""
    m = mark()
    target = f"/sink/{m}-{framing}"
    total = 1024 * 1024
    first = 200_000
    if framing == "chunked":
        head = "Transfer-Encoding: chunked"
        part1 = b"%x\r\n%s\r\n" % (first, b"a" * first)
        part2 = b"%x\r\n%s\r\n0\r\n\r\n" % (total - first, b"b" * (total - first))
    else:
        head = f"Content-Length: {total}"
        part1, part2 = b"a" * first, b"b" * (total - first)
    request = f"POST {target} HTTP/1.1\r\nHost: x\r\n{head}\r\nConnection: close\r\n\r\n"
    with connect(gw.port) as sock:
        sock.sendall(request.encode() + part1)
        up.wait_signal(upstreams.sink, "sink-partial", target.encode(), timeout=5)
        sock.sendall(part2)
        response = parse_response(read_until_closed(sock))
    assert (response.status, response.body) == (200, str(total).encode())


@pytest.mark.timeout(20)
def test_response_streams_downstream(gw: Gateway, upstreams: Upstreams) -> None:
    """The client has the first 100 KB of a 300 KB body while the upstream
    still holds back the rest."""
    m = mark()
    gate = upstreams.faults.shared["gate"]
    assert isinstance(gate, threading.Event)
    gate.clear()
    try:
        with connect(gw.port, timeout=5) as sock:
            sock.sendall(get(f"/fault/gate-{m}"))
            head, body = read_head(sock)
            assert head.startswith(b"HTTP/1.1 200")
            while len(body) < up.GATE_FIRST:
                body += sock.recv(65536)  # times out (fails) if the gateway buffers
            gate.set()
            response = parse_response(head + body + read_until_closed(sock))
    finally:
        gate.set()
    assert response.complete
    assert response.body == b"g" * up.GATE_FIRST + b"G" * (up.GATE_LENGTH - up.GATE_FIRST)
    assert gw.access(f"/fault/gate-{m}").nbytes == up.GATE_LENGTH


# -- proxying: headers ------------------------------------------------------------------


HOP_REQUEST_FIELDS = (
    b"Keep-Alive: timeout=5\r\n"
    b"X-Conn-Named: secret\r\n"
    b"TE: trailers\r\n"
    b"Trailer: X-Checksum\r\n"
    b"Upgrade: foo/2\r\n"
    b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
    b"Proxy-Connection: keep-alive\r\n"
    b"Proxy-Custom: 1\r\n"
    b"X-End-To-End: kept\r\n"
)
HOP_NAMES = (
    b"keep-alive",
    b"x-conn-named",
    b"te",
    b"trailer",
    b"upgrade",
    b"proxy-authorization",
    b"proxy-authenticate",
    b"proxy-connection",
    b"proxy-custom",
    b"proxy-whatever",
    b"x-hop-named",
)


@pytest.mark.timeout(20)
def test_hop_by_hop_request_headers_removed(gw: Gateway, upstreams: Upstreams) -> None:
    m = mark()
    request = (
        f"GET /rec/hop-{m} HTTP/1.1\r\nHost: front.test\r\n"
        "Connection: close, X-Conn-Named\r\n".encode()
        + HOP_REQUEST_FIELDS
        + b"\r\n"
    )
    response = exchange(gw.port, request)
    assert response.status == 200
    seen = up.request_for(upstreams.recorder, f"/rec/hop-{m}".encode())[-1]
    names = [k.lower() for k, _ in seen.headers]
    assert not [n for n in names if n in HOP_NAMES], seen.head
    assert all(b"x-conn-named" not in v.lower() for v in seen.header(b"connection")), seen.head
    assert seen.header(b"x-end-to-end") == [b"kept"]


@pytest.mark.timeout(20)
def test_hop_by_hop_response_headers_removed(gw: Gateway) -> None:
    m = mark()
    response = exchange(gw.port, get(f"/fault/hop-{m}"))
    assert (response.status, response.body) == (200, b"hop")
    names = [k.lower() for k, _ in response.headers]
    assert not [n for n in names if n in HOP_NAMES], response.headers
    assert response.header(b"connection") in ([], [b"close"]), response.headers
    assert response.header(b"x-end-to-end") == [b"kept"]
    # a chunked upstream body is re-framed downstream: one Transfer-Encoding, complete
    response = exchange(gw.port, get("/chunked/100000?size=7000"))
    assert response.header(b"transfer-encoding") == [b"chunked"], response.headers
    assert response.complete and response.body == pattern(100000)


@pytest.mark.timeout(20)
def test_x_forwarded_headers_appended(gw: Gateway, upstreams: Upstreams) -> None:
    m = mark()
    request = get(
        f"/rec/xff-{m}",
        host="front.test:8080",
        extra=b"X-Forwarded-For: 203.0.113.7\r\n"
        b"X-Forwarded-For: 198.51.100.2\r\n"
        b"X-Forwarded-Proto: https\r\n"
        b"X-Forwarded-Host: spoofed.test\r\n",
    )
    assert exchange(gw.port, request).status == 200
    seen = up.request_for(upstreams.recorder, f"/rec/xff-{m}".encode())[-1]
    assert seen.header(b"x-forwarded-for") == [b"203.0.113.7, 198.51.100.2, 127.0.0.1"]
    assert seen.header(b"x-forwarded-proto") == [b"http"]
    assert seen.header(b"x-forwarded-host") == [b"front.test:8080"]

    assert exchange(gw.port, get(f"/rec/xff-{m}-plain")).status == 200
    seen = up.request_for(upstreams.recorder, f"/rec/xff-{m}-plain".encode())[-1]
    assert seen.header(b"x-forwarded-for") == [b"127.0.0.1"]


@pytest.mark.timeout(20)
def test_host_rewritten_or_preserved(
    gw: Gateway, client: httpcore.Client, upstreams: Upstreams
) -> None:
    m = mark()
    client.request("GET", gw.url(f"/rec/host-{m}"), headers=host("front.test"))
    seen = up.request_for(upstreams.recorder, f"/rec/host-{m}".encode())[-1]
    assert seen.header(b"host") == [f"127.0.0.1:{upstreams.recorder.port}".encode()]
    assert seen.header(b"x-forwarded-host") == [b"front.test"]

    client.request("GET", gw.url(f"/rec/keep-{m}"), headers=host("keep.test"))
    seen = up.request_for(upstreams.recorder, f"/rec/keep-{m}".encode())[-1]
    assert seen.header(b"host") == [b"keep.test"]  # preserve_host = true


# -- proxying: broken upstreams, vanishing clients ----------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_upstream_reset_mid_body_truncates_downstream(
    gw: Gateway, upstreams: Upstreams, framing: str
) -> None:
    """The upstream resets after 256 KiB: the client must see the response cut
    short (connection closed before the end), never a clean end of body."""
    m = mark()
    target = f"/fault/reset-{m}" if framing == "content-length" else f"/fault/reset-chunked-{m}"
    response = exchange(gw.port, get(target))
    assert response.status == 200
    assert not response.complete
    assert len(response.body) <= up.PARTIAL_SENT
    gw.wait_log(rf"gateway GET {target} -> \S+ broke mid-response")
    assert gw.access(target).status == 200


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("route", "fault", "status", "body"),
    [
        ("/fault", "short-reset", 502, b"bad gateway\n"),
        ("/stall", "short", 504, b"upstream timed out\n"),
    ],
)
def test_small_body_failing_before_the_head_is_502_or_504(
    gw: Gateway, client: httpcore.Client, route: str, fault: str, status: int, body: bytes
) -> None:
    """A small body is read whole before the head is relayed; if the upstream
    resets (or stalls past read_timeout, 0.5 s on /stall) inside it, the
    client has been sent nothing and gets the gateway's 502/504, not the
    ASGI server's 500 for an app that never started its response."""
    target = f"{route}/{fault}-{mark()}"
    r = client.request("GET", gw.url(target))
    assert (r.status_code, r.body) == (status, body)
    gw.wait_log(rf"gateway GET {target} -> \S+ broke before the response")
    line = gw.access(target)
    assert (line.status, line.nbytes) == (status, len(body))


@pytest.mark.timeout(20)
def test_client_disconnect_before_response_cancels_upstream(
    gw: Gateway, upstreams: Upstreams
) -> None:
    m = mark()
    target = f"/fault/hang-{m}"
    sock = connect(gw.port)
    sock.sendall(get(target))
    up.wait_signal(upstreams.faults, "hanging", target.encode())
    started = time.monotonic()
    sock.close()
    up.wait_signal(upstreams.faults, "client-closed", target.encode(), timeout=5)
    assert time.monotonic() - started < 2  # read_timeout is 30 s on /fault
    line = gw.access(target)
    assert (line.status, line.nbytes) == (499, 0)


@pytest.mark.timeout(20)
def test_client_disconnect_mid_body_cancels_upstream(gw: Gateway, upstreams: Upstreams) -> None:
    m = mark()
    target = f"/fault/partial-{m}"
    sock = connect(gw.port)
    sock.sendall(get(target))
    head, body = read_head(sock)
    assert head.startswith(b"HTTP/1.1 200")
    while len(body) < 64 * 1024:
        body += sock.recv(65536)
    up.wait_signal(upstreams.faults, "partial-sent", target.encode())
    started = time.monotonic()
    sock.close()
    up.wait_signal(upstreams.faults, "client-closed", target.encode(), timeout=5)
    assert time.monotonic() - started < 2
    assert gw.access(target).status == 499


@pytest.mark.timeout(20)
def test_client_disconnect_resets_h2_stream(gw: Gateway, upstreams: Upstreams) -> None:
    """On an HTTP/2 upstream the cancelled request is an RST_STREAM (CANCEL)."""
    server = upstreams.h2hang
    sock = connect(gw.port)
    sock.sendall(get("/hang/1", host="h2hang.test"))
    stream_id = server.wait_event("hanging")
    started = time.monotonic()
    sock.close()
    value = server.wait_event("client-reset", timeout=5)
    assert time.monotonic() - started < 2
    assert isinstance(value, tuple)
    assert value[1:] == (stream_id, 8)  # (connection, stream, CANCEL)


# -- HTTP/2 ---------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_h2_upstream_tls_one_connection(gw: Gateway, h2_server: HTTPServer) -> None:
    """50 concurrent requests to hypercorn (h2 by ALPN, the route's ca_file)
    share one HTTP/2 connection."""
    results = concurrent_gets(gw.url("/echo?i={i}"), 50, host("h2.test"))
    assert [status for status, _ in results] == [200] * 50
    echoes = [json.loads(body) for _, body in results]
    assert {e["http_version"] for e in echoes} == {"2"}
    assert len({e["client_port"] for e in echoes}) == 1
    conns = upstream_connections(gw, f"https://127.0.0.1:{h2_server.tls_port}")
    assert [c["http_version"] for c in conns] == ["HTTP/2"], conns


@pytest.mark.timeout(30)
def test_h2c_upstream_nginx_one_connection(gw: Gateway, nginx_h2: Nginx) -> None:
    """protocol = "h2c": 50 concurrent requests to nginx on one HTTP/2 connection
    (nginx's own access log counts the TCP connections)."""
    m = mark()
    results = concurrent_gets(gw.url(f"/small?gw={m}-{{i}}"), 50, host("nginx.test"))
    assert results == [(200, b"hello h2\n")] * 50
    lines = nginx_h2.log(f"gw={m}-", expect=50)
    assert len(lines) == 50
    assert {line.protocol for line in lines} == {"HTTP/2.0"}
    assert len({line.connection for line in lines}) == 1
    conns = upstream_connections(gw, f"http://127.0.0.1:{nginx_h2.h2c_port}")
    assert [c["http_version"] for c in conns] == ["HTTP/2"], conns


@pytest.mark.timeout(30)
def test_h2_downstream(gw_h2: Gateway, h2_server: HTTPServer) -> None:
    """hypercorn serves the gateway over h2c; httpcore's own HTTP/2-only client."""
    with httpcore.Client(http1=False, http2=True, timeout=10) as c:
        r = c.request("GET", gw_h2.url("/echo?via=h2"))
        assert (r.status_code, r.http_version) == (200, "HTTP/2")
        echo = json.loads(r.body)
        assert echo["query"] == "via=h2" and echo["http_version"] == "1.1"
        headers = {k.lower(): v for k, v in echo["headers"]}
        assert headers["x-forwarded-proto"] == "http"
        body = pattern(1024 * 1024 + 17)
        r = c.request("POST", gw_h2.url("/upload"), body=iter([body[:500_000], body[500_000:]]))
        assert json.loads(r.body)["length"] == len(body)
        r = c.request("GET", gw_h2.url("/bytes/1000000"))
        assert r.body == pattern(1_000_000)
        # HTTP/2 on both sides
        r = c.request("GET", gw_h2.url("/echo"), headers=host("h2.test"))
        assert json.loads(r.body)["http_version"] == "2"
        with ThreadPoolExecutor(20) as pool:
            urls = [gw_h2.url(f"/bytes/{1000 + i}") for i in range(20)]
            bodies = list(pool.map(lambda u: c.request("GET", u).body, urls))
        assert bodies == [pattern(1000 + i) for i in range(20)]
        assert [i.http_version for i in c.connections()] == ["HTTP/2"]
    line = gw_h2.access("/bytes/1000000")
    assert (line.status, line.nbytes) == (200, 1_000_000)


@pytest.mark.timeout(60)
def test_h2_downstream_keeps_its_connection(gw_h2: Gateway) -> None:
    """A downstream HTTP/2 connection outlives hypercorn's default of 1,000
    requests: hypercorn then closed it with streams in flight, failed here
    as "server disconnected" and counted as errors by h2load."""
    with httpcore.Client(http1=False, http2=True, timeout=10) as c:
        with ThreadPoolExecutor(10) as pool:
            statuses = list(
                pool.map(
                    lambda _: c.request("GET", gw_h2.url("/bytes/10")).status_code, range(1100)
                )
            )
        assert statuses == [200] * 1100
        infos = c.connections()
        assert [(i.http_version, i.requests_served) for i in infos] == [("HTTP/2", 1100)]


# -- access log, status, workers ------------------------------------------------------------


@pytest.mark.timeout(20)
def test_access_log_and_status(
    gw: Gateway, client: httpcore.Client, http_server: HTTPServer
) -> None:
    r = client.request("GET", gw.url("/bytes/200000"))
    assert r.body == pattern(200000)
    r = client.request("POST", gw.url("/upload"), body=b"u" * 5000)
    assert json.loads(r.body)["length"] == 5000
    line = gw.access("/bytes/200000")
    assert (line.client, line.method, line.upstream) == ("127.0.0.1", "GET", http_server.base_url)
    assert (line.status, line.nbytes) == (200, 200000) and line.ms > 0
    line = gw.access("/upload")
    assert (line.method, line.status, line.nbytes) == ("POST", 200, len(r.body))

    status = gw.status()
    assert status["pid"] == gw.proc.pid and status["client"] == "httpcore"
    route = next(rt for rt in status["routes"] if rt["prefix"] == "/bytes")
    assert route["upstreams"] == [
        {"url": http_server.base_url, "outstanding": 0, "down_for": 0.0, "failures": 0}
    ]
    conns = [c for c in status["connections"] if c["origin"] == http_server.base_url]
    assert conns and {c["http_version"] for c in conns} == {"HTTP/1.1"}
    assert sum(c["requests_served"] for c in conns) >= 2


@pytest.mark.timeout(30)
@pytest.mark.timeout(30)
def test_a_route_that_cannot_be_served_stops_the_start(tmp_path: Path) -> None:
    """Pools and TLS contexts are made at start-up (the first request would
    otherwise wait for them): an unreadable ca_file is a start-up error that
    names its route, not a 502 on every request to it."""
    missing = tmp_path / "no-such-ca.pem"
    config = tmp_path / "routes.toml"
    config.write_text(
        toml_config(
            [
                {"prefix": "/plain", "upstreams": ["http://127.0.0.1:9"]},
                {
                    "prefix": "/secure",
                    "upstreams": ["https://127.0.0.1:9"],
                    "ca_file": str(missing),
                },
            ]
        )
    )
    argv = [sys.executable, "-m", "examples.gateway", "--config", str(config)]
    argv += ["--port", str(free_port())]
    done = subprocess.run(
        argv,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=25,
    )
    assert done.returncode != 0
    assert f"route /secure (ca_file {missing}): FileNotFoundError" in done.stderr


def test_two_workers_both_serve(http_server: HTTPServer, tmp_path: Path) -> None:
    config = tmp_path / "routes.toml"
    config.write_text(toml_config([{"prefix": "/echo", "upstreams": [http_server.base_url]}]))
    with run_gateway(config, tmp_path, workers=2) as gateway:
        pids: set[int] = set()
        deadline = time.monotonic() + 20
        while len(pids) < 2 and time.monotonic() < deadline:
            socks = [connect(gateway.port) for _ in range(16)]  # new connections, at once
            for sock in socks:
                sock.sendall(get("/-/status"))
            for sock in socks:
                with sock:
                    response = parse_response(read_until_closed(sock))
                assert response.status == 200
                pids.add(json.loads(response.body)["pid"])
        assert len(pids) == 2, pids
        assert gateway.proc.pid not in pids
        for pid in pids:
            status = Path(f"/proc/{pid}/status").read_text()
            assert f"PPid:\t{gateway.proc.pid}\n" in status
        assert exchange(gateway.port, get("/echo?workers")).status == 200
        assert gateway.access("/echo").status == 200  # workers log too


# -- memory ---------------------------------------------------------------------------------

CLIENTS = 200
READ_FIRST = 1024 * 1024
"""Bytes each slow client reads before it stops reading."""

PER_REQUEST = STREAM_WINDOW + 2 * 1024 * 1024
"""The engine's stream window (4 MiB) plus 2 MiB for the ASGI server's write
buffer and the request's own objects."""


@pytest.fixture(scope="module")
def nginx_http1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    d = tmp_path_factory.mktemp("nginx-http1")
    with open(d / "big.bin", "wb") as f:
        f.truncate(up.BIG)
    with run_nginx(d, up.NGINX_HTTP1) as nginx:
        yield nginx


@pytest.mark.timeout(60)
def test_memory_bounded_with_slow_clients(nginx_http1: Nginx, tmp_path: Path) -> None:
    """200 clients download 50 MiB each through the gateway, read 1 MiB and stop:
    the gateway's RSS stays under baseline + 200 x (4 MiB + 2 MiB)."""
    config = tmp_path / "routes.toml"
    upstream = f"http://127.0.0.1:{nginx_http1.h2c_port}"
    config.write_text(toml_config([{"prefix": "/", "upstreams": [upstream]}]))
    with run_gateway(config, tmp_path, extra=("--no-access-log",)) as gateway:
        assert exchange(gateway.port, get("/small")).body == b"small\n"
        baseline = gateway.rss()
        limit = baseline + CLIENTS * PER_REQUEST
        request = b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n"
        socks = []
        for _ in range(CLIENTS):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.connect(("127.0.0.1", gateway.port))
            sock.sendall(request)
            sock.setblocking(False)
            socks.append(sock)
        try:
            _read_a_little(socks, gateway, limit)
            samples = _rss_until_stable(gateway, limit)
            rss = samples[-1]
            hwm = vm(gateway.proc.pid, "VmHWM")
            mib = 1024 * 1024
            print(
                f"\ngateway RSS: baseline {baseline / mib:.1f} MiB, with {CLIENTS} stalled"
                f" clients {rss / mib:.1f} MiB (peak {hwm / mib:.1f} MiB) ="
                f" {(rss - baseline) / CLIENTS / mib:.2f} MiB per request;"
                f" limit {limit / mib:.1f} MiB; samples {[round(s / mib) for s in samples]}"
            )
            assert rss <= limit
            assert hwm <= limit
            for sock in socks:  # all still connected, none at end of stream
                assert sock.recv(1, socket.MSG_PEEK), "a client's download ended"
        finally:
            for sock in socks:
                sock.close()
        # the 200 upstream downloads are cancelled with their clients
        deadline = time.monotonic() + 10
        while True:
            outstanding = gateway.status()["routes"][0]["upstreams"][0]["outstanding"]
            if outstanding == 0:
                break
            assert time.monotonic() < deadline, f"{outstanding} upstream requests left"
            time.sleep(0.05)  # polling the status page


def _read_a_little(socks: list[socket.socket], gateway: Gateway, limit: int) -> None:
    """Read READ_FIRST bytes (a 200 head first) on every socket, then stop reading it;
    fail as soon as the gateway's RSS is over ``limit``."""
    received = dict.fromkeys(socks, 0)
    heads = dict.fromkeys(socks, b"")
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        left = len(socks)
        while left:
            assert time.monotonic() < deadline, f"{left} clients still reading"
            assert gateway.rss() <= limit, f"RSS {gateway.rss()} over {limit} (reading)"
            for key, _ in selector.select(timeout=1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = sock.recv(256 * 1024)
                assert data, "closed early"
                if len(heads[sock]) < 12:
                    heads[sock] += data[:12]
                received[sock] += len(data)
                if received[sock] >= READ_FIRST:
                    selector.unregister(sock)
                    left -= 1
    assert {head[:12] for head in heads.values()} == {b"HTTP/1.1 200"}


def _rss_until_stable(gateway: Gateway, limit: int) -> list[int]:
    """VmRSS every 0.2 s until it has grown by less than 2 MiB over the last
    second (the gateway has stopped reading upstream); fails as soon as it is
    over ``limit``."""
    samples: list[int] = []
    deadline = time.monotonic() + 20
    while True:
        rss = gateway.rss()
        samples.append(rss)
        assert rss <= limit, f"RSS {rss} over the limit {limit} (samples {samples})"
        if len(samples) >= 6 and samples[-1] - min(samples[-6:]) < 2 * 1024 * 1024:
            return samples
        assert time.monotonic() < deadline, f"RSS still growing: {samples}"
        time.sleep(0.2)  # sampling interval of the observed RSS


def test_a_finished_request_leaves_its_watcher_no_cycle() -> None:
    """A request answered after its disconnect watcher started cancels the
    watcher; the cancelled task's traceback holds the request's state, so
    the state must not hold the task too. Such cycles, one per request slower
    than WATCH_AFTER, left to the garbage collector cost the gateway up to a
    quarter of its CPU in full collections."""
    import gc

    from examples.gateway.app import WATCH_AFTER, _State

    async def main() -> int:
        never: asyncio.Event = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await never.wait()
            return {"type": "http.disconnect"}

        gc.collect()
        gc.disable()
        try:
            for _ in range(20):
                state = _State(asyncio.current_task())
                state.watch(receive)
                await asyncio.sleep(WATCH_AFTER * 1.5)
                assert state.watcher is not None  # started: the request was slow
                state.finish()
                await asyncio.sleep(0)  # the cancellation runs
                del state
            return gc.collect()
        finally:
            gc.enable()

    assert asyncio.run(main()) == 0


def test_the_gateway_process_collects_rarely(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app factory freezes what exists at start-up and raises the
    collector's thresholds: with Python's defaults, collections took ~9% of
    the gateway's CPU at 10,000 requests/s."""
    import gc

    from examples.gateway.app import GC_THRESHOLD, create_app

    monkeypatch.setenv("GATEWAY_CONFIG", str(config_path))
    monkeypatch.setenv("GATEWAY_ACCESS_LOG", "0")
    before = gc.get_threshold()
    try:
        create_app()
        assert gc.get_threshold() == GC_THRESHOLD
        assert gc.get_threshold()[0] >= 10 * 700
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


# -- logging --------------------------------------------------------------------------------


def test_log_lines_of_one_loop_pass_go_out_together(tmp_path: Path) -> None:
    """PassBatchedHandler: lines written during a pass of the loop reach the
    file only when the pass ends, all of them; without a running loop (and
    once the loop that was to flush has stopped) a line goes out at once."""
    from examples.gateway.logs import PassBatchedHandler

    path = tmp_path / "log.txt"
    stream = open(path, "w", buffering=64 * 1024)
    handler = PassBatchedHandler(stream)
    logger = logging.getLogger("test.gateway.batched")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:

        async def main() -> tuple[str, str]:
            for i in range(10):
                logger.info("line %d", i)
            during = path.read_text()
            await asyncio.sleep(0)  # the pass ends: its flush runs
            return during, path.read_text()

        during, after = asyncio.run(main())
        assert during == ""
        assert after == "".join(f"line {i}\n" for i in range(10))

        logger.info("no loop")
        assert path.read_text().endswith("no loop\n")

        async def stops_pending() -> None:
            logger.info("scheduled")
            asyncio.get_running_loop().stop()  # the loop stops before the pass's flush

        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(stops_pending())
            loop.run_forever()
            assert task.done()
        finally:
            loop.close()
        assert not path.read_text().endswith("scheduled\n")  # held for the pass...
        logger.info("after")  # ...and out with the next line, its loop gone
        assert path.read_text().endswith("scheduled\nafter\n")
    finally:
        logger.removeHandler(handler)
        stream.close()


def test_access_lines_are_written_as_logging_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The access line skips the LogRecord (~24 µs a line in a busy gateway)
    but reads as the installed handler's format writes a record: the same
    timestamp form, the logger's name, the message; in order with records."""
    from examples.gateway import logs

    path = tmp_path / "log.txt"
    stream = open(path, "w", buffering=64 * 1024)
    handler = logs.PassBatchedHandler(stream)
    handler.setFormatter(logs.SecondFormatter(logs.FORMAT))
    logger = logging.getLogger("gateway.test-order")
    logger.propagate = False
    logger.addHandler(handler)
    monkeypatch.setattr(logs, "_handler", handler)
    try:
        logger.warning("before")
        logs.access("127.0.0.1 GET /x -> http://up 200 12 1.5ms")
        logger.warning("after")
    finally:
        logger.removeHandler(handler)
        stream.close()
    lines = path.read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(stamp + " gateway.test-order before", lines[0]), lines
    access = r" gateway\.access 127\.0\.0\.1 GET /x -> http://up 200 12 1\.5ms"
    assert re.fullmatch(stamp + access, lines[1]), lines
    assert re.fullmatch(stamp + " gateway.test-order after", lines[2]), lines
    record = logging.LogRecord("gateway.access", logging.INFO, "", 0, "m", None, None)
    assert logging.Formatter(logs.FORMAT).format(record) == logs.SecondFormatter(
        logs.FORMAT
    ).format(record)


def test_access_lines_go_through_logging_without_the_gateways_handler(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where setup_logging did not install its handler (an embedding app),
    an access line is an ordinary record of ``gateway.access``."""
    from examples.gateway import logs

    monkeypatch.setattr(logs, "_handler", None)
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        logs.access("127.0.0.1 GET /y -> - 404 0 0.1ms")
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("gateway.access", "127.0.0.1 GET /y -> - 404 0 0.1ms")
    ]
