# Runs on callers' threads and loops. Owns reply channels and credit
# counters; never a socket, never pool state: only messages to the engine.
"""What both frontends share: configuration, ids, reply channels, credit."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import os
import queue
import ssl
import weakref
from collections import deque
from collections.abc import Iterable

from .._config import (
    DEFAULT_TIMEOUT,
    UNSET,
    Limits,
    Proxy,
    Timeout,
    TimeoutTypes,
    default_ssl_context,
    to_timeout,
)
from .._exceptions import (
    EngineClosed,
    LocalProtocolError,
    ProxyError,
    ResponseNotRead,
    reraise,
    type_error,
)
from .._models import ProxySpec, Request, parse_proxy
from ..engine import runner
from ..engine.messages import (
    BodyChunk,
    CancelRequest,
    ClosePool,
    ConnectionInfo,
    Event,
    Failed,
    GrantCredit,
    PoolConfig,
    QueryPool,
    Reply,
    ResponseHead,
    StartRequest,
)
from ..engine.runner import Engine, assert_not_engine_thread, default_engine, on_engine_thread

logger = logging.getLogger("httpcore")

_request_ids = itertools.count(1)
next_request_id = _request_ids.__next__

CREDIT_BATCH = 512 * 1024
"""Consumed bytes returned to the engine in one GrantCredit message."""

UPLOAD_WINDOW = 512 * 1024
"""Upload bytes a caller may have in flight before waiting for acks."""

_default_contexts: dict[tuple[bool, bool], ssl.SSLContext] = {}


def _alpn(http1: bool, http2: bool) -> list[str]:
    return (["h2"] if http2 else []) + (["http/1.1"] if http1 else [])


def make_config(
    ssl_context: ssl.SSLContext | bool | None,
    limits: Limits | None,
    http1: bool,
    http2: bool,
    proxy: str | bytes | Proxy | None,
    retries: int,
    uds: str | os.PathLike[str] | None = None,
    local_address: str | None = None,
    socket_options: Iterable[tuple[int, int, int | bytes]] | None = None,
) -> PoolConfig:
    """Validate frontend options once, at construction."""
    if not (http1 or http2):
        raise ValueError("at least one of http1 and http2 must be enabled")
    if limits is not None and not isinstance(limits, Limits):
        raise TypeError(f"limits must be httpcore.Limits, not {type(limits).__name__}")
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise TypeError(f"retries must be an int, not {type(retries).__name__}")
    if retries < 0:
        raise ValueError(f"retries={retries}: must be >= 0")
    return PoolConfig(
        ssl_context=_ssl_context(ssl_context, http1, http2),
        limits=limits or Limits(),
        http1=http1,
        http2=http2,
        proxy=_proxy_spec(proxy),
        retries=retries,
        uds=_uds(uds),
        local_address=_local_address(local_address),
        socket_options=_socket_options(socket_options),
    )


def _ssl_context(value: ssl.SSLContext | bool | None, http1: bool, http2: bool) -> ssl.SSLContext:
    if value is None or value is True:
        key = (http1, http2)
        ctx = _default_contexts.get(key)
        if ctx is None:
            ctx = default_ssl_context()
            ctx.set_alpn_protocols(_alpn(http1, http2))
            ctx = _default_contexts.setdefault(key, ctx)
        return ctx
    if value is False:
        logger.warning(
            "ssl=False: certificates are not verified; anyone on the path can read and"
            " change this client's HTTPS traffic"
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA store: nothing is verified
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(_alpn(http1, http2))
        return ctx
    if isinstance(value, ssl.SSLContext):
        return value  # the engine sets ALPN per connection (ALPNContext)
    raise TypeError(f"ssl must be an ssl.SSLContext, False or None, not {type(value).__name__}")


def _uds(value: str | os.PathLike[str] | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"uds must be a path, not {type(value).__name__}")
    path = os.fspath(value)
    if not path or "\0" in path:
        raise ValueError(f"uds={path!r} is not a Unix socket path")
    return path


def _local_address(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"local_address must be an IP address string, not {type(value).__name__}")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"local_address={value!r} is not an IP address") from None


def _socket_options(
    value: Iterable[tuple[int, int, int | bytes]] | None,
) -> tuple[tuple[int, int, int | bytes], ...]:
    if value is None:
        return ()
    out = []
    for item in value:
        if (
            not isinstance(item, tuple)
            or len(item) != 3
            or not all(isinstance(part, int) for part in item[:2])
            or not isinstance(item[2], (int, bytes))
        ):
            raise TypeError(f"socket option {item!r} is not a (level, option, value) tuple")
        out.append(item)
    return tuple(out)


def _proxy_spec(proxy: str | bytes | Proxy | None) -> ProxySpec | None:
    if proxy is None:
        return None
    if isinstance(proxy, (str, bytes)):
        proxy = Proxy(proxy)
    if not isinstance(proxy, Proxy):
        raise type_error(
            ProxyError, f"proxy must be a URL or httpcore.Proxy, not {type(proxy).__name__}"
        )
    url = proxy.url.decode("ascii", "replace") if isinstance(proxy.url, bytes) else proxy.url
    tls = default_ssl_context() if url.lower().startswith("https://") else None
    if tls is not None:
        tls.set_alpn_protocols(["http/1.1"])
    return parse_proxy(proxy.url, proxy.auth, proxy.headers, tls)


class FrontendBase:
    """Options and the engine reference shared by Client and PoolManager."""

    _kind = "Client"

    def __init__(
        self,
        ssl: ssl.SSLContext | bool | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        limits: Limits | None = None,
        http1: bool = True,
        http2: bool = True,
        proxy: str | bytes | Proxy | None = None,
        retries: int = 0,
        uds: str | os.PathLike[str] | None = None,
        local_address: str | None = None,
        socket_options: Iterable[tuple[int, int, int | bytes]] | None = None,
        engine: Engine | None = None,
    ) -> None:
        if engine is not None and not isinstance(engine, Engine):
            raise TypeError(f"engine must be an httpcore.Engine, not {type(engine).__name__}")
        self._config = make_config(
            ssl, limits, http1, http2, proxy, retries, uds, local_address, socket_options
        )
        self._timeout: Timeout = to_timeout(timeout)
        self._engine = engine
        self._closed = False
        # Dropped without close(): its pool in the engine is closed too.
        self._finalizer = weakref.finalize(self, _release_pool, engine, self._config)
        self._finalizer.atexit = False

    def _get_engine(self) -> Engine:
        if self._closed:
            raise EngineClosed(f"{self._kind} is closed")
        engine = self._engine
        return engine if engine is not None else default_engine()

    def _close_pool(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        engine = self._engine if self._engine is not None else runner._default
        if engine is not None and engine.alive:
            try:
                engine.submit(ClosePool(self._config))
            except EngineClosed:
                pass

    def _start(
        self,
        request: Request,
        stream: bool,
        timeout: TimeoutTypes,
        reply: Reply,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> tuple[Engine, int]:
        """Hand the engine a validated request; its events go to ``reply``."""
        engine = self._get_engine()
        request_id = next_request_id()
        timeout_ = self._timeout if timeout is UNSET else to_timeout(timeout)
        engine.submit(
            StartRequest(request_id, self._config, request, timeout_, stream, reply, loop)
        )
        return engine, request_id

    def connections(self) -> list[ConnectionInfo]:
        """A snapshot from the engine (a brief wait for its answer)."""
        return self._query()[0]

    def _query(self) -> tuple[list[ConnectionInfo], int]:
        assert_not_engine_thread()
        engine = self._get_engine()
        answer: queue.SimpleQueue[tuple[list[ConnectionInfo], int]] = queue.SimpleQueue()
        engine.submit(QueryPool(self._config, answer.put))
        try:
            return answer.get(timeout=10)
        except queue.Empty:
            raise EngineClosed("the engine did not answer within 10 s") from None

    def __repr__(self) -> str:
        name = type(self).__name__
        if self._closed:
            return f"<{name} [closed]>"
        if on_engine_thread():
            return f"<{name}>"
        try:
            infos, queued = self._query()
        except Exception:
            return f"<{name}>"
        idle = sum(1 for info in infos if info.state == "idle")
        return f"<{name} [active={len(infos) - idle} queued={queued} idle={idle}]>"


def _release_pool(engine: Engine | None, config: PoolConfig) -> None:
    """A frontend was garbage-collected: close its pool (no lock taken: the
    collector may run this anywhere, the engine thread included)."""
    engine = engine if engine is not None else runner._default
    if engine is not None:
        engine.post(ClosePool(config))


def head_or_raise(event: Event) -> ResponseHead:
    """The first event a request gets: its head, or the error it failed with."""
    if type(event) is ResponseHead:
        assert isinstance(event, ResponseHead)
        return event
    assert isinstance(event, Failed)
    raise reraise(event.error)


class AsyncReceiver:
    """Events for one request, delivered onto the caller's own loop."""

    __slots__ = ("_events", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._events: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def feed(self, event: Event) -> None:
        """On the caller's loop (the engine batches these per loop)."""
        self._events.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def ready(self) -> bool:
        return bool(self._events)

    def pop(self) -> Event:
        return self._events.popleft()

    async def get(self) -> Event:
        while not self._events:
            waiter = self._loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        return self._events.popleft()


def cancel_request(engine: Engine, request_id: int) -> None:
    """Tell the engine the caller left; a closed engine has nothing to cancel."""
    try:
        engine.submit(CancelRequest(request_id))
    except EngineClosed:
        pass


def upload_piece(piece: object) -> bytes:
    """One piece of a streaming body, checked on the caller's side."""
    if not isinstance(piece, (bytes, bytearray, memoryview)):
        raise LocalProtocolError(f"a streaming body must yield bytes, not {type(piece).__name__}")
    return bytes(piece)


class ResponseBase:
    """The head, and the body bookkeeping both response classes share."""

    __slots__ = (
        "_body",
        "_consumed",
        "_drained",
        "_ended",
        "_engine",
        "_first",
        "_owner",
        "_request_id",
        "_streamed",
        "_trailers",
        "headers",
        "http_version",
        "reason",
        "status_code",
    )
    _read = "read()"

    def __init__(
        self,
        head: ResponseHead,
        owner: FrontendBase,
        engine: Engine,
        request_id: int,
        stream: bool,
    ) -> None:
        self._owner = owner
        """Keeps the Client/PoolManager (and so its pool) alive while this
        response may still be read."""
        self.status_code: int = head.status_code
        self.reason: bytes = head.reason
        self.headers: list[tuple[bytes, bytes]] = head.headers
        self.http_version: str = head.http_version
        self._engine = engine
        self._request_id = request_id
        self._ended = head.complete
        self._trailers: list[tuple[bytes, bytes]] | None = (
            (head.trailers or []) if head.complete else None
        )
        self._first = head.body
        self._body: bytes | None = None if stream else head.body
        self._drained = not stream
        """The caller has had the whole body: trailers are theirs now."""
        self._streamed = False
        self._consumed = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} [{self.status_code}]>"

    @property
    def body(self) -> bytes:
        if self._body is None:
            raise ResponseNotRead(
                f"the body of a stream=True response is available after {self._read}"
            )
        return self._body

    @property
    def trailers(self) -> list[tuple[bytes, bytes]]:
        """Trailer fields (HTTP/1.1 chunked trailers, HTTP/2 trailing
        HEADERS), once the whole body has arrived; ``[]`` if none."""
        if self._trailers is None or not self._drained:
            raise ResponseNotRead(f"the trailers of a response are available after {self._read}")
        return self._trailers

    def _chunk(self, event: Event) -> bytes:
        """The body bytes an event carries; raises the error a Failed carries."""
        if type(event) is BodyChunk:
            assert isinstance(event, BodyChunk)
            if event.end:
                self._ended = True
                self._trailers = event.trailers or []
            return event.data
        if type(event) is Failed:
            assert isinstance(event, Failed)
            self._ended = True
            raise reraise(event.error)
        return b""

    def _credit(self, nbytes: int) -> None:
        """The caller consumed ``nbytes``: hand credit back in batches."""
        self._consumed += nbytes
        if self._consumed >= CREDIT_BATCH and not self._ended:
            consumed, self._consumed = self._consumed, 0
            try:
                self._engine.submit(GrantCredit(self._request_id, consumed))
            except EngineClosed:
                pass

    def _came_whole(self) -> bool:
        """The whole body came with the head and nobody has streamed it: keep
        it as ``body`` (a small response read without an iterator)."""
        if self._ended and not self._streamed:
            self._streamed = self._drained = True
            self._body = self._first_chunk()
            return True
        return False

    def _first_chunk(self) -> bytes:
        """The body bytes that came with the head, credited like any chunk."""
        first, self._first = self._first, b""
        if first:
            self._credit(len(first))
        return first

    def _cancel(self) -> None:
        """Release the stream; an unfinished one is cancelled in the engine."""
        if not self._ended:
            self._ended = True
            self._streamed = True
            cancel_request(self._engine, self._request_id)

    def __del__(self) -> None:
        # No lock here: the garbage collector may run this on the engine
        # thread while it holds the inbox lock.
        if not self._ended:
            self._ended = True
            self._engine.post(CancelRequest(self._request_id))
