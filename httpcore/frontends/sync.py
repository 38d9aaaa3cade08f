# Runs on callers' threads. Owns a SimpleQueue per request as its reply
# channel; blocks only the calling thread, never the engine.
"""The sync frontend: ``Client`` and its ``Response``."""

from __future__ import annotations

import logging
import queue
from asyncio.events import _get_running_loop
from collections.abc import Iterable, Iterator
from types import TracebackType

from .._config import UNSET, TimeoutTypes
from .._exceptions import StreamConsumed
from .._models import HeaderTypes, build_request
from ..engine.messages import Event, ResponseHead, SendBody, UploadAck
from ..engine.runner import Engine, assert_not_engine_thread
from ._bridge import (
    UPLOAD_WINDOW,
    FrontendBase,
    ResponseBase,
    cancel_request,
    head_or_raise,
    upload_piece,
)

logger = logging.getLogger("httpcore")


class Response(ResponseBase):
    """A response; with ``stream=True`` the body arrives through :meth:`stream`."""

    __slots__ = ("_queue",)

    def __init__(
        self,
        head: ResponseHead,
        owner: Client,
        engine: Engine,
        request_id: int,
        replies: queue.SimpleQueue[Event],
        stream: bool,
    ) -> None:
        super().__init__(head, owner, engine, request_id, stream)
        self._queue = replies

    def stream(self) -> Iterator[bytes]:
        """The body in chunks, as they arrive; once only."""
        if self._body is not None:
            self._streamed = True
            return iter((self._body,) if self._body else ())
        if self._streamed:
            raise StreamConsumed("the response stream was already consumed or closed")
        assert_not_engine_thread()
        self._streamed = True
        return self._iter()

    def _iter(self) -> Iterator[bytes]:
        try:
            first = self._first_chunk()
            if first:
                yield first
            while not self._ended:
                try:
                    event = self._queue.get()
                except BaseException:
                    self.close()
                    raise
                data = self._chunk(event)
                if data:
                    yield data
                    self._credit(len(data))
            self._drained = True
        finally:
            if not self._ended:
                self.close()

    def read(self) -> bytes:
        """Read the rest of the body; returns and keeps it as ``body``."""
        if self._body is None and not self._came_whole():
            self._body = b"".join(self.stream())
        assert self._body is not None
        return self._body

    def close(self) -> None:
        """Release the stream; an unfinished one is cancelled in the engine."""
        self._cancel()

    def __enter__(self) -> Response:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Client(FrontendBase):
    """A blocking client, safe to share between any number of threads."""

    _kind = "Client"

    def request(
        self,
        method: str | bytes,
        url: str | bytes,
        headers: HeaderTypes = None,
        body: bytes | Iterable[bytes] | None = None,
        stream: bool = False,
        timeout: TimeoutTypes = UNSET,
    ) -> Response:
        assert_not_engine_thread()
        if _get_running_loop() is not None:
            _warn_blocking_loop()
        request, source = build_request(method, url, headers, body, is_async=False)
        replies: queue.SimpleQueue[Event] = queue.SimpleQueue()
        engine, request_id = self._start(request, stream, timeout, replies.put)
        try:
            if source is not None:
                event = _upload(engine, request_id, source, replies)  # type: ignore[arg-type]
            else:
                event = replies.get()
        except BaseException:
            cancel_request(engine, request_id)
            raise
        return Response(head_or_raise(event), self, engine, request_id, replies, stream)

    def close(self) -> None:
        """Close this client's connections; later requests raise EngineClosed."""
        self._close_pool()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_warned = False


def _warn_blocking_loop() -> None:
    """Once per process: a sync call here works but stalls every other task
    of the caller's loop until the response arrives."""
    global _warned
    if not _warned:
        _warned = True
        logger.warning(
            "httpcore.Client.request() called on a thread whose event loop is running:"
            " it blocks that loop until the response arrives; use httpcore.PoolManager"
            " (await pool.request(...)) in async code"
        )


def _upload(
    engine: Engine,
    request_id: int,
    source: Iterable[bytes],
    replies: queue.SimpleQueue[Event],
) -> Event:
    """Feed the body from this thread, at most UPLOAD_WINDOW ahead of the
    engine; stop early if the response (or a failure) arrives first."""
    in_flight = 0
    for piece in source:
        data = upload_piece(piece)
        if not data:
            continue
        while in_flight >= UPLOAD_WINDOW:
            event = replies.get()
            if type(event) is not UploadAck:
                return event
            assert isinstance(event, UploadAck)
            in_flight -= event.nbytes
        engine.submit(SendBody(request_id, data, False))
        in_flight += len(data)
    engine.submit(SendBody(request_id, b"", True))
    while True:
        event = replies.get()
        if type(event) is not UploadAck:
            return event
