# Runs on callers' threads. Owns a SimpleQueue per request as its reply
# channel; blocks only the calling thread, never the engine.
"""The sync frontend: ``Client`` and its ``Response``."""

from __future__ import annotations

import queue
from collections.abc import Iterable, Iterator
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
from ..engine.runner import Engine, assert_not_engine_thread, on_engine_thread
from ._bridge import CREDIT_BATCH, UPLOAD_WINDOW, FrontendBase, next_request_id


def _cancel(engine: Engine, request_id: int) -> None:
    try:
        engine.submit(CancelRequest(request_id))
    except EngineClosed:
        pass


class Response:
    """A response; with ``stream=True`` the body arrives through :meth:`stream`."""

    __slots__ = (
        "_body",
        "_consumed",
        "_ended",
        "_engine",
        "_first",
        "_queue",
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
        replies: queue.SimpleQueue[Event],
        stream: bool,
    ) -> None:
        self.status_code: int = head.status_code
        self.reason: bytes = head.reason
        self.headers: list[tuple[bytes, bytes]] = head.headers
        self.http_version: str = head.http_version
        self._engine = engine
        self._request_id = request_id
        self._queue = replies
        self._ended = head.complete
        self._first = head.body
        self._body: bytes | None = None if stream else head.body
        self._streamed = False
        self._consumed = 0

    def __repr__(self) -> str:
        return f"<Response [{self.status_code}]>"

    @property
    def body(self) -> bytes:
        if self._body is None:
            raise ResponseNotRead("the body of a stream=True response is available after read()")
        return self._body

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
            first, self._first = self._first, b""
            if first:
                yield first
            while not self._ended:
                try:
                    event = self._queue.get()
                except BaseException:
                    self.close()
                    raise
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
                self.close()

    def _credit(self, nbytes: int) -> None:
        self._consumed += nbytes
        if self._consumed >= CREDIT_BATCH and not self._ended:
            consumed, self._consumed = self._consumed, 0
            try:
                self._engine.submit(GrantCredit(self._request_id, consumed))
            except EngineClosed:
                pass

    def read(self) -> bytes:
        """Read the rest of the body; returns and keeps it as ``body``."""
        if self._body is None:
            self._body = b"".join(self.stream())
        return self._body

    def close(self) -> None:
        """Release the stream; an unfinished one is cancelled in the engine."""
        if not self._ended:
            self._ended = True
            self._streamed = True
            _cancel(self._engine, self._request_id)

    def __enter__(self) -> Response:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._ended:
                self.close()
        except Exception:
            pass


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
        timeout: TimeoutTypes = None,
    ) -> Response:
        assert_not_engine_thread()
        request, source = build_request(method, url, headers, body, is_async=False)
        engine = self._get_engine()
        request_id = next_request_id()
        replies: queue.SimpleQueue[Event] = queue.SimpleQueue()
        engine.submit(
            StartRequest(
                request_id, self._config, request, self._timeout_for(timeout), stream, replies.put
            )
        )
        try:
            if source is not None:
                event = _upload(engine, request_id, source, replies)  # type: ignore[arg-type]
            else:
                event = replies.get()
        except BaseException:
            _cancel(engine, request_id)
            raise
        if type(event) is ResponseHead:
            assert isinstance(event, ResponseHead)
            return Response(event, engine, request_id, replies, stream)
        assert isinstance(event, Failed)
        raise reraise(event.error) from event.error

    def connections(self) -> list[ConnectionInfo]:
        return self._query()[0]

    def _query(self) -> tuple[list[ConnectionInfo], int, int]:
        assert_not_engine_thread()
        engine = self._get_engine()
        answer: queue.SimpleQueue[tuple[list[ConnectionInfo], int, int]] = queue.SimpleQueue()
        engine.submit(QueryPool(self._config, answer.put))
        try:
            return answer.get(timeout=10)
        except queue.Empty:
            raise EngineClosed("the engine did not answer within 10 s") from None

    def close(self) -> None:
        """Close this client's connections; later requests raise EngineClosed."""
        self._close_pool()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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


def _upload(
    engine: Engine,
    request_id: int,
    source: Iterable[bytes],
    replies: queue.SimpleQueue[Event],
) -> Event:
    """Feed the body from this thread, at most UPLOAD_WINDOW ahead of the
    engine; stop early if the response (or a failure) arrives first."""
    in_flight = 0
    early: Event | None = None
    for piece in source:
        if not isinstance(piece, (bytes, bytearray, memoryview)):
            raise LocalProtocolError(
                f"a streaming body must yield bytes, not {type(piece).__name__}"
            )
        data = bytes(piece)
        if not data:
            continue
        while in_flight >= UPLOAD_WINDOW:
            event = replies.get()
            if type(event) is UploadAck:
                assert isinstance(event, UploadAck)
                in_flight -= event.nbytes
            else:
                early = event
                break
        if early is not None:
            return early
        engine.submit(SendBody(request_id, data, False))
        in_flight += len(data)
    engine.submit(SendBody(request_id, b"", True))
    while True:
        event = replies.get()
        if type(event) is not UploadAck:
            return event
