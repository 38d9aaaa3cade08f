# Runs on the engine thread only. Owns one socket (through an asyncio
# transport) and forwards what happens on it to the connection attached.
"""The protocol object under every connection: bytes in, callbacks out.

Connections are driven by these callbacks rather than by a task awaiting
reads: a small response costs no future, no task wake-up and no timer
beyond the read deadline.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import platform
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from typing import Protocol


class Sink(Protocol):
    """What a connection implements to be driven by its transport."""

    def on_bug(self, exc: Exception) -> None: ...
    def on_data(self, data: memoryview) -> None:
        """``data`` is only valid during the call; copy what you keep. It
        views the start of a bytes or bytearray object (``data.obj``)."""
    def on_eof(self) -> None: ...
    def on_lost(self, exc: BaseException | None) -> None: ...
    def on_writable(self) -> None: ...


RECV_BUFFER = 1024 * 1024
"""Most one read takes (the size of the shared receive buffer of
:class:`BufferedTransport`, the ``max_size`` of :class:`OwnedTransport`):
1 MiB rather than 256 KiB took a 64 MiB HTTP/1.1 download from 0.47 to
0.38-0.40 s of CPU per GiB (fewer reads, wake-ups and chunks)."""

LOWAT = 512 * 1024
"""The low-water mark (SO_RCVLOWAT) a connection asks the kernel for while
at least this much is sure to arrive (:meth:`Transport.expect`): the kernel
then wakes the engine once per LOWAT bytes, not once per burst of segments.
A wake-up costs the sender too: on loopback, nginx spent ~45% of its CPU
waking the engine thread (perf: ``_raw_spin_unlock_irqrestore``, softirqs)
for 20 HTTP/2 downloads, against ~3% for curl, which is busy when data
comes. 20 x 1 MiB over h2c, medians of 6 interleaved runs: 1,959 -> 3,020
MiB/s, nginx 515 -> 329 ms of CPU per GiB (128 KiB: +23%, 256 KiB: +39%).
1 MiB is too much: a 1 MiB body is then never sure of it (20 x 1 MiB over
HTTP/1.1: 3,498 -> 2,149 MiB/s). One 100 MiB stream: no change (medians of
6, 1,947 without the mark, 1,998 with it)."""

LOWAT_MIN = 64 * 1024
"""No mark below this: a receive buffer too small for it is left alone."""

LOWAT_BACKSTOP = 0.002
"""Seconds a raised low-water mark may go without a read before it drops to
one byte: the most a server that stops short of what was sure (a stall, a
reset stream) delays what it did send."""

_LOWAT_WORKS = sys.platform.startswith("linux")
"""Linux (>= 4.18) signals readiness at once when the mark is lowered, which
the backstop needs; elsewhere the mark stays at one byte."""

_local = threading.local()

MMAP_THRESHOLD = 32 * 1024 * 1024
"""glibc's M_MMAP_THRESHOLD as set by :func:`tune_malloc` (M_TRIM_THRESHOLD
twice that): where glibc's own sliding threshold settles once a block of
32 MiB has been freed (its maximum on 64-bit)."""

@functools.cache
def tune_malloc() -> bool:
    """Once per process, on glibc, unless ``HTTPCORE_MALLOC_TUNE=0``: fix
    malloc's mmap and trim thresholds where glibc's sliding ones would
    settle after a 32 MiB block is freed.

    Every body chunk is a new bytes object of up to RECV_BUFFER that the
    caller frees soon after. With glibc's starting thresholds (128 KiB,
    sliding up only as mmapped blocks are freed) the heap under them is
    trimmed back to the kernel and faulted in again page by page: one minor
    fault per 4 KiB received: 20 threads downloading 1 MiB each over
    HTTP/1.1 took 1.24 s of CPU per GiB and 440,000 faults, against 0.52 s
    and 10,800 with the thresholds set. Setting only a pad or
    a trim threshold would turn the sliding off and leave every block over
    128 KiB to mmap (7 times slower to churn big buffers): both are set.
    The cost is what glibc's own sliding threshold costs: up to twice
    MMAP_THRESHOLD of freed memory kept at the top of a heap.

    True if it set them: blocks up to MMAP_THRESHOLD then come from the heap.
    """
    if os.environ.get("HTTPCORE_MALLOC_TUNE") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
        mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
        mallopt(-1, 2 * MMAP_THRESHOLD)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return False
    return True


def _receive_view() -> memoryview:
    """The engine thread's one receive buffer.

    One per thread suffices: a read is handed to its connection, which copies
    what it keeps, before the loop reads any other socket; a buffer per
    connection would cost RECV_BUFFER for each, idle ones included.
    """
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(RECV_BUFFER))
    return view


class Transport(asyncio.BaseProtocol):
    """One connection's socket; buffers only until a sink is attached.

    Made by :func:`transport_class`'s choice of the two ways to read below.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.sink: Sink | None = None
        self._early: list[bytes] = []
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None
        self.write_paused = False
        self.read_paused = False
        self._read_size = RECV_BUFFER
        self._raised = False
        """The connection asked for the mark (:meth:`expect`)."""
        self._reads = 0
        """Reads so far, for the low-water mark's backstop."""

    @property
    def read_size(self) -> int:
        """At most this much per read (a connection lowers it to bound what
        it holds for a slow reader)."""
        return self._read_size

    @read_size.setter
    def read_size(self, size: int) -> None:
        if size != self._read_size:  # set on every chunk, changed rarely
            self._read_size = size
            self._sized()

    def _sized(self) -> None:
        """``read_size`` changed."""

    # -- asyncio callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self._sized()

    # A bug in a sink must fail its exchange with the bug as cause, not
    # escape into asyncio (which would only log it): hence the try blocks,
    # free in CPython 3.11 until something raises.

    def _received(self, data: memoryview) -> None:
        self._reads += 1
        sink = self.sink
        if sink is not None:
            try:
                sink.on_data(data)
            except Exception as exc:
                sink.on_bug(exc)
        else:
            self._early.append(data.tobytes())

    def eof_received(self) -> bool | None:
        self.eof = True
        if self.sink is not None:
            _guarded(self.sink, self.sink.on_eof)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        if self.sink is not None:
            _guarded(self.sink, self.sink.on_lost, exc)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.sink is not None:
            _guarded(self.sink, self.sink.on_writable)

    # -- engine-side API ---------------------------------------------------------------

    def attach(self, sink: Sink) -> None:
        """Start delivering to ``sink``, first whatever came before."""
        self.sink = sink
        early, self._early = self._early, []
        for data in early:
            sink.on_data(memoryview(data))
        if self.eof:
            sink.on_eof()
        if self.lost:
            sink.on_lost(self.error)

    @property
    def raised(self) -> bool:
        """Whether the connection last said enough was sure to raise the mark."""
        return self._raised

    def expect(self, nbytes: int) -> None:
        """At least ``nbytes`` are sure to arrive and nothing else is waited
        for: with LOWAT or more the kernel wakes the engine per LOWAT bytes
        (less on a small receive buffer); with less, at every byte again (a
        connection says 0 when it ends an exchange, so the next head is not
        held)."""
        raise_it = nbytes >= LOWAT
        if raise_it != self._raised:
            self._set_lowat(raise_it)

    def _set_lowat(self, raise_it: bool) -> None:
        self._raised = raise_it  # not retried on every read where it fails
        transport = self.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None or self.lost or not _LOWAT_WORKS:
            return
        try:
            mark = 1
            if raise_it:
                # Linux clamps the receive window to a mark the buffer has
                # no room for twice over: the server would then send one
                # mark's worth and wait for the read.
                room = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 4
                mark = min(LOWAT, room) if room >= LOWAT_MIN else 1
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark)
        except (OSError, AttributeError):
            return  # not TCP: every byte wakes, as before
        if mark > 1:
            _backstop().watch(self)

    def _stalled(self, reads: int) -> bool:
        """The backstop's check: True (and the mark lowered, so the kernel
        signals at once what it holds) when no read came since ``reads``."""
        if not self._raised or self.lost:
            return True
        if self._reads != reads:
            return False
        self._set_lowat(False)
        return True

    @property
    def closing(self) -> bool:
        transport = self.transport
        return self.lost or transport is None or transport.is_closing()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None and not self.lost:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.transport is not None and not self.lost:
            self.read_paused = False
            self.transport.resume_reading()

    def tls_info(self) -> tuple[str | None, str | None]:
        """(TLS version, ALPN protocol) or (None, None) for plain TCP."""
        if self.transport is None:
            return None, None
        obj = self.transport.get_extra_info("ssl_object")
        if not isinstance(obj, ssl.SSLObject):
            return None, None
        return obj.version(), obj.selected_alpn_protocol()

    def close(self) -> None:
        """Graceful close (TLS close_notify, then FIN)."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def abort(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.abort()


class BufferedTransport(Transport, asyncio.BufferedProtocol):
    """Reads into the engine thread's one receive buffer: what a connection
    keeps it copies. A plain Protocol would have asyncio allocate
    ``max_size`` per read, which glibc with its default thresholds serves
    with mmap/mremap/munmap: three syscalls on every small response."""

    def __init__(self) -> None:
        super().__init__()
        self._view = _receive_view()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._read_size < RECV_BUFFER:
            return self._view[: self._read_size]
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        # A view, valid only during the call: h11 and h2 copy it into their
        # own buffers anyway, so copying it here first would be a waste.
        self._received(self._view[:nbytes])


class OwnedTransport(Transport, asyncio.Protocol):
    """Each read is a new bytes object (asyncio's ``sock.recv``) that a
    body chunk can be without a copy: a 64 MiB HTTP/1.1 download read into
    the shared buffer spent ~100 ms of CPU per GiB copying it out, against
    ~5 for the reads themselves. Used where the heap serves those blocks
    (:func:`tune_malloc` took) and asyncio's selector transport reads them
    (its ``max_size`` is the read size)."""

    def _sized(self) -> None:
        transport = self.transport
        if transport is not None and hasattr(transport, "max_size"):
            transport.max_size = self._read_size

    def data_received(self, data: bytes) -> None:
        self._received(memoryview(data))


class _Backstop:
    """One timer per engine thread for every raised low-water mark: each
    LOWAT_BACKSTOP it lowers the marks of connections that read nothing
    since the last tick (a timer per connection would cost a callback per
    millisecond each while busy)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._watched: dict[Transport, int] = {}
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, transport: Transport) -> None:
        self._watched[transport] = transport._reads
        if self._timer is None:
            self._timer = self.loop.call_later(LOWAT_BACKSTOP, self._tick)

    def _tick(self) -> None:
        self._timer = None
        watched = self._watched
        for transport, reads in list(watched.items()):
            if transport._stalled(reads):
                del watched[transport]
            else:
                watched[transport] = transport._reads
        if watched:
            self._timer = self.loop.call_later(LOWAT_BACKSTOP, self._tick)


def _backstop() -> _Backstop:
    """This loop's backstop (a thread may run one loop after another)."""
    loop = asyncio.get_running_loop()
    backstop: _Backstop | None = getattr(_local, "backstop", None)
    if backstop is None or backstop.loop is not loop:
        backstop = _local.backstop = _Backstop(loop)
    return backstop


def transport_class(loop: asyncio.AbstractEventLoop) -> type[Transport]:
    """The way connections on ``loop`` read (:class:`OwnedTransport` where
    it can, else :class:`BufferedTransport`)."""
    if tune_malloc() and isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
        return OwnedTransport
    return BufferedTransport


def read_bytes(data: memoryview) -> bytes:
    """A read as bytes: the object itself when the read is one whole bytes
    object (:class:`OwnedTransport`'s), else a copy."""
    whole = data.obj
    if type(whole) is bytes and len(whole) == len(data):
        return whole
    return data.tobytes()


def _guarded(sink: Sink, method: Callable[..., None], *args: object) -> None:
    try:
        method(*args)
    except Exception as exc:
        sink.on_bug(exc)
