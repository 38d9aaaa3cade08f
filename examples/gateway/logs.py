"""The gateway's logging: one line per request, at a small cost.

Through ``logging.basicConfig``'s handler, the access log added 26-31% to
a busy gateway's CPU per small request (the logging call alone, timed in
place: ~24 µs): a ``LogRecord`` with some twenty fields, the walk to the
caller's frame, a ``strftime``, the handler chain, and a ``write`` system
call per line (stderr is line-buffered and the handler flushes after every
record); now it adds 5-8%. Here the access line is written straight into
the log stream, in the format the other records get, and the stream is
flushed once at the end of the event loop's pass: one write for every line
of that pass.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
import time
from typing import TextIO

FORMAT = "%(asctime)s %(name)s %(message)s"

access_logger = logging.getLogger("gateway.access")


class PassBatchedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``StreamHandler`` whose flush, on a thread running an event loop,
    waits for the end of the loop's current pass: every line of that pass
    goes out in one write. Without a running loop (a supervisor process,
    another thread, exit) it flushes at once, and so it does once the loop
    that was to flush has stopped."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: asyncio.AbstractEventLoop | None = None
        """The loop whose pass ends with a flush, if one is scheduled."""

    def flush(self) -> None:
        pending = self._pending
        if pending is not None and pending.is_running():
            return
        loop = asyncio.events._get_running_loop()
        if loop is None:
            self._pending = None
            super().flush()
            return
        self._pending = loop
        loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self.acquire()
        try:
            self._pending = None
            super().flush()
        finally:
            self.release()


class _Clock:
    """``asctime`` as logging's default format writes it, the date and time
    part made once per second rather than once per line."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def stamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            fmt = logging.Formatter.default_time_format
            self._text = time.strftime(fmt, time.localtime(second))
            self._second = second
        return f"{self._text},{int((created - second) * 1000):03d}"


_clock = _Clock()


class SecondFormatter(logging.Formatter):
    """The default ``asctime``, from the per-second clock."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return _clock.stamp(record.created)


_handler: PassBatchedHandler | None = None
"""The handler setup_logging installed, whose stream the access lines share."""


def access(message: str) -> None:
    """One access-log line (the caller checked that the access log is on):
    as ``access_logger.info`` would write it through setup_logging's handler,
    without the record; through logging itself when that handler is not the
    one in place."""
    handler = _handler
    if handler is None:
        access_logger.info("%s", message)
        return
    line = f"{_clock.stamp(time.time())} {access_logger.name} {message}\n"
    handler.acquire()
    try:
        handler.stream.write(line)
        handler.flush()
    finally:
        handler.release()


def buffered_stderr() -> TextIO:
    """stderr's file descriptor behind a 64 KiB buffer: ``sys.stderr`` is
    line-buffered, a write per line whatever the handler does."""
    raw = open(sys.stderr.fileno(), "wb", buffering=64 * 1024, closefd=False)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace")


def setup_logging() -> None:
    """INFO to stderr, the access log off if GATEWAY_ACCESS_LOG is "0". Called
    in every worker: the servers spawn their workers as fresh interpreters."""
    global _handler
    root = logging.getLogger()
    if not root.handlers:
        handler = PassBatchedHandler(buffered_stderr())
        handler.setFormatter(SecondFormatter(FORMAT))
        root.addHandler(handler)
        _handler = handler
    root.setLevel(logging.INFO)
    if os.environ.get("GATEWAY_ACCESS_LOG") == "0":
        access_logger.setLevel(logging.WARNING)
