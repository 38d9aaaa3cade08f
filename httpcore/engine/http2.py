# Runs on the engine thread only. Owns one HTTP/2 connection: its h2 state
# machine, its Transport and every stream (exchange) multiplexed on it.
"""HTTP/2 over h2, driven by transport callbacks.

Any number of exchanges run at once, up to the server's
``SETTINGS_MAX_CONCURRENT_STREAMS``. Writes are batched: whatever h2 has to
send goes out in one socket write per loop iteration. Flow-control windows
of a streamed body are re-opened only as its caller hands back credit.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import re
from collections import deque
from collections.abc import Iterable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
import hpack.table
import hyperframe.frame
from h2.connection import ConnectionState
from h2.errors import ErrorCodes

from .._exceptions import (
    HTTPCoreError,
    LocalProtocolError,
    ReadTimeout,
    RemoteProtocolError,
    WriteTimeout,
    describe,
)
from .._models import Origin
from .exchange import STREAM_WINDOW, Exchange, Head, body_event
from .http11 import MAX_HEAD_SIZE, MAX_HEADER_FIELDS, PoolHooks
from .messages import ResponseHead, UploadAck
from .transport import Transport

logger = logging.getLogger("httpcore")

CONNECTION_WINDOW = 16 * 1024 * 1024
"""Connection-level receive window: room for several fast streams at once."""

_MAX_STREAM_ID = 2**31 - 1
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"}
)


def _cheap_raw_data_repr(data: bytes | None) -> str:
    """hyperframe's ``_raw_data_repr`` with the same output, without
    hex-encoding the whole payload first.

    h2 builds ``repr(frame)`` for a trace log line on every frame it
    receives, even when nothing logs it; for a 16 KiB DATA frame that hex
    encoding was 31% of the engine's time in the HTTP/2 download benchmark.
    """
    if not data:
        return "None"
    r = binascii.hexlify(data[:11]).decode("ascii")
    if len(data) > 10:
        r = r[:20] + "..."
    return "<hex:" + r + ">"


if callable(getattr(hyperframe.frame, "_raw_data_repr", None)):
    hyperframe.frame._raw_data_repr = _cheap_raw_data_repr

_data_body_repr = hyperframe.frame.DataFrame._body_repr


def _cheap_data_body_repr(self: hyperframe.frame.DataFrame) -> str:
    """A DATA frame's body repr, with the same output, without serializing
    (copying) the payload first when there is no padding to add: that copy
    was 6% of the engine's time in the HTTP/2 download benchmark."""
    if "PADDED" in self.flags:
        return _data_body_repr(self)
    return _cheap_raw_data_repr(self.data)


if _data_body_repr is hyperframe.frame.Frame._body_repr:
    hyperframe.frame.DataFrame._body_repr = _cheap_data_body_repr  # type: ignore[method-assign,assignment]


HPACK_CACHE = 256
"""Header blocks remembered per connection and direction (see below)."""


_TABLE_SIZE: property = vars(hpack.table.HeaderTable)["maxsize"]


class _CountingTable(hpack.table.HeaderTable):
    """An HPACK table that counts its changes (entries added, size set), so
    a cached encoding can tell that the table is still the one it was made
    against."""

    generation = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.generation += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, value: int) -> None:
        self.generation += 1
        assert _TABLE_SIZE.fset is not None
        _TABLE_SIZE.fset(self, value)


class _CachingEncoder(hpack.Encoder):
    """hpack's encoder, remembering header lists whose encoding did not
    change the table: encoding one again against the same table gives the
    same bytes, so they are reused. A client sends the same few request
    heads over and over; HPACK encoding was 8% of the engine's time with
    100 tasks on one connection."""

    def __init__(self) -> None:
        super().__init__()
        self.header_table: _CountingTable = _CountingTable()
        self._cache: dict[tuple[Any, ...], tuple[int, bytes]] = {}

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        table = self.header_table
        if not huffman or table.resized or type(headers) is not list:
            return super().encode(headers, huffman)
        key = tuple(headers)
        hit = self._cache.get(key)
        generation = table.generation
        if hit is not None and hit[0] == generation:
            return hit[1]
        encoded = super().encode(headers, huffman)
        if table.generation == generation and all(
            type(header) is tuple and len(header) == 2 for header in key
        ):
            if len(self._cache) >= HPACK_CACHE:
                self._cache.clear()
            self._cache[key] = (generation, encoded)
        return encoded


class _CachingDecoder(hpack.Decoder):
    """hpack's decoder, remembering blocks decoded while the dynamic table
    was empty and that left it empty, at the same limits: decoding one again
    gives the same fields and the same table. Servers that keep their
    table at size 0 (nginx does) send such blocks only; HPACK decoding of
    nginx's Huffman-coded fields was about 25% of the engine's time."""

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(max_header_list_size=max_header_list_size)
        self._cache: dict[bytes, tuple[tuple[int, int, int], list[Any]]] = {}

    def decode(self, data: bytes, raw: bool = False) -> Any:
        table = self.header_table
        if not raw or table.dynamic_entries:
            return super().decode(data, raw)
        key = bytes(data)
        state = (table.maxsize, self.max_allowed_table_size, self.max_header_list_size)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == state:
            return list(hit[1])
        fields = list(super().decode(data, raw))
        if not table.dynamic_entries and table.maxsize == state[0]:
            if len(self._cache) >= HPACK_CACHE:
                self._cache.clear()
            self._cache[key] = (state, fields)
        return list(fields)


class _H2Connection(h2.connection.H2Connection):
    """h2 with graceful GOAWAY.

    h2 moves its state machine to CLOSED on a received GOAWAY and then
    refuses every frame (python-hyper/h2#1181), while RFC 9113 §6.8 lets
    the streams at or below last_stream_id complete. We keep the machine
    in its open state; the connection itself opens no new stream after a
    GOAWAY (``HTTP2Connection.goaway``).
    """

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        self.encoder = _CachingEncoder()
        self.decoder = _CachingDecoder(self.decoder.max_header_list_size)

    def _receive_goaway_frame(self, frame: Any) -> Any:
        state = self.state_machine.state
        result = super()._receive_goaway_frame(frame)
        if state is not ConnectionState.CLOSED:
            self.state_machine.state = state
        return result

    _counts = 0

    @property
    def open_outbound_streams(self) -> int:
        """h2 reads this on every ``send_headers``, walking every stream, to
        enforce the server's stream limit and to prune closed streams. The
        limit is enforced before that (``HTTP2Connection.capacity``), so the
        walk is done every 32nd time only, to prune: about 8% of the engine's
        time with 100 streams open."""
        self._counts += 1
        if self._counts % 32:
            return 0
        return self._open_streams(int(self.config.client_side))


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
        rest.append((lowered, value))
    return [
        (b":method", req.method),
        (b":authority", authority),
        (b":scheme", origin.scheme),
        (b":path", req.url.target),
        *rest,
    ]


class _Stream:
    """One exchange on the connection."""

    __slots__ = (
        "deadline",
        "ex",
        "got_bytes",
        "head",
        "head_sent",
        "id",
        "out",
        "out_end",
        "parts",
        "to_ack",
        "unacked_upload",
        "unread",
        "unread_bytes",
    )

    def __init__(self, stream_id: int, ex: Exchange) -> None:
        self.id = stream_id
        self.ex = ex
        self.head: Head | None = None
        self.head_sent = False
        self.parts: list[bytes] = []
        self.to_ack = 0
        """Flow-controlled bytes received and not yet handed to the caller."""
        self.unread: deque[list[int]] = deque()
        """Per chunk sent to a streaming caller: [data bytes, flow-controlled
        bytes]; its window is handed back as the caller consumes it."""
        self.unread_bytes = 0
        self.out: list[memoryview] = []
        self.out_end = False
        """The request body ends after ``out`` (END_STREAM still to send)."""
        self.unacked_upload = 0
        self.got_bytes = False
        self.deadline: float | None = None


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
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,  # check_fields does it, cheaper
        )
        h = self._h2 = _H2Connection(config=config)
        h.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEAD_SIZE,
            },
        )
        h.initiate_connection()
        # h2 applies our MAX_HEADER_LIST_SIZE only once the server acks it;
        # bound the decoder from the first frame on.
        h.decoder.max_header_list_size = MAX_HEAD_SIZE
        h.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.streams: dict[int, _Stream] = {}
        self._by_ex: dict[Exchange, _Stream] = {}
        self.closed = False
        self.goaway = False
        self._settings_seen = False
        self.requests_served = 0
        self.idle_since = self._loop.time()
        self._flush_scheduled = False
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        """When ``_timer`` fires (uvloop's handles have no ``when()``)."""
        transport.attach(self)
        self._flush()

    # -- queries the pool uses -------------------------------------------------------

    @property
    def active(self) -> bool:
        return bool(self.streams)

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
        h = self._h2
        # Until the server's SETTINGS arrive its stream limit is unknown:
        # only the stream of the request that opened the connection goes
        # out; the rest wait one round trip rather than risk REFUSED_STREAM.
        limit = h.remote_settings.max_concurrent_streams if self._settings_seen else 1
        ids_left = (_MAX_STREAM_ID - h.highest_outbound_stream_id) // 2
        return max(0, min(limit - len(self.streams), ids_left))

    def is_idle(self) -> bool:
        return not self.streams and not self.closed

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
            self._pool.exchange_failed(self, ex, RemoteProtocolError("no stream free"), "requeue")
            return
        try:
            stream_id = h.get_next_available_stream_id()
            end = req.body is not None and not req.body
            h.send_headers(stream_id, h2_headers(ex), end_stream=end)
        except h2.exceptions.ProtocolError as exc:
            self._pool.exchange_failed(self, ex, LocalProtocolError(describe(exc)), "safe")
            return
        stream = _Stream(stream_id, ex)
        self.streams[stream_id] = stream
        self._by_ex[ex] = stream
        ex.handler = self
        if req.body:
            stream.out.append(memoryview(req.body))
            stream.out_end = True
            self._pump(stream)
        elif req.body is None and ex.upload:
            self.on_upload(ex)
        self._set_deadline(stream)
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
        self._pump(stream)
        self._schedule_flush()

    def _pump(self, stream: _Stream) -> None:
        """Send as much of the stream's body as the peer's windows allow."""
        h = self._h2
        sid = stream.id
        out = stream.out
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
                stream.unacked_upload += len(chunk)
                if last:
                    stream.out_end = False
            if stream.out_end and not out:
                stream.out_end = False
                h.end_stream(sid)
        except (h2.exceptions.ProtocolError, h2.exceptions.FlowControlError) as exc:
            self._fail_stream(stream, LocalProtocolError(describe(exc)), "no", reset=True)
            return
        self._ack_upload(stream)

    def _ack_upload(self, stream: _Stream) -> None:
        """Let a streaming caller send more once its bytes are in h2's hands,
        unless the socket is full (then on_writable does it)."""
        if (
            stream.unacked_upload
            and stream.ex.request.body is None
            and not self.transport.write_paused
        ):
            n, stream.unacked_upload = stream.unacked_upload, 0
            stream.ex.send(UploadAck(n))

    def on_credit(self, ex: Exchange, consumed: int) -> None:
        """The caller consumed some body: re-open that much of the window."""
        stream = self._by_ex.get(ex)
        if stream is None:
            return
        ack = 0
        unread = stream.unread
        while consumed > 0 and unread:
            entry = unread[0]
            if entry[0] <= consumed:
                consumed -= entry[0]
                stream.unread_bytes -= entry[0]
                ack += entry[1]
                unread.popleft()
            else:
                part = entry[1] * consumed // entry[0]
                entry[0] -= consumed
                entry[1] -= part
                stream.unread_bytes -= consumed
                ack += part
                consumed = 0
        if ack:
            self._h2.acknowledge_received_data(ack, stream.id)
            self._schedule_flush()
        if stream.deadline is None and stream.unread_bytes < STREAM_WINDOW // 2:
            self._set_deadline(stream)

    def on_abandon(self, ex: Exchange) -> None:
        stream = self._by_ex.get(ex)
        if stream is not None:
            self._end_stream(stream)
            self._reset(stream)
            self._pool.exchange_released(self)

    # -- transport callbacks --------------------------------------------------------------

    def on_bug(self, exc: Exception) -> None:
        logger.error("internal error on connection_id=%d", self.id, exc_info=exc)
        error = HTTPCoreError(f"internal error in the engine: {describe(exc)}")
        error.__cause__ = exc
        self._fail_all(error, "no")
        self.close("internal error")

    def on_data(self, data: memoryview) -> None:
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._flush()
            self._fail_all(RemoteProtocolError(f"HTTP/2 protocol error: {describe(exc)}"), "no")
            self.close("protocol error")
            return
        touched: dict[int, _Stream] = {}
        for event in events:
            self._on_event(event, touched)
        for stream in touched.values():
            if stream.id in self.streams:
                self._deliver(stream)
        self._flush()

    def on_eof(self) -> None:
        self._lost("server closed the connection")

    def on_lost(self, exc: BaseException | None) -> None:
        self._lost("connection lost" if exc is None else describe(exc))

    def on_writable(self) -> None:
        for stream in list(self.streams.values()):
            self._ack_upload(stream)

    def _lost(self, reason: str) -> None:
        if self.closed:
            return
        for stream in list(self.streams.values()):
            retry = "if_idempotent" if not stream.got_bytes else "no"
            error = RemoteProtocolError(f"server disconnected: {reason}")
            self._fail_stream(stream, error, retry, reset=False)
        self.close(reason)

    # -- events ---------------------------------------------------------------------------

    def _on_event(self, event: object, touched: dict[int, _Stream]) -> None:
        kind = type(event)
        if kind is h2.events.DataReceived:
            assert isinstance(event, h2.events.DataReceived)
            stream = self.streams.get(event.stream_id)
            if stream is None:
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                return
            stream.got_bytes = True
            if event.data:
                stream.parts.append(event.data)
            stream.to_ack += event.flow_controlled_length
            touched[stream.id] = stream
        elif kind is h2.events.ResponseReceived:
            assert isinstance(event, h2.events.ResponseReceived)
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.got_bytes = True
                self._on_head(stream, event.headers)
                if stream.id in self.streams:
                    touched[stream.id] = stream
        elif kind is h2.events.StreamEnded:
            assert isinstance(event, h2.events.StreamEnded)
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                touched.pop(stream.id, None)
                self._complete(stream)
        elif kind is h2.events.StreamReset:
            assert isinstance(event, h2.events.StreamReset)
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                touched.pop(stream.id, None)
                code = _code_name(event.error_code)
                retry = "safe" if event.error_code == ErrorCodes.REFUSED_STREAM else "no"
                error = RemoteProtocolError(f"stream reset by the server: {code}")
                self._fail_stream(stream, error, retry, reset=False)
        elif kind is h2.events.WindowUpdated:
            assert isinstance(event, h2.events.WindowUpdated)
            if event.stream_id:
                stream = self.streams.get(event.stream_id)
                targets: Iterable[_Stream] = (stream,) if stream is not None else ()
            else:
                targets = list(self.streams.values())
            for stream in targets:
                if stream.out or stream.out_end:
                    self._pump(stream)
                    self._set_deadline(stream)
        elif kind is h2.events.RemoteSettingsChanged:
            self._settings_seen = True
            self._pool.capacity_changed(self)
        elif kind is h2.events.ConnectionTerminated:
            assert isinstance(event, h2.events.ConnectionTerminated)
            self._on_goaway(event)
        elif kind is h2.events.TrailersReceived:
            assert isinstance(event, h2.events.TrailersReceived)
            stream = self.streams.get(event.stream_id)
            problem = check_fields(event.headers, trailers=True)[0]
            if stream is not None and problem is not None:
                touched.pop(stream.id, None)
                error = RemoteProtocolError(f"malformed trailers: {problem}")
                self._fail_stream(stream, error, "no", reset=True)
        elif kind is h2.events.InformationalResponseReceived:
            stream = self.streams.get(getattr(event, "stream_id", 0))
            if stream is not None:
                stream.got_bytes = True

    def _on_head(self, stream: _Stream, headers: list[tuple[bytes, bytes]]) -> None:
        size = sum(len(name) + len(value) + 32 for name, value in headers)
        if len(headers) > MAX_HEADER_FIELDS or size > MAX_HEAD_SIZE:
            error = RemoteProtocolError(
                f"response head too large: {len(headers)} fields, {size} bytes"
                f" (limits {MAX_HEADER_FIELDS} fields, {MAX_HEAD_SIZE} bytes)"
            )
            self._fail_stream(stream, error, "no", reset=True)
            return
        problem, status, out = check_fields(headers, trailers=False)
        if problem is not None:
            error = RemoteProtocolError(f"malformed response head: {problem}")
            self._fail_stream(stream, error, "no", reset=True)
            return
        stream.head = (status, b"", out, "HTTP/2")
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("head received request_id=%d status=%d", stream.ex.id, status)

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        """Streams the server never processed are retried elsewhere; the
        others may still complete; nothing new starts here."""
        self.goaway = True
        last = event.last_stream_id if event.last_stream_id is not None else 0
        code = _code_name(event.error_code)
        for stream in list(self.streams.values()):
            if stream.id > last:
                error = RemoteProtocolError(f"connection closed by the server (GOAWAY {code})")
                self._fail_stream(stream, error, "safe", reset=False)
        self._pool.capacity_changed(self)
        if not self.streams:
            self.close(f"GOAWAY {code}")

    # -- delivery ---------------------------------------------------------------------

    def _deliver(self, stream: _Stream) -> None:
        ex = stream.ex
        self._set_deadline(stream)  # the server made progress
        if not ex.stream:
            if stream.to_ack:
                n, stream.to_ack = stream.to_ack, 0
                self._h2.acknowledge_received_data(n, stream.id)
            return
        if stream.head is None:
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
            stream.to_ack = 0
        if stream.unread_bytes >= STREAM_WINDOW // 2:
            # The caller is behind and the window is closing: no read
            # deadline, since the server is not the one stalling.
            stream.deadline = None

    def _complete(self, stream: _Stream) -> None:
        ex = stream.ex
        if stream.head is None:
            self._fail_stream(
                stream, RemoteProtocolError("stream ended without a response"), "no", reset=False
            )
            return
        final = body_event(stream.head, stream.head_sent, stream.parts, True)
        assert final is not None
        self._end_stream(stream)
        self.requests_served += 1
        self._pool.exchange_done(self, ex, final)
        if self.goaway and not self.streams:
            self.close("GOAWAY and no streams left")

    def _end_stream(self, stream: _Stream) -> None:
        """Forget a stream; hand back the connection window its unread data
        held (else other streams would starve)."""
        self.streams.pop(stream.id, None)
        self._by_ex.pop(stream.ex, None)
        if stream.ex.handler is self:
            stream.ex.handler = None
        held = stream.to_ack + sum(entry[1] for entry in stream.unread)
        stream.to_ack = 0
        stream.unread.clear()
        stream.unread_bytes = 0
        if held:
            try:
                self._h2.acknowledge_received_data(held, stream.id)
            except h2.exceptions.ProtocolError:
                pass
            self._schedule_flush()
        if not self.streams:
            self.idle_since = self._loop.time()

    def _fail_stream(self, stream: _Stream, error: Exception, retry: str, reset: bool) -> None:
        self._end_stream(stream)
        if reset:
            self._reset(stream)
        self._pool.exchange_failed(self, stream.ex, error, retry)

    def _reset(self, stream: _Stream) -> None:
        """RST_STREAM CANCEL, unless h2 already considers the stream closed."""
        try:
            self._h2.reset_stream(stream.id, ErrorCodes.CANCEL)
        except h2.exceptions.ProtocolError:
            pass
        self._schedule_flush()

    def _fail_all(self, error: Exception, retry: str) -> None:
        for stream in list(self.streams.values()):
            self._fail_stream(stream, error, retry, reset=False)

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

    def _set_deadline(self, stream: _Stream) -> None:
        """Per-stream deadline; one lazy timer for the connection."""
        ex = stream.ex
        waiting_window = bool(stream.out) or self.transport.write_paused
        timeout = ex.timeout.write if waiting_window else ex.timeout.read
        if timeout is None:
            stream.deadline = None
            return
        deadline = stream.deadline = self._loop.time() + timeout
        timer = self._timer
        if timer is None or self._timer_at > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._check_deadlines)
            self._timer_at = deadline

    def _check_deadlines(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self._loop.time()
        earliest: float | None = None
        for stream in list(self.streams.values()):
            deadline = stream.deadline
            if deadline is None:
                continue
            if deadline <= now:
                if stream.out:
                    error: Exception = WriteTimeout("timed out writing the request")
                else:
                    error = ReadTimeout("timed out reading the response")
                self._fail_stream(stream, error, "no", reset=True)
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._timer = self._loop.call_at(earliest, self._check_deadlines)
            self._timer_at = earliest

    # -- life ---------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        if self.closed:
            return
        if not self.transport.closing:
            try:
                self._h2.close_connection()
                self._flush()
            except h2.exceptions.ProtocolError:
                pass
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport.close()
        self._pool.connection_lost(self, reason)


def _code_name(code: object) -> str:
    try:
        return ErrorCodes(code).name  # type: ignore[arg-type]
    except ValueError:
        return str(code)
