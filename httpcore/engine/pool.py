# Runs on the engine thread only. Owns one Client's/PoolManager's connections
# and its queue of requests waiting for one; no locks: one thread touches it.
"""The connection pool: applies the planner's decisions, and nothing else decides.

A request that finds a connection ready for its origin (and nobody waiting
before it) starts on it at once, without a task. Every other request
waits in ``_waiting`` and is served by :meth:`Pool._schedule`, which asks
:func:`planner.plan` and applies the plan: grants first, then new
connections, then closes. Whatever a close (or a failed start) calls back
into the pool only marks a rerun: planning never re-enters itself.

Rule of the slots: a slot is either connecting (with the exchange that asked
for it, while that exchange still wants it) or holds a live connection; it
leaves the pool exactly when its connection closes or its connect fails.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
from collections import deque
from typing import TYPE_CHECKING

from .._config import Limits
from .._exceptions import (
    ConnectError,
    EngineClosed,
    HTTPCoreError,
    PoolTimeout,
    describe,
)
from .._models import Origin, ProxySpec
from .connect import Dialer, open_transport
from .exchange import Exchange
from .http2 import HTTP2Connection
from .http11 import HTTP11Connection
from .interfaces import Connection, Retry
from .messages import ConnectionInfo, PoolConfig
from .planner import SlotView, WaiterView, plan
from .transport import Transport

if TYPE_CHECKING:
    from .interfaces import FinalEvent

logger = logging.getLogger("httpcore")

MAX_SAFE_RETRIES = 100
"""Restarts of one request the server refused unprocessed (GOAWAY,
REFUSED_STREAM), on top of its time budget: a server that refuses every
stream ends in an error, never in a loop."""

MAX_REFUSALS = 3
"""Restarts of one request refused by connections that had served nothing."""

TRIM_GRACE = 0.25
"""Seconds idle connections above the keep-alive cap may wait to be reused."""

_MAX_RERUNS = 64

_connection_ids = itertools.count(1)


class Slot:
    """A place in the pool: connecting, then holding a live connection."""

    __slots__ = ("conn", "id", "may_share", "origin", "owner", "ready", "task")

    def __init__(self, origin: Origin, may_share: bool, owner: Exchange | None) -> None:
        self.id = next(_connection_ids)
        self.origin = origin
        self.conn: Connection | None = None
        self.may_share = may_share
        """Connecting, and may come up HTTP/2: same-origin requests wait for it."""
        self.owner = owner
        """While connecting: the exchange it is for, until that one leaves."""
        self.task: asyncio.Task[None] | None = None
        self.ready = False
        """On its origin's ready stack (it may take an exchange now)."""

    @property
    def state(self) -> str:
        conn = self.conn
        if conn is None:
            return "connecting"
        if conn.closed:
            return "closed"
        return "active" if conn.active_streams else "idle"


class _Waiter:
    __slots__ = ("ex", "fresh", "origin", "timer")

    def __init__(self, ex: Exchange, origin: Origin, fresh: bool) -> None:
        self.ex = ex
        self.origin = origin
        self.fresh = fresh
        self.timer: asyncio.TimerHandle | None = None


class Pool:
    """One frontend's pool inside the engine."""

    def __init__(self, config: PoolConfig, ssl_context: ssl.SSLContext) -> None:
        self.config = config
        self.limits: Limits = config.limits
        self._ssl = ssl_context
        self._alpn = (["h2"] if config.http2 else []) + (["http/1.1"] if config.http1 else [])
        proxy = config.proxy
        assert proxy is None or isinstance(proxy, ProxySpec)
        self._proxy: ProxySpec | None = proxy
        self._dialer = Dialer(config.uds, config.local_address, config.socket_options)
        self._loop = asyncio.get_running_loop()
        self._slots: dict[int, Slot] = {}
        self._by_conn: dict[Connection, Slot] = {}
        self._ready: dict[Origin, list[Slot]] = {}
        """Per origin, slots that may take an exchange, most recently ready last;
        entries go stale (busy, closed) and are dropped when met."""
        self._waiting: deque[_Waiter] = deque()
        self._by_ex: dict[Exchange, _Waiter] = {}
        self._planning = False
        self._rerun = False
        self._sweeper: asyncio.TimerHandle | None = None
        self._trimmer: asyncio.TimerHandle | None = None
        self.closed = False

    # -- introspection -------------------------------------------------------------

    def infos(self) -> list[ConnectionInfo]:
        out = []
        for slot in self._slots.values():
            conn = slot.conn
            out.append(
                ConnectionInfo(
                    origin=str(slot.origin),
                    http_version=conn.http_version if conn else "HTTP/1.1",
                    state=slot.state,
                    active_streams=conn.active_streams if conn else 0,
                    requests_served=conn.requests_served if conn else 0,
                )
            )
        return out

    def queued(self) -> int:
        """Requests waiting for a connection."""
        return len(self._waiting)

    def transports(self) -> list[Transport]:
        return [slot.conn.transport for slot in self._slots.values() if slot.conn is not None]

    # -- serving a request ---------------------------------------------------------

    def submit(self, ex: Exchange, fresh: bool = False) -> None:
        """Start ``ex`` on a ready connection now, or queue it for the planner."""
        if self.closed:
            ex.fail(EngineClosed("pool is closed"))
            return
        origin = self._key(ex)
        if not fresh and not self._waiting:
            slot = self._take_ready(origin)
            if slot is not None:
                conn = slot.conn
                assert conn is not None
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("connection reused connection_id=%d request_id=%d", slot.id, ex.id)
                conn.start(ex)
                self._unready_if_full(slot)
                return
        waiter = _Waiter(ex, origin, fresh)
        timeout = ex.timeout.pool
        if timeout is not None:
            waiter.timer = self._loop.call_later(timeout, self._pool_timeout, waiter, timeout)
        self._waiting.append(waiter)
        self._by_ex[ex] = waiter
        ex.handler = self
        self._schedule()

    def _key(self, ex: Exchange) -> Origin:
        """The origin a connection for ``ex`` goes to: through a forwarding
        proxy, every ``http://`` request shares the proxy's connections."""
        origin = ex.request.url.origin
        proxy = self._proxy
        if proxy is not None and origin.scheme == b"http" and not proxy.socks:
            return proxy.origin
        return origin

    def _take_ready(self, origin: Origin) -> Slot | None:
        """The most recently ready connection to ``origin`` that takes an
        exchange now; stale entries are dropped, expired ones closed."""
        stack = self._ready.get(origin)
        if not stack:
            return None
        expiry = self.limits.keepalive_expiry
        now = self._loop.time()
        while stack:
            slot = stack[-1]
            conn = slot.conn
            assert conn is not None
            if conn.capacity() > 0:
                if not conn.active_streams and conn.has_expired(now, expiry):
                    stack.pop()
                    slot.ready = False
                    conn.close("keep-alive expired")
                    continue
                return slot
            stack.pop()
            slot.ready = False
        return None

    def _unready_if_full(self, slot: Slot) -> None:
        """Off the ready stack once it takes no more, so that it goes back on
        top when it is free again (most recently used first)."""
        conn = slot.conn
        if slot.ready and conn is not None and conn.capacity() <= 0:
            slot.ready = False
            stack = self._ready.get(slot.origin)
            if stack is not None:
                if stack and stack[-1] is slot:
                    stack.pop()
                else:
                    stack.remove(slot)

    def _mark_ready(self, slot: Slot) -> None:
        if not slot.ready:
            slot.ready = True
            self._ready.setdefault(slot.origin, []).append(slot)

    # -- the exchange's handler while it waits -----------------------------------------

    def on_upload(self, ex: Exchange) -> None:
        """Upload pieces wait in ``ex.upload`` until a connection takes it."""

    def on_credit(self, ex: Exchange, consumed: int) -> None:
        """No body yet: nothing to do."""

    def on_abandon(self, ex: Exchange) -> None:
        """The caller left while ``ex`` waited or its connection was opened:
        forget it; a connection being opened for it goes on for others."""
        ex.handler = None
        waiter = self._by_ex.pop(ex, None)
        if waiter is not None:
            self._drop_waiter(waiter)
            return
        for slot in self._slots.values():
            if slot.owner is ex:
                slot.owner = None

    def _drop_waiter(self, waiter: _Waiter) -> None:
        if waiter.timer is not None:
            waiter.timer.cancel()
            waiter.timer = None
        try:
            self._waiting.remove(waiter)
        except ValueError:
            pass

    def _pool_timeout(self, waiter: _Waiter, timeout: float) -> None:
        waiter.timer = None
        if self._by_ex.pop(waiter.ex, None) is None:
            return
        self._drop_waiter(waiter)
        waiter.ex.handler = None
        waiter.ex.fail(PoolTimeout(f"no connection free within the pool timeout ({timeout:g} s)"))

    # -- planning ------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Plan and apply until nothing the plan did asks for another pass.

        Applying a plan closes connections and starts exchanges, which call
        back here; those calls only set ``_rerun``.
        """
        if self._planning:
            self._rerun = True
            return
        if not self._waiting:
            return
        self._planning = True
        try:
            for _ in range(_MAX_RERUNS):
                self._rerun = False
                if self._waiting and not self.closed:
                    self._apply_plan()
                if not self._rerun:
                    return
            self._loop.call_soon(self._schedule)
        finally:
            self._planning = False
            self._rerun = False

    def _apply_plan(self) -> None:
        waiters = list(self._waiting)
        slots = list(self._slots.values())
        now = self._loop.time()
        expiry = self.limits.keepalive_expiry
        views = [self._view(slot, now, expiry) for slot in slots]
        wanted = [WaiterView(w.origin, w.fresh, self._may_share(w.origin)) for w in waiters]
        decided = plan(wanted, views, self.limits.max_connections)
        by_id = {slot.id: slot for slot in slots}
        for index, slot_id in decided.grants:
            waiter = waiters[index]
            slot = by_id[slot_id]
            conn = slot.conn
            if conn is None or conn.capacity() <= 0 or waiter.ex not in self._by_ex:
                self._rerun = True  # the state moved under the plan: plan again
                continue
            self._unqueue(waiter)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "connection reused connection_id=%d request_id=%d", slot.id, waiter.ex.id
                )
            conn.start(waiter.ex)
            self._unready_if_full(slot)
        for index in decided.opens:
            waiter = waiters[index]
            if waiter.ex not in self._by_ex:
                continue
            self._unqueue(waiter)
            self._open(waiter.origin, waiter.ex)
        for slot_id, reason in decided.closes:
            self._close_slot(by_id[slot_id], reason)

    def _view(self, slot: Slot, now: float, expiry: float | None) -> SlotView:
        conn = slot.conn
        if conn is None:
            return SlotView(slot.id, slot.origin, True, slot.may_share, 0, False, 0.0, False)
        idle = not conn.active_streams and not conn.closed
        return SlotView(
            slot.id,
            slot.origin,
            False,
            not conn.settled,
            conn.capacity(),
            idle,
            conn.idle_since,
            conn.has_expired(now, expiry),
        )

    def _unqueue(self, waiter: _Waiter) -> None:
        self._by_ex.pop(waiter.ex, None)
        self._drop_waiter(waiter)
        waiter.ex.handler = None

    def _may_share(self, origin: Origin) -> bool:
        if not self.config.http2 or self._forwarding(origin):
            return False
        return origin.scheme == b"https" or not self.config.http1

    def _forwarding(self, origin: Origin) -> bool:
        return self._proxy is not None and origin == self._proxy.origin

    # -- opening ------------------------------------------------------------------------

    def _open(self, origin: Origin, ex: Exchange) -> None:
        slot = Slot(origin, self._may_share(origin), ex)
        self._slots[slot.id] = slot
        ex.handler = self
        slot.task = self._loop.create_task(self._connect(slot, ex))

    async def _connect(self, slot: Slot, ex: Exchange) -> None:
        """Open the slot's connection, then run its owner on it (if the owner
        still wants it); a failure fails the owner and frees the slot."""
        try:
            conn = await self._new_connection(slot, ex)
        except asyncio.CancelledError:
            self._connect_failed(slot, EngineClosed("pool closed while connecting"))
            return
        except HTTPCoreError as exc:
            self._connect_failed(slot, exc)
            return
        except Exception as exc:
            logger.exception("internal error in the engine, request_id=%d", ex.id)
            err = HTTPCoreError(f"internal error in the engine: {describe(exc)}")
            err.__cause__ = exc
            self._connect_failed(slot, err)
            return
        finally:
            slot.task = None
        owner, slot.owner = slot.owner, None
        if owner is not None and not owner.done:
            owner.handler = None
            if conn.capacity() > 0:
                conn.start(owner)
            else:
                self.submit(owner)
        if not conn.closed and conn.capacity() > 0:
            self._mark_ready(slot)
        self._schedule()

    def _connect_failed(self, slot: Slot, error: HTTPCoreError) -> None:
        self._slots.pop(slot.id, None)
        owner, slot.owner = slot.owner, None
        if owner is not None and not owner.done:
            owner.handler = None
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("request failed request_id=%d error=%s", owner.id, describe(error))
            owner.fail(error)
        self._schedule()

    async def _new_connection(self, slot: Slot, ex: Exchange) -> Connection:
        proxy = self._proxy
        forward = proxy is not None and self._forwarding(slot.origin)
        # A forwarding proxy is the origin of its connections; any other
        # proxy is a tunnel to the origin.
        ctx, tunnel, offer = self._ssl, proxy, self._alpn
        if forward:
            assert proxy is not None
            ctx, tunnel, offer = proxy.ssl_context or self._ssl, None, ["http/1.1"]
        transport = await open_transport(
            slot.origin, ctx, ex.timeout, self.config.retries, tunnel, offer, self._dialer
        )
        if self.closed or slot.id not in self._slots:
            transport.close()
            raise EngineClosed("pool closed while connecting")
        tls, alpn = transport.tls_info()
        conn: Connection
        if forward:
            assert proxy is not None
            conn = HTTP11Connection(slot.id, slot.origin, transport, self, proxy.headers)
        elif alpn == "h2" and not self.config.http2:
            transport.close()
            raise ConnectError(f"{slot.origin} negotiated HTTP/2 (ALPN h2) but http2=False")
        elif alpn == "h2" or (slot.origin.scheme == b"http" and not self.config.http1):
            conn = HTTP2Connection(slot.id, slot.origin, transport, self)
        elif not self.config.http1:
            transport.close()
            raise ConnectError(
                f"{slot.origin} did not negotiate HTTP/2 (ALPN: {alpn!r}) and http1=False"
            )
        else:
            conn = HTTP11Connection(slot.id, slot.origin, transport, self)
        slot.conn = conn
        slot.may_share = False
        self._by_conn[conn] = slot
        if logger.isEnabledFor(logging.DEBUG):
            extra = f" tls={tls} alpn={alpn}" if tls else ""
            logger.debug(
                "connection opened connection_id=%d origin=%s http_version=%s%s request_id=%d",
                slot.id,
                slot.origin,
                conn.http_version,
                extra,
                ex.id,
            )
        return conn

    # -- hooks the connections call --------------------------------------------------------

    def exchange_ended(
        self, conn: Connection, ex: Exchange, outcome: FinalEvent | Exception | None, retry: Retry
    ) -> None:
        """Answer the caller (or start the request again elsewhere), then
        hand what ``conn`` freed to whoever waits."""
        slot = self._by_conn.get(conn)
        if slot is not None and not conn.closed and conn.capacity() > 0:
            self._mark_ready(slot)
        if isinstance(outcome, Exception):
            if not ex.done and self._may_retry(ex, retry, outcome):
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("request retried request_id=%d after %s", ex.id, describe(outcome))
                # A stale keep-alive may have stale siblings: take a new one.
                self.submit(ex, fresh=retry is Retry.IF_IDEMPOTENT)
            else:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("request failed request_id=%d error=%s", ex.id, describe(outcome))
                ex.fail(self._final_error(ex, outcome, retry))
        elif outcome is not None:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("request ended request_id=%d", ex.id)
            ex.finish(outcome)
        self._released(conn)

    def _may_retry(self, ex: Exchange, retry: Retry, error: Exception) -> bool:
        if self.closed or retry is Retry.NO:
            return False
        if retry is Retry.REQUEUE:
            return True
        if retry is Retry.IF_IDEMPOTENT:
            allowed = ex.request.idempotent and not ex.stale_retried
            ex.stale_retried = True
            return allowed
        if ex.request.streaming_body or ex.retries >= MAX_SAFE_RETRIES:
            return False
        if retry is Retry.REFUSED:
            if ex.refusals >= MAX_REFUSALS:
                return False
            ex.refusals += 1
        budget = _retry_budget(ex)
        if budget is not None and self._loop.time() - ex.born > budget:
            return False
        ex.retries += 1
        return True

    def _final_error(self, ex: Exchange, error: Exception, retry: Retry) -> Exception:
        """Say so when a request ran out of retries the server kept refusing."""
        if retry not in (Retry.SAFE, Retry.REFUSED) or not ex.retries:
            return error
        spent = self._loop.time() - ex.born
        final = type(error)(
            f"{error} (refused unprocessed {ex.retries + 1} times in {spent:.1f} s;"
            " the server takes no new requests)"
        )
        final.__cause__ = error
        return final

    def capacity_changed(self, conn: Connection) -> None:
        """The server changed how many streams ``conn`` takes (or sent GOAWAY)."""
        slot = self._by_conn.get(conn)
        if slot is not None and not conn.closed and conn.capacity() > 0:
            self._mark_ready(slot)
        self._schedule()

    def connection_closed(self, conn: Connection, reason: str) -> None:
        slot = self._by_conn.pop(conn, None)
        if slot is not None:
            self._slots.pop(slot.id, None)
            stack = self._ready.get(slot.origin)
            if slot.ready and stack is not None:
                stack.remove(slot)
                slot.ready = False
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("connection closed connection_id=%d reason=%s", conn.id, reason)
        self._schedule()

    # -- releasing ---------------------------------------------------------------------

    def _released(self, conn: Connection) -> None:
        """An exchange left ``conn``: serve waiters with it, keep it idle,
        or let the trimmer close it later."""
        if self.closed:
            if not conn.closed and not conn.active_streams:
                conn.close("pool closed")
            return
        self._schedule()
        keep = self.limits.max_keepalive_connections
        if keep is not None and not conn.closed and not conn.active_streams:
            if keep == 0:
                conn.close("max_keepalive_connections=0")
            elif self._trimmer is None and len(self._slots) > keep:
                if len(self._idle_slots()) > keep:
                    self._trimmer = self._loop.call_later(TRIM_GRACE, self._trim)
        self._arm_sweeper()

    def _idle_slots(self) -> list[Slot]:
        return [
            s
            for s in self._slots.values()
            if s.conn is not None and not s.conn.active_streams and not s.conn.closed
        ]

    def _trim(self) -> None:
        """Close the longest-idle connections above ``max_keepalive_connections``.

        Done after a short grace rather than on release: under bursty load,
        connections freed in one burst are wanted again by the next, and
        closing them at once would make every burst reconnect.
        """
        self._trimmer = None
        keep = self.limits.max_keepalive_connections
        if keep is None or self.closed:
            return
        idle = sorted(self._idle_slots(), key=lambda s: s.conn.idle_since if s.conn else 0.0)
        for old in idle[: max(0, len(idle) - keep)]:
            self._close_slot(old, "too many idle connections")

    def _close_slot(self, slot: Slot, reason: str) -> None:
        if slot.conn is not None:
            slot.conn.close(reason)

    # -- keep-alive expiry -------------------------------------------------------------

    def _arm_sweeper(self) -> None:
        expiry = self.limits.keepalive_expiry
        if expiry is None or self._sweeper is not None or self.closed:
            return
        self._sweeper = self._loop.call_later(expiry + 0.05, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self._loop.time()
        expiry = self.limits.keepalive_expiry
        for slot in self._idle_slots():
            conn = slot.conn
            if conn is not None and conn.has_expired(now, expiry):
                conn.close("keep-alive expired")
        if self._idle_slots():
            self._arm_sweeper()

    # -- close ---------------------------------------------------------------------------

    def close(self, error: Exception | None = None) -> None:
        """Fail every request of this pool (waiting, connecting, running) with
        ``error`` (EngineClosed by default) and close every connection."""
        if self.closed:
            return
        self.closed = True
        failure = error or EngineClosed("pool closed")
        for timer in (self._sweeper, self._trimmer):
            if timer is not None:
                timer.cancel()
        self._sweeper = self._trimmer = None
        waiting, self._waiting = self._waiting, deque()
        self._by_ex.clear()
        for waiter in waiting:
            if waiter.timer is not None:
                waiter.timer.cancel()
            waiter.ex.handler = None
            waiter.ex.fail(failure)
        for slot in list(self._slots.values()):
            if slot.conn is not None:
                slot.conn.close("pool closed", failure)
            else:
                owner, slot.owner = slot.owner, None
                if owner is not None:
                    owner.handler = None
                    owner.fail(failure)
                if slot.task is not None:
                    slot.task.cancel()
        self._slots.clear()
        self._ready.clear()


def _retry_budget(ex: Exchange) -> float | None:
    """How long a request may keep being retried after refusals: its
    longest phase timeout (None: no time limit, only MAX_SAFE_RETRIES)."""
    t = ex.timeout
    phases = [p for p in (t.connect, t.read, t.write, t.pool) if p is not None]
    return max(phases) if phases else None
