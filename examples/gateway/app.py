"""The gateway: an ASGI application that forwards each request to an upstream.

Both bodies stream: the request body goes upstream as it arrives, the
response comes back chunk by chunk, and a slow client slows the upstream
read (the ASGI server's ``send`` waits for the socket to drain; the engine
reads upstream only as the gateway consumes). A client that disconnects
cancels its upstream request at once.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .config import DOWN_FOR, Config, Route, Upstream
from .logs import access, access_logger, setup_logging
from .upstream import Client, Headers, Limits, Reply, UpstreamError, make_client

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("gateway")

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"host",  # set per route: the upstream's, or the client's (preserve_host)
    }
)
"""RFC 9110 §7.6.1, plus every Proxy-* field."""

GC_THRESHOLD = (10_000, 10, 10)
"""The collector's thresholds in a gateway process (Python's are 700, 10,
10). With the defaults a young collection ran every few requests and a full
one, over every module's objects, every second or so: ~9% of the gateway's
CPU at 10,000 requests/s, for requests whose objects are freed by their
reference counts anyway."""

WATCH_AFTER = 0.02
"""Seconds before a request starts watching for its client's disconnect."""

SMALL_BODY = 64 * 1024
"""Request bodies up to this size (by Content-Length) are read whole and sent
as bytes: one message instead of a stream; so are responses, one send."""


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


_HOST_ONLY = frozenset({b"host"})


def _strip(headers: list[tuple[bytes, bytes]] | Headers) -> list[tuple[bytes, bytes]]:
    """Headers without the hop-by-hop ones, including those Connection names."""
    lowered = b"\n".join([name for name, _ in headers]).lower()
    names = lowered.split(b"\n")
    hop = HOP_BY_HOP.intersection(names)
    if (not hop or hop == _HOST_ONLY) and b"proxy-" not in lowered:
        # Nothing to remove but Host, if that (the usual case): a few C
        # calls, not several per field.
        if not hop:
            return [(name, value) for name, value in headers]
        return [pair for pair, low in zip(headers, names, strict=True) if low != b"host"]
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    return [
        (name, value)
        for name, value in headers
        if (lower := name.lower()) not in HOP_BY_HOP
        and lower not in named
        and not lower.startswith(b"proxy-")
    ]


class Gateway:
    """The ASGI application; one per worker process, one upstream client."""

    def __init__(self, config: Config, client: str = "httpcore") -> None:
        self.config = config
        self.client_name = client
        self._client: Client | None = None
        self._limits: dict[int, Limits] = {}

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = make_client(self.client_name)
        return self._client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # What the first request would otherwise pay for (~0.3 s: the
                # client library's import, its pools and TLS contexts). A route
                # that cannot be served (its ca_file unreadable) stops the start,
                # as nginx refuses a bad config, rather than fail every request.
                for route in self.config.routes:
                    try:
                        self.client.prepare(self._route_limits(route))
                    except Exception as exc:
                        where = f" (ca_file {route.ca_file})" if route.ca_file else ""
                        reason = f"route {route.prefix}{where}: {type(exc).__name__}: {exc}"
                        await send({"type": "lifespan.startup.failed", "message": reason})
                        return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- one request ------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        path: str = scope["path"]
        if path == "/-/status":
            await self._status(send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        host = b""
        length: int | None = None
        chunked = False
        for name, value in headers:
            if name == b"host":
                host = value
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"transfer-encoding":
                chunked = True
        host_name = host.decode("latin-1").rsplit(":", 1)[0] if b"]" not in host else ""
        route = self.config.route(host_name, path)
        method: str = scope["method"]
        if route is None:
            await _answer(send, 404, b"no route\n")
            self._log(scope, "-", 404, 0, started)
            return
        if length is not None and (length < 0 or length > route.max_body):
            status = 413 if length > 0 else 400
            await _answer(send, status, b"request body too large\n" if status == 413 else b"")
            self._log(scope, "-", status, 0, started)
            return
        out = self._request_headers(scope, route, headers, host)
        target = scope.get("raw_path") or path.encode("utf-8")
        query: bytes = scope.get("query_string", b"")
        suffix = (target + b"?" + query if query else target).decode("latin-1")
        state = _State(asyncio.current_task())
        body: AsyncIterator[bytes] | bytes | None = None
        try:
            if chunked or (length is not None and length > SMALL_BODY):
                body = self._stream_body(receive, route, state)
            elif length is None and scope.get("http_version") not in ("1.0", "1.1"):
                # HTTP/2 needs no Content-Length for a body: the first message tells
                first = await receive()
                if first["type"] == "http.disconnect":
                    state.gone = True
                    raise ClientGone
                if first.get("body") or first.get("more_body"):
                    body = self._stream_body(receive, route, state, first)
                else:
                    state.watch(receive)
            else:
                if length:
                    body = await _read_body(receive, length)
                state.watch(receive)
            await self._forward(scope, send, route, method, suffix, out, body, state, started)
        except asyncio.CancelledError:
            if not state.gone:
                raise
            self._log(scope, state.upstream, 499, state.sent, started)
        except BodyTooLarge:
            if not state.started:
                await _answer(send, 413, b"request body too large\n")
            self._log(scope, state.upstream, 413, state.sent, started)
        except ClientGone:
            self._log(scope, state.upstream, 499, state.sent, started)
        finally:
            state.finish()

    async def _forward(
        self,
        scope: Scope,
        send: Send,
        route: Route,
        method: str,
        suffix: str,
        headers: Headers,
        body: AsyncIterator[bytes] | bytes | None,
        state: _State,
        started: float,
    ) -> None:
        limits = self._route_limits(route)
        now = time.monotonic()
        reply: Reply | None = None
        chosen: Upstream | None = None
        error: UpstreamError | None = None
        for upstream in route.pick(now):
            chosen = upstream
            state.upstream = upstream.url
            upstream.outstanding += 1
            try:
                url = upstream.base + suffix
                reply = await self.client.send(method, url, headers, body, limits)
            except UpstreamError as exc:
                upstream.outstanding -= 1
                error = exc
                if exc.kind == "connect":
                    upstream.failures += 1
                    upstream.down_until = time.monotonic() + DOWN_FOR
                    logger.warning("upstream %s down for %gs: %s", upstream.url, DOWN_FOR, exc)
                    if not isinstance(body, AsyncIterator):
                        continue  # nothing was sent: the next upstream may serve it
                break
            except BaseException:
                upstream.outstanding -= 1
                raise
            upstream.failures = 0
            break
        if reply is None:
            assert error is not None
            logger.warning("%s %s -> %s: %s", method, suffix, state.upstream, error)
            await self._fail(scope, send, state.upstream, error, started)
            return
        assert chosen is not None
        try:
            await self._relay(send, reply, method, state)
            self._log(scope, chosen.url, reply.status, state.sent, started)
        except UpstreamError as exc:
            if state.started:
                logger.warning(
                    "%s %s -> %s broke mid-response: %s", method, suffix, chosen.url, exc
                )
                self._log(scope, chosen.url, reply.status, state.sent, started)
            else:
                # A small body is read whole before the head goes out: the
                # client has been sent nothing yet and gets the gateway's answer.
                logger.warning(
                    "%s %s -> %s broke before the response: %s", method, suffix, chosen.url, exc
                )
                await self._fail(scope, send, chosen.url, exc, started)
        finally:
            chosen.outstanding -= 1
            await reply.aclose()

    async def _fail(
        self, scope: Scope, send: Send, upstream: str, error: UpstreamError, started: float
    ) -> None:
        """502, or 504 when the upstream timed out, as nginx answers them."""
        status = 504 if error.timed_out else 502
        reason = b"upstream timed out\n" if status == 504 else b"bad gateway\n"
        await _answer(send, status, reason)
        self._log(scope, upstream, status, len(reason), started)

    async def _relay(self, send: Send, reply: Reply, method: str, state: _State) -> None:
        """The response, downstream: whole if small, else chunk by chunk at the
        client's pace."""
        headers = _strip(reply.headers)
        small = False
        for name, value in headers:
            if name.lower() == b"content-length":
                small = value.isdigit() and int(value) <= SMALL_BODY
        if method == "HEAD":
            small = True
        if small:
            data = await reply.read()
            state.started = True
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            state.finished = True
            await send({"type": "http.response.body", "body": data})
            state.sent = len(data)
            return
        state.started = True
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        async for chunk in reply.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            state.sent += len(chunk)
        state.finished = True
        await send({"type": "http.response.body", "body": b""})

    def _route_limits(self, route: Route) -> Limits:
        limits = self._limits.get(id(route))
        if limits is None:
            limits = self._limits[id(route)] = Limits(
                route.connect_timeout, route.read_timeout, route.protocol, route.ca_file
            )
        return limits

    def _request_headers(
        self, scope: Scope, route: Route, headers: list[tuple[bytes, bytes]], host: bytes
    ) -> Headers:
        out = _strip(headers)
        forwarded_for = b""
        rest = []
        for name, value in out:
            if name == b"x-forwarded-for":  # several lines make one list (RFC 9110 5.3)
                forwarded_for = forwarded_for + b", " + value if forwarded_for else value
            elif name not in (b"x-forwarded-proto", b"x-forwarded-host"):
                rest.append((name, value))
        client = scope.get("client")
        peer = client[0].encode("latin-1") if client else b"unknown"
        rest.append((b"x-forwarded-for", forwarded_for + b", " + peer if forwarded_for else peer))
        rest.append((b"x-forwarded-proto", scope.get("scheme", "http").encode("latin-1")))
        if host:
            rest.append((b"x-forwarded-host", host))
            if route.preserve_host:
                rest.insert(0, (b"host", host))
        return rest

    async def _stream_body(
        self, receive: Receive, route: Route, state: _State, first: Message | None = None
    ) -> AsyncIterator[bytes]:
        """The request body as it arrives (from ``first``, if already received);
        over ``max_body`` it is cut off."""
        total = 0
        more = True
        while more:
            if first is not None:
                message, first = first, None
            else:
                message = await receive()
            if message["type"] == "http.disconnect":
                state.gone = True
                raise ClientGone
            chunk: bytes = message.get("body", b"")
            more = message.get("more_body", False)
            total += len(chunk)
            if total > route.max_body:
                raise BodyTooLarge
            if chunk:
                yield chunk
        state.watch(receive)

    async def _status(self, send: Send) -> None:
        now = time.monotonic()
        routes = [
            {
                "prefix": route.prefix,
                "host": route.host,
                "upstreams": [
                    {
                        "url": u.url,
                        "outstanding": u.outstanding,
                        "down_for": round(max(0.0, u.down_until - now), 3),
                        "failures": u.failures,
                    }
                    for u in route.upstreams
                ],
            }
            for route in self.config.routes
        ]
        body = {
            "pid": os.getpid(),
            "client": self.client_name,
            "routes": routes,
            "connections": await self.client.connections(),
        }
        data = json.dumps(body, indent=2).encode() + b"\n"
        await _answer(send, 200, data, b"application/json")

    def _log(self, scope: Scope, upstream: str, status: int, nbytes: int, started: float) -> None:
        if access_logger.isEnabledFor(logging.INFO):
            client = scope.get("client")
            ms = (time.perf_counter() - started) * 1000
            access(
                f"{client[0] if client else '-'} {scope['method']} {scope['path']} -> {upstream}"
                f" {status} {nbytes} {ms:.1f}ms"
            )


class _State:
    """One request's progress, shared with its disconnect watcher."""

    __slots__ = ("finished", "gone", "sent", "started", "task", "timer", "upstream", "watcher")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self.task = task
        self.upstream = "-"
        self.started = False
        self.finished = False
        self.gone = False
        self.sent = 0
        self.timer: asyncio.TimerHandle | None = None
        self.watcher: asyncio.Task[None] | None = None

    def watch(self, receive: Receive) -> None:
        """Once the request body is in, the next message can only be the
        client going away: then cancel the request (and its upstream call).

        The watcher starts WATCH_AFTER seconds in: a watcher task costs a
        quarter of a small request's time, and a request answered sooner has
        nothing left to cancel."""
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(WATCH_AFTER, self._start_watch, receive)

    def _start_watch(self, receive: Receive) -> None:
        self.timer = None
        if not self.finished:
            self.watcher = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not self.finished and self.task is not None:
                    self.gone = True
                    self.task.cancel()
                return

    def finish(self) -> None:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
        if self.watcher is not None:
            self.watcher.cancel()
            # Its traceback will hold this state: holding the task here too
            # would make a cycle, left to the garbage collector to find.
            self.watcher = None


async def _read_body(receive: Receive, length: int) -> bytes:
    parts = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        parts.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(parts)


async def _answer(send: Send, status: int, body: bytes, kind: bytes = b"text/plain") -> None:
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app() -> Gateway:
    """The factory uvicorn and hypercorn call in each worker: the config path,
    the client and the logging come from the environment the command line set."""
    from .config import load

    setup_logging()
    config = load(os.environ["GATEWAY_CONFIG"])
    app = Gateway(config, os.environ.get("GATEWAY_CLIENT", "httpcore"))
    # What exists now lives as long as the process: out of every collection.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    return app
