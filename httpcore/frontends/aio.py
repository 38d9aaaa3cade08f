# Runs on callers' event loops (any loop, any thread). Owns an AsyncReceiver
# per request bound to the caller's loop; never blocks that loop.
"""The async frontend: ``PoolManager``, ``request()`` and ``AsyncResponse``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from types import TracebackType

from .._config import TimeoutTypes
from .._exceptions import (
    EngineClosed,
    LocalProtocolError,
    ResponseNotRead,
    StreamConsumed,
    reraise,
)
from .._models import HeaderTypes, build_request
from ..engine.messages import (
    BodyChunk,
    CancelRequest,
    ConnectionInfo,
    Event,
    Failed,
    GrantCredit,
    QueryPool,
    ResponseHead,
    SendBody,
    StartRequest,
    UploadAck,
)
from ..engine.runner import Engine, on_engine_thread
from ._bridge import CREDIT_BATCH, UPLOAD_WINDOW, AsyncReceiver, FrontendBase, next_request_id


def _cancel(engine: Engine, request_id: int) -> None:
    try:
        engine.submit(CancelRequest(request_id))
    except EngineClosed:
        pass


class AsyncResponse:
    """A response for async callers; ``stream()`` is an async iterator."""

    __slots__ = (
        "_body",
        "_consumed",
        "_ended",
        "_engine",
        "_first",
        "_receiver",
        "_request_id",
        "_streamed",
        "headers",
        "http_version",
        "reason",
        "status_code",
    )

    def __init__(
        self,
        head: ResponseHead,
        engine: Engine,
        request_id: int,
        receiver: AsyncReceiver,
        stream: bool,
    ) -> None:
        self.status_code: int = head.status_code
        self.reason: bytes = head.reason
        self.headers: list[tuple[bytes, bytes]] = head.headers
        self.http_version: str = head.http_version
        self._engine = engine
        self._request_id = request_id
        self._receiver = receiver
        self._ended = head.complete
        self._first = head.body
        self._body: bytes | None = None if stream else head.body
        self._streamed = False
        self._consumed = 0

    def __repr__(self) -> str:
        return f"<AsyncResponse [{self.status_code}]>"

    @property
    def body(self) -> bytes:
        if self._body is None:
            raise ResponseNotRead("the body of a stream=True response is available after aread()")
        return self._body

    def stream(self) -> AsyncIterator[bytes]:
        """The body in chunks, as they arrive; once only."""
        if self._body is None and self._streamed:
            raise StreamConsumed("the response stream was already consumed or closed")
        self._streamed = True
        return self._iter()

    async def _iter(self) -> AsyncIterator[bytes]:
        if self._body is not None:
            if self._body:
                yield self._body
            return
        try:
            first, self._first = self._first, b""
            if first:
                yield first
            receiver = self._receiver
            while not self._ended:
                event = receiver.pop() if receiver.ready() else await receiver.get()
                if type(event) is BodyChunk:
                    assert isinstance(event, BodyChunk)
                    if event.end:
                        self._ended = True
                    if event.data:
                        yield event.data
                        self._credit(len(event.data))
                elif type(event) is Failed:
                    assert isinstance(event, Failed)
                    self._ended = True
                    raise reraise(event.error) from event.error
        finally:
            if not self._ended:
                self._cancel()

    def _credit(self, nbytes: int) -> None:
        self._consumed += nbytes
        if self._consumed >= CREDIT_BATCH and not self._ended:
            consumed, self._consumed = self._consumed, 0
            try:
                self._engine.submit(GrantCredit(self._request_id, consumed))
            except EngineClosed:
                pass

    async def aread(self) -> bytes:
        """Read the rest of the body; returns and keeps it as ``body``."""
        if self._body is None:
            self._body = b"".join([part async for part in self.stream()])
        return self._body

    def _cancel(self) -> None:
        if not self._ended:
            self._ended = True
            self._streamed = True
            _cancel(self._engine, self._request_id)

    async def aclose(self) -> None:
        """Release the stream; an unfinished one is cancelled in the engine."""
        self._cancel()

    async def __aenter__(self) -> AsyncResponse:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cancel()

    def __del__(self) -> None:
        try:
            self._cancel()
        except Exception:
            pass


class PoolManager(FrontendBase):
    """An async client usable from any event loop in any thread."""

    _kind = "PoolManager"

    async def request(
        self,
        method: str | bytes,
        url: str | bytes,
        headers: HeaderTypes = None,
        body: bytes | Iterable[bytes] | AsyncIterable[bytes] | None = None,
        stream: bool = False,
        timeout: TimeoutTypes = None,
    ) -> AsyncResponse:
        request, source = build_request(method, url, headers, body, is_async=True)
        engine = self._get_engine()
        request_id = next_request_id()
        loop = asyncio.get_running_loop()
        receiver = AsyncReceiver(loop)
        engine.submit(
            StartRequest(
                request_id,
                self._config,
                request,
                self._timeout_for(timeout),
                stream,
                receiver.feed,
                loop,
            )
        )
        try:
            if source is not None:
                event = await _upload(engine, request_id, source, receiver)
            else:
                event = await receiver.get()
        except BaseException:
            _cancel(engine, request_id)
            raise
        if type(event) is ResponseHead:
            assert isinstance(event, ResponseHead)
            return AsyncResponse(event, engine, request_id, receiver, stream)
        assert isinstance(event, Failed)
        raise reraise(event.error) from event.error

    def connections(self) -> list[ConnectionInfo]:
        """A snapshot from the engine (a brief wait for its answer)."""
        return self._query()[0]

    def _query(self) -> tuple[list[ConnectionInfo], int, int]:
        import queue

        if on_engine_thread():
            raise RuntimeError("httpcore: connections() cannot be called from the engine thread")
        engine = self._get_engine()
        answer: queue.SimpleQueue[tuple[list[ConnectionInfo], int, int]] = queue.SimpleQueue()
        engine.submit(QueryPool(self._config, answer.put))
        try:
            return answer.get(timeout=10)
        except queue.Empty:
            raise EngineClosed("the engine did not answer within 10 s") from None

    async def aclose(self) -> None:
        self._close_pool()

    def close(self) -> None:
        self._close_pool()

    async def __aenter__(self) -> PoolManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._close_pool()

    def __repr__(self) -> str:
        name = type(self).__name__
        if self._closed:
            return f"<{name} [closed]>"
        if on_engine_thread():
            return f"<{name}>"
        try:
            infos, active, queued = self._query()
        except Exception:
            return f"<{name}>"
        idle = sum(1 for info in infos if info.state == "idle")
        return f"<{name} [active={active} queued={queued} idle={idle}]>"


async def _upload(
    engine: Engine,
    request_id: int,
    source: Iterable[bytes] | AsyncIterable[bytes],
    receiver: AsyncReceiver,
) -> Event:
    """Feed the body from the caller's loop, at most UPLOAD_WINDOW ahead."""
    in_flight = 0

    async def pieces() -> AsyncIterator[object]:
        if isinstance(source, AsyncIterable):
            async for item in source:
                yield item
        else:
            for item in source:
                yield item

    async for piece in pieces():
        if not isinstance(piece, (bytes, bytearray, memoryview)):
            raise LocalProtocolError(
                f"a streaming body must yield bytes, not {type(piece).__name__}"
            )
        data = bytes(piece)
        if not data:
            continue
        while in_flight >= UPLOAD_WINDOW:
            event = await receiver.get()
            if type(event) is UploadAck:
                assert isinstance(event, UploadAck)
                in_flight -= event.nbytes
            else:
                return event
        engine.submit(SendBody(request_id, data, False))
        in_flight += len(data)
    engine.submit(SendBody(request_id, b"", True))
    while True:
        event = await receiver.get()
        if type(event) is not UploadAck:
            return event


_default_manager: dict[int, PoolManager] = {}
_default_lock = threading.Lock()


def _default_pool() -> PoolManager:
    from ..engine import runner

    key = runner._fork_generation
    manager = _default_manager.get(key)
    if manager is None:
        with _default_lock:
            manager = _default_manager.get(key)
            if manager is None:
                _default_manager.clear()
                manager = _default_manager[key] = PoolManager()
    return manager


async def request(
    method: str | bytes,
    url: str | bytes,
    headers: HeaderTypes = None,
    body: bytes | Iterable[bytes] | AsyncIterable[bytes] | None = None,
    stream: bool = False,
    timeout: TimeoutTypes = None,
) -> AsyncResponse:
    """One request through the process-wide default PoolManager and engine."""
    return await _default_pool().request(
        method, url, headers=headers, body=body, stream=stream, timeout=timeout
    )
