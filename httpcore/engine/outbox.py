# Runs on the engine thread only (``_deliver`` excepted: it runs on a caller's
# loop). Owns the events bound for callers' event loops until the end of the
# engine loop's current iteration.
"""Batched delivery to async callers: one wake-up per caller loop per pass.

Waking another thread's event loop costs a self-pipe write there and a
context switch; a pass of the engine that answers 50 streams of an HTTP/2
connection should wake each caller loop once, not 50 times.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from .messages import Event

if TYPE_CHECKING:
    from .exchange import Exchange

_Item = tuple[Callable[[Event], None], Event]


def _deliver(items: list[_Item]) -> None:
    """On the caller's loop: hand each event to its request's receiver."""
    for reply, event in items:
        reply(event)


class Outbox:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: dict[asyncio.AbstractEventLoop, tuple[list[_Item], list[Exchange]]] = {}
        self._scheduled = False

    def post(self, target: asyncio.AbstractEventLoop, ex: Exchange, event: Event) -> None:
        batch = self._pending.get(target)
        if batch is None:
            batch = self._pending[target] = ([], [])
        batch[0].append((ex.reply, event))
        batch[1].append(ex)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send every caller loop its batch; also called when the engine stops."""
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for target, (items, exchanges) in pending.items():
            if target is self._loop:  # a hosted engine's own loop: no hop
                _deliver(items)
                continue
            try:
                target.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # that caller's loop is closed: nobody listens
                for ex in exchanges:
                    ex.abandon()
