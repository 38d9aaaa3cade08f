# Runs on callers' event loops (any loop, any thread). Owns an AsyncReceiver
# per request bound to the caller's loop; never blocks that loop.
"""The async frontend: ``PoolManager``, ``request()`` and ``AsyncResponse``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from types import TracebackType

from .._config import UNSET, TimeoutTypes
from .._exceptions import EngineClosed, StreamConsumed
from .._models import HeaderTypes, build_request
from ..engine import runner
from ..engine.messages import (
    ConnectionInfo,
    Event,
    QueryPool,
    ResponseHead,
    SendBody,
    UploadAck,
)
from ..engine.runner import Engine
from ._bridge import (
    UPLOAD_WINDOW,
    AsyncReceiver,
    FrontendBase,
    ResponseBase,
    cancel_request,
    head_or_raise,
    upload_piece,
)


class AsyncResponse(ResponseBase):
    """A response for async callers; ``stream()`` is an async iterator."""

    __slots__ = ("_receiver",)
    _read = "aread()"

    def __init__(
        self,
        head: ResponseHead,
        owner: PoolManager,
        engine: Engine,
        request_id: int,
        receiver: AsyncReceiver,
        stream: bool,
    ) -> None:
        super().__init__(head, owner, engine, request_id, stream)
        self._receiver = receiver

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
            first = self._first_chunk()
            if first:
                yield first
            receiver = self._receiver
            while not self._ended:
                event = receiver.pop() if receiver.ready() else await receiver.get()
                data = self._chunk(event)
                if data:
                    yield data
                    self._credit(len(data))
            self._drained = True
        finally:
            if not self._ended:
                self._cancel()

    async def aread(self) -> bytes:
        """Read the rest of the body; returns and keeps it as ``body``."""
        if self._body is None and not self._came_whole():
            self._body = b"".join([part async for part in self.stream()])
        assert self._body is not None
        return self._body

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
        timeout: TimeoutTypes = UNSET,
    ) -> AsyncResponse:
        request, source = build_request(method, url, headers, body, is_async=True)
        loop = asyncio.get_running_loop()
        receiver = AsyncReceiver(loop)
        engine, request_id = self._start(request, stream, timeout, receiver.feed, loop)
        try:
            if source is not None:
                event = await _upload(engine, request_id, source, receiver)
            else:
                event = await receiver.get()
        except BaseException:
            cancel_request(engine, request_id)
            raise
        return AsyncResponse(head_or_raise(event), self, engine, request_id, receiver, stream)

    async def aconnections(self) -> list[ConnectionInfo]:
        """A snapshot from the engine, awaited without blocking this loop."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[list[ConnectionInfo], int]] = loop.create_future()

        def reply(result: tuple[list[ConnectionInfo], int]) -> None:
            loop.call_soon_threadsafe(_settle, answer, result)

        self._get_engine().submit(QueryPool(self._config, reply))
        try:
            infos, _ = await asyncio.wait_for(answer, 10)
        except asyncio.TimeoutError:
            raise EngineClosed("the engine did not answer within 10 s") from None
        return infos

    def __repr__(self) -> str:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return super().__repr__()
        # Asking the engine would block this loop.
        return f"<PoolManager{' [closed]' if self._closed else ''}>"

    async def aclose(self) -> None:
        self._close_pool()

    def close(self) -> None:
        self._close_pool()

    async def __aenter__(self) -> PoolManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._close_pool()


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
        data = upload_piece(piece)
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


def _settle(
    future: asyncio.Future[tuple[list[ConnectionInfo], int]],
    result: tuple[list[ConnectionInfo], int],
) -> None:
    if not future.done():
        future.set_result(result)


_default_manager: dict[int, PoolManager] = {}
_default_lock = threading.Lock()


def _default_pool() -> PoolManager:
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
    timeout: TimeoutTypes = UNSET,
) -> AsyncResponse:
    """One request through the process-wide default PoolManager and engine."""
    return await _default_pool().request(
        method, url, headers=headers, body=body, stream=stream, timeout=timeout
    )
