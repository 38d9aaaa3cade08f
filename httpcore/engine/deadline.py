# Runs on the engine thread only. Owns one connection's timer; the deadlines
# themselves live on the exchanges' holders (the HTTP/1.1 connection, a stream).
"""Read and write deadlines, for both protocols.

Rule: an exchange's deadline is "now + timeout" from its last progress in
either direction (bytes received, or bytes of its request written or let
out by the peer's window), with the write timeout while its request still
waits to go out and the read timeout otherwise. Progress moves it; nothing
else does.

One timer per connection, moved lazily: it only ever fires early, and then
looks at the deadlines it finds, so an exchange that ends before its
deadline costs no timer operation at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from .._exceptions import ReadTimeout, WriteTimeout
from .exchange import Exchange


class Holder(Protocol):
    deadline: float | None
    writing: bool


def expiry_error(holder: Holder, ex: Exchange) -> Exception:
    """The timeout error for a holder whose deadline passed."""
    url = ex.request.url
    if holder.writing:
        return WriteTimeout(f"timed out after {ex.timeout.write:g} s writing the request to {url}")
    return ReadTimeout(f"timed out after {ex.timeout.read:g} s reading the response from {url}")


class DeadlineTimer:
    """One lazily moved ``call_at`` for all of a connection's deadlines."""

    __slots__ = ("_at", "_check", "_handle", "_loop")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, check: Callable[[float], float | None]
    ) -> None:
        self._loop = loop
        self._check = check
        """Called with the time when the timer fires: ends what has expired,
        returns the earliest deadline left (or None)."""
        self._handle: asyncio.Handle | None = None
        self._at = 0.0
        """When ``_handle`` fires (uvloop's handles have no ``when()``)."""

    def touch(self, holder: Holder, ex: Exchange, writing: bool) -> None:
        """Progress on ``ex``: its deadline is its timeout from now."""
        timeout = ex.timeout.write if writing else ex.timeout.read
        holder.writing = writing
        if timeout is None:
            holder.deadline = None
            return
        at = holder.deadline = self._loop.time() + timeout
        handle = self._handle
        if handle is not None:
            if self._at <= at:
                return
            handle.cancel()
        self._handle = self._loop.call_at(at, self._fire)
        self._at = at

    def _fire(self) -> None:
        self._handle = None
        earliest = self._check(self._loop.time())
        if earliest is not None:
            self._handle = self._loop.call_at(earliest, self._fire)
            self._at = earliest

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
