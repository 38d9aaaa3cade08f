# Runs on the engine thread only. Owns nothing: it opens a socket (TCP, then
# TLS with SNI and ALPN, possibly through a proxy's CONNECT tunnel) and hands
# the resulting Transport to its caller.
"""Opening connections: TCP, TLS, ALPN, proxies, connect timeouts and retries."""

from __future__ import annotations

import asyncio
import random
import ssl
import threading
from typing import Any

import h11

from .._config import Timeout
from .._exceptions import ConnectError, ConnectTimeout, ProxyError, describe
from .._models import Origin, ProxySpec
from .transport import Transport

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


def _host(origin: Origin) -> str:
    host = origin.host.decode("ascii")
    return host.split("%", 1)[0] if "%" in host else host


async def _tcp(
    loop: asyncio.AbstractEventLoop,
    origin: Origin,
    tls: ALPNContext | None,
    timeout: Timeout,
    what: str,
) -> Transport:
    host = _host(origin)
    coro = loop.create_connection(
        Transport,
        host,
        origin.port,
        ssl=tls,  # type: ignore[arg-type]  # duck-typed: asyncio and uvloop call wrap_bio
        server_hostname=host if tls is not None else None,
        ssl_handshake_timeout=timeout.connect if tls is not None and timeout.connect else None,
    )
    try:
        _, protocol = await asyncio.wait_for(coro, timeout.connect)
    except asyncio.TimeoutError:
        raise ConnectTimeout(f"timed out connecting to {what}") from None
    except (OSError, ssl.SSLError, ssl.CertificateError) as exc:
        raise ConnectError(f"cannot connect to {what}: {describe(exc)}") from exc
    return protocol


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
) -> Transport:
    """CONNECT through the proxy, then TLS to the origin inside the tunnel.

    Proxy credentials go in the CONNECT request only; the origin never
    sees them.
    """
    tls = None
    if proxy.origin.scheme == b"https" and proxy.ssl_context is not None:
        tls = ALPNContext(proxy.ssl_context, ["http/1.1"])
    t = await _tcp(loop, proxy.origin, tls, timeout, f"proxy {proxy.origin}")
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
        try:
            response = await asyncio.wait_for(asyncio.shield(shake.done), timeout.connect)
        except asyncio.TimeoutError:
            raise ConnectTimeout(f"timed out waiting for proxy {proxy.origin} to CONNECT") from None
        if not 200 <= response.status_code < 300:
            raise ProxyError(
                f"proxy {proxy.origin} refused CONNECT to {origin}: "
                f"{response.status_code} {response.reason.decode('latin-1')}"
            )
        if shake.h11.trailing_data[0]:
            raise ProxyError("proxy sent data after its CONNECT response")
        host = _host(origin)
        # uvloop's start_tls takes a real SSLContext only: the list is set
        # here, and the pool checks what was negotiated.
        with _alpn_lock:
            ssl_context.set_alpn_protocols(alpn)
        try:
            new = await asyncio.wait_for(
                loop.start_tls(t.transport, t, ssl_context, server_hostname=host),
                timeout.connect,
            )
        except asyncio.TimeoutError:
            raise ConnectTimeout(f"timed out in the TLS handshake with {origin}") from None
        except (OSError, ssl.SSLError, ssl.CertificateError) as exc:
            raise ConnectError(f"cannot connect to {origin}: {describe(exc)}") from exc
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
) -> Transport:
    if tunnel is not None:
        return await _tunnel(loop, tunnel, origin, ssl_context, timeout, alpn)
    tls = ALPNContext(ssl_context, alpn) if origin.scheme == b"https" else None
    return await _tcp(loop, origin, tls, timeout, str(origin))


async def open_transport(
    origin: Origin,
    ssl_context: ssl.SSLContext,
    timeout: Timeout,
    retries: int,
    tunnel: ProxySpec | None,
    alpn: list[str],
) -> Transport:
    """Connect to ``origin`` (through a CONNECT tunnel when ``tunnel`` is
    given; the pool passes one for ``https://`` origins only), retrying
    ``retries`` times on ConnectError/ConnectTimeout with backoff."""
    loop = asyncio.get_running_loop()
    attempt = 0
    while True:
        try:
            return await _open_once(loop, origin, ssl_context, timeout, tunnel, alpn)
        except (ConnectError, ConnectTimeout):
            if attempt >= retries:
                raise
        delay = min(BACKOFF_MAX, BACKOFF_FACTOR * (2**attempt)) * (0.5 + random.random() / 2)
        attempt += 1
        await asyncio.sleep(delay)
