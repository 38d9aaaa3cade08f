# Runs on the engine thread only. Owns one Client's/PoolManager's connections
# and its queue of requests waiting for one; no locks: one thread touches it.
"""The connection pool: which connection serves which request.

``_plan`` decides (share, reuse, wait, open, evict) as a plain function of
the state; the methods around it do the I/O. A request that finds a free
connection starts on it at once, without a task.

Rules, in order, for a request to an origin:
1. an HTTP/2 connection to it with a free stream;
2. an idle HTTP/1.1 connection to it (most recently used first);
3. wait, if a connection to it that may turn out HTTP/2 is being set up;
4. a new connection, if ``max_connections`` allows;
5. a new connection in place of an idle one to another origin;
6. otherwise wait, at most the pool timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
from collections import deque
from dataclasses import dataclass, field

from .._config import Limits
from .._exceptions import ConnectError, EngineClosed, HTTPCoreError, PoolTimeout, describe
from .._models import Origin, ProxySpec
from .connect import open_transport
from .exchange import Exchange
from .http2 import HTTP2Connection
from .http11 import HTTP11Connection
from .messages import BodyChunk, ConnectionInfo, PoolConfig, ResponseHead
from .transport import Transport

logger = logging.getLogger("httpcore")

MAX_RETRIES = 3
"""Restarts of one request after GOAWAY / REFUSED_STREAM."""

TRIM_GRACE = 0.25
"""Seconds idle connections above the keep-alive cap may wait to be reused."""

_connection_ids = itertools.count(1)

Connection = HTTP11Connection | HTTP2Connection


class Slot:
    """A place in the pool: connecting, then holding a live connection."""

    __slots__ = ("conn", "id", "idle", "may_share", "origin", "reserved")

    def __init__(self, origin: Origin, may_share: bool) -> None:
        self.id = next(_connection_ids)
        self.origin = origin
        self.conn: Connection | None = None
        self.may_share = may_share
        """Connecting, and may come up HTTP/2: same-origin requests wait for it."""
        self.reserved = 0
        """Streams granted to waiters that have not started on it yet."""
        self.idle = False
        """In the pool's idle stack for its origin (HTTP/1.1 only)."""

    @property
    def state(self) -> str:
        conn = self.conn
        if conn is None:
            return "connecting"
        if conn.closed:
            return "closed"
        return "active" if conn.active or self.reserved else "idle"

    def spare(self) -> int:
        """Streams a shared (HTTP/2) connection can still be granted."""
        conn = self.conn
        if not isinstance(conn, HTTP2Connection):
            return 0
        return conn.capacity() - self.reserved


@dataclass(eq=False)
class _Waiter:
    origin: Origin
    future: asyncio.Future[Slot]


@dataclass
class Plan:
    """What ``_plan`` decided: grants to make and idle connections to close."""

    grants: list[tuple[_Waiter, Slot]] = field(default_factory=list)
    evict: list[Slot] = field(default_factory=list)
    expired: list[Slot] = field(default_factory=list)
    new: int = 0


class Pool:
    """One frontend's pool inside the engine."""

    def __init__(self, config: PoolConfig, ssl_context: ssl.SSLContext) -> None:
        self.config = config
        self.limits: Limits = config.limits
        self._ssl = ssl_context
        proxy = config.proxy
        assert proxy is None or isinstance(proxy, ProxySpec)
        self._proxy: ProxySpec | None = proxy
        self._loop = asyncio.get_running_loop()
        self._slots: list[Slot] = []
        self._by_conn: dict[Connection, Slot] = {}
        self._idle: dict[Origin, list[Slot]] = {}
        """Idle HTTP/1.1 connections per origin, most recently used last."""
        self._shared: dict[Origin, list[Slot]] = {}
        """Live HTTP/2 connections per origin."""
        self._waiting: deque[_Waiter] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._trimmer: asyncio.TimerHandle | None = None
        self.closed = False

    # -- introspection -------------------------------------------------------------

    def infos(self) -> list[ConnectionInfo]:
        out = []
        for slot in self._slots:
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
        return [slot.conn.transport for slot in self._slots if slot.conn is not None]

    # -- serving a request ---------------------------------------------------------

    def submit(self, ex: Exchange, force_new: bool = False) -> None:
        """Start ``ex`` on a free connection now, or in a task that waits/connects."""
        if self.closed:
            ex.fail(EngineClosed("pool is closed"))
            return
        if not force_new and not self._waiting:
            origin = self._key(ex)
            slot = self._take_shared(origin) or self._take_idle(
                origin, self._loop.time()
            )
            if slot is not None:
                conn = slot.conn
                assert conn is not None
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "connection reused connection_id=%d request_id=%d", slot.id, ex.id
                    )
                conn.start(ex)
                return
        ex.task = self._loop.create_task(self._serve(ex, force_new))

    async def _serve(self, ex: Exchange, force_new: bool) -> None:
        try:
            slot = await self._acquire(ex, force_new)
            fresh = slot.conn is None
            try:
                conn = slot.conn if slot.conn is not None else await self._connect(slot, ex)
            except BaseException:
                self._forget_slot(slot)
                raise
            assert conn is not None
        except asyncio.CancelledError:
            if not ex.done:
                ex.fail(EngineClosed("engine closed"))
            return
        except HTTPCoreError as exc:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("request failed request_id=%d error=%s", ex.id, describe(exc))
            ex.fail(exc)
            return
        except Exception as exc:
            logger.exception("internal error in the engine, request_id=%d", ex.id)
            err = HTTPCoreError(f"internal error in the engine: {describe(exc)}")
            err.__cause__ = exc
            ex.fail(err)
            return
        finally:
            ex.task = None
        if ex.done:
            self._release(conn)
        elif conn.closed or (isinstance(conn, HTTP2Connection) and conn.capacity() <= 0):
            self.submit(ex)
            return
        else:
            if not fresh and logger.isEnabledFor(logging.DEBUG):
                logger.debug("connection reused connection_id=%d request_id=%d", slot.id, ex.id)
            conn.start(ex)
        if fresh:
            self._schedule()

    def _key(self, ex: Exchange) -> Origin:
        """The origin a connection for ``ex`` goes to: through a forwarding
        proxy, every ``http://`` request shares the proxy's connections."""
        origin = ex.request.url.origin
        proxy = self._proxy
        if proxy is not None and origin.scheme == b"http":
            return proxy.origin
        return origin

    def _take_shared(self, origin: Origin) -> Slot | None:
        for slot in self._shared.get(origin, ()):
            if slot.spare() > 0:
                return slot
        return None

    def _take_idle(self, origin: Origin, now: float) -> Slot | None:
        expired: list[Slot] = []
        slot = self._find_idle(origin, now, expired)
        for old in expired:
            self._drop(old, "keep-alive expired")
        return slot

    async def _acquire(self, ex: Exchange, force_new: bool) -> Slot:
        """A free connection's slot, or a fresh slot to connect; may wait."""
        origin = self._key(ex)
        loop = self._loop
        if not self._waiting:
            slot = None
            if not force_new:
                slot = self._take_shared(origin) or self._take_idle(origin, loop.time())
            if slot is not None:
                return slot
            if (force_new or not self._connecting_shareable(origin)) and self._room(Plan()):
                slot = Slot(origin, self._may_share(origin))
                self._slots.append(slot)
                return slot
        future: asyncio.Future[Slot] = loop.create_future()
        waiter = _Waiter(origin, future)
        self._waiting.append(waiter)
        self._schedule()
        timeout = ex.timeout.pool
        handle = None if timeout is None else loop.call_later(timeout, _expire, future, timeout)
        try:
            slot = await future
        except BaseException:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._give_back(future.result())
            raise
        finally:
            if handle is not None:
                handle.cancel()
            if not future.done():
                future.cancel()
            try:
                self._waiting.remove(waiter)
            except ValueError:
                pass
        if slot.conn is not None:
            slot.reserved -= 1
        return slot

    def _forwarding(self, origin: Origin) -> bool:
        return self._proxy is not None and origin == self._proxy.origin

    def _may_share(self, origin: Origin) -> bool:
        if not self.config.http2 or self._forwarding(origin):
            return False
        return origin.scheme == b"https" or not self.config.http1

    def _connecting_shareable(self, origin: Origin) -> bool:
        """A connection to ``origin`` that may yet take more streams is on its
        way: still connecting (and may come up HTTP/2), or HTTP/2 without the
        server's SETTINGS yet. Requests to that origin wait for it."""
        if any(
            slot.conn is None and slot.may_share and slot.origin == origin for slot in self._slots
        ):
            return True
        return any(
            isinstance(slot.conn, HTTP2Connection) and not slot.conn.settled
            for slot in self._shared.get(origin, ())
        )

    async def _connect(self, slot: Slot, ex: Exchange) -> Connection:
        proxy = self._proxy
        forward = proxy is not None and self._forwarding(slot.origin)
        # A forwarding proxy is the origin of its connections; any other
        # proxy is a tunnel to the origin.
        ctx, tunnel = self._ssl, proxy
        if forward:
            assert proxy is not None
            ctx, tunnel = proxy.ssl_context or self._ssl, None
        transport = await open_transport(slot.origin, ctx, ex.timeout, self.config.retries, tunnel)
        if self.closed or slot not in self._slots:
            transport.close()
            raise EngineClosed("pool closed while connecting")
        tls, alpn = transport.tls_info()
        conn: Connection
        if forward:
            assert proxy is not None
            conn = HTTP11Connection(slot.id, slot.origin, transport, self, proxy.headers)
        elif alpn == "h2" or (slot.origin.scheme == b"http" and not self.config.http1):
            conn = HTTP2Connection(slot.id, slot.origin, transport, self)
            self._shared.setdefault(slot.origin, []).append(slot)
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
                slot.id, slot.origin, conn.http_version, extra, ex.id,
            )
        return conn

    # -- hooks the connections call --------------------------------------------------------

    def exchange_done(
        self, conn: Connection, ex: Exchange, final: ResponseHead | BodyChunk
    ) -> None:
        self._release(conn)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("request ended request_id=%d", ex.id)
        ex.finish(final)

    def exchange_failed(self, conn: Connection, ex: Exchange, error: Exception, retry: str) -> None:
        """Start again elsewhere when the server cannot have processed the
        request: "safe" (GOAWAY, REFUSED_STREAM) for a replayable request, up
        to MAX_RETRIES times; "if_idempotent" (a stale keep-alive) once, for
        idempotent ones; "requeue" (never sent) always."""
        debug = logger.isEnabledFor(logging.DEBUG)
        replayable = not ex.request.streaming_body
        if retry == "requeue":
            allowed = True
        elif retry == "safe":
            allowed = replayable and ex.retries < MAX_RETRIES
        else:
            allowed = retry == "if_idempotent" and ex.request.idempotent and ex.retries == 0
        self._release(conn)
        if allowed and not ex.done and not self.closed:
            if retry != "requeue":
                ex.retries += 1
            if debug:
                logger.debug(
                    "request retried on a new connection request_id=%d after %s",
                    ex.id, describe(error),
                )
            # A stale keep-alive may have stale siblings: take a new one. After
            # GOAWAY the old connection is no longer shared anyway.
            self.submit(ex, force_new=retry == "if_idempotent")
            return
        if debug:
            logger.debug("request failed request_id=%d error=%s", ex.id, describe(error))
        ex.fail(error)

    def exchange_released(self, conn: Connection) -> None:
        """A stream was cancelled: its place on ``conn`` is free again."""
        self._release(conn)

    def capacity_changed(self, conn: Connection) -> None:
        """The server changed how many streams ``conn`` takes (or sent GOAWAY)."""
        slot = self._by_conn.get(conn)
        if slot is not None and isinstance(conn, HTTP2Connection) and conn.goaway:
            self._unshare(slot)
        self._schedule()

    def connection_lost(self, conn: Connection, reason: str) -> None:
        slot = self._by_conn.pop(conn, None)
        if slot is not None:
            self._remove_idle(slot)
            self._unshare(slot)
            if slot in self._slots:
                self._slots.remove(slot)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("connection closed connection_id=%d reason=%s", conn.id, reason)
        self._schedule()

    # -- decisions (no I/O) ------------------------------------------------------------

    def _find_idle(self, origin: Origin, now: float, expired: list[Slot]) -> Slot | None:
        """Pop the most recently used idle HTTP/1.1 connection to ``origin``;
        expired ones met on the way go to ``expired``."""
        stack = self._idle.get(origin)
        expiry = self.limits.keepalive_expiry
        while stack:
            slot = stack.pop()
            slot.idle = False
            conn = slot.conn
            assert conn is not None
            if conn.has_expired(now, expiry):
                expired.append(slot)
                continue
            return slot
        return None

    def _room(self, plan: Plan) -> bool:
        limit = self.limits.max_connections
        if limit is None:
            return True
        gone = {s.id for s in plan.evict} | {s.id for s in plan.expired}
        live = sum(1 for s in self._slots if s.id not in gone) + plan.new
        return live < limit

    def _plan(self, now: float) -> Plan:
        """Serve waiters in order by the rules in the module docstring."""
        plan = Plan()
        opening: dict[Origin, Slot] = {}
        for waiter in list(self._waiting):
            if waiter.future.done():
                continue
            origin = waiter.origin
            slot = self._take_shared(origin)
            if slot is not None:
                slot.reserved += 1
            else:
                slot = self._find_idle(origin, now, plan.expired)
            if slot is None and (origin in opening or self._connecting_shareable(origin)):
                continue
            if slot is None and self._room(plan):
                slot = Slot(origin, self._may_share(origin))
                plan.new += 1
            elif slot is None:
                victim = next((st[0] for st in self._idle.values() if st), None)
                if victim is None:
                    continue
                self._remove_idle(victim)
                plan.evict.append(victim)
                slot = Slot(origin, self._may_share(origin))
                plan.new += 1
            if slot.may_share and slot.conn is None:
                opening[origin] = slot
            plan.grants.append((waiter, slot))
        return plan

    def _schedule(self) -> None:
        """Apply ``_plan``: close what it evicts, hand out what it grants."""
        if not self._waiting:
            return
        plan = self._plan(self._loop.time())
        for slot in plan.expired:
            self._drop(slot, "keep-alive expired")
        for slot in plan.evict:
            self._drop(slot, "evicted for another origin")
        granted = {id(w) for w, _ in plan.grants}
        self._waiting = deque(
            w for w in self._waiting if id(w) not in granted and not w.future.done()
        )
        for waiter, slot in plan.grants:
            if slot.conn is None:
                self._slots.append(slot)
            elif isinstance(slot.conn, HTTP11Connection):
                slot.reserved = 1
            waiter.future.set_result(slot)

    # -- releasing ---------------------------------------------------------------------

    def _release(self, conn: Connection) -> None:
        """An exchange ended on ``conn``: serve waiters with what it frees,
        keep it idle, or let the trimmer close it later."""
        if self.closed and not conn.closed:
            conn.close("pool closed")
            return
        slot = self._by_conn.get(conn)
        if slot is not None and isinstance(conn, HTTP11Connection):
            if conn.is_idle() and not slot.reserved:
                self._push_idle(slot)
        self._schedule()
        keep = self.limits.max_keepalive_connections
        if keep is not None:
            if keep == 0:
                if conn.is_idle() and (slot is None or not slot.reserved):
                    conn.close("max_keepalive_connections=0")
            elif self._trimmer is None and len(self._slots) > keep and self._count_idle() > keep:
                self._trimmer = self._loop.call_later(TRIM_GRACE, self._trim)
        self._arm_sweeper()

    def _idle_slots(self) -> list[Slot]:
        out = [s for stack in self._idle.values() for s in stack]
        out += [
            s
            for stack in self._shared.values()
            for s in stack
            if s.conn is not None and s.conn.is_idle() and not s.reserved
        ]
        return out

    def _count_idle(self) -> int:
        return len(self._idle_slots())

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
        idle = sorted(
            self._idle_slots(), key=lambda s: s.conn.idle_since if s.conn else 0.0
        )
        for old in idle[: max(0, len(idle) - keep)]:
            self._drop(old, "too many idle connections")

    def _push_idle(self, slot: Slot) -> None:
        if not slot.idle:
            slot.idle = True
            self._idle.setdefault(slot.origin, []).append(slot)

    def _remove_idle(self, slot: Slot) -> None:
        if slot.idle:
            slot.idle = False
            stack = self._idle.get(slot.origin)
            if stack is not None:
                stack.remove(slot)

    def _unshare(self, slot: Slot) -> None:
        stack = self._shared.get(slot.origin)
        if stack is not None and slot in stack:
            stack.remove(slot)

    def _give_back(self, slot: Slot) -> None:
        """A granted slot its waiter never used (cancelled meanwhile)."""
        if slot.conn is None:
            self._forget_slot(slot)
        else:
            slot.reserved = max(0, slot.reserved - 1)
            self._release(slot.conn)

    def _forget_slot(self, slot: Slot) -> None:
        if slot.conn is None and slot in self._slots:
            self._slots.remove(slot)
            self._schedule()

    def _drop(self, slot: Slot, reason: str) -> None:
        if slot.conn is not None:
            slot.conn.close(reason)
        else:
            self._forget_slot(slot)

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

    def close(self) -> None:
        self.closed = True
        for timer in (self._sweeper, self._trimmer):
            if timer is not None:
                timer.cancel()
        self._sweeper = self._trimmer = None
        for slot in list(self._slots):
            if slot.conn is not None:
                slot.conn.close("pool closed")
        self._slots.clear()
        waiting, self._waiting = self._waiting, deque()
        for waiter in waiting:
            if not waiter.future.done():
                waiter.future.set_exception(EngineClosed("pool closed"))


def _expire(future: asyncio.Future[Slot], timeout: float) -> None:
    if not future.done():
        future.set_exception(
            PoolTimeout(f"no connection free within the pool timeout ({timeout:g}s)")
        )
