# Runs on the engine thread only. Owns one HTTP/1.1 connection: its h11
# state machine, its Transport and the one exchange running on it.
"""HTTP/1.1 over h11, driven by transport callbacks.

An exchange starts with :meth:`HTTP11Connection.start` (the request is
written at once) and ends in :meth:`HTTP11Connection._end`, the one place
that detaches it, settles the connection (idle or closed) and then tells the
pool, which answers the caller. The common exchange runs in the fast lane of
``h1wire``; every other one is given to h11 from the response's first byte.
"""

from __future__ import annotations

import asyncio
import logging

import h11

from .._exceptions import (
    HTTPCoreError,
    LocalProtocolError,
    ReadError,
    RemoteProtocolError,
    WriteError,
    describe,
)
from .._models import Origin, Request
from .deadline import DeadlineTimer, expiry_error
from .exchange import Exchange, Head, body_event
from .h1wire import HeadMemo, asks_close, parse_head, wire_request
from .interfaces import MAX_HEAD_SIZE, MAX_HEADER_FIELDS, PoolHooks, Retry
from .messages import BodyChunk, ResponseHead, UploadAck
from .transport import RECV_BUFFER, Transport, read_bytes

logger = logging.getLogger("httpcore")

READ_SLACK = 256 * 1024
"""Bytes read past a streaming caller's credit at most (see _size_reads)."""

_VERSIONS = {b"1.1": "HTTP/1.1", b"1.0": "HTTP/1.0"}
_NEED_DATA = h11.NEED_DATA
_Data = h11.Data
_EndOfMessage = h11.EndOfMessage
_Response = h11.Response
_Informational = h11.InformationalResponse
_DONE = h11.DONE


RAW_BODY_MIN = 256 * 1024
"""Content-Length bodies at least this large bypass h11's buffer."""


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
        and not asks_close(event.headers.raw_items())
        and not asks_close(ex.request.headers)
    )


class HTTP11Connection:
    """One socket speaking HTTP/1.1; one exchange at a time, reused after."""

    http_version = "HTTP/1.1"
    settled = True

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
        self._heads: HeadMemo = {}
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
        self.deadline: float | None = None
        self.writing = False
        self._timer = DeadlineTimer(self._loop, self._expire)
        transport.attach(self)

    # -- queries the pool uses -------------------------------------------------------

    @property
    def active_streams(self) -> int:
        return 0 if self.ex is None else 1

    def capacity(self) -> int:
        return 1 if self.ex is None and not self.closed else 0

    def has_expired(self, now: float, expiry: float | None) -> bool:
        if self.closed:
            return True
        return self.ex is None and expiry is not None and now - self.idle_since > expiry

    # -- one exchange ----------------------------------------------------------------

    def start(self, ex: Exchange) -> None:
        """Write the request now; the response arrives through ``on_data``."""
        self.ex = ex
        ex.handler = self
        self._reused = self.requests_served > 0
        self._got_bytes = False
        self._head = None
        self._head_sent = False
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
        self._touch()
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
        self._touch()

    def on_credit(self, ex: Exchange, consumed: int) -> None:
        if ex is not self.ex:
            return
        self._size_reads(ex)
        if self._starved and ex.credit > 0:
            self._starved = False
            if self._raw >= 0:
                self._flush(ex)
            else:
                self._process()
            if not self._starved and self.ex is ex:
                self.transport.resume_reading()
                self._touch()

    def on_abandon(self, ex: Exchange) -> None:
        if ex is self.ex:
            self._end(None, close="request cancelled")

    # -- transport callbacks -----------------------------------------------------------

    def on_bug(self, exc: Exception) -> None:
        """A bug in this driver: fail the exchange with it as the cause, close."""
        logger.error("internal error on connection_id=%d", self.id, exc_info=exc)
        error = HTTPCoreError(f"internal error in the engine: {describe(exc)}")
        error.__cause__ = exc
        self.close("internal error", error)

    def on_data(self, data: memoryview) -> None:
        if self.ex is None:
            self.close("unexpected data on idle connection")
            return
        self._got_bytes = True
        if self._raw >= 0:
            self._raw_data(read_bytes(data))  # a body chunk as read: no copy
            return
        if self._fast is not None:
            self._fast_head(self._fast, read_bytes(data))
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
                    trailers = event.headers  # type: ignore[union-attr]
                    self._complete(
                        ex,
                        h.our_state is _DONE and h.their_state is _DONE,
                        list(trailers.raw_items()) if trailers else None,
                    )
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
        parsed = parse_head(data, req.method, self._fast_close, self._heads)
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
            self.transport.expect(self._raw)
            self._flush(ex)

    def _size_reads(self, ex: Exchange) -> None:
        """Read at most READ_SLACK past a streaming caller's credit, so a
        slow reader holds its credit plus READ_SLACK here, whatever
        RECV_BUFFER is."""
        room = ex.credit + READ_SLACK
        self.transport.read_size = min(RECV_BUFFER, max(room, READ_SLACK))

    def _flush(self, ex: Exchange) -> None:
        """Send a streaming caller what has arrived; pause when out of credit."""
        if ex.stream and self._head is not None:
            event = body_event(self._head, self._head_sent, self._parts, False)
            if event is not None:
                self._head_sent = True
                ex.credit -= len(event.body if isinstance(event, ResponseHead) else event.data)
                ex.send(event)
                self._size_reads(ex)
            if ex.credit <= 0 and self.ex is ex:
                # The caller is behind: no deadline, the server is not stalling.
                self._starved = True
                self.transport.pause_reading()
                self.deadline = None
                return
        self._touch()

    def _complete(
        self,
        ex: Exchange,
        reusable: bool,
        trailers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """The whole response is in: settle the connection, then end."""
        assert self._head is not None
        final = body_event(self._head, self._head_sent, self._parts, True, trailers)
        assert final is not None
        h = self._h11
        close: str | None = None
        if self._raw >= 0:
            if not reusable:
                close = self._raw_close or "server closes after the response"
            elif h.our_state is not h11.IDLE:
                self._h11 = _new_h11()
        elif reusable:
            h.start_next_cycle()
            if h.trailing_data[0]:
                close = "unexpected data after the response"
        elif h.their_state is h11.MUST_CLOSE or h.their_state is h11.CLOSED:
            close = "server closes after the response"
        else:
            close = "response ended before the request body was sent"
        self.requests_served += 1
        self._end(final, close=close)

    def _fail(self, error: Exception, reason: str | None = None) -> None:
        """End the exchange with ``error``; the connection cannot be trusted.
        A reused connection that failed before any response byte was most
        likely closed by the server while idle: the pool may retry."""
        stale = (
            self._reused
            and not self._got_bytes
            and isinstance(error, (ReadError, WriteError, RemoteProtocolError))
        )
        retry = Retry.IF_IDEMPOTENT if stale else Retry.NO
        self._end(error, retry, close=reason or describe(error))

    def _end(
        self,
        outcome: ResponseHead | BodyChunk | Exception | None,
        retry: Retry = Retry.NO,
        close: str | None = None,
    ) -> None:
        """The one place an exchange ends here, whatever the outcome: detach
        it, leave the connection idle or (``close``) closed, then tell the
        pool, which answers the caller and reuses the slot."""
        ex = self.ex
        if ex is None:
            return
        self.ex = None
        if ex.handler is self:
            ex.handler = None
        self._raw = -1
        self._fast = None
        self._parts = []
        self._uploading = False
        self.deadline = None
        self.transport.read_size = RECV_BUFFER
        self.transport.expect(0)
        if self._starved:
            self._starved = False
            self.transport.resume_reading()
        if close is not None:
            self.close(close)
        else:
            self.idle_since = self._loop.time()
        self._pool.exchange_ended(self, ex, outcome, retry)

    # -- deadlines ---------------------------------------------------------------------

    def _touch(self) -> None:
        """Progress: the deadline is the write timeout from now while the
        socket is full, else the read timeout."""
        ex = self.ex
        if ex is not None:
            self._timer.touch(self, ex, self.transport.write_paused)

    def _expire(self, now: float) -> float | None:
        ex, deadline = self.ex, self.deadline
        if ex is None or deadline is None:
            return None
        if now < deadline:
            return deadline
        self._fail(expiry_error(self, ex), reason="timeout")
        return None

    # -- life --------------------------------------------------------------------------

    def close(self, reason: str, error: Exception | None = None) -> None:
        """End the running exchange (with ``error``, or an error naming
        ``reason``), close the socket and tell the pool; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self._timer.cancel()
        self.transport.close()
        if self.ex is not None:
            self._end(error or RemoteProtocolError(f"connection closed: {reason}"))
        self._pool.connection_closed(self, reason)
