"""Connection switches of ``Client``/``PoolManager`` (API.md, "Arguments"):
``ssl=False``, ``uds``, ``local_address``, ``socket_options``, Happy Eyeballs
for names with several addresses, ``retries`` with backoff, the warning for
the sync frontend on a running event loop, and ``aconnections()`` not
blocking its caller's loop."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

import pytest
import trustme

import httpcore
from httpcore.engine.connect import BACKOFF_FACTOR, HAPPY_EYEBALLS_DELAY
from tests.conftest import python_subprocess
from tests.servers import raw as handlers
from tests.servers.blackhole import Blackhole, filled, on_common_port
from tests.servers.handles import RawFactory
from tests.servers.raw import RawConnection, RawServer

pytestmark = pytest.mark.timeout(20)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.split(".")[0] == "httpcore" and r.levelno >= logging.WARNING
    ]


def record_peer(conn: RawConnection) -> None:
    """Signal ("peer", getpeername()) and ("maxseg", TCP_MAXSEG) of the accepted
    socket, then answer b"ok" to every request (keep-alive)."""
    conn.server.signal("peer", conn.sock.getpeername())
    conn.server.signal("maxseg", conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))
    handlers.keepalive_ok(conn)


# -- ssl=False ----------------------------------------------------------------------------


@pytest.fixture
def untrusted_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context whose certificate no client trusts (unknown CA) and whose
    name is not 127.0.0.1 either: only a client that checks nothing gets in."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("not-this-host.example").configure_cert(ctx)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def test_ssl_false_skips_verification_and_warns_once_per_pool(
    raw: RawFactory, untrusted_tls: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="httpcore")
    server = raw(handlers.keepalive_ok, tls=untrusted_tls)
    with httpcore.Client() as client, pytest.raises(httpcore.ConnectError):
        client.request("GET", server.url("/"))  # the default context verifies
    assert _warnings(caplog) == []

    with httpcore.Client(ssl=False) as client:
        for _ in range(2):
            response = client.request("GET", server.url("/"))
            assert (response.status_code, response.body) == (200, b"ok")
    assert len(_warnings(caplog)) == 1, [r.getMessage() for r in _warnings(caplog)]

    with httpcore.Client(ssl=False) as client:
        assert client.request("GET", server.url("/")).body == b"ok"
    assert len(_warnings(caplog)) == 2, [r.getMessage() for r in _warnings(caplog)]


def test_ssl_false_pool_manager(
    raw: RawFactory, untrusted_tls: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="httpcore")
    server = raw(handlers.keepalive_ok, tls=untrusted_tls)

    async def main() -> list[bytes]:
        async with httpcore.PoolManager(ssl=False) as pool:
            return [(await pool.request("GET", server.url("/"))).body for _ in range(2)]

    assert asyncio.run(main()) == [b"ok", b"ok"]
    assert len(_warnings(caplog)) == 1, [r.getMessage() for r in _warnings(caplog)]


def test_ssl_context_still_accepted_without_warning(
    raw: RawFactory,
    server_tls_context: ssl.SSLContext,
    ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="httpcore")
    server = raw(handlers.keepalive_ok, tls=server_tls_context)
    with httpcore.Client(ssl=ssl_context) as client:
        assert client.request("GET", server.url("/")).body == b"ok"
    assert _warnings(caplog) == []


# -- uds ----------------------------------------------------------------------------------


class UnixServer(RawServer):
    """A :class:`RawServer` listening on a Unix domain socket at ``path``."""

    def __init__(
        self, handler: handlers.Handler, path: str, tls: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(handler, tls=tls)
        self.listener.close()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.path = path


UnixFactory = Callable[..., UnixServer]


@pytest.fixture
def unix_server() -> Iterator[UnixFactory]:
    """``unix_server(handler, tls=None)`` starts a :class:`UnixServer` on a fresh path."""
    servers: list[UnixServer] = []
    with tempfile.TemporaryDirectory(prefix="hc-uds-") as d:

        def start(handler: handlers.Handler, tls: ssl.SSLContext | None = None) -> UnixServer:
            server = UnixServer(handler, os.path.join(d, f"s{len(servers)}"), tls)
            servers.append(server)
            server.start()
            return server

        yield start
        for server in servers:
            server.stop()
    assert not [e for s in servers for e in s.handler_errors]


def test_uds_host_from_url_and_keepalive(unix_server: UnixFactory) -> None:
    server = unix_server(handlers.keepalive_ok)
    with httpcore.Client(uds=server.path, timeout=3.0) as client:
        for path in ("/a", "/b"):
            response = client.request("GET", f"http://example.com{path}")
            assert (response.status_code, response.body) == (200, b"ok")
    requests = [server.next_request(), server.next_request()]
    assert [(r.target, r.header(b"host")) for r in requests] == [
        (b"/a", [b"example.com"]),
        (b"/b", [b"example.com"]),
    ]
    assert server.accepted == 1  # keep-alive over the socket


def test_uds_pool_manager(unix_server: UnixFactory) -> None:
    server = unix_server(handlers.keepalive_ok)

    async def main() -> bytes:
        async with httpcore.PoolManager(uds=server.path, timeout=3.0) as pool:
            return (await pool.request("GET", "http://example.com:8080/x")).body

    assert asyncio.run(main()) == b"ok"
    assert server.next_request().header(b"host") == [b"example.com:8080"]


def test_uds_tls_name_from_url(
    unix_server: UnixFactory,
    server_tls_context: ssl.SSLContext,
    ssl_context: ssl.SSLContext,
) -> None:
    names: list[str | None] = []
    server_tls_context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,misc]
    server = unix_server(handlers.keepalive_ok, tls=server_tls_context)
    with httpcore.Client(uds=server.path, ssl=ssl_context, timeout=3.0) as client:
        response = client.request("GET", "https://localhost/tls")
        assert (response.status_code, response.body) == (200, b"ok")
        # the certificate names localhost, not example.com: the URL's host is checked
        with pytest.raises(httpcore.ConnectError):
            client.request("GET", "https://example.com/")
    assert names[0] == "localhost"
    assert server.next_request().header(b"host") == [b"localhost"]


# -- local_address, socket_options ----------------------------------------------------------


def test_local_address(raw: RawFactory) -> None:
    server = raw(record_peer)
    with httpcore.Client(local_address="127.0.0.2", timeout=3.0) as client:
        assert client.request("GET", server.url("/")).body == b"ok"
    peer = server.wait_event("peer")
    assert isinstance(peer, tuple)
    assert peer[0] == "127.0.0.2"


def test_local_address_pool_manager(raw: RawFactory) -> None:
    server = raw(record_peer)

    async def main() -> bytes:
        async with httpcore.PoolManager(local_address="127.0.0.2", timeout=3.0) as pool:
            return (await pool.request("GET", server.url("/"))).body

    assert asyncio.run(main()) == b"ok"
    peer = server.wait_event("peer")
    assert isinstance(peer, tuple)
    assert peer[0] == "127.0.0.2"


MSS = 536


def test_socket_options_applied_before_connect(raw: RawFactory) -> None:
    """TCP_MAXSEG only shapes the MSS announced in the SYN: the server's socket
    reports the small segment size only when the option was set before connect()."""
    server = raw(record_peer)
    with httpcore.Client(timeout=3.0) as client:
        assert client.request("GET", server.url("/")).body == b"ok"
    default = server.wait_event("maxseg")
    assert isinstance(default, int)
    if default <= MSS:
        pytest.skip(f"loopback MSS is already {default} without the option")
    options = [(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS)]
    with httpcore.Client(socket_options=options, timeout=3.0) as client:
        assert client.request("GET", server.url("/")).body == b"ok"
    seg = server.wait_event("maxseg")
    assert isinstance(seg, int)
    assert seg <= MSS < default


def test_socket_options_bad_option_is_connect_error(raw: RawFactory) -> None:
    server = raw(handlers.keepalive_ok)
    options = [(socket.SOL_SOCKET, 12345, 1)]
    with httpcore.Client(socket_options=options, timeout=3.0) as client:
        with pytest.raises(httpcore.ConnectError) as info:
            client.request("GET", server.url("/"))
    message = str(info.value)
    assert "setsockopt" in message or "12345" in message, message
    assert server.accepted == 0  # the failing option stopped it before connect()


# -- Happy Eyeballs -------------------------------------------------------------------------


HOSTS_FILE = "/etc/hosts"


def _resolved(name: str, port: int = 80) -> list[str]:
    """The addresses the system resolver gives for ``name``, in its order, each once."""
    out: list[str] = []
    for info in socket.getaddrinfo(name, port, type=socket.SOCK_STREAM):
        host = str(info[4][0])
        if host not in out:
            out.append(host)
    return out


def _can_bind(host: str) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, 0))
        except OSError:
            return False
    return True


def _rewrite(f: BinaryIO, current: bytes, new: bytes) -> None:
    """Make the open file ``new`` in place (/etc/hosts may be a bind mount, which
    no rename can replace), writing only from the first byte that changes: a
    concurrent lookup never sees the lines before ours (``localhost``) missing."""
    keep, limit = 0, min(len(current), len(new))
    while keep < limit and current[keep] == new[keep]:
        keep += 1
    f.seek(keep)
    f.write(new[keep:])
    f.truncate()
    f.flush()
    os.fsync(f.fileno())


@contextlib.contextmanager
def _hosts_entries(addresses: Sequence[str]) -> Iterator[str]:
    """A fresh name (unique to this process and call) that /etc/hosts maps to
    ``addresses``, for as long as the block lasts; glibc reads the file again
    on every lookup. Only our own lines are added and taken out again, each
    time under an exclusive flock on /etc/hosts itself, so test processes
    running at once never interleave their read-modify-write; when no one else
    touched the file meanwhile, its original bytes are back exactly. Skips
    when the file cannot be written (not root, read-only mount)."""
    name = f"httpcore-he-{os.getpid()}-{secrets.token_hex(4)}.test"
    try:
        f = open(HOSTS_FILE, "r+b")  # closed by the "with f" below
    except OSError as exc:
        pytest.skip(f"{HOSTS_FILE} is not writable here: {exc}")
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        original = f.read()
        lines = [f"# httpcore tests (pid {os.getpid()}): temporary, removed after the test"]
        lines += [f"{address}\t{name}" for address in addresses]
        ours = "".join(line + "\n" for line in lines).encode("ascii")
        if original and not original.endswith(b"\n"):
            ours = b"\n" + ours
        _rewrite(f, original, original + ours)
        fcntl.flock(f, fcntl.LOCK_UN)
        try:
            yield name
        finally:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            current = f.read()
            if ours in current:  # else someone rewrote the file: leave it to them
                _rewrite(f, current, current.replace(ours, b"", 1))


TWO_ADDRESSES = {
    "ipv6-and-ipv4": ("::1", "127.0.0.1"),
    "two-ipv4": ("127.0.0.2", "127.0.0.1"),
}


@pytest.fixture(params=list(TWO_ADDRESSES.values()), ids=list(TWO_ADDRESSES))
def two_address_name(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[str]]]:
    """``(name, addresses)``: a name in /etc/hosts with two loopback addresses
    (two families, or one), ``addresses`` in the order the resolver gives them."""
    wanted: tuple[str, ...] = request.param
    for address in wanted:
        if not _can_bind(address):
            pytest.skip(f"cannot bind {address} here")
    with _hosts_entries(wanted) as name:
        addresses = _resolved(name)
        assert sorted(addresses) == sorted(wanted), (
            f"{name} resolves to {addresses}, not {list(wanted)}: is /etc/hosts read"
            " on each lookup (no nscd cache, 'hosts: files' in /etc/nsswitch.conf)?"
        )
        yield name, addresses


def _falls_back(raw: RawFactory, host: str, first: str, second: str) -> None:
    """A request to ``host`` (resolving to ``first``, then ``second``) with
    ``first`` blackholed and a server on ``second``, same port: it gets the
    server's answer after one Happy Eyeballs delay, not a connect timeout."""
    for _ in range(20):
        server = raw(handlers.keepalive_ok, host=second)
        try:
            hole = Blackhole(first, server.port)
        except OSError:
            continue  # that port is taken on the first address: try another one
        break
    else:
        pytest.fail(f"no port free on both {first} and {second}")
    with filled([hole]) as blackholed:
        if not blackholed:
            pytest.skip("this kernel accepts connections beyond the listen backlog")
        timeout = httpcore.Timeout(5.0, connect=3.0)
        with httpcore.Client(timeout=timeout) as client:
            start = time.monotonic()
            response = client.request("GET", f"http://{host}:{server.port}/he")
            elapsed = time.monotonic() - start
    assert (response.status_code, response.body) == (200, b"ok")
    assert server.next_request().target == b"/he"  # the real server answered
    assert server.accepted == 1
    # The second address was tried after the Happy Eyeballs delay (RFC 8305:
    # 250 ms), so the first one was tried first; and not after the 3 s connect
    # timeout of the first address. The lower bound leaves 50 ms for timers
    # firing a little early (libuv's are in whole milliseconds).
    assert HAPPY_EYEBALLS_DELAY - 0.05 <= elapsed < 2.0, elapsed


def test_happy_eyeballs_falls_back_to_next_address(
    raw: RawFactory, two_address_name: tuple[str, list[str]]
) -> None:
    name, (first, second) = two_address_name
    _falls_back(raw, name, first, second)


def test_happy_eyeballs_falls_back_to_other_family(raw: RawFactory) -> None:
    """The same with ``localhost``, where it has both ``::1`` and ``127.0.0.1``."""
    addresses = _resolved("localhost")
    families = {":" in a for a in addresses}
    if len(families) < 2:
        pytest.skip(f"'localhost' resolves to {addresses} only: needs both ::1 and 127.0.0.1")
    first = addresses[0]
    second = next(a for a in addresses if (":" in a) != (":" in first))
    _falls_back(raw, "localhost", first, second)


def test_all_addresses_blackholed_is_connect_timeout() -> None:
    addresses = _resolved("localhost")
    holes = on_common_port(addresses)
    with filled(holes) as blackholed:
        if not blackholed:
            pytest.skip("this kernel accepts connections beyond the listen backlog")
        timeout = httpcore.Timeout(5.0, connect=0.5)
        with httpcore.Client(timeout=timeout) as client:
            start = time.monotonic()
            with pytest.raises(httpcore.ConnectTimeout):
                client.request("GET", f"http://localhost:{holes[0].port}/")
            elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < 2.5, elapsed


# -- retries --------------------------------------------------------------------------------


def _min_backoff(retries: int) -> float:
    return sum(BACKOFF_FACTOR * 2**k * 0.5 for k in range(retries))


@pytest.mark.parametrize("retries", [1, 2])
def test_retries_count_attempts_and_back_off(closed_port: int, retries: int) -> None:
    with httpcore.Client(retries=retries, timeout=3.0) as client:
        start = time.monotonic()
        with pytest.raises(httpcore.ConnectError) as info:
            client.request("GET", f"http://127.0.0.1:{closed_port}/")
        elapsed = time.monotonic() - start
    assert f"{retries + 1} attempts" in str(info.value), str(info.value)
    # delays: min(5, 0.25 * 2**k) * (0.5 .. 1.0) before attempt k + 2
    assert elapsed >= _min_backoff(retries), elapsed
    assert elapsed < 2 * _min_backoff(retries) + 1.0, elapsed


def test_retries_succeed_on_later_attempt(
    raw: RawFactory, server_tls_context: ssl.SSLContext, ssl_context: ssl.SSLContext
) -> None:
    """The first connection is closed during the TLS handshake (a ConnectError);
    the retry's connection is served."""

    def drop_first(conn: RawConnection) -> None:
        if conn.index == 0:
            return  # closed without a byte of TLS
        conn.sock = server_tls_context.wrap_socket(conn.sock, server_side=True)
        handlers.keepalive_ok(conn)

    server = raw(drop_first)
    url = server.url("/", scheme="https")
    with httpcore.Client(ssl=ssl_context, timeout=3.0) as client:
        with pytest.raises(httpcore.ConnectError):
            client.request("GET", url)  # retries=0: the first failure is final
    assert server.wait_accepted(1)

    server = raw(drop_first)
    url = server.url("/", scheme="https")
    with httpcore.Client(ssl=ssl_context, retries=1, timeout=3.0) as client:
        start = time.monotonic()
        response = client.request("GET", url)
        elapsed = time.monotonic() - start
    assert (response.status_code, response.body) == (200, b"ok")
    assert server.accepted == 2
    assert elapsed >= _min_backoff(1), elapsed


# -- the sync frontend on a running loop --------------------------------------------------

LOOP_SCRIPT = """
import asyncio, json, logging, sys
import httpcore

records = []
handler = logging.Handler()
handler.emit = records.append
logging.getLogger("httpcore").addHandler(handler)
logging.getLogger("httpcore").setLevel(logging.DEBUG)
url = sys.argv[1]
with httpcore.Client(timeout=5.0) as client:
    outside = client.request("GET", url).status_code  # no loop running: no warning
    before = [r.getMessage() for r in records if r.levelno >= logging.WARNING]

    async def main():
        return [client.request("GET", url).status_code for _ in range(2)]

    inside = asyncio.run(main())
warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
print(json.dumps({"outside": outside, "before": before, "inside": inside, "warnings": warnings}))
"""


def test_sync_request_on_running_loop_warns_once(raw: RawFactory) -> None:
    """Run in a child process: a once-per-process warning cannot have been used up
    by another test."""
    server = raw(handlers.keepalive_ok)
    with python_subprocess("-c", LOOP_SCRIPT, server.url("/"), stdin=None) as proc:
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err.decode(errors="replace")
    result = json.loads(out)
    assert (result["outside"], result["before"], result["inside"]) == (200, [], [200, 200])
    [message] = result["warnings"]
    assert "block" in message.lower() and "event loop" in message.lower(), message


# -- aconnections ---------------------------------------------------------------------------


def test_aconnections_does_not_block_the_loop(raw: RawFactory) -> None:
    """While the engine is busy, ``await pool.aconnections()`` waits for it
    without stopping other tasks on the caller's loop."""
    server = raw(handlers.keepalive_ok)
    engine = httpcore.Engine()
    release = threading.Event()
    try:

        async def main() -> tuple[int, bool, list[httpcore.ConnectionInfo]]:
            async with httpcore.PoolManager(engine=engine) as pool:
                await pool.request("GET", server.url("/"))
                assert engine._loop is not None
                started = threading.Event()

                def busy() -> None:
                    started.set()
                    release.wait(10)

                engine._loop.call_soon_threadsafe(busy)
                assert started.wait(5)  # the engine is busy from here on
                task = asyncio.ensure_future(pool.aconnections())
                ticks = 0
                for _ in range(20):
                    await asyncio.sleep(0.005)
                    ticks += 1
                pending = not task.done()
                release.set()
                return ticks, pending, await task

        start = time.monotonic()
        ticks, pending, infos = asyncio.run(main())
        elapsed = time.monotonic() - start
    finally:
        release.set()
        engine.close()
    assert (ticks, pending) == (20, True)
    assert elapsed < 5, elapsed  # not released by the engine's 10 s wait
    [info] = infos
    assert (info.state, info.requests_served) == ("idle", 1)
