"""A stateful property test of the connection pool, against real servers.

Hypothesis drives a ``PoolManager`` (``max_connections`` of 1 or 2) on a
private event loop running in a background thread, against three origins on
127.0.0.1 (``tests/servers/poolstate.py``), so connections are evicted
across origins all the time: in ``[http1]`` an HTTP/1.1 pool and three raw
keep-alive servers, in ``[http2]`` an h2c prior knowledge pool and three
``h2`` servers (the machine can drive both pools at once; each case drives
one so that each finds, and shrinks, its own bugs). The rules start requests (plain,
streamed and left unread, cancelled), read or close streams, close a client
(a new one replaces it), make a server drop connections, reset streams
(REFUSED_STREAM included) and send GOAWAY, and wait for everything in flight
to end.

Checked after every step: no request has more than one outcome, the events
each request's reply channel received are well formed (one head, one end,
nothing after it), no pool holds more than ``max_connections`` connections,
every request that nothing could have disturbed (no fault on its origin and
no client close while it ran, not cancelled) succeeded with the right body,
and the servers saw no protocol violation. After quiescence: every request
ended exactly once, no connection is left "connecting", and once the clients
are closed the process's open file descriptors return to where they were.

``HTTPCORE_STATEFUL_EXAMPLES`` / ``HTTPCORE_STATEFUL_STEPS`` run it longer
(defaults 40 examples of up to 25 steps; derandomized, so CI is stable).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import h2.errors
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import httpcore
from httpcore.engine.messages import BodyChunk, Failed, ResponseHead
from httpcore.frontends import aio as aio_frontend
from tests.servers import poolstate
from tests.servers.raw import RawServer

EXAMPLES = int(os.environ.get("HTTPCORE_STATEFUL_EXAMPLES", "40"))
STEPS = int(os.environ.get("HTTPCORE_STATEFUL_STEPS", "25"))
ORIGINS = 3
QUIESCE = 10.0
"""Seconds everything in flight gets to end once nothing holds it back."""
STEP_WAIT = 10.0
"""Seconds a rule waits for a read/close it started."""

# No read or pool timeout: a request that never ends is a hang the quiesce
# step reports, not an error it would have to accept.
TIMEOUT = httpcore.Timeout(connect=5.0, read=None, write=5.0, pool=None)

E = h2.errors.ErrorCodes
RESET_CODES = [E.REFUSED_STREAM, E.CANCEL, E.INTERNAL_ERROR, E.PROTOCOL_ERROR, E.ENHANCE_YOUR_CALM]

H1_KINDS = ["ok", "stream", "drop/before", "drop/mid"]
H2_KINDS = [
    "ok",
    "stream",
    "goaway/keep",
    "goaway/close",
    *(f"reset/{int(code)}" for code in RESET_CODES),
    "drop/before",
    "drop/mid",
]
DIRTYING = ("drop/", "goaway/close")
"""Kinds that break the connection they run on (and so its other requests)."""


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- the caller's side: a private event loop in a thread -----------------------------


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="stateful-loop", daemon=True
        )
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = STEP_WAIT) -> Any:
        return self.submit(coro).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        async def make() -> asyncio.Task[Any]:
            return asyncio.ensure_future(coro)

        return self.run(make())  # type: ignore[no-any-return]

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


# -- what each request did -----------------------------------------------------------


@dataclass(eq=False)
class Rec:
    rid: int
    proto: str  # "h1" | "h2"
    origin: int
    kind: str
    stream: bool
    gen: int  # which client (of this protocol) it was sent on
    url: str
    start: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    response: httpcore.AsyncResponse | None = None
    outcomes: list[tuple[Any, ...]] = field(default_factory=list)
    stream_ends: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[object] = field(default_factory=list)
    taints: list[str] = field(default_factory=list)
    cancelled: bool = False
    """The test cancelled its task before it had an answer, or closed its stream."""
    cancel_tried: bool = False
    touched: bool = False
    """The test read or closed its stream (or will, once the head is in)."""
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    faulted: bool = False  # the test posted a fault action on its held stream

    @property
    def has_head(self) -> bool:
        return bool(self.outcomes) and self.outcomes[0][0] == "head"

    @property
    def done(self) -> bool:
        if not self.outcomes:
            return False
        return not self.has_head or bool(self.stream_ends)

    @property
    def key(self) -> tuple[str, int]:
        return (self.proto, self.origin)

    def expected_body(self) -> bytes | None:
        if self.kind == "stream":
            return poolstate.body_for(self.rid)
        if self.kind.startswith("drop/"):
            return None
        return poolstate.ok_body(self.rid)

    def expect_success(self) -> bool:
        """Nothing could have disturbed it: it must end in a 200 with its body."""
        if self.cancelled or self.faulted or self.taints:
            return False
        if self.kind in ("ok", "stream", "goaway/keep", "goaway/close"):
            return True
        return self.kind == f"reset/{int(E.REFUSED_STREAM)}"

    def describe(self) -> str:
        return (
            f"#{self.rid} {self.proto}[{self.origin}] {self.kind}"
            f"{' stream' if self.stream else ''} client#{self.gen}"
            f" outcomes={self.outcomes} stream_ends={self.stream_ends}"
            f" taints={self.taints} cancelled={self.cancelled}"
            f" events={[_event_name(e) for e in self.events]}"
        )


def _event_name(event: object) -> str:
    if isinstance(event, ResponseHead):
        return (
            f"Head({event.status_code}, {len(event.body)}b{', complete' if event.complete else ''})"
        )
    if isinstance(event, BodyChunk):
        return f"Chunk({len(event.data)}b{', end' if event.end else ''})"
    if isinstance(event, Failed):
        return f"Failed({type(event.error).__name__}: {event.error})"
    return type(event).__name__


def _terminal(event: object) -> bool:
    if isinstance(event, ResponseHead):
        return event.complete
    if isinstance(event, BodyChunk):
        return event.end
    return isinstance(event, Failed)


_current: list[Rec | None] = [None]
_activity = [0.0]
"""When a request last got an event or an outcome (monotonic)."""

QUIET = 0.008
"""A step is over once no request has heard anything for this long (at most SETTLE_MAX):
so what a step does is seen by the checks after it, and Hypothesis sees the
same failure at the same step when it replays an example."""
SETTLE_MAX = 1.0
STALL = 1.0
"""Quiescence fails early once nothing at all has happened for this long."""


def _touch() -> None:
    _activity[0] = time.monotonic()


def _guard(method: Any) -> Any:
    """Remember that a step failed, so teardown only cleans up."""

    @functools.wraps(method)
    def wrapper(self: PoolMachine, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.failed = True
            raise

    return wrapper


class RecordingReceiver(aio_frontend.AsyncReceiver):
    """Every event the engine sends a request, kept on its Rec (the frontend
    builds the receiver before its first await, while ``_current`` names it)."""

    __slots__ = ("rec",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.rec = _current[0]

    def feed(self, event: Any) -> None:
        _touch()
        if self.rec is not None:
            self.rec.events.append(event)
        super().feed(event)


# -- fixtures ------------------------------------------------------------------------


@dataclass
class World:
    loop: LoopThread
    engine: httpcore.Engine


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """The caller's loop and the engine; the servers are the machine's own (started
    in ``__init__``, stopped in ``teardown``: a few threads, so cheap), so nothing
    an example leaves behind on a server can show up in the next one."""
    loop = LoopThread()
    engine = httpcore.Engine(name="httpcore-engine-stateful")
    try:
        yield World(loop, engine)
    finally:
        engine.close()
        loop.stop()


# -- the state machine ---------------------------------------------------------------


class PoolMachine(RuleBasedStateMachine):
    world: World
    protos: tuple[str, ...] = ("h1", "h2")
    """The pools this run drives (each test drives one, so each finds its own bugs)."""

    def __init__(self) -> None:
        super().__init__()
        self.control = poolstate.Control()
        n1 = ORIGINS if "h1" in self.protos else 0
        n2 = ORIGINS if "h2" in self.protos else 0
        self.h1 = [RawServer(poolstate.h1_handler(self.control)).start() for _ in range(n1)]
        self.h2 = [RawServer(poolstate.h2_handler(self.control)).start() for _ in range(n2)]
        self.fd_baseline = fd_count()
        self.recs: list[Rec] = []
        self.lock = threading.Lock()
        self.pools: dict[str, httpcore.PoolManager] = {}
        self.gens = {"h1": 0, "h2": 0}
        self.maxconn = {"h1": 1, "h2": 1}
        self.dirty: set[tuple[str, int]] = set()
        self.closed_pools: list[httpcore.PoolManager] = []
        self.next_rid = 1
        self.failed = False

    # -- helpers ---------------------------------------------------------------------

    def _new_pool(self, proto: str) -> None:
        limits = httpcore.Limits(max_connections=self.maxconn[proto], keepalive_expiry=30.0)
        self.gens[proto] += 1
        self.pools[proto] = httpcore.PoolManager(
            timeout=TIMEOUT,
            limits=limits,
            http1=proto == "h1",
            http2=proto == "h2",
            engine=self.world.engine,
        )

    def _handler_errors(self) -> list[BaseException]:
        return [e for s in self.h1 + self.h2 for e in s.handler_errors]

    def _servers(self, proto: str) -> list[RawServer]:
        return self.h1 if proto == "h1" else self.h2

    def _in_flight(self, pred: Any = None) -> list[Rec]:
        return [r for r in self.recs if not r.done and (pred is None or pred(r))]

    def _taint(self, recs: list[Rec], why: str) -> None:
        with self.lock:
            for r in recs:
                if not r.done:
                    r.taints.append(why)

    def _pick(self, recs: list[Rec], i: int) -> Rec:
        return recs[i % len(recs)]

    async def _run(self, rec: Rec, pool: httpcore.PoolManager) -> None:
        try:
            await self._request(rec, pool)
        finally:
            _touch()
            rec.answered.set()

    async def _request(self, rec: Rec, pool: httpcore.PoolManager) -> None:
        _current[0] = rec
        try:
            response = await pool.request("GET", rec.url, stream=rec.stream)
        except asyncio.CancelledError:
            with self.lock:
                rec.outcomes.append(("cancelled",))
            return
        except httpcore.HTTPCoreError as exc:
            with self.lock:
                rec.outcomes.append(("error", exc))
            return
        except BaseException as exc:
            with self.lock:
                rec.outcomes.append(("bad", exc))
            return
        with self.lock:
            if rec.stream:
                rec.response = response
                rec.outcomes.append(("head", response.status_code))
            else:
                rec.outcomes.append(("ok", response.status_code, response.body))

    async def _read(self, rec: Rec) -> None:
        assert rec.response is not None
        try:
            body = await rec.response.aread()
        except httpcore.HTTPCoreError as exc:
            end: tuple[Any, ...] = ("error", exc)
        except BaseException as exc:
            end = ("bad", exc)
        else:
            end = ("read", body)
        _touch()
        with self.lock:
            rec.stream_ends.append(end)

    async def _close(self, rec: Rec) -> None:
        assert rec.response is not None
        rec.cancelled = True
        try:
            await rec.response.aclose()
        except BaseException as exc:
            end: tuple[Any, ...] = ("bad", exc)
        else:
            end = ("closed",)
        _touch()
        with self.lock:
            rec.stream_ends.append(end)

    # Preconditions and choices depend only on what the test did (never on
    # what has arrived yet), so that Hypothesis sees the same choices when it
    # replays an example.

    def _cancellable(self) -> list[Rec]:
        return [r for r in self.recs if not r.cancel_tried and not r.touched]

    def _untouched_streams(self) -> list[Rec]:
        return [r for r in self.recs if r.stream and not r.touched and not r.cancel_tried]

    def _held(self) -> list[Rec]:
        return [r for r in self.recs if r.kind == "stream" and not r.touched and not r.faulted]

    def _cancel_task(self, rec: Rec) -> None:
        """On the loop: cancel ``rec``'s task if it has not ended yet."""
        task = rec.task
        if task is not None and not task.done() and not rec.outcomes:
            rec.cancelled = True
            task.cancel()

    async def _when_head(self, rec: Rec, then: Any) -> None:
        """Wait for ``rec``'s answer; if it is a streamed head, ``then(rec)``."""
        await rec.answered.wait()
        if rec.has_head and not rec.stream_ends:
            await then(rec)

    # -- rules -----------------------------------------------------------------------

    @initialize(h1_max=st.sampled_from([1, 2]), h2_max=st.sampled_from([1, 2]))
    @_guard
    def setup(self, h1_max: int, h2_max: int) -> None:
        self.maxconn = {"h1": h1_max, "h2": h2_max}
        for proto in self.protos:
            self._new_pool(proto)

    def _start(self, proto: str, origin: int, kind: str, stream: bool) -> None:
        rid = self.next_rid
        self.next_rid += 1
        url = self._servers(proto)[origin].url(f"/{kind}/{rid}")
        rec = Rec(rid, proto, origin, kind, stream or kind == "stream", self.gens[proto], url)
        key = rec.key
        with self.lock:
            if key in self.dirty:
                rec.taints.append("origin broken earlier")
            if kind.startswith(DIRTYING):
                self.dirty.add(key)
                for other in self._in_flight(lambda r: r.key == key):
                    other.taints.append(f"#{rid} {kind} on the same origin")
            self.recs.append(rec)
        rec.task = self.world.loop.spawn(self._run(rec, self.pools[proto]))

    @precondition(lambda self: "h1" in self.protos)
    @rule(
        origin=st.integers(0, ORIGINS - 1),
        kind=st.sampled_from(H1_KINDS),
        stream=st.booleans(),
    )
    @_guard
    def start_h1(self, origin: int, kind: str, stream: bool) -> None:
        self._start("h1", origin, kind, stream)

    @precondition(lambda self: "h2" in self.protos)
    @rule(
        origin=st.integers(0, ORIGINS - 1),
        kind=st.sampled_from(H2_KINDS),
        stream=st.booleans(),
    )
    @_guard
    def start_h2(self, origin: int, kind: str, stream: bool) -> None:
        self._start("h2", origin, kind, stream)

    @precondition(lambda self: bool(self._cancellable()))
    @rule(i=st.integers(0, 7))
    @_guard
    def cancel(self, i: int) -> None:
        """Cancel the task of a request (a no-op if it already has its answer)."""
        rec = self._pick(self._cancellable(), i)
        rec.cancel_tried = True
        self.world.loop.loop.call_soon_threadsafe(self._cancel_task, rec)

    @precondition(lambda self: bool(self._untouched_streams()))
    @rule(i=st.integers(0, 7))
    @_guard
    def read_stream(self, i: int) -> None:
        """Read a streamed response to the end (once its head is in; the server
        is told to send the rest)."""
        rec = self._pick(self._untouched_streams(), i)
        rec.touched = True
        self.control.post(rec.rid, ("release",), override=False)
        fut = self.world.loop.submit(self._when_head(rec, self._read))
        if rec.has_head:  # nothing can hold a released stream back
            try:
                fut.result(STEP_WAIT)
            except concurrent.futures.TimeoutError:
                _fail([f"reading a released stream hung: {rec.describe()}"])

    @precondition(lambda self: bool(self._untouched_streams()))
    @rule(i=st.integers(0, 7))
    @_guard
    def close_stream(self, i: int) -> None:
        """Close a streamed response before reading it (once its head is in)."""
        rec = self._pick(self._untouched_streams(), i)
        rec.touched = True
        fut = self.world.loop.submit(self._when_head(rec, self._close))
        if rec.has_head:
            fut.result(STEP_WAIT)

    @precondition(lambda self: bool(self._held()))
    @rule(
        i=st.integers(0, 7),
        action=st.sampled_from(
            [
                ("drop",),
                ("goaway", "keep"),
                ("goaway", "close"),
                *(("reset", int(code)) for code in RESET_CODES),
            ]
        ),
    )
    def server_acts_on_stream(self, i: int, action: tuple[object, ...]) -> None:
        """The server drops the connection of a held stream, or (HTTP/2) resets
        it, or sends GOAWAY on its connection."""
        rec = self._pick(self._held(), i)
        if rec.proto == "h1":
            action = ("drop",)
        with self.lock:
            rec.faulted = True
            if action[0] == "drop" or action == ("goaway", "close"):
                self.dirty.add(rec.key)
                for other in self._in_flight(lambda r: r.key == rec.key):
                    other.taints.append(f"server {action} on #{rec.rid}")
        self.control.post(rec.rid, action)

    @rule(proto=st.sampled_from(["h1", "h2"]), origin=st.integers(0, ORIGINS - 1))
    @_guard
    def server_kills_connections(self, proto: str, origin: int) -> None:
        proto = proto if proto in self.protos else self.protos[0]
        with self.lock:
            self.dirty.add((proto, origin))
            for other in self._in_flight(lambda r: r.key == (proto, origin)):
                other.taints.append("server killed its connections")
        poolstate.kill_connections(self._servers(proto)[origin])

    @rule(proto=st.sampled_from(["h1", "h2"]))
    @_guard
    def client_close(self, proto: str) -> None:
        proto = proto if proto in self.protos else self.protos[0]
        gen = self.gens[proto]
        self._taint(self._in_flight(lambda r: r.proto == proto and r.gen == gen), "client closed")
        pool = self.pools[proto]
        self.world.loop.run(pool.aclose())
        self.closed_pools.append(pool)
        self._new_pool(proto)

    @rule()
    @_guard
    def quiesce(self) -> None:
        self._quiesce()
        self._check_settled()

    # -- invariants ------------------------------------------------------------------

    @invariant()
    @_guard
    def after_each_step(self) -> None:
        self._settle()
        with self.lock:
            recs = list(self.recs)
        problems = [p for rec in recs for p in _check_rec(rec, final=False)]
        problems += [f"server saw: {v}" for v in self.control.violations]
        errors = self._handler_errors()
        if errors:
            problems.append(f"the servers failed: {errors!r}")
        problems += self._over_limit()
        _fail(problems)

    def _over_limit(self) -> list[str]:
        out = []
        for proto, pool in self.pools.items():
            infos = pool.connections()
            if len(infos) > self.maxconn[proto]:
                out.append(
                    f"{proto} pool with max_connections={self.maxconn[proto]} "
                    f"has {len(infos)} connections: {infos}"
                )
        return out

    def _settle(self) -> None:
        start = time.monotonic()
        while True:
            now = time.monotonic()
            if now - start >= SETTLE_MAX:
                return
            if now - start >= QUIET and now - _activity[0] >= QUIET:
                return
            time.sleep(QUIET / 3)  # waiting for the engine to go quiet (see QUIET)

    # -- quiescence ------------------------------------------------------------------

    def _quiesce(self, timeout: float = QUIESCE) -> None:
        """Let every stream finish (release what the servers hold, read what is
        unread) and wait until every request has ended."""
        control = self.control
        started = time.monotonic()
        deadline = started + timeout
        while True:
            with self.lock:
                pending = [r for r in self.recs if not r.done]
            if not pending:
                break
            for rec in pending:
                if rec.kind == "stream":
                    control.post(rec.rid, ("release",), override=False)
                if rec.stream and not rec.touched:
                    rec.touched = True
                    self.world.loop.submit(self._when_head(rec, self._read))
            now = time.monotonic()
            if now > deadline or now - max(_activity[0], started) > STALL:
                conns = {p: pool.connections() for p, pool in self.pools.items()}
                _fail(
                    [
                        f"{len(pending)} request(s) did not end at quiescence (waited "
                        f"{now - started:.1f}s; nothing happened for {STALL:g}s, "
                        f"or {timeout:g}s passed):\n"
                        + "\n".join(r.describe() for r in pending)
                        + f"\nconnections: {conns}"
                    ]
                )
            time.sleep(0.002)  # polling the outcomes other threads record
        # what was broken has been noticed by now: later requests must succeed
        self.dirty.clear()

    def _check_settled(self) -> None:
        with self.lock:
            recs = list(self.recs)
        _fail([p for rec in recs for p in _check_rec(rec, final=True)])
        deadline = time.monotonic() + 2.0
        while True:
            stuck = {
                proto: [i for i in pool.connections() if i.state == "connecting"]
                for proto, pool in self.pools.items()
            }
            if not any(stuck.values()):
                break
            if time.monotonic() > deadline:
                _fail([f"connections left 'connecting' with nothing in flight: {stuck}"])
            time.sleep(0.01)  # the engine may still be processing cancellations
        _fail(self._over_limit())

    def teardown(self) -> None:
        try:
            self._teardown()
        finally:
            for server in self.h1 + self.h2:
                server.stop()

    def _teardown(self) -> None:
        try:
            if not self.failed:
                self._quiesce()
                self._check_settled()
        finally:
            for pool in self.pools.values():
                pool.close()
            for rec in self.recs:
                if rec.task is not None and not rec.task.done():
                    self.world.loop.loop.call_soon_threadsafe(rec.task.cancel)
            self.recs.clear()
        if self.failed:
            return
        deadline = time.monotonic() + 5.0
        while fd_count() > self.fd_baseline:
            if time.monotonic() > deadline:
                _fail(
                    [
                        f"open file descriptors: {fd_count()}, {self.fd_baseline} before the "
                        f"clients (the servers' own included); leaked: {_fds()}"
                    ]
                )
            time.sleep(0.01)  # the engine and server threads close sockets asynchronously
        errors = self._handler_errors()
        _fail([f"the servers failed: {errors!r}"] if errors else [])


def _fds() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            pass
    return out


def _check_rec(rec: Rec, final: bool) -> list[str]:
    """One request's record: at most (finally: exactly) one outcome, events well formed,
    the right body when it succeeded, success when nothing disturbed it."""
    problems: list[str] = []

    def check(ok: object, what: str) -> None:
        if not ok:
            problems.append(f"{what}: {rec.describe()}")

    check(len(rec.outcomes) <= 1, "more than one outcome")
    check(len(rec.stream_ends) <= 1, "stream ended more than once")
    for got in rec.outcomes + rec.stream_ends:
        check(got[0] != "bad", f"not an httpcore.HTTPCoreError: {got[-1]!r}")
        if got[0] == "error":
            exc = got[1]
            check(
                type(exc) is not httpcore.HTTPCoreError or "internal error" not in str(exc),
                f"internal error in the engine ({exc})",
            )
            check(not isinstance(exc, httpcore.PoolTimeout), "PoolTimeout with no pool timeout")
    # what the engine sent this request
    events = list(rec.events)
    heads = [e for e in events if isinstance(e, ResponseHead)]
    check(len(heads) <= 1, "more than one response head")
    ends = [i for i, e in enumerate(events) if _terminal(e)]
    check(len(ends) <= 1, "more than one final event")
    check(not ends or ends[0] == len(events) - 1, "events after the final one")
    chunks = [i for i, e in enumerate(events) if isinstance(e, BodyChunk)]
    check(not chunks or (heads and events.index(heads[0]) < chunks[0]), "body before head")
    # the body, when it was read to the end
    expected = rec.expected_body()
    complete: bytes | None = None
    if rec.outcomes and rec.outcomes[0][0] == "ok":
        complete = rec.outcomes[0][2]
    if rec.stream_ends and rec.stream_ends[0][0] == "read":
        complete = rec.stream_ends[0][1]
    if complete is not None:
        check(expected is not None, "a truncated body was accepted as complete")
        check(expected is None or complete == expected, f"wrong body {complete[:60]!r}")
    if rec.done and rec.expect_success():
        check(complete is not None, "a request nothing disturbed did not succeed")
    if final:
        check(rec.done, "never ended")
        user_left = rec.cancelled or (rec.stream_ends and rec.stream_ends[0][0] == "closed")
        check(user_left or ends, "the engine never sent a final event")
    return problems


class PoolBroken(AssertionError):
    pass


def _fail(problems: list[str]) -> None:
    """Every check fails from this one line: Hypothesis then sees one failure
    whichever symptom of a bug a replay happens to notice first."""
    if problems:
        raise PoolBroken("\n".join(problems))


# -- the test ------------------------------------------------------------------------


@pytest.mark.timeout(600)
@pytest.mark.parametrize("protos", [("h1",), ("h2",)], ids=["http1", "http2"])
def test_pool_state_machine(
    world: World, protos: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aio_frontend, "AsyncReceiver", RecordingReceiver)
    machine = type(f"PoolMachine_{'_'.join(protos)}", (PoolMachine,), {})
    machine.world = world
    machine.protos = protos
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        ),
    )
