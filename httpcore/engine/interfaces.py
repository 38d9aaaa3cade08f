# Runs on the engine thread only. Owns nothing: the contracts between the
# pool and the protocol drivers, and the retry policy they share.
"""What a pool may ask of a connection, and what a connection tells its pool.

The pool never looks inside a connection: HTTP/1.1 and HTTP/2 answer the
same few questions (how many more exchanges now, idle since when, expired,
closed), so one set of rules shares, reuses and evicts both.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .._models import Origin
    from .exchange import Exchange
    from .messages import BodyChunk, ResponseHead
    from .transport import Transport

    FinalEvent = ResponseHead | BodyChunk
    """The last event of an exchange that got its whole response."""


MAX_HEAD_SIZE = 64 * 1024
"""A response head larger than this is refused, not buffered."""

MAX_HEADER_FIELDS = 256
"""A response with more header fields than this is refused."""

STREAM_WINDOW = 4 * 1024 * 1024
"""Bytes of one streamed body the engine may hold ahead of its caller: the
caller's credit on HTTP/1.1, the stream's receive window on HTTP/2."""

CONNECTION_WINDOW = 32 * 1024 * 1024
"""HTTP/2 connection-level receive window: room for several fast streams.
What the kernel's socket buffers hold counts against it (on loopback they
grow to several MiB), so at 16 MiB twenty 1 MiB downloads kept nginx
waiting for window updates, at half the rate and half again its CPU per
byte."""

CONNECTION_BUFFER = 32 * 1024 * 1024
"""Unread streamed bytes one HTTP/2 connection may hold for its callers.
Below it the connection window is re-opened as data arrives, so a slow
reader holds back only its own stream; above it, only as callers read. A
connection so buffers at most CONNECTION_BUFFER + CONNECTION_WINDOW."""


class Retry(enum.Enum):
    """May an exchange that failed on a connection start again on another?"""

    NO = "no"
    """The server may have processed the request."""
    IF_IDEMPOTENT = "if_idempotent"
    """A reused keep-alive connection closed before any response byte: once,
    for idempotent methods, on a fresh connection."""
    SAFE = "safe"
    """The server certainly did not process it (GOAWAY above its
    last-stream-id, REFUSED_STREAM): again and again while the request's own
    time allows, for requests whose body can be sent again."""
    REFUSED = "refused"
    """As SAFE, but the server has served nothing at all on that connection:
    a few times only, so a server that refuses everything ends in a clear
    error at once instead of a storm of new connections."""
    REQUEUE = "requeue"
    """It never reached the wire (the connection had no room after all)."""


class Connection(Protocol):
    """One live connection as its pool sees it."""

    id: int
    origin: Origin
    transport: Transport
    http_version: str
    requests_served: int
    idle_since: float
    closed: bool

    @property
    def active_streams(self) -> int:
        """Exchanges running on it now."""

    @property
    def settled(self) -> bool:
        """Its capacity is known (HTTP/2: the server's SETTINGS arrived)."""

    def capacity(self) -> int:
        """How many more exchanges it takes now: 0 when busy, closing or
        told to go away."""

    def has_expired(self, now: float, expiry: float | None) -> bool:
        """Idle longer than ``expiry``, or no longer usable at all."""

    def start(self, ex: Exchange) -> None:
        """Run ``ex``; it ends through :meth:`PoolHooks.exchange_ended`."""

    def close(self, reason: str, error: Exception | None = None) -> None:
        """End every exchange still running (with ``error``, or an error
        naming ``reason``), close the socket, tell the pool; idempotent."""


class PoolHooks(Protocol):
    """How a connection reports back to the pool that owns it. Each call is
    made once the connection's own state is final for that event."""

    def exchange_ended(
        self, conn: Connection, ex: Exchange, outcome: FinalEvent | Exception | None, retry: Retry
    ) -> None:
        """``ex`` left ``conn``: with its last event, an error, or None when
        its caller had already gone."""

    def capacity_changed(self, conn: Connection) -> None:
        """``conn`` takes more (or fewer) exchanges than before."""

    def connection_closed(self, conn: Connection, reason: str) -> None:
        """``conn`` is closed; it runs no exchange any more."""
