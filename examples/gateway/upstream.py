"""Upstream clients behind one small interface.

``httpcore`` is the gateway's client. ``aiohttp`` and ``httpx`` implement the
same interface so the benchmark can run the very same gateway on them; each
is imported only when chosen (httpx lives in a separate virtualenv, where
``import httpcore`` is encode's package).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

Headers = list[tuple[bytes, bytes]]


class UpstreamError(Exception):
    """``kind``: "connect" (nothing was sent: another upstream may be
    tried), "timeout" (504), or "protocol" (502)."""

    def __init__(self, kind: str, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.timed_out = timed_out or kind == "timeout"
        """A connect that timed out is still "connect" (try the next
        upstream) but answers 504, as nginx does."""


@dataclass(frozen=True)
class Limits:
    """A route's upstream settings: timeouts and how to talk to it."""

    connect_timeout: float
    read_timeout: float
    protocol: str = "auto"
    """"auto": HTTP/2 where ALPN offers it, else HTTP/1.1; "http1": HTTP/1.1
    only; "h2c": HTTP/2 with prior knowledge on http:// upstreams."""
    ca_file: str | None = None
    """Trust this CA for https:// upstreams instead of the default bundle."""


class _BodyErrors:
    """A reply body's errors as the gateway's: a timeout is "timeout", any
    other error of the client's is "protocol". A plain context manager that
    keeps no state per use, so one per client serves every reply at once:
    ``contextlib.contextmanager`` made a generator on every body read, about
    a microsecond per small reply."""

    __slots__ = ("_protocol", "_timeout", "_timeout_message")

    def __init__(
        self,
        timeout: type[BaseException],
        protocol: type[BaseException],
        timeout_message: str | None = None,
    ) -> None:
        self._timeout = timeout
        self._protocol = protocol
        self._timeout_message = timeout_message

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, self._timeout):
            raise UpstreamError("timeout", self._timeout_message or str(exc)) from exc
        if isinstance(exc, self._protocol):
            raise UpstreamError("protocol", str(exc)) from exc


class Reply(Protocol):
    status: int
    headers: Headers
    http_version: str

    def chunks(self) -> AsyncIterator[bytes]: ...
    async def read(self) -> bytes: ...
    async def aclose(self) -> None: ...


class Client(Protocol):
    name: str

    async def send(
        self,
        method: str,
        url: str,
        headers: Headers,
        body: AsyncIterator[bytes] | bytes | None,
        limits: Limits,
    ) -> Reply: ...

    def prepare(self, limits: Limits) -> None:
        """Make what requests with these limits need (pools, TLS contexts) now,
        on the server's loop at start-up, rather than in the first request."""

    async def connections(self) -> list[dict[str, Any]]: ...
    async def aclose(self) -> None: ...


def make_client(name: str) -> Client:
    if name == "httpcore":
        return HttpcoreClient()
    if name == "aiohttp":
        return AiohttpClient()
    if name == "httpx":
        return HttpxClient()
    raise ValueError(f"unknown upstream client {name!r}")


# -- httpcore: the engine ----------------------------------------------------------


class _HttpcoreReply:
    __slots__ = ("_errors", "_response", "headers", "http_version", "status")

    def __init__(self, response: Any, errors: _BodyErrors) -> None:
        self._response = response
        self._errors = errors
        self.status: int = response.status_code
        self.headers: Headers = response.headers
        self.http_version: str = response.http_version

    async def chunks(self) -> AsyncIterator[bytes]:
        with self._errors:
            async for chunk in self._response.stream():
                yield chunk

    async def read(self) -> bytes:
        with self._errors:
            data: bytes = await self._response.aread()
        return data

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpcoreClient:
    name = "httpcore"

    def __init__(self) -> None:
        import httpcore

        self._httpcore = httpcore
        self._engine: Any = None
        self._hosted = os.environ.get("GATEWAY_ENGINE", "hosted") == "hosted"
        self._pools: dict[tuple[str, str | None], Any] = {}
        self._timeouts: dict[Limits, Any] = {}
        self._errors = _BodyErrors(httpcore.TimeoutException, httpcore.HTTPCoreError)

    def _pool(self, limits: Limits) -> Any:
        """One PoolManager per (protocol, CA): routes that agree share it."""
        key = (limits.protocol, limits.ca_file)
        pool = self._pools.get(key)
        if pool is None:
            import ssl

            httpcore = self._httpcore
            if self._engine is None and self._hosted:
                # On the ASGI server's own loop: no thread hop per request.
                self._engine = httpcore.Engine.hosted()
            context = ssl.create_default_context(cafile=limits.ca_file) if limits.ca_file else None
            pool = self._pools[key] = httpcore.PoolManager(
                engine=self._engine,
                ssl=context,
                http1=limits.protocol != "h2c",
                http2=limits.protocol != "http1",
                limits=httpcore.Limits(max_connections=1000, max_keepalive_connections=200),
            )
        return pool

    def prepare(self, limits: Limits) -> None:
        self._pool(limits)

    async def send(
        self,
        method: str,
        url: str,
        headers: Headers,
        body: AsyncIterator[bytes] | bytes | None,
        limits: Limits,
    ) -> Reply:
        httpcore = self._httpcore
        timeout = self._timeouts.get(limits)
        if timeout is None:
            timeout = self._timeouts[limits] = httpcore.Timeout(
                limits.read_timeout, connect=limits.connect_timeout
            )
        try:
            response = await self._pool(limits).request(
                method, url, headers=headers, body=body, stream=True, timeout=timeout
            )
        except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
            timed_out = isinstance(exc, httpcore.ConnectTimeout)
            raise UpstreamError("connect", str(exc), timed_out) from exc
        except httpcore.TimeoutException as exc:
            raise UpstreamError("timeout", str(exc)) from exc
        except httpcore.HTTPCoreError as exc:
            raise UpstreamError("protocol", str(exc)) from exc
        return _HttpcoreReply(response, self._errors)

    async def connections(self) -> list[dict[str, Any]]:
        return [
            {
                "origin": info.origin,
                "http_version": info.http_version,
                "state": info.state,
                "active_streams": info.active_streams,
                "requests_served": info.requests_served,
            }
            for pool in self._pools.values()
            for info in await pool.aconnections()
        ]

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        if self._engine is not None:
            self._engine.close()


# -- aiohttp: for comparison ---------------------------------------------------------


class _AiohttpReply:
    def __init__(self, response: Any, errors: _BodyErrors) -> None:
        self._response = response
        self._errors = errors
        self.status: int = response.status
        self.headers: Headers = list(response.raw_headers)
        self.http_version = f"HTTP/{response.version.major}.{response.version.minor}"

    async def chunks(self) -> AsyncIterator[bytes]:
        with self._errors:
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def read(self) -> bytes:
        with self._errors:
            data: bytes = await self._response.read()
        return data

    async def aclose(self) -> None:
        self._response.release()


class AiohttpClient:
    name = "aiohttp"

    def __init__(self) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._errors = _BodyErrors(
            asyncio.TimeoutError, aiohttp.ClientError, "upstream read timed out"
        )
        self._session: Any = None
        self._contexts: dict[str | None, Any] = {}

    def prepare(self, limits: Limits) -> None:
        self._prepared(limits)

    def _prepared(self, limits: Limits) -> tuple[Any, Any]:
        """The session (made once) and the TLS context for these limits."""
        aiohttp = self._aiohttp
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
        ssl_context = self._contexts.get(limits.ca_file) if limits.ca_file else True
        if ssl_context is None:
            import ssl

            ssl_context = self._contexts[limits.ca_file] = ssl.create_default_context(
                cafile=limits.ca_file
            )
        return self._session, ssl_context

    async def send(
        self,
        method: str,
        url: str,
        headers: Headers,
        body: AsyncIterator[bytes] | bytes | None,
        limits: Limits,
    ) -> Reply:
        aiohttp = self._aiohttp
        session, ssl_context = self._prepared(limits)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=limits.connect_timeout, sock_read=limits.read_timeout
        )
        text_headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]
        try:
            response = await session.request(
                method,
                url,
                headers=text_headers,
                data=body,
                timeout=timeout,
                allow_redirects=False,
                auto_decompress=False,
                ssl=ssl_context,
            )
        except (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError) as exc:
            kind = "connect" if isinstance(exc, aiohttp.ClientConnectorError) else "timeout"
            raise UpstreamError(kind, str(exc)) from exc
        except asyncio.TimeoutError as exc:
            raise UpstreamError("timeout", "upstream timed out") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError("protocol", str(exc)) from exc
        return _AiohttpReply(response, self._errors)

    async def connections(self) -> list[dict[str, Any]]:
        return []

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


# -- httpx: for comparison (its own virtualenv) -----------------------------------------


class _HttpxReply:
    def __init__(self, response: Any, errors: _BodyErrors) -> None:
        self._response = response
        self._errors = errors
        self.status: int = response.status_code
        self.headers: Headers = list(response.headers.raw)
        self.http_version: str = response.http_version

    async def chunks(self) -> AsyncIterator[bytes]:
        with self._errors:
            async for chunk in self._response.aiter_raw():
                yield chunk

    async def read(self) -> bytes:
        # aiter_raw, not aread: the bytes as sent (aread would decode them)
        return b"".join([chunk async for chunk in self.chunks()])

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxClient:
    name = "httpx"

    def __init__(self) -> None:
        import httpx

        self._httpx = httpx
        self._errors = _BodyErrors(httpx.TimeoutException, httpx.HTTPError)
        self._clients: dict[tuple[str, str | None], Any] = {}

    def _client(self, limits: Limits) -> Any:
        key = (limits.protocol, limits.ca_file)
        client = self._clients.get(key)
        if client is None:
            httpx = self._httpx
            client = self._clients[key] = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
                http1=limits.protocol != "h2c",
                http2=limits.protocol != "http1" and _has_h2(),
                verify=limits.ca_file or True,
                follow_redirects=False,
            )
        return client

    def prepare(self, limits: Limits) -> None:
        self._client(limits)

    async def send(
        self,
        method: str,
        url: str,
        headers: Headers,
        body: AsyncIterator[bytes] | bytes | None,
        limits: Limits,
    ) -> Reply:
        httpx = self._httpx
        timeout = httpx.Timeout(limits.read_timeout, connect=limits.connect_timeout)
        client = self._client(limits)
        request = client.build_request(method, url, headers=headers, content=body, timeout=timeout)
        try:
            response = await client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            timed_out = isinstance(exc, httpx.ConnectTimeout)
            raise UpstreamError("connect", str(exc), timed_out) from exc
        except httpx.TimeoutException as exc:
            raise UpstreamError("timeout", str(exc)) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError("protocol", str(exc)) from exc
        return _HttpxReply(response, self._errors)

    async def connections(self) -> list[dict[str, Any]]:
        return []

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()


def _has_h2() -> bool:
    try:
        import h2  # noqa: F401
    except ImportError:
        return False
    return True
