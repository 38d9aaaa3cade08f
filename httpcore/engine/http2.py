# Runs on the engine thread only. Owns one HTTP/2 connection: its h2 state
# machine, its Transport and every stream (exchange) multiplexed on it.
"""HTTP/2 over h2, driven by transport callbacks.

Any number of exchanges run at once, up to the server's
``SETTINGS_MAX_CONCURRENT_STREAMS``. Writes are batched: whatever h2 has to
send goes out in one socket write per loop iteration.

Rules of this file:
- an exchange ends in :meth:`HTTP2Connection._end` only, whatever the
  outcome; it resets the stream if it is not closed both ways and then
  tells the pool, which answers the caller;
- the connection window is re-opened as data arrives (while the
  connection holds less than CONNECTION_BUFFER unread bytes); a stream's
  window only as its caller reads, so a slow reader holds back only itself;
- the events of one read are all taken in before any upload is pumped.
"""

from __future__ import annotations

import asyncio
import logging
import re

import h2.config
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hpack import NeverIndexedHeaderTuple

from .._exceptions import HTTPCoreError, LocalProtocolError, RemoteProtocolError, describe
from .._models import Origin
from .deadline import DeadlineTimer, expiry_error
from .exchange import Exchange, Head, body_event
from .h2compat import ConnectionFailed, DataRun, H2Connection, StreamMalformed
from .interfaces import (
    CONNECTION_BUFFER,
    CONNECTION_WINDOW,
    MAX_HEAD_SIZE,
    MAX_HEADER_FIELDS,
    STREAM_WINDOW,
    PoolHooks,
    Retry,
)
from .messages import BodyChunk, ResponseHead, UploadAck
from .transport import LOWAT_MIN, Transport

logger = logging.getLogger("httpcore")

WINDOW_ACK_MIN = STREAM_WINDOW // 4
"""Bytes a stream window is re-opened by at least (fewer WINDOW_UPDATEs)."""

CONNECTION_ACK_MIN = CONNECTION_WINDOW // 4
"""Bytes the connection window is re-opened by at least."""

_MAX_STREAM_ID = 2**31 - 1
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"}
)
_SECRET = frozenset({b"authorization", b"proxy-authorization"})
_NO_BODY_STATUS = (204, 304)
_HEADS_REMEMBERED = 64
_KnownHead = tuple[int, tuple[tuple[bytes, bytes], ...], int | None]
"""A checked response head: status, regular fields, content-length."""


_FIELD_NAME = re.compile(rb"[^\x00-\x20A-Z\x7f-\xff:]+")
_FIELD_VALUE = re.compile(rb"(?:[^\x00\r\n \t](?:[^\x00\r\n]*[^\x00\r\n \t])?)?")
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


def check_fields(
    fields: list[tuple[bytes, bytes]], trailers: bool
) -> tuple[str | None, int, list[tuple[bytes, bytes]]]:
    """RFC 9113 §8.2-8.3 for a response head (or trailers), in one pass.

    Returns (problem or None, status, regular fields). Done here rather than
    by h2's ``validate_inbound_headers``, which checks the same rules byte by
    byte in chains of generators: about 8% of the engine's time on small
    HTTP/2 responses.
    """
    status = -1
    regular: list[tuple[bytes, bytes]] = []
    for name, value in fields:
        if name[:1] == b":":
            if trailers or regular or status >= 0 or name != b":status":
                return f"pseudo-header {name!r} not allowed here", 0, regular
            if len(value) != 3 or not value.isdigit():
                return f"bad :status {value!r}", 0, regular
            status = int(value)
        else:
            if not _FIELD_NAME.fullmatch(name):
                return f"illegal field name {name!r}", 0, regular
            if name in _CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
                return f"connection-specific field {name!r}", 0, regular
            regular.append((name, value))
        if not _FIELD_VALUE.fullmatch(value):
            return f"illegal value for {name!r}", 0, regular
    if status < 0 and not trailers:
        return "no :status", 0, regular
    return None, status, regular


def h2_headers(ex: Exchange) -> list[tuple[bytes, bytes]]:
    """Pseudo-headers first, names lower-cased, hop-by-hop fields dropped."""
    req = ex.request
    origin = req.url.origin
    authority = req.url.authority
    rest: list[tuple[bytes, bytes]] = []
    for name, value in req.headers:
        lowered = name.lower()
        if lowered in _HOP_BY_HOP:
            if lowered == b"host":
                authority = value
            continue
        if lowered == b"te" and value.lower() != b"trailers":
            continue
        if lowered in _SECRET or (lowered == b"cookie" and len(value) < 20):
            # As h2's own normalization would: never indexed, so a secret
            # does not sit in the server's HPACK table (RFC 7541 §7.1.3).
            rest.append(NeverIndexedHeaderTuple(lowered, value))
        else:
            rest.append((lowered, value))
    return [
        (b":method", req.method),
        (b":authority", authority),
        (b":scheme", origin.scheme),
        (b":path", req.url.target),
        *rest,
    ]


def client_h2(
    stream_window: int = STREAM_WINDOW, connection_window: int = CONNECTION_WINDOW
) -> H2Connection:
    """An h2 client as the engine runs one, its preface queued: field checks
    left to check_fields, push off, heads bounded by MAX_HEAD_SIZE from the
    first frame, and these receive windows (tests pass small ones)."""
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,  # check_fields does it, cheaper
        normalize_inbound_headers=False,  # it only joins request cookies
    )
    h = H2Connection(config=config)
    h.local_settings = h2.settings.Settings(
        client=True,
        initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: stream_window,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEAD_SIZE,
        },
    )
    h.initiate_connection()
    # h2 applies our MAX_HEADER_LIST_SIZE only once the server acks it;
    # bound the decoder from the first frame on.
    h.decoder.max_header_list_size = MAX_HEAD_SIZE
    h.increment_flow_control_window(connection_window - 65535)
    return h


class _Stream:
    """One exchange on the connection."""

    __slots__ = (
        "deadline",
        "ex",
        "expected",
        "got_bytes",
        "head",
        "head_sent",
        "id",
        "out",
        "out_end",
        "parts",
        "received",
        "to_ack",
        "trailers",
        "unacked_upload",
        "unread",
        "unread_bytes",
        "uploading",
        "window_due",
        "writing",
    )

    def __init__(self, stream_id: int, ex: Exchange) -> None:
        self.id = stream_id
        self.ex = ex
        self.head: Head | None = None
        self.head_sent = False
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.parts: list[bytes] = []
        self.received = 0
        """Body bytes received, checked against ``expected`` at the end."""
        self.expected: int | None = None
        """The response's content-length, when it frames the body."""
        self.to_ack = 0
        """Flow-controlled bytes received and not yet handed to the caller."""
        self.unread: list[list[int]] = []
        """Per chunk sent to a streaming caller: [data bytes, flow-controlled
        bytes]; its stream window is re-opened as the caller consumes it."""
        self.unread_bytes = 0
        self.window_due = 0
        """Stream-window bytes its caller has read, not yet re-opened."""
        self.out: list[memoryview] = []
        self.out_end = False
        """The request body ends after ``out`` (END_STREAM still to send)."""
        self.uploading = ex.request.body is None
        """The caller is still streaming the request body."""
        self.unacked_upload = 0
        self.got_bytes = False
        self.deadline: float | None = None
        self.writing = False


class HTTP2Connection:
    """One socket speaking HTTP/2 to one origin."""

    http_version = "HTTP/2"

    def __init__(
        self, connection_id: int, origin: Origin, transport: Transport, pool: PoolHooks
    ) -> None:
        self.id = connection_id
        self.origin = origin
        self.transport = transport
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self._h2 = client_h2()
        self.streams: dict[int, _Stream] = {}
        self._by_ex: dict[Exchange, _Stream] = {}
        self.closed = False
        self.goaway = False
        """The server said GOAWAY: no new stream starts here."""
        self._goaway_queued = False
        """h2 queued our GOAWAY for a connection error: close sends no other."""
        self._settings_seen = False
        self._stream_limit = 1
        """The server's SETTINGS_MAX_CONCURRENT_STREAMS. Until its SETTINGS
        arrive the limit is unknown: only the stream of the request that
        opened the connection goes out; the rest wait one round trip rather
        than risk REFUSED_STREAM."""
        self.requests_served = 0
        self.idle_since = self._loop.time()
        self._held = 0
        """Bytes sent to streaming callers and not yet consumed by them."""
        self._window_due = 0
        """Connection-window bytes received and not yet re-opened."""
        self._flush_scheduled = False
        self._touched: dict[int, _Stream] = {}
        """Streams with data received this loop pass, not yet delivered."""
        self._deliver_scheduled = False
        self._timer = DeadlineTimer(self._loop, self._expire)
        self._heads: dict[tuple[tuple[bytes, bytes], ...], _KnownHead] = {}
        """Response heads that passed :meth:`_check_head` here, by their
        fields as decoded: a server repeats a few heads (nginx's change once a
        second, with its Date), and the checks were ~8% of the engine's time
        on small HTTP/2 responses."""
        transport.attach(self)
        self._flush()

    # -- queries the pool uses -------------------------------------------------------

    @property
    def active_streams(self) -> int:
        return len(self.streams)

    @property
    def settled(self) -> bool:
        """The server's SETTINGS (and so its stream limit) have arrived."""
        return self._settings_seen or self.closed or self.goaway

    def capacity(self) -> int:
        """How many more streams this connection takes now."""
        if self.closed or self.goaway:
            return 0
        free = self._stream_limit - len(self.streams)
        if free <= 0:
            return 0
        ids_left = (_MAX_STREAM_ID - self._h2.highest_outbound_stream_id) >> 1
        return free if free < ids_left else ids_left

    def has_expired(self, now: float, expiry: float | None) -> bool:
        if self.closed or self.goaway:
            return True
        return not self.streams and expiry is not None and now - self.idle_since > expiry

    # -- exchanges -----------------------------------------------------------------------

    def start(self, ex: Exchange) -> None:
        """Open a stream for ``ex``; frames go out with the next flush."""
        h = self._h2
        req = ex.request
        if self.capacity() <= 0:
            # granted before the server lowered its limit (or sent GOAWAY)
            error = RemoteProtocolError("no stream free")
            self._pool.exchange_ended(self, ex, error, Retry.REQUEUE)
            return
        try:
            stream_id = h.get_next_available_stream_id()
            end = req.body is not None and not req.body
            h.send_request(stream_id, h2_headers(ex), end)
        except h2.exceptions.ProtocolError as exc:
            self._pool.exchange_ended(self, ex, LocalProtocolError(describe(exc)), Retry.REFUSED)
            return
        stream = _Stream(stream_id, ex)
        self.streams[stream_id] = stream
        self._by_ex[ex] = stream
        ex.handler = self
        if req.body:
            stream.out.append(memoryview(req.body))
            stream.out_end = True
            self._pump(stream)
        elif stream.uploading and ex.upload:
            self.on_upload(ex)
        if stream.id in self.streams:
            self._touch(stream)
        self._schedule_flush()

    def on_upload(self, ex: Exchange) -> None:
        stream = self._by_ex.get(ex)
        if stream is None:
            ex.upload.clear()
            return
        while ex.upload:
            piece = ex.upload.popleft()
            if piece.data:
                stream.out.append(memoryview(piece.data))
            if piece.end:
                stream.out_end = True
                stream.uploading = False
        self._pump(stream)
        self._schedule_flush()

    def _pump(self, stream: _Stream) -> None:
        """Send as much of the stream's body as the peer's windows allow;
        what goes out is progress."""
        h = self._h2
        sid = stream.id
        out = stream.out
        sent = 0
        try:
            while out:
                window = min(h.local_flow_control_window(sid), h.max_outbound_frame_size)
                if window <= 0:
                    break
                piece = out[0]
                chunk = piece[:window]
                if len(chunk) == len(piece):
                    out.pop(0)
                else:
                    out[0] = piece[window:]
                last = stream.out_end and not out
                h.send_data(sid, chunk.tobytes(), end_stream=last)
                sent += len(chunk)
                if last:
                    stream.out_end = False
            if stream.out_end and not out:
                stream.out_end = False
                h.end_stream(sid)
        except (h2.exceptions.ProtocolError, h2.exceptions.FlowControlError) as exc:
            self._end(stream, LocalProtocolError(describe(exc)))
            return
        if sent:
            stream.unacked_upload += sent
            self._touch(stream)
        self._ack_upload(stream)

    def _ack_upload(self, stream: _Stream) -> None:
        """Let a streaming caller send more once its bytes are in h2's hands,
        unless the socket is full (then on_writable does it)."""
        streaming = stream.ex.request.body is None
        if stream.unacked_upload and streaming and not self.transport.write_paused:
            n, stream.unacked_upload = stream.unacked_upload, 0
            stream.ex.send(UploadAck(n))

    def on_credit(self, ex: Exchange, consumed: int) -> None:
        """The caller consumed some body: re-open that much of its window."""
        stream = self._by_ex.get(ex)
        if stream is None:
            return
        ack = 0
        unread = stream.unread
        taken = 0
        while consumed > 0 and taken < len(unread):
            entry = unread[taken]
            if entry[0] <= consumed:
                consumed -= entry[0]
                stream.unread_bytes -= entry[0]
                self._held -= entry[0]
                ack += entry[1]
                taken += 1
            else:
                part = entry[1] * consumed // entry[0]
                entry[0] -= consumed
                entry[1] -= part
                stream.unread_bytes -= consumed
                self._held -= consumed
                ack += part
                consumed = 0
        del unread[:taken]
        stream.window_due += ack
        if stream.window_due >= WINDOW_ACK_MIN:
            ack, stream.window_due = stream.window_due, 0
            self._open_stream_window(stream.id, ack)
        self._open_connection_window()
        self._schedule_flush()
        if stream.deadline is None and stream.unread_bytes < STREAM_WINDOW // 2:
            self._touch(stream)

    def on_abandon(self, ex: Exchange) -> None:
        stream = self._by_ex.get(ex)
        if stream is not None:
            self._end(stream, None)

    # -- transport callbacks --------------------------------------------------------------

    def on_bug(self, exc: Exception) -> None:
        logger.error("internal error on connection_id=%d", self.id, exc_info=exc)
        error = HTTPCoreError(f"internal error in the engine: {describe(exc)}")
        error.__cause__ = exc
        self.close("internal error", error)

    def on_data(self, data: memoryview) -> None:
        if not self._settings_seen and bytes(data[:5]) == b"HTTP/":
            self._not_h2(f"it answered {bytes(data[:12]).decode('latin-1')!r}")
            return
        try:
            events = self._h2.receive_prefix(data)
        except h2.exceptions.ProtocolError as exc:  # h2 without events_before_error
            events = [ConnectionFailed(exc)]
        touched = self._touched
        pumps: list[int] = []
        failed: ConnectionFailed | None = None
        for event in events:
            if type(event) is ConnectionFailed:
                assert isinstance(event, ConnectionFailed)
                failed = event
                break
            self._on_event(event, touched, pumps)
        if touched and not self._deliver_scheduled:
            # Delivered once the loop has handed over everything it read
            # this pass (a TLS read often comes in a full buffer and a
            # small remainder): fewer, larger chunks, one wake-up.
            self._deliver_scheduled = True
            self._loop.call_soon(self._deliver_touched)
        if failed is not None:
            self._goaway_queued = True
            reason = f"HTTP/2 protocol error: {describe(failed.error)}"
            self.close("protocol error", RemoteProtocolError(reason))
            return
        for sid in pumps:
            targets = [self.streams.get(sid)] if sid else list(self.streams.values())
            for target in targets:
                if target is not None and target.id in self.streams and target.out:
                    self._pump(target)
        self._open_connection_window()
        self._flush()
        if len(data) >= LOWAT_MIN or self.transport.raised:
            # A small read with the mark down is no bulk transfer: many
            # small streams would otherwise cost a pass over all of them.
            self.transport.expect(self._sure_bytes())

    def _sure_bytes(self) -> int:
        """Body bytes sure to come: what is left of the bodies with a
        content-length, within the windows the server has; none while a
        body has no content-length (an event stream wants each piece at
        once) or a request body is still going out (its window updates
        must not wait). A head still to come counts nothing and waits at
        most LOWAT_BACKSTOP: a server's answers queue behind the DATA it
        has written, so on a busy connection some head nearly always
        is."""
        h = self._h2
        total = 0
        for stream in self.streams.values():
            if stream.uploading or stream.out or stream.unacked_upload:
                return 0
            if stream.head is not None:
                if stream.expected is None:
                    return 0
                h2_stream = h.streams.get(stream.id)
                if h2_stream is not None:
                    left = stream.expected - stream.received
                    total += min(left, h2_stream.inbound_flow_control_window)
        return min(total, h.inbound_flow_control_window)

    def on_eof(self) -> None:
        if not self._settings_seen and self.origin.scheme == b"http":
            self._not_h2("it closed the connection without sending HTTP/2 SETTINGS")
            return
        self._lost("server closed the connection")

    def _not_h2(self, what: str) -> None:
        """A server that does not speak HTTP/2 at all: say so, not "protocol
        error" (h2c prior knowledge against an HTTP/1.1 server)."""
        how = " (prior knowledge: http1=False)" if self.origin.scheme == b"http" else ""
        error = RemoteProtocolError(
            f"the server at {self.origin} does not speak HTTP/2{how}: {what}"
        )
        self.close("not HTTP/2", error)

    def on_lost(self, exc: BaseException | None) -> None:
        self._lost("connection lost" if exc is None else describe(exc))

    def on_writable(self) -> None:
        for stream in list(self.streams.values()):
            self._ack_upload(stream)
            if stream.out or stream.unacked_upload:
                self._touch(stream)

    def _lost(self, reason: str) -> None:
        """The server went away: streams it sent nothing on may have been
        stale-connection victims; the others are lost."""
        if self.closed:
            return
        reused = self.requests_served > 0
        for stream in list(self.streams.values()):
            retry = Retry.IF_IDEMPOTENT if reused and not stream.got_bytes else Retry.NO
            self._end(stream, RemoteProtocolError(f"server disconnected: {reason}"), retry)
        self.close(reason)

    # -- events ---------------------------------------------------------------------------

    def _on_event(self, event: object, touched: dict[int, _Stream], pumps: list[int]) -> None:
        kind = type(event)
        if kind is DataRun or kind is h2.events.DataReceived:
            assert isinstance(event, (DataRun, h2.events.DataReceived))
            flow = event.flow_controlled_length or 0
            self._window_due += flow
            stream = self.streams.get(event.stream_id or 0)
            if stream is None:
                return
            stream.got_bytes = True
            if event.data:
                stream.parts.append(event.data)
                stream.received += len(event.data)
            stream.to_ack += flow
            touched[stream.id] = stream
        elif kind is h2.events.ResponseReceived:
            assert isinstance(event, h2.events.ResponseReceived)
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                stream.got_bytes = True
                self._on_head(stream, event.headers or [])
                if stream.id in self.streams:
                    touched[stream.id] = stream
        elif kind is h2.events.StreamEnded:
            assert isinstance(event, h2.events.StreamEnded)
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                touched.pop(stream.id, None)
                self._complete(stream)
        elif kind is h2.events.StreamReset:
            assert isinstance(event, h2.events.StreamReset)
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                touched.pop(stream.id, None)
                code = _code_name(event.error_code)
                retry = Retry.NO
                if not event.remote_reset:  # h2 reset it: the server broke a rule
                    error = RemoteProtocolError(f"stream error ({code}): the client reset it")
                else:
                    error = RemoteProtocolError(f"stream reset by the server: {code}")
                    if event.error_code == ErrorCodes.REFUSED_STREAM and not stream.got_bytes:
                        retry = self._refused()
                self._end(stream, error, retry)
        elif kind is StreamMalformed:
            assert isinstance(event, StreamMalformed)
            self._window_due += event.flow_controlled_length
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                touched.pop(stream.id, None)
                error = RemoteProtocolError(f"malformed response: {event.reason}")
                self._end(stream, error, reset=ErrorCodes.PROTOCOL_ERROR)
        elif kind is h2.events.WindowUpdated:
            assert isinstance(event, h2.events.WindowUpdated)
            pumps.append(event.stream_id or 0)
        elif kind is h2.events.RemoteSettingsChanged:
            self._settings_seen = True
            self._stream_limit = self._h2.remote_settings.max_concurrent_streams
            pumps.append(0)  # the initial window may have grown
            self._pool.capacity_changed(self)
        elif kind is h2.events.ConnectionTerminated:
            assert isinstance(event, h2.events.ConnectionTerminated)
            self._on_goaway(event)
        elif kind is h2.events.TrailersReceived:
            assert isinstance(event, h2.events.TrailersReceived)
            stream = self.streams.get(event.stream_id or 0)
            problem, _, fields = check_fields(event.headers or [], trailers=True)
            if stream is not None and problem is not None:
                touched.pop(stream.id, None)
                error = RemoteProtocolError(f"malformed trailers: {problem}")
                self._end(stream, error, reset=ErrorCodes.PROTOCOL_ERROR)
            elif stream is not None:
                stream.trailers = fields
        elif kind is h2.events.InformationalResponseReceived:
            stream = self.streams.get(getattr(event, "stream_id", 0))
            if stream is not None:
                stream.got_bytes = True

    def _on_head(self, stream: _Stream, headers: list[tuple[bytes, bytes]]) -> None:
        key = tuple(headers)
        known = self._heads.get(key)
        if known is None:
            known = self._check_head(stream, headers)
            if known is None:
                return
            if len(self._heads) >= _HEADS_REMEMBERED:
                self._heads.clear()
            self._heads[key] = known
        status, fields, length = known
        stream.head = (status, b"", list(fields), "HTTP/2")
        if (
            length is not None
            and stream.ex.request.method != b"HEAD"
            and status not in _NO_BODY_STATUS
        ):
            stream.expected = length
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("head received request_id=%d status=%d", stream.ex.id, status)

    def _check_head(self, stream: _Stream, headers: list[tuple[bytes, bytes]]) -> _KnownHead | None:
        """A head's size and fields checked (None: the stream is ended with
        the reason): its status, regular fields and content-length."""
        size = sum(len(name) + len(value) + 32 for name, value in headers)
        if len(headers) > MAX_HEADER_FIELDS or size > MAX_HEAD_SIZE:
            error = RemoteProtocolError(
                f"response head too large: {len(headers)} fields, {size} bytes"
                f" (limits {MAX_HEADER_FIELDS} fields, {MAX_HEAD_SIZE} bytes)"
            )
            self._end(stream, error, reset=ErrorCodes.PROTOCOL_ERROR)
            return None
        problem, status, out = check_fields(headers, trailers=False)
        if problem is not None:
            error = RemoteProtocolError(f"malformed response head: {problem}")
            self._end(stream, error, reset=ErrorCodes.PROTOCOL_ERROR)
            return None
        length = None
        for name, value in out:
            if name == b"content-length" and value.isdigit():
                length = int(value)
        return status, tuple(out), length

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        """Streams the server never processed are retried elsewhere; the
        others may still complete; nothing new starts here."""
        self.goaway = True
        last = event.last_stream_id if event.last_stream_id is not None else 0
        code = _code_name(event.error_code)
        retry = Retry.SAFE if last > 0 else self._refused()
        for stream in list(self.streams.values()):
            if stream.id > last:
                error = RemoteProtocolError(f"connection closed by the server (GOAWAY {code})")
                # A server that answered and then calls the stream unprocessed
                # is not believed: the caller may have the head already.
                self._end(stream, error, Retry.NO if stream.got_bytes else retry)
        self._pool.capacity_changed(self)
        if not self.streams:
            self.close(f"GOAWAY {code}")

    def _refused(self) -> Retry:
        """A stream the server did not process: safe to retry; but a server
        that has served nothing here may refuse everything."""
        return Retry.SAFE if self.requests_served > 0 else Retry.REFUSED

    # -- delivery ---------------------------------------------------------------------

    def _deliver_touched(self) -> None:
        self._deliver_scheduled = False
        touched, self._touched = self._touched, {}
        for stream in touched.values():
            if stream.id in self.streams:
                self._deliver(stream)
        self._flush()  # stream-window updates of buffered (stream=False) bodies

    def _deliver(self, stream: _Stream) -> None:
        ex = stream.ex
        if not ex.stream:
            if stream.to_ack >= WINDOW_ACK_MIN:
                n, stream.to_ack = stream.to_ack, 0
                self._open_stream_window(stream.id, n)
            self._touch(stream)
            return
        if stream.head is None:
            self._touch(stream)
            return
        event = body_event(stream.head, stream.head_sent, stream.parts, False)
        size = 0
        if event is not None:
            stream.head_sent = True
            size = len(event.body if isinstance(event, ResponseHead) else event.data)
            ex.credit -= size
            ex.send(event)
        if stream.to_ack:
            stream.unread.append([size, stream.to_ack])
            stream.unread_bytes += size
            self._held += size
            stream.to_ack = 0
        if stream.unread_bytes >= STREAM_WINDOW // 2:
            # The caller is behind and the window is closing: no read
            # deadline, since the server is not the one stalling.
            stream.deadline = None
        else:
            self._touch(stream)

    def _complete(self, stream: _Stream) -> None:
        if stream.head is None:
            self._end(stream, RemoteProtocolError("stream ended without a response"))
            return
        if stream.expected is not None and stream.expected != stream.received:
            error = RemoteProtocolError(
                f"response body of {stream.received} bytes, content-length {stream.expected}"
            )
            self._end(stream, error, reset=ErrorCodes.PROTOCOL_ERROR)
            return
        final = body_event(stream.head, stream.head_sent, stream.parts, True, stream.trailers)
        assert final is not None
        self.requests_served += 1
        self._end(stream, final)

    def _end(
        self,
        stream: _Stream,
        outcome: ResponseHead | BodyChunk | Exception | None,
        retry: Retry = Retry.NO,
        reset: ErrorCodes = ErrorCodes.CANCEL,
    ) -> None:
        """The one place an exchange ends here, whatever the outcome: forget
        the stream, reset it (``reset``) unless it is closed both ways (an
        upload the response made moot, a timeout, a cancel), count its
        unread bytes as read for the connection window, then tell the pool."""
        if self.streams.pop(stream.id, None) is None:
            return
        ex = stream.ex
        self._by_ex.pop(ex, None)
        if ex.handler is self:
            ex.handler = None
        stream.deadline = None
        self._held -= stream.unread_bytes
        stream.unread_bytes = 0
        stream.unread = []
        stream.out = []
        if not self.closed:
            h2_stream = self._h2.streams.get(stream.id)
            if h2_stream is not None and not h2_stream.closed:
                try:
                    self._h2.reset_stream(stream.id, reset)
                except h2.exceptions.ProtocolError:
                    pass
                # What it was sure to receive will not come: the next read
                # counts again.
                self.transport.expect(0)
            self._open_connection_window()
            self._schedule_flush()
        if not self.streams:
            self.idle_since = self._loop.time()
            if self.goaway:
                self.close("GOAWAY and no streams left")
        self._pool.exchange_ended(self, ex, outcome, retry)

    # -- flow control --------------------------------------------------------------------

    def _open_connection_window(self) -> None:
        """Re-open the connection window for what arrived, unless callers
        already hold CONNECTION_BUFFER unread bytes (then as they read)."""
        due = self._window_due
        if due >= CONNECTION_ACK_MIN and self._held <= CONNECTION_BUFFER and not self.closed:
            self._window_due = 0
            self._h2.increment_flow_control_window(due)

    def _open_stream_window(self, stream_id: int, n: int) -> None:
        try:
            self._h2.increment_flow_control_window(n, stream_id)
        except (KeyError, h2.exceptions.ProtocolError):
            pass  # the stream is closed on the server's side: no window to open

    # -- writing ------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and not self.closed:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """One socket write for everything h2 has queued."""
        self._flush_scheduled = False
        data = self._h2.data_to_send()
        if data and not self.transport.closing:
            self.transport.write(data)

    # -- deadlines ---------------------------------------------------------------------

    def _touch(self, stream: _Stream) -> None:
        """Progress on ``stream``: the write timeout while its request body
        waits for the peer's window or the socket, else the read timeout."""
        writing = bool(stream.out) or (bool(stream.unacked_upload) and self.transport.write_paused)
        self._timer.touch(stream, stream.ex, writing)

    def _expire(self, now: float) -> float | None:
        earliest: float | None = None
        for stream in list(self.streams.values()):
            deadline = stream.deadline
            if deadline is None or stream.id not in self.streams:
                continue
            if deadline <= now:
                self._end(stream, expiry_error(stream, stream.ex))
            elif earliest is None or deadline < earliest:
                earliest = deadline
        return earliest

    # -- life ---------------------------------------------------------------------------

    def close(self, reason: str, error: Exception | None = None) -> None:
        """End every stream still running (with ``error``, or an error naming
        ``reason``), say GOAWAY after whatever h2 had queued, close, and tell
        the pool; safe to call twice."""
        if self.closed:
            return
        if not self.transport.closing:
            if not self._goaway_queued:
                try:
                    self._h2.close_connection()
                except h2.exceptions.ProtocolError:
                    pass  # h2's state machine is closed already
            self._flush()
        self.closed = True
        self._timer.cancel()
        self.transport.close()
        failure = error or RemoteProtocolError(f"connection closed: {reason}")
        for stream in list(self.streams.values()):
            self._end(stream, failure)
        self._pool.connection_closed(self, reason)


def _code_name(code: object) -> str:
    try:
        return ErrorCodes(code).name  # type: ignore[arg-type]
    except ValueError:
        return str(code)
