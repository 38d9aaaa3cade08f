# Runs on the engine thread only. Owns nothing: it opens a socket (TCP, then
# TLS with SNI and ALPN, possibly through a proxy's CONNECT tunnel) and hands
# the resulting Transport to its caller.
"""Opening connections: TCP, TLS, ALPN, proxies, connect timeouts and retries."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any

import h11

from .._config import Timeout
from .._exceptions import ConnectError, ConnectTimeout, HTTPCoreError, ProxyError, describe
from .._models import Origin, ProxySpec
from .socks import handshake
from .transport import Transport, transport_class

BACKOFF_FACTOR = 0.25
BACKOFF_MAX = 5.0
MAX_CONNECT_RESPONSE = 64 * 1024


_alpn_lock = threading.Lock()


class ALPNContext:
    """A caller's SSLContext with a pool's ALPN list set as each connection's
    TLS object is made from it, under one lock: clients that share a context
    but allow different protocols never offer each other's list."""

    __slots__ = ("_ctx", "_protocols")

    def __init__(self, ctx: ssl.SSLContext, protocols: list[str]) -> None:
        self._ctx = ctx
        self._protocols = protocols

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        with _alpn_lock:
            self._ctx.set_alpn_protocols(self._protocols)
            return self._ctx.wrap_bio(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


HAPPY_EYEBALLS_DELAY = 0.25
"""RFC 8305's recommended "Connection Attempt Delay"."""


@dataclass(frozen=True, slots=True)
class Dialer:
    """How a pool's sockets are made: where (a Unix socket instead of the
    network), from which local address, with which options. Applies to the
    first hop: the proxy when there is one."""

    uds: str | None = None
    local_address: str | None = None
    options: tuple[tuple[int, int, int | bytes], ...] = ()


def _host(origin: Origin) -> str:
    """The name to resolve and to send as SNI: a trailing dot dropped (the
    hosts file and SNI take names without it)."""
    host = origin.host.decode("ascii")
    return host[:-1] if host.endswith(".") else host


async def resolve(
    loop: asyncio.AbstractEventLoop, host: str, port: int, family: int = 0
) -> list[tuple[Any, ...]]:
    """Addresses for ``host``, in the resolver's order; a failure says what
    could not be resolved (curl's "could not resolve host"). An IP literal
    is its own answer: no trip through the loop's resolver threads."""
    literal = _literal(host, port, family)
    if literal is not None:
        return literal
    try:
        infos = await loop.getaddrinfo(
            host, port, family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except socket.gaierror as exc:
        raise ConnectError(f"cannot resolve host {host!r}: {exc.strerror}") from exc
    except UnicodeError as exc:
        raise ConnectError(f"cannot resolve host {host!r}: not a valid DNS name") from exc
    if not infos:
        raise ConnectError(f"cannot resolve host {host!r}: no addresses")
    return infos


def _literal(host: str, port: int, family: int) -> list[tuple[Any, ...]] | None:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if address.version == 6:
        if family not in (0, socket.AF_INET6) or "%" in host:
            return None  # a zone id needs the resolver's scope lookup
        return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port, 0, 0))]
    if family not in (0, socket.AF_INET):
        return None
    return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]


def _interleave(infos: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """RFC 8305 §4: alternate address families, the first one first."""
    first = infos[0][0]
    ours = [info for info in infos if info[0] == first]
    others = [info for info in infos if info[0] != first]
    out: list[tuple[Any, ...]] = []
    for i in range(max(len(ours), len(others))):
        out.extend(group[i] for group in (ours, others) if i < len(group))
    return out


def _new_socket(family: int, dialer: Dialer) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for level, option, value in dialer.options:
            try:
                sock.setsockopt(level, option, value)
            except OSError as exc:
                raise ConnectError(
                    f"socket option setsockopt({level}, {option}, {value!r}) failed:"
                    f" {describe(exc)}"
                ) from exc
        if dialer.local_address is not None and family != socket.AF_UNIX:
            try:
                sock.bind((dialer.local_address, 0))
            except OSError as exc:
                raise ConnectError(
                    f"cannot bind to local_address {dialer.local_address!r}: {describe(exc)}"
                ) from exc
    except BaseException:
        sock.close()
        raise
    return sock


async def _attempt(
    loop: asyncio.AbstractEventLoop, info: tuple[Any, ...], dialer: Dialer
) -> socket.socket:
    sock = _new_socket(info[0], dialer)
    try:
        await loop.sock_connect(sock, info[4])
    except BaseException:
        sock.close()
        raise
    return sock


async def _dial(
    loop: asyncio.AbstractEventLoop, host: str, port: int, dialer: Dialer, what: str
) -> socket.socket:
    """A connected socket to ``host``: Happy Eyeballs (RFC 8305) across its
    addresses, a new attempt every 250 ms or as soon as one fails."""
    if dialer.uds is not None:
        sock = _new_socket(socket.AF_UNIX, dialer)
        try:
            await loop.sock_connect(sock, dialer.uds)
        except OSError as exc:
            sock.close()
            raise ConnectError(
                f"cannot connect to {what} at {dialer.uds}: {describe(exc)}"
            ) from exc
        except BaseException:
            sock.close()
            raise
        return sock
    family = 0
    if dialer.local_address is not None:
        family = socket.AF_INET6 if ":" in dialer.local_address else socket.AF_INET
    infos = _interleave(await resolve(loop, host, port, family))
    errors: list[BaseException] = []
    pending: set[asyncio.Task[socket.socket]] = set()
    winner: socket.socket | None = None
    try:
        for info in infos:
            pending.add(loop.create_task(_attempt(loop, info, dialer)))
            winner = await _first_success(pending, errors, HAPPY_EYEBALLS_DELAY)
            if winner is not None:
                return winner
        while pending and winner is None:
            winner = await _first_success(pending, errors, None)
        if winner is not None:
            return winner
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            for task in pending:
                if not task.cancelled() and task.exception() is None:
                    task.result().close()
    first = errors[0]
    if isinstance(first, ConnectError):
        raise first
    more = f" (and {len(errors) - 1} other addresses)" if len(errors) > 1 else ""
    raise ConnectError(f"cannot connect to {what}: {describe(first)}{more}") from first


async def _first_success(
    pending: set[asyncio.Task[socket.socket]],
    errors: list[BaseException],
    delay: float | None,
) -> socket.socket | None:
    """Wait up to ``delay`` for an attempt to end; the first connected
    socket wins, a failure is recorded (and ends the wait early)."""
    done, _ = await asyncio.wait(pending, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    winner = None
    for task in done:
        pending.discard(task)
        error = task.exception()
        if error is not None:
            errors.append(error)
        elif winner is None:
            winner = task.result()
        else:
            task.result().close()
    return winner


def tls_problem(exc: BaseException, origin: object) -> str:
    """What a user can do about a failed TLS handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"certificate verify failed: {exc.verify_message}; to trust a private CA pass"
            " ssl=ssl.create_default_context(cafile='ca.pem'), or ssl=False to skip"
            " verification (insecure)"
        )
    reason = getattr(exc, "reason", None) or ""
    if reason in _NOT_TLS:
        return f"the server at {origin} did not speak TLS (is it a plain-HTTP port? use http://)"
    if isinstance(exc, ssl.SSLEOFError):
        return (
            f"the server at {origin} closed the connection during the TLS handshake"
            " (does it speak TLS on this port?)"
        )
    return f"TLS handshake failed: {describe(exc)}"


_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE"}
)


async def _tcp(
    loop: asyncio.AbstractEventLoop,
    origin: Origin,
    tls: ALPNContext | None,
    timeout: Timeout,
    what: str,
    dialer: Dialer,
    socks: tuple[ProxySpec, Origin] | None = None,
) -> Transport:
    """Dial ``origin`` (a SOCKS proxy's tunnel to its target when ``socks``
    is given), then start TLS with ``tls``."""
    sock = await _dial(loop, _host(origin), origin.port, dialer, what)
    server_name = _host(origin)
    if socks is not None:
        proxy, target = socks
        server_name = _host(target)
        try:
            address = await _socks_target(loop, proxy, target)
            await handshake(loop, sock, proxy, target, address)
        except BaseException:
            sock.close()
            raise
        what = str(target)
    connecting = (
        loop.create_unix_connection if sock.family == socket.AF_UNIX else loop.create_connection
    )
    handshake_timeout = timeout.connect if tls is not None and timeout.connect else None
    # From here the socket is the loop's: a transport made on it closes it
    # (after its TLS shutdown, maybe later); closing it here could hand its
    # descriptor to a new socket while that transport still reads it.
    try:
        _, protocol = await connecting(
            transport_class(loop),
            sock=sock,
            ssl=tls,  # type: ignore[arg-type]  # duck-typed: asyncio and uvloop call wrap_bio
            server_hostname=server_name.split("%", 1)[0] if tls is not None else None,
            ssl_handshake_timeout=handshake_timeout,
        )
    except (OSError, ssl.SSLError, ssl.CertificateError) as exc:
        if isinstance(exc, ssl.SSLError | ssl.CertificateError):
            raise ConnectError(f"cannot connect to {what}: {tls_problem(exc, what)}") from exc
        raise ConnectError(f"cannot connect to {what}: {describe(exc)}") from exc
    return protocol


async def _socks_target(loop: asyncio.AbstractEventLoop, proxy: ProxySpec, target: Origin) -> str:
    """The name itself for ``socks5h://`` (the proxy resolves it), an address
    resolved here for ``socks5://``."""
    host = _host(target).split("%", 1)[0]
    if proxy.remote_dns or b":" in target.host or host.replace(".", "").isdigit():
        return host
    return str((await resolve(loop, host, target.port))[0][4][0])


class _Handshake:
    """A temporary sink that collects the proxy's answer to CONNECT."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_CONNECT_RESPONSE)
        self.done: asyncio.Future[h11.Response] = loop.create_future()

    def on_bug(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

    def on_data(self, data: memoryview) -> None:
        self.h11.receive_data(data.tobytes())
        self._step()

    def on_eof(self) -> None:
        self.h11.receive_data(b"")
        self._step()

    def on_lost(self, exc: BaseException | None) -> None:
        if not self.done.done():
            what = f": {describe(exc)}" if exc else ""
            self.done.set_exception(ProxyError(f"proxy closed the connection{what}"))

    def on_writable(self) -> None:
        pass

    def _step(self) -> None:
        if self.done.done():
            return
        try:
            while True:
                event = self.h11.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, h11.Response):
                    self.done.set_result(event)
                    return
                if isinstance(event, h11.ConnectionClosed):
                    raise ProxyError("proxy closed the connection during CONNECT")
        except h11.RemoteProtocolError as exc:
            self.done.set_exception(ProxyError(f"bad answer to CONNECT: {describe(exc)}"))
        except ProxyError as exc:
            self.done.set_exception(exc)


async def _tunnel(
    loop: asyncio.AbstractEventLoop,
    proxy: ProxySpec,
    origin: Origin,
    ssl_context: ssl.SSLContext,
    timeout: Timeout,
    alpn: list[str],
    dialer: Dialer,
) -> Transport:
    """CONNECT through the proxy, then TLS to the origin inside the tunnel.

    Proxy credentials go in the CONNECT request only; the origin never
    sees them.
    """
    tls = None
    if proxy.origin.scheme == b"https" and proxy.ssl_context is not None:
        tls = ALPNContext(proxy.ssl_context, ["http/1.1"])
    t = await _tcp(loop, proxy.origin, tls, timeout, f"proxy {proxy.origin}", dialer)
    authority = origin.host_port
    shake = _Handshake(loop)
    t.attach(shake)
    try:
        request = h11.Request(
            method=b"CONNECT",
            target=authority,
            headers=[(b"Host", authority), *proxy.headers],
        )
        assert t.transport is not None
        t.transport.write(shake.h11.send(request))
        response = await shake.done
        if not 200 <= response.status_code < 300:
            raise ProxyError(
                f"proxy {proxy.origin} refused CONNECT to {origin}: "
                f"{response.status_code} {response.reason.decode('latin-1')}"
            )
        if shake.h11.trailing_data[0]:
            raise ProxyError("proxy sent data after its CONNECT response")
        # uvloop's start_tls takes a real SSLContext only: the list is set
        # here, and the pool checks what was negotiated.
        with _alpn_lock:
            ssl_context.set_alpn_protocols(alpn)
        try:
            new = await loop.start_tls(
                t.transport, t, ssl_context, server_hostname=_host(origin).split("%", 1)[0]
            )
        except (OSError, ssl.SSLError, ssl.CertificateError) as exc:
            problem = tls_problem(exc, origin) if isinstance(exc, ssl.SSLError) else describe(exc)
            raise ConnectError(f"cannot connect to {origin}: {problem}") from exc
        if new is None:
            raise ConnectError(f"TLS to {origin} through the proxy failed")
        t.transport = new
        t.sink = None
        return t
    except BaseException:
        t.abort()
        raise


async def _open_once(
    loop: asyncio.AbstractEventLoop,
    origin: Origin,
    ssl_context: ssl.SSLContext,
    timeout: Timeout,
    tunnel: ProxySpec | None,
    alpn: list[str],
    dialer: Dialer,
) -> Transport:
    tls = ALPNContext(ssl_context, alpn) if origin.scheme == b"https" else None
    if tunnel is None:
        return await _tcp(loop, origin, tls, timeout, str(origin), dialer)
    if tunnel.socks:
        what = f"SOCKS proxy {tunnel.origin}"
        return await _tcp(loop, tunnel.origin, tls, timeout, what, dialer, (tunnel, origin))
    return await _tunnel(loop, tunnel, origin, ssl_context, timeout, alpn, dialer)


async def open_transport(
    origin: Origin,
    ssl_context: ssl.SSLContext,
    timeout: Timeout,
    retries: int,
    tunnel: ProxySpec | None,
    alpn: list[str],
    dialer: Dialer,
) -> Transport:
    """Connect to ``origin`` (through ``tunnel``: an HTTP proxy's CONNECT or
    a SOCKS proxy), within the connect timeout (DNS, TCP, proxy and TLS
    handshakes together), retrying ``retries`` times on ConnectError and
    ConnectTimeout with exponential backoff and jitter."""
    loop = asyncio.get_running_loop()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await asyncio.wait_for(
                _open_once(loop, origin, ssl_context, timeout, tunnel, alpn, dialer),
                timeout.connect,
            )
        except asyncio.TimeoutError:
            via = f" through proxy {tunnel.origin}" if tunnel is not None else ""
            error: HTTPCoreError = ConnectTimeout(
                f"timed out after {timeout.connect:g} s connecting to {origin}{via}"
            )
        except (ConnectError, ConnectTimeout) as exc:
            error = exc
        if attempt > retries:
            if attempt > 1:
                final = type(error)(f"{error} (gave up after {attempt} attempts)")
                final.__cause__ = error.__cause__ or error
                raise final
            raise error
        delay = min(BACKOFF_MAX, BACKOFF_FACTOR * (2 ** (attempt - 1))) * (
            0.5 + random.random() / 2
        )
        await asyncio.sleep(delay)
