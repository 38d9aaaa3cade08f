# Runs on the engine thread only. Owns one HTTP/1.1 connection: its h11
# state machine, its Transport and the one exchange running on it.
"""HTTP/1.1 over h11, driven by transport callbacks.

An exchange starts with :meth:`HTTP11Connection.start` (the request is
written at once) and ends in ``on_data``: the connection tells its pool
through :class:`PoolHooks`, which releases it and answers the caller.

The common exchange (a request framed by Content-Length or nothing, an
HTTP/1.1 response head complete in the first read and framed by one
Content-Length) runs in a fast lane that writes and parses it here, with a
strict subset of h11's grammar: h11's event layer was 40% of the engine's
time per small request. Every other exchange is given to h11 from the
response's first byte, so h11 decides every case the lane does not take.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from typing import Any, Protocol

import h11

from .._exceptions import (
    HTTPCoreError,
    LocalProtocolError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    WriteError,
    WriteTimeout,
    describe,
)
from .._models import Origin, Request
from .exchange import Exchange, Head, body_event
from .messages import BodyChunk, ResponseHead, UploadAck
from .transport import Transport

logger = logging.getLogger("httpcore")

MAX_HEAD_SIZE = 64 * 1024
"""A response head larger than this is refused, not buffered."""

MAX_HEADER_FIELDS = 256
"""A response with more header fields than this is refused."""

_VERSIONS = {b"1.1": "HTTP/1.1", b"1.0": "HTTP/1.0"}
_NEED_DATA = h11.NEED_DATA
_Data = h11.Data
_EndOfMessage = h11.EndOfMessage
_Response = h11.Response
_Informational = h11.InformationalResponse
_DONE = h11.DONE


RAW_BODY_MIN = 256 * 1024
"""Content-Length bodies at least this large bypass h11's buffer."""


# The fast lane: a strict subset of what h11 accepts, for the common exchange.
# Everything outside it (chunked, 1xx, HTTP/1.0, a head split across reads,
# obs-fold, odd framing, any error) is handed to h11 as if h11 had seen the
# exchange from the start, so h11 stays the judge of every other case.
_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?\r\n")
_VCHAR = rb"[\x21-\x7e\x80-\xff]"


def _field(group: bytes) -> bytes:
    """h11's header-field, narrowed to visible ASCII and obs-text."""
    return (
        group + rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+):[ \t]*"
        + group + rb"(?:" + _VCHAR + rb"+(?:[ \t]+" + _VCHAR + rb"+)*)?)[ \t]*\r\n"
    )


_FIELDS = re.compile(_field(b"("))
_FIELD_BLOCK = re.compile(rb"(?:" + _field(b"(?:") + rb")*")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_NO_BODY_STATUS = (204, 304)

FastHead = tuple[int, bytes, list[tuple[bytes, bytes]], int, bool]
"""status, reason, headers, body length, keep-alive."""


def wire_request(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes | None
) -> tuple[bytes, bool] | None:
    """The request as h11 would write it, and whether it asks to close the
    connection, when its framing is plain Content-Length; None sends it
    through h11 instead."""
    if body is None or method == b"CONNECT":
        return None
    lengths = []
    host = []
    rest = []
    close = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length":
            lengths.append(value)
        elif lower == b"transfer-encoding":
            return None
        elif lower == b"connection" and not close:
            close = _has_close(value)
        line = name + b": " + value + b"\r\n"
        if lower == b"host":
            host.append(line)
        else:
            rest.append(line)
    if lengths != ([str(len(body)).encode("ascii")] if body else []):
        return None
    if len(host) != 1:
        return None
    head = (method, b" ", target, b" HTTP/1.1\r\n", *host, *rest, b"\r\n", body)
    return b"".join(head), close


def parse_head(data: bytes, method: bytes, request_close: bool) -> tuple[FastHead, int] | None:
    """A complete HTTP/1.1 final response head framed by one Content-Length,
    parsed exactly as h11 would, and where its body starts; None otherwise."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or end > MAX_HEAD_SIZE:
        return None
    status_line = _STATUS_LINE.match(data)
    if status_line is None:
        return None
    status = int(status_line[1])
    if status < 200:
        return None
    start = status_line.end()
    if _FIELD_BLOCK.fullmatch(data, start, end + 2) is None:
        return None
    headers = _FIELDS.findall(data, start, end + 2)
    if len(headers) > MAX_HEADER_FIELDS:
        return None
    length = -1
    keep = not request_close
    for name, value in headers:
        size = len(name)
        if size == 14 and name.lower() == b"content-length":
            if length >= 0 or _DIGITS.fullmatch(value) is None:
                return None
            length = int(value)
        elif size == 17 and name.lower() == b"transfer-encoding":
            return None
        elif size == 10 and keep and name.lower() == b"connection" and _has_close(value):
            keep = False
    if method == b"HEAD" or status in _NO_BODY_STATUS:
        length = 0
    elif length < 0:
        return None
    return (status, status_line[2] or b"", headers, length, keep), end + 4


def _asks_close(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(
        len(name) == 10 and name.lower() == b"connection" and _has_close(value)
        for name, value in headers
    )


def _has_close(value: bytes) -> bool:
    return any(token.strip().lower() == b"close" for token in value.split(b","))


def _new_h11() -> h11.Connection:
    return h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_SIZE)


def _raw_length(ex: Exchange, headers: list[tuple[bytes, bytes]], status: int) -> int:
    """The Content-Length when h11 frames this body by it, else -1."""
    if ex.request.method == b"HEAD" or status in (204, 304):
        return -1
    length = -1
    for name, value in headers:
        size = len(name)
        if size == 14 and name.lower() == b"content-length":
            length = int(value)
        elif size == 17 and name.lower() == b"transfer-encoding":
            return -1
    return length


def _keep_alive(ex: Exchange, event: h11.Response) -> bool:
    """h11's rule: HTTP/1.1 on both sides and no ``Connection: close``."""
    return (
        event.http_version == b"1.1"
        and not _asks_close(event.headers.raw_items())
        and not _asks_close(ex.request.headers)
    )


class PoolHooks(Protocol):
    """How a connection reports back to the pool that owns it."""

    def exchange_done(self, conn: Any, ex: Exchange, final: ResponseHead | BodyChunk) -> None: ...
    def exchange_failed(self, conn: Any, ex: Exchange, error: Exception, retry: str) -> None:
        """``retry``: "no", "if_idempotent" (stale keep-alive) or "safe"
        (the server certainly did not process the request)."""
    def exchange_released(self, conn: Any) -> None: ...
    def capacity_changed(self, conn: Any) -> None: ...
    def connection_lost(self, conn: Any, reason: str) -> None: ...


class HTTP11Connection:
    """One socket speaking HTTP/1.1; one exchange at a time, reused after."""

    http_version = "HTTP/1.1"

    def __init__(
        self,
        connection_id: int,
        origin: Origin,
        transport: Transport,
        pool: PoolHooks,
        forward: tuple[tuple[bytes, bytes], ...] | None = None,
    ) -> None:
        self.id = connection_id
        self._forward = forward
        """Set on a connection to a forwarding proxy: the headers for it."""
        self.origin = origin
        self.transport = transport
        self._pool = pool
        self._h11 = _new_h11()
        self._raw = -1
        """Body bytes still due in raw mode (see ``_raw_data``); -1: off."""
        self._raw_close: str | None = None
        """In raw mode: why the connection closes after the body; None: kept."""
        self._fast: Exchange | None = None
        """Set while the exchange runs in the fast lane, unseen by h11."""
        self._fast_close = False
        """The fast-lane request asked to close the connection after it."""
        self._loop = asyncio.get_running_loop()
        self.closed = False
        self.requests_served = 0
        self.idle_since = self._loop.time()
        self.ex: Exchange | None = None
        self._reused = False
        self._got_bytes = False
        self._head: Head | None = None
        self._head_sent = False
        self._parts: list[bytes] = []
        self._uploading = False
        self._unacked = 0
        self._starved = False
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        """When ``_timer`` fires (uvloop's handles have no ``when()``)."""
        self._deadline: float | None = None
        self._deadline_error: type[Exception] = ReadTimeout
        transport.attach(self)

    # -- queries the pool uses -------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.ex is not None

    @property
    def active_streams(self) -> int:
        return 0 if self.ex is None else 1

    def is_idle(self) -> bool:
        return self.ex is None and not self.closed

    def has_expired(self, now: float, expiry: float | None) -> bool:
        return self.closed or (expiry is not None and now - self.idle_since > expiry)

    # -- one exchange ----------------------------------------------------------------

    def start(self, ex: Exchange) -> None:
        """Write the request now; the response arrives through ``on_data``."""
        self.ex = ex
        ex.handler = self
        self._reused = self.requests_served > 0
        self._got_bytes = False
        self._head = None
        self._head_sent = False
        self._parts = []
        self._unacked = 0
        req = ex.request
        target, headers = self._target_and_headers(req)
        fast = wire_request(req.method, target, headers, req.body)
        if fast is not None:
            out, self._fast_close = fast
            self._fast = ex
        else:
            try:
                out = self._h11_send(req, target, headers)
            except h11.LocalProtocolError as exc:
                self._fail(LocalProtocolError(describe(exc)), reason="invalid request")
                return
        self._uploading = req.body is None
        if self.transport.closing:
            self._fail(WriteError("connection closed before the request was sent"))
            return
        self.transport.write(out)
        self._arm()
        if self._uploading and ex.upload:
            self.on_upload(ex)

    def _target_and_headers(self, req: Request) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """Origin form, or absolute form plus the proxy's headers when forwarding."""
        if self._forward is None:
            return req.url.target, req.headers
        url = req.url
        target = url.origin.scheme + b"://" + url.authority + url.target
        return target, [*req.headers, *self._forward]

    def _h11_send(self, req: Request, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
        """h11's bytes for the request head, and for the whole body when it is
        bytes (a streaming body follows through ``on_upload``)."""
        h = self._h11
        # _parsed: the caller's side already validated method, target and
        # headers (httpcore._models) as strictly as h11 would.
        out = h.send(h11.Request(method=req.method, target=target, headers=headers, _parsed=True))
        if req.body is not None:
            if req.body:
                out += h.send(_Data(data=req.body))
            out += h.send(_EndOfMessage())
        return out

    def on_upload(self, ex: Exchange) -> None:
        """Write the caller's upload pieces; acks wait while the socket is full."""
        if ex is not self.ex or not self._uploading:
            ex.upload.clear()
            return
        h = self._h11
        out = []
        try:
            while ex.upload:
                piece = ex.upload.popleft()
                if piece.data:
                    out.append(h.send(_Data(data=piece.data)))
                    self._unacked += len(piece.data)
                if piece.end:
                    out.append(h.send(_EndOfMessage()))
                    self._uploading = False
                    break
        except h11.LocalProtocolError as exc:
            self._fail(LocalProtocolError(describe(exc)), reason="invalid request body")
            return
        if self.transport.closing:
            self._fail(WriteError("connection closed while sending the body"))
            return
        self.transport.write(b"".join(out))
        self.on_writable()

    def on_writable(self) -> None:
        ex = self.ex
        if ex is None:
            return
        if self._unacked and not self.transport.write_paused:
            unacked, self._unacked = self._unacked, 0
            ex.send(UploadAck(unacked))
        self._arm()

    def on_credit(self, ex: Exchange, consumed: int) -> None:
        if ex is self.ex and self._starved and ex.credit > 0:
            self._starved = False
            if self._raw >= 0:
                self._flush(ex)
            else:
                self._process()
            if not self._starved and self.ex is ex:
                self.transport.resume_reading()
                self._arm()

    def on_abandon(self, ex: Exchange) -> None:
        if ex is self.ex:
            self._detach()
            self.close("request cancelled")

    # -- transport callbacks -----------------------------------------------------------

    def on_bug(self, exc: Exception) -> None:
        """A bug in this driver: fail the exchange with it as the cause, close."""
        logger.error("internal error on connection_id=%d", self.id, exc_info=exc)
        error = HTTPCoreError(f"internal error in the engine: {describe(exc)}")
        error.__cause__ = exc
        if self.ex is not None:
            self._fail(error, reason="internal error")
        else:
            self.close("internal error")

    def on_data(self, data: memoryview) -> None:
        if self.ex is None:
            self.close("unexpected data on idle connection")
            return
        self._got_bytes = True
        if self._raw >= 0:
            self._raw_data(data.tobytes())
            return
        if self._fast is not None:
            self._fast_head(self._fast, data.tobytes())
            return
        self._h11.receive_data(data)  # type: ignore[arg-type]  # h11 copies any buffer
        if not self._starved:
            self._process()

    def on_eof(self) -> None:
        if self.ex is None:
            self.close("server closed idle connection")
        elif not self._got_bytes:
            self._fail(RemoteProtocolError("server disconnected without sending a response"))
        elif self._raw >= 0:
            self._fail(
                RemoteProtocolError(
                    f"peer closed connection without sending complete message body: "
                    f"{self._raw} bytes missing"
                )
            )
        else:
            self._h11.receive_data(b"")
            if not self._starved:
                self._process()

    def on_lost(self, exc: BaseException | None) -> None:
        if self.ex is not None:
            if exc is None:
                self.on_eof()
            else:
                self._fail(ReadError(describe(exc)))
        self.close("connection lost" if exc is None else describe(exc))

    # -- the response ------------------------------------------------------------------

    def _process(self) -> None:
        """Turn received bytes into events for the caller, as far as credit allows."""
        ex = self.ex
        assert ex is not None
        h = self._h11
        parts = self._parts
        try:
            while True:
                event = h.next_event()
                kind = type(event)
                if kind is _Data:
                    parts.append(event.data)  # type: ignore[union-attr]
                elif kind is _EndOfMessage:
                    self._complete(ex, h.our_state is _DONE and h.their_state is _DONE)
                    return
                elif kind is _Response:
                    assert isinstance(event, _Response)
                    self._on_head(ex, event)
                    if self._raw >= 0:
                        break
                elif kind is _Informational:
                    continue
                elif event is _NEED_DATA:
                    break
                else:
                    raise RemoteProtocolError(f"unexpected {kind.__name__} from the server")
        except h11.RemoteProtocolError as exc:
            self._fail(RemoteProtocolError(describe(exc)))
            return
        except RemoteProtocolError as exc:
            self._fail(exc)
            return
        if self._raw == 0:
            self._complete(ex, self._raw_close is None)
            return
        self._flush(ex)

    def _fast_head(self, ex: Exchange, data: bytes) -> None:
        """The first bytes of a fast-lane response: parse the head here, or
        give the exchange to h11 if it is anything but the common case."""
        self._fast = None
        req = ex.request
        parsed = parse_head(data, req.method, self._fast_close)
        if parsed is None:
            self._to_h11(ex, data)
            return
        (status, reason, headers, length, keep), body_start = parsed
        self._head = (status, reason, headers, "HTTP/1.1")
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("head received request_id=%d status=%d", ex.id, status)
        self._raw = length
        self._raw_close = None if keep else "server closes after the response"
        self._raw_data(data[body_start:])

    def _to_h11(self, ex: Exchange, data: bytes) -> None:
        """Bring h11 to where it would be had it sent this request, then let
        it read the response from its first byte."""
        req = ex.request
        self._h11_send(req, *self._target_and_headers(req))
        self._h11.receive_data(data)
        self._process()

    def _on_head(self, ex: Exchange, event: h11.Response) -> None:
        version = _VERSIONS.get(event.http_version) or (
            "HTTP/" + event.http_version.decode("ascii")
        )
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise RemoteProtocolError(f"unsupported HTTP version in the status line: {version}")
        headers = list(event.headers.raw_items())
        if len(headers) > MAX_HEADER_FIELDS:
            raise RemoteProtocolError(
                f"response has {len(headers)} header fields, more than {MAX_HEADER_FIELDS}"
            )
        # h11 bounds a head that arrives in pieces; one that arrives whole in
        # a single read is measured here.
        size = sum(len(name) + len(value) + 4 for name, value in headers) + len(event.reason)
        if size > MAX_HEAD_SIZE:
            raise RemoteProtocolError(f"response head of {size} bytes, more than {MAX_HEAD_SIZE}")
        self._head = (event.status_code, bytes(event.reason), headers, version)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("head received request_id=%d status=%d", ex.id, event.status_code)
        length = -1
        if self._h11.our_state is _DONE:
            length = _raw_length(ex, headers, event.status_code)
        if length >= RAW_BODY_MIN:
            leftover = self._h11.trailing_data[0]
            if len(leftover) <= length:
                self._raw = length - len(leftover)
                keep = _keep_alive(ex, event)
                self._raw_close = None if keep else "server closes after the response"
                if leftover:
                    self._parts.append(leftover)

    def _raw_data(self, data: bytes) -> None:
        """A large Content-Length body: bytes go to the caller as received,
        without h11 copying them twice; framing is just a countdown."""
        ex = self.ex
        assert ex is not None
        remaining = self._raw
        if len(data) > remaining:
            self._raw_close = "unexpected data after the response"
            data = data[:remaining]
        self._raw = remaining - len(data)
        self._parts.append(data)
        if self._raw == 0:
            self._complete(ex, self._raw_close is None)
        else:
            self._flush(ex)

    def _flush(self, ex: Exchange) -> None:
        """Send a streaming caller what has arrived; pause when out of credit."""
        if ex.stream and self._head is not None:
            event = body_event(self._head, self._head_sent, self._parts, False)
            if event is not None:
                self._head_sent = True
                ex.credit -= len(event.body if isinstance(event, ResponseHead) else event.data)
                ex.send(event)
            if ex.credit <= 0 and self.ex is ex:
                self._starved = True
                self.transport.pause_reading()
                self._disarm()
                return
        self._arm()

    def _complete(self, ex: Exchange, reusable: bool) -> None:
        assert self._head is not None
        final = body_event(self._head, self._head_sent, self._parts, True)
        assert final is not None
        raw = self._raw >= 0
        h11_used = self._h11.our_state is not h11.IDLE
        self._detach()
        self.requests_served += 1
        self.idle_since = self._loop.time()
        h = self._h11
        if raw:
            if not reusable:
                self.close(self._raw_close or "server closes after the response")
            elif h11_used:
                self._h11 = _new_h11()
        elif reusable:
            h.start_next_cycle()
            if h.trailing_data[0]:
                self.close("unexpected data after the response")
        elif h.their_state is h11.MUST_CLOSE or h.their_state is h11.CLOSED:
            self.close("server closes after the response")
        else:
            self.close("response ended before the request body was sent")
        self._pool.exchange_done(self, ex, final)

    def _detach(self) -> None:
        self._raw = -1
        self._fast = None
        ex, self.ex = self.ex, None
        if ex is not None:
            ex.handler = None
        self._parts = []
        self._uploading = False
        self._disarm()
        if self._starved:
            self._starved = False
            self.transport.resume_reading()

    def _fail(self, error: Exception, reason: str | None = None) -> None:
        """End the exchange with ``error``; the connection cannot be trusted."""
        ex = self.ex
        if ex is None:
            return
        stale = self._reused and not self._got_bytes and isinstance(
            error, (ReadError, WriteError, RemoteProtocolError)
        )
        self._detach()
        self.close(reason or describe(error))
        self._pool.exchange_failed(self, ex, error, "if_idempotent" if stale else "no")

    # -- deadlines ---------------------------------------------------------------------

    def _arm(self) -> None:
        """Set the deadline: write while the socket is full, else read.

        One timer per connection, moved lazily: a request that ends before
        its deadline costs no timer operation at all.
        """
        ex = self.ex
        if ex is None:
            return
        if self.transport.write_paused:
            timeout, self._deadline_error = ex.timeout.write, WriteTimeout
        else:
            timeout, self._deadline_error = ex.timeout.read, ReadTimeout
        if timeout is None:
            self._deadline = None
            return
        deadline = self._deadline = self._loop.time() + timeout
        timer = self._timer
        if timer is not None:
            if self._timer_at <= deadline:
                return
            timer.cancel()
        self._timer = self._loop.call_at(deadline, self._check_deadline)
        self._timer_at = deadline

    def _disarm(self) -> None:
        self._deadline = None

    def _check_deadline(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self.ex is None or self.closed:
            return
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._check_deadline)
            self._timer_at = deadline
            return
        error = self._deadline_error
        what = "writing the request" if error is WriteTimeout else "reading the response"
        self._fail(error(f"timed out {what}"), reason="timeout")

    # -- life --------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        """Close and tell the pool; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport.close()
        self._pool.connection_lost(self, reason)
