# Both sides, marked per method. The engine thread owns the loop, every
# Pool and Exchange; callers only touch the inbox (under ``_lock``).
"""The engine thread: start handshake, inbox, dispatch, stop, fork and exit."""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import ssl
import threading
import weakref
from collections import deque

from .._exceptions import EngineClosed, HTTPCoreError, describe
from .exchange import Exchange
from .messages import (
    CancelRequest,
    ClosePool,
    Command,
    Failed,
    GrantCredit,
    PoolConfig,
    QueryPool,
    SendBody,
    StartRequest,
)
from .outbox import Outbox
from .pool import Pool
from .transport import Transport, tune_malloc

logger = logging.getLogger("httpcore")

_engine_threads: set[int] = set()
_all_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
_fork_generation = 0


def on_engine_thread() -> bool:
    return threading.get_ident() in _engine_threads


def assert_not_engine_thread() -> None:
    """Sync calls from the engine thread would wait on themselves forever."""
    if threading.get_ident() in _engine_threads:
        raise RuntimeError(
            "httpcore: the sync API cannot be called from the engine thread (it would deadlock)"
        )


def assert_engine_thread() -> None:
    if threading.get_ident() not in _engine_threads:
        raise RuntimeError("httpcore: this must run on the engine thread")


def _new_loop(kind: str | None) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        new_loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return new_loop
    return asyncio.new_event_loop()


class Engine:
    """One thread running an asyncio loop that owns sockets and pools.

    Frontends call :meth:`submit` from any thread; everything else here runs
    on the engine thread.
    """

    def __init__(self, *, name: str = "httpcore-engine", loop: str | None = None) -> None:
        self._init_state(name)
        kind = loop if loop is not None else os.environ.get("HTTPCORE_LOOP") or None
        self._thread: threading.Thread | None = threading.Thread(
            target=self._main, args=(kind,), name=name, daemon=True
        )
        self._thread.start()
        self._started.wait()
        if self._startup_error is not None:
            raise EngineClosed(
                f"engine failed to start: {describe(self._startup_error)}"
            ) from self._startup_error
        _all_engines.add(self)

    @classmethod
    def hosted(cls) -> Engine:
        """An engine on the caller's running event loop, with no thread of
        its own: requests from coroutines on that loop reach it and come
        back without a thread hop (an ASGI gateway's worker wants this).
        Other threads and loops still share it through the same messages;
        the sync API raises RuntimeError on the hosting thread, whose loop
        it would block. Close it (``close()``) before the loop ends."""
        loop = asyncio.get_running_loop()
        self = cls.__new__(cls)
        self._init_state(f"hosted on thread {threading.current_thread().name}")
        self._thread = None
        self._attach(loop)
        _all_engines.add(self)
        return self

    def _init_state(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._inbox: deque[Command] = deque()
        self._gc_inbox: queue.SimpleQueue[Command] = queue.SimpleQueue()
        """Messages posted from finalizers: no lock, as the garbage collector
        may run them on any thread, the engine's (holding ``_lock``) included."""
        self._scheduled = False
        self._closed = False
        self._generation = _fork_generation
        self._loop: asyncio.AbstractEventLoop | None = None
        self._host: int | None = None
        """The hosting thread's id, for a hosted engine."""
        self._startup_error: BaseException | None = None
        self._started = threading.Event()
        self._stopped = threading.Event()
        self._pools: dict[PoolConfig, Pool] = {}
        self._exchanges: dict[int, Exchange] = {}
        self._wake_fd = -1

    # -- caller side ----------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return not self._closed and self._generation == _fork_generation

    def submit(self, msg: Command) -> None:
        """Hand ``msg`` to the engine; never blocks on the engine's work."""
        if self._generation != _fork_generation:
            raise EngineClosed("engine belongs to the parent process (fork)")
        if self._host is not None and threading.get_ident() == self._host:
            # A coroutine on the hosting loop: the engine's code may run
            # right here, between two awaits of the caller.
            if self._closed:
                raise EngineClosed("engine is closed")
            self._dispatch_one(msg)
            return
        with self._lock:
            if self._closed:
                raise EngineClosed("engine is closed")
            self._inbox.append(msg)
            if not self._scheduled:
                self._scheduled = True
                if self._wake_fd >= 0:
                    os.eventfd_write(self._wake_fd, 1)
                else:
                    assert self._loop is not None
                    self._loop.call_soon_threadsafe(self._drain)

    def post(self, msg: CancelRequest | ClosePool) -> None:
        """Hand ``msg`` to the engine without taking any lock: safe in
        ``__del__`` and weakref finalizers, on any thread. Dropped when the
        engine is closed or belongs to the parent process."""
        if self._closed or self._generation != _fork_generation:
            return
        self._gc_inbox.put(msg)
        try:
            if self._wake_fd >= 0:
                os.eventfd_write(self._wake_fd, 1)
            elif self._loop is not None:
                self._loop.call_soon_threadsafe(self._drain)
        except (OSError, RuntimeError):
            pass  # the engine is stopping: nothing left to cancel or close

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread: in-flight requests fail with EngineClosed."""
        if self._thread is None:
            self._close_hosted()
            return
        assert_not_engine_thread()
        if self._generation != _fork_generation:
            self._closed = True
            return
        with self._lock:
            if not self._closed:
                self._closed = True
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self._begin_stop)
        self._thread.join(timeout)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.alive else "closed"
        return f"<Engine {self._name} {state}>"

    def _close_hosted(self) -> None:
        """A hosted engine: fail what is in flight and close its connections,
        on the hosting loop (at once when called there)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._generation != _fork_generation or self._loop is None:
            return
        if threading.get_ident() != self._host:
            try:
                self._loop.call_soon_threadsafe(self._stop_hosted)
            except RuntimeError:
                pass  # the loop is closed: its sockets went with it
            return
        self._stop_hosted()

    def _stop_hosted(self) -> None:
        assert self._loop is not None
        self._fail_all(EngineClosed("engine closed"))
        if self._wake_fd >= 0:
            try:
                self._loop.remove_reader(self._wake_fd)
            except Exception:
                pass
        _engine_threads.discard(self._host or 0)
        self._stopped.set()

    # -- engine thread ------------------------------------------------------------------

    def _main(self, kind: str | None) -> None:
        try:
            loop = _new_loop(kind)
            asyncio.set_event_loop(loop)
            self._attach(loop)
        except BaseException as exc:
            self._startup_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            self._teardown(loop)
            _engine_threads.discard(threading.get_ident())
            self._stopped.set()

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make ``loop`` (running on this thread) the engine's."""
        tune_malloc()
        self._loop = loop
        self._outbox = Outbox(loop)
        if hasattr(os, "eventfd"):
            # Cheaper than call_soon_threadsafe's self-pipe: one write to
            # wake, one read to clear, no Handle, no EAGAIN exception.
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            # Closed with the Engine object, not when the thread ends: a
            # finalizer's post() may still write to it after teardown.
            weakref.finalize(self, os.close, fd).atexit = False
            self._wake_fd = fd
            loop.add_reader(fd, self._on_wake)
        _engine_threads.add(threading.get_ident())
        if self._thread is None:
            self._host = threading.get_ident()

    def _on_wake(self) -> None:
        try:
            os.eventfd_read(self._wake_fd)
        except BlockingIOError:
            pass
        self._drain()

    def _drain(self) -> None:
        with self._lock:
            inbox = self._inbox
            self._inbox = deque()
            self._scheduled = False
        while not self._gc_inbox.empty():
            inbox.append(self._gc_inbox.get_nowait())
        for msg in inbox:
            self._dispatch_one(msg)

    def _dispatch_one(self, msg: Command) -> None:
        try:
            self._dispatch(msg)
        except Exception as exc:  # a bug here must not stop the engine
            self._on_bug(msg, exc)

    def _on_bug(self, msg: Command, exc: Exception) -> None:
        """Fail the request a message concerned; the engine goes on."""
        logger.error("internal error handling %s", type(msg).__name__, exc_info=exc)
        err = HTTPCoreError(f"internal error in the engine: {describe(exc)}")
        err.__cause__ = exc
        request_id = getattr(msg, "request_id", None)
        ex = self._exchanges.get(request_id) if request_id is not None else None
        if ex is not None:
            ex.fail(err)
            ex.abandon()
        elif isinstance(msg, StartRequest):
            _refuse(msg, err)

    def _dispatch(self, msg: Command) -> None:
        kind = type(msg)
        if kind is StartRequest:
            assert isinstance(msg, StartRequest)
            self._start(msg)
        elif kind is GrantCredit:
            assert isinstance(msg, GrantCredit)
            ex = self._exchanges.get(msg.request_id)
            if ex is not None:
                ex.grant(msg.nbytes)
        elif kind is SendBody:
            assert isinstance(msg, SendBody)
            ex = self._exchanges.get(msg.request_id)
            if ex is not None:
                ex.push_upload(msg)
        elif kind is CancelRequest:
            assert isinstance(msg, CancelRequest)
            ex = self._exchanges.get(msg.request_id)
            if ex is not None:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("request cancelled request_id=%d", ex.id)
                ex.abandon()
        elif kind is QueryPool:
            assert isinstance(msg, QueryPool)
            pool = self._pools.get(msg.pool)
            msg.reply(([], 0) if pool is None else (pool.infos(), pool.queued()))
        elif kind is ClosePool:
            assert isinstance(msg, ClosePool)
            pool = self._pools.pop(msg.pool, None)
            if pool is not None:
                pool.close()

    def _start(self, msg: StartRequest) -> None:
        pool = self._pools.get(msg.pool)
        if pool is None:
            ctx = msg.pool.ssl_context
            assert isinstance(ctx, ssl.SSLContext)
            pool = self._pools[msg.pool] = Pool(msg.pool, ctx)
        assert self._loop is not None
        ex = Exchange(msg, self._forget, self._outbox, self._loop.time())
        self._exchanges[ex.id] = ex
        if logger.isEnabledFor(logging.DEBUG):
            req = msg.request
            logger.debug(
                "request started request_id=%d method=%s url=%s",
                ex.id, req.method.decode("ascii"), req.url,
            )
        pool.submit(ex)

    def _forget(self, ex: Exchange) -> None:
        self._exchanges.pop(ex.id, None)

    def _begin_stop(self) -> None:
        assert self._loop is not None
        self._loop.create_task(self._stop())

    def _fail_all(self, error: EngineClosed) -> list[Transport]:
        """Close every pool (failing what runs there) and any exchange left."""
        transports = []
        for pool in self._pools.values():
            transports.extend(pool.transports())
            pool.close(error)
        self._pools.clear()
        for ex in list(self._exchanges.values()):  # none, unless a bug left one
            ex.fail(error)
            ex.abandon()
        return transports

    async def _stop(self) -> None:
        transports = self._fail_all(EngineClosed("engine closed"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        self._outbox.flush()
        while any(not t.lost for t in transports) and loop.time() < deadline:
            await asyncio.sleep(0.005)
        loop.stop()

    def _teardown(self, loop: asyncio.AbstractEventLoop) -> None:
        """Whatever ended the loop: no caller may be left waiting."""
        with self._lock:
            self._closed = True
            inbox = self._inbox
            self._inbox = deque()
        closed = EngineClosed("engine closed")
        for msg in inbox:
            if isinstance(msg, StartRequest):
                _refuse(msg, closed)
            elif isinstance(msg, QueryPool):
                try:
                    msg.reply(([], 0))
                except Exception:
                    pass
        for pool in self._pools.values():
            for t in pool.transports():
                t.abort()
            pool.close(closed)
        self._pools.clear()
        for ex in list(self._exchanges.values()):
            ex.fail(closed)
        self._outbox.flush()
        try:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        except Exception:
            pass
        finally:
            if self._wake_fd >= 0:
                try:
                    loop.remove_reader(self._wake_fd)
                except Exception:
                    pass
            loop.close()


def _refuse(msg: StartRequest, error: BaseException) -> None:
    """Fail a request that never became an exchange, on the caller's side."""
    event = Failed(error)
    try:
        if msg.loop is not None:
            msg.loop.call_soon_threadsafe(msg.reply, event)
        else:
            msg.reply(event)
    except Exception:
        pass  # that caller is gone


# -- the process-wide default engine ---------------------------------------------

_default: Engine | None = None
_default_lock = threading.Lock()


def default_engine() -> Engine:
    """The process's engine, started on first use and after a fork or a crash."""
    global _default
    engine = _default
    if engine is not None and engine.alive:
        return engine
    with _default_lock:
        engine = _default
        if engine is None or not engine.alive:
            engine = _default = Engine()
        return engine


def _after_fork_in_child() -> None:
    global _default, _fork_generation, _default_lock
    _fork_generation += 1
    _default = None
    _default_lock = threading.Lock()
    _engine_threads.clear()


def _close_all_at_exit() -> None:
    for engine in list(_all_engines):
        if engine.alive:
            try:
                engine.close(timeout=2.0)
            except Exception:
                pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)
