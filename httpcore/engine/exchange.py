# Runs on the engine thread only. Owns one request's engine-side state: its
# reply channel, its download credit and the upload pieces not yet written.
"""One request/response exchange as the engine sees it."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

from .._config import Timeout
from .._models import Request
from .interfaces import STREAM_WINDOW
from .messages import BodyChunk, Event, Failed, Reply, ResponseHead, SendBody, StartRequest
from .outbox import Outbox

Head = tuple[int, bytes, list[tuple[bytes, bytes]], str]
"""status, reason, headers, http_version: a response head as a driver keeps it."""


def body_event(
    head: Head,
    head_sent: bool,
    parts: list[bytes],
    end: bool,
    trailers: list[tuple[bytes, bytes]] | None = None,
) -> ResponseHead | BodyChunk | None:
    """What to send a caller for the body pieces in ``parts`` (emptied): the
    head goes with the first piece, so a small response is one event; the
    trailers, if any, with the last."""
    data = b"".join(parts) if len(parts) != 1 else bytes(parts[0])
    parts.clear()
    if not head_sent:
        return ResponseHead(*head, data, end, trailers)
    if data or end:
        return BodyChunk(data, end, trailers)
    return None


class Handler(Protocol):
    """Who holds an exchange now: its pool while it waits or its connection
    is being opened, then the connection it runs on."""

    def on_upload(self, ex: Exchange) -> None: ...
    def on_credit(self, ex: Exchange, consumed: int) -> None: ...
    def on_abandon(self, ex: Exchange) -> None: ...


class Exchange:
    """Request state plus the one way back to its caller."""

    __slots__ = (
        "_caller_loop",
        "_on_done",
        "_outbox",
        "born",
        "credit",
        "done",
        "handler",
        "id",
        "refusals",
        "reply",
        "request",
        "retries",
        "stale_retried",
        "stream",
        "timeout",
        "upload",
    )

    def __init__(
        self,
        msg: StartRequest,
        on_done: Callable[[Exchange], None],
        outbox: Outbox,
        born: float,
    ) -> None:
        self.id = msg.request_id
        self.request: Request = msg.request
        self.timeout: Timeout = msg.timeout
        self.stream = msg.stream
        self.reply: Reply = msg.reply
        self._caller_loop = msg.loop
        self._outbox = outbox
        self._on_done = on_done
        self.handler: Handler | None = None
        """Whoever holds the exchange now (see :class:`Handler`)."""
        self.credit = STREAM_WINDOW
        self.upload: deque[SendBody] = deque()
        self.done = False
        """The caller was answered for the last time, or left."""
        self.born = born
        """Engine time the request arrived: bounds its retries."""
        self.retries = 0
        """Times the server refused it unprocessed (Retry.SAFE) so far."""
        self.refusals = 0
        """Of those, times on a connection that had served nothing (Retry.REFUSED)."""
        self.stale_retried = False
        """Already retried once after a stale keep-alive (Retry.IF_IDEMPOTENT)."""

    # -- toward the caller (never blocks) ------------------------------------

    def send(self, event: Event) -> bool:
        """Deliver ``event``; False when the caller is gone (its loop closed)."""
        if self.done:
            return False
        loop = self._caller_loop
        if loop is not None:
            self._outbox.post(loop, self, event)
            return True
        try:
            self.reply(event)
        except Exception:
            self.abandon()
            return False
        return True

    def finish(self, event: ResponseHead | BodyChunk | Failed) -> None:
        """Send the last event of this exchange and forget it."""
        if not self.done:
            self.send(event)
            self._end()

    def fail(self, error: BaseException) -> None:
        self.finish(Failed(error))

    def _end(self) -> None:
        if not self.done:
            self.done = True
            self._on_done(self)

    def abandon(self) -> None:
        """The caller left: nothing more is sent; whoever holds the exchange
        ends it there (and gives back what it held)."""
        self._end()
        handler = self.handler
        if handler is not None:
            handler.on_abandon(self)

    # -- from the caller: credit and upload pieces ----------------------------

    def grant(self, nbytes: int) -> None:
        self.credit += nbytes
        if self.handler is not None:
            self.handler.on_credit(self, nbytes)

    def push_upload(self, piece: SendBody) -> None:
        self.upload.append(piece)
        if self.handler is not None:
            self.handler.on_upload(self)
