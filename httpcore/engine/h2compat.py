# Runs on the engine thread only (and once at import). Owns every change this
# project makes to h2, hpack and hyperframe: nothing else reaches into them.
"""Where h2 needs help, in one place, each change checked at import.

Every patch below depends on internals of a library that may change between
the versions pyproject allows. Each is tried once at import against the
installed library, on a client and a stock h2 server talking in memory; a
patch whose check fails is left out and the stock behaviour stays
(``PATCHES`` says which are on; ``HTTPCORE_H2_STOCK=name,...`` or ``=all``
in the environment leaves patches out on purpose). What each one is for:

- ``repr``: h2 formats ``repr(frame)`` for a trace log on every frame it
  receives; hyperframe hex-encodes (and for DATA first copies) the payload
  for it. Same text, without the copies: 31% + 6% of the engine's time in
  the HTTP/2 download benchmark.
- ``hpack_cache``: reuse of header blocks that cannot have changed the HPACK
  table (see the coders' docstrings): a third of the engine's time on small
  responses.
- ``goaway``: h2 refuses every frame after a received GOAWAY
  (python-hyper/h2#1181), while RFC 9113 §6.8 lets streams at or below its
  last-stream-id complete.
- ``stream_walk``: h2 walks every stream on each ``send_headers``.
- ``events_before_error``: a connection error in one read keeps the events
  of the frames before it (a response completed in the same read is kept),
  ending with :class:`ConnectionFailed` instead of raising.
- ``stream_errors``: a wrong content-length is a stream error (RFC 9113
  §8.1.1), not a connection error: RST_STREAM(PROTOCOL_ERROR) for that
  stream and a :class:`StreamMalformed` event.
- ``idle_reset``: RST_STREAM on an idle stream is a connection error
  (RFC 9113 §5.1); h2 ignores it.
"""

from __future__ import annotations

import binascii
import logging
import os
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack
import hpack.table
import hyperframe.exceptions
import hyperframe.frame
from h2.connection import ConnectionState
from h2.errors import ErrorCodes

logger = logging.getLogger("httpcore")

HPACK_CACHE = 256
"""Header blocks remembered per connection and direction."""

PATCHES: dict[str, bool] = {}
"""Which patches passed their check at import and are in use."""


# -- events the patched connection adds ---------------------------------------------


class StreamMalformed(h2.events.Event):
    """A stream error h2 would have made a connection error: the stream is
    reset (PROTOCOL_ERROR); only its exchange fails."""

    def __init__(self, stream_id: int, reason: str, flow_controlled_length: int) -> None:
        self.stream_id = stream_id
        self.reason = reason
        self.flow_controlled_length = flow_controlled_length


class ConnectionFailed(h2.events.Event):
    """The last event of a read that hit a connection error; GOAWAY is queued."""

    def __init__(self, error: h2.exceptions.ProtocolError) -> None:
        self.error = error


# -- hyperframe: reprs without copies -----------------------------------------------


def _cheap_raw_data_repr(data: bytes | None) -> str:
    """hyperframe's ``_raw_data_repr``, hex-encoding 11 bytes, not all."""
    if not data:
        return "None"
    r = binascii.hexlify(data[:11]).decode("ascii")
    if len(r) > 20:
        r = r[:20] + "..."
    return "<hex:" + r + ">"


_stock_raw_data_repr = getattr(hyperframe.frame, "_raw_data_repr", None)
_stock_data_body_repr = hyperframe.frame.DataFrame._body_repr


def _cheap_data_body_repr(self: hyperframe.frame.DataFrame) -> str:
    """A DATA frame's body repr without serializing (copying) the payload
    when there is no padding to add."""
    if "PADDED" in self.flags:
        return _stock_data_body_repr(self)
    return _cheap_raw_data_repr(self.data)


def _check_repr() -> bool:
    if not callable(_stock_raw_data_repr):
        return False
    if _stock_data_body_repr is not hyperframe.frame.Frame._body_repr:
        return False
    samples = [b"", b"a", b"0123456789", b"0123456789a", bytes(range(40))]
    if any(_cheap_raw_data_repr(s) != _stock_raw_data_repr(s) for s in samples):
        return False
    frame = hyperframe.frame.DataFrame(1, data=bytes(range(30)))
    return _cheap_data_body_repr(frame) == _stock_data_body_repr(frame)


def _install_repr() -> None:
    hyperframe.frame._raw_data_repr = _cheap_raw_data_repr
    hyperframe.frame.DataFrame._body_repr = _cheap_data_body_repr  # type: ignore[method-assign,assignment]


# -- hpack: caching coders --------------------------------------------------------------


_TABLE_SIZE = vars(hpack.table.HeaderTable).get("maxsize")


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
        assert isinstance(_TABLE_SIZE, property) and _TABLE_SIZE.fset is not None
        _TABLE_SIZE.fset(self, value)


class CachingEncoder(hpack.Encoder):
    """hpack's encoder, remembering header lists whose encoding did not
    change the table: encoding one again against the same table gives the
    same bytes, so they are reused. A client sends the same few request
    heads over and over; HPACK encoding was 8% of the engine's time with
    100 tasks on one connection. Never-indexed fields are never cached."""

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


class CachingDecoder(hpack.Decoder):
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


def _check_hpack_cache() -> bool:
    if not isinstance(_TABLE_SIZE, property) or _TABLE_SIZE.fset is None:
        return False
    encoder, plain = CachingEncoder(), hpack.Encoder()
    table = encoder.header_table
    if not hasattr(table, "resized") or not hasattr(table, "dynamic_entries"):
        return False
    fields = [(b":method", b"GET"), (b"x-a", b"1")]
    for _ in range(2):
        if encoder.encode(list(fields)) != plain.encode(list(fields)):
            return False
    decoder = CachingDecoder(65536)
    if not hasattr(decoder, "max_allowed_table_size"):
        return False
    block = hpack.Encoder().encode([(b":status", b"200")])
    first, again = decoder.decode(block, raw=True), decoder.decode(block, raw=True)
    return bool(first == again == [(b":status", b"200")])


# -- h2: the connection ----------------------------------------------------------------


class H2Connection(h2.connection.H2Connection):
    """h2's connection with the patches that passed their checks."""

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        if PATCHES.get("hpack_cache"):
            self.encoder = CachingEncoder()
            self.decoder = CachingDecoder(self.decoder.max_header_list_size)

    # goaway

    def _goaway_keep_open(self, frame: Any) -> Any:
        state = self.state_machine.state
        result = h2.connection.H2Connection._receive_goaway_frame(self, frame)
        if state is not ConnectionState.CLOSED:
            self.state_machine.state = state
        return result

    # stream_walk

    _counts = 0

    def _open_outbound_streams_sometimes(self) -> int:
        """h2 reads this on every ``send_headers`` to enforce the server's
        stream limit and to prune closed streams. The limit is enforced
        before (``HTTP2Connection.capacity``), so the walk is done every 32nd
        time only, to prune: 8% of the engine's time with 100 streams open."""
        self._counts += 1
        if self._counts % 32:
            return 0
        return self._open_streams(int(self.config.client_side))

    # events_before_error

    def _receive_keeping_events(self, data: Any) -> list[h2.events.Event]:
        events: list[h2.events.Event] = []
        self.incoming_buffer.add_data(data)
        self.incoming_buffer.max_frame_size = self.max_inbound_frame_size
        try:
            for frame in self.incoming_buffer:
                events.extend(self._receive_frame(frame))
        except h2.exceptions.ProtocolError as exc:
            self._goaway_quietly(_error_code(exc))
            events.append(ConnectionFailed(exc))
        except hyperframe.exceptions.HyperframeError as exc:  # InvalidPaddingError
            self._goaway_quietly(ErrorCodes.PROTOCOL_ERROR)
            error = h2.exceptions.ProtocolError(f"malformed frame: {exc}")
            error.__cause__ = exc
            events.append(ConnectionFailed(error))
        return events

    def _goaway_quietly(self, code: ErrorCodes) -> None:
        try:
            self._terminate_connection(code)
        except h2.exceptions.ProtocolError:
            pass

    # stream_errors

    def _receive_frame_with_stream_errors(self, frame: Any) -> list[h2.events.Event]:
        try:
            return h2.connection.H2Connection._receive_frame(self, frame)
        except h2.exceptions.ProtocolError as exc:
            if not _is_stream_error(exc) or frame.stream_id not in self.streams:
                raise
            flow = frame.flow_controlled_length if frame.type == 0 else 0
            try:
                self.reset_stream(frame.stream_id, ErrorCodes.PROTOCOL_ERROR)
            except h2.exceptions.ProtocolError:
                pass  # closed both ways already: nothing to reset
            return [StreamMalformed(frame.stream_id, str(exc), flow)]

    # idle_reset

    def _receive_rst_checking_idle(self, frame: Any) -> Any:
        sid = frame.stream_id
        if sid not in self.streams and (sid % 2 == 0 or sid > self.highest_outbound_stream_id):
            raise h2.exceptions.ProtocolError(f"RST_STREAM on idle stream {sid}")
        return h2.connection.H2Connection._receive_rst_stream_frame(self, frame)


def _error_code(exc: h2.exceptions.ProtocolError) -> ErrorCodes:
    """The GOAWAY code RFC 9113 names for ``exc``, where h2 says only
    PROTOCOL_ERROR: a header block HPACK cannot decode is a COMPRESSION_ERROR
    (§4.3), a SETTINGS ack with a payload a FRAME_SIZE_ERROR (§6.5)."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, hpack.HPACKError):
        return ErrorCodes.COMPRESSION_ERROR
    if isinstance(cause, hyperframe.exceptions.InvalidDataError) and str(cause).startswith(
        "SETTINGS ack frame must not have payload"
    ):
        return ErrorCodes.FRAME_SIZE_ERROR
    code = getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR)
    return code if isinstance(code, ErrorCodes) else ErrorCodes.PROTOCOL_ERROR


def _is_stream_error(exc: Exception) -> bool:
    """Errors RFC 9113 §8.1.1 makes stream errors: the body does not match
    content-length, or content-length itself is malformed."""
    if isinstance(exc, h2.exceptions.InvalidBodyLengthError):
        return True
    text = str(exc)
    return text.startswith(("Invalid content-length", "Conflicting content-length"))


_PATCHED_METHODS: dict[str, tuple[str, Callable[..., Any]]] = {
    "goaway": ("_receive_goaway_frame", H2Connection._goaway_keep_open),
    "events_before_error": ("receive_data", H2Connection._receive_keeping_events),
    "stream_errors": ("_receive_frame", H2Connection._receive_frame_with_stream_errors),
    "idle_reset": ("_receive_rst_stream_frame", H2Connection._receive_rst_checking_idle),
}


# -- checks: a client and a stock server in memory ----------------------------------


def _pair() -> tuple[H2Connection, h2.connection.H2Connection]:
    client = H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def _request(client: H2Connection, server: h2.connection.H2Connection) -> int:
    sid = client.get_next_available_stream_id()
    headers = [(b":method", b"GET"), (b":authority", b"a"), (b":scheme", b"http"), (b":path", b"/")]
    client.send_headers(sid, headers, end_stream=True)
    server.receive_data(client.data_to_send())
    return sid


def _check_goaway() -> bool:
    client, server = _pair()
    sid = _request(client, server)
    frame = hyperframe.frame.GoAwayFrame(0)
    frame.last_stream_id = sid
    server.send_headers(sid, [(b":status", b"200")])
    head = server.data_to_send()
    server.send_data(sid, b"x", end_stream=True)
    events = client.receive_data(head + frame.serialize() + server.data_to_send())
    return any(isinstance(e, h2.events.StreamEnded) for e in events)


def _check_stream_walk() -> bool:
    client, server = _pair()
    _request(client, server)
    return client._open_streams(1) == 1


def _check_events_before_error() -> bool:
    client, server = _pair()
    sid = _request(client, server)
    server.send_headers(sid, [(b":status", b"200")], end_stream=True)
    bad = hyperframe.frame.WindowUpdateFrame(0)
    bad.window_increment = 1
    data = server.data_to_send() + bad.serialize()[:-4] + b"\x00\x00\x00\x00"
    events = client.receive_data(data)
    ended = any(isinstance(e, h2.events.StreamEnded) for e in events)
    return ended and isinstance(events[-1], ConnectionFailed) and b"" != client.data_to_send()


def _check_stream_errors() -> bool:
    client, server = _pair()
    sid = _request(client, server)
    other = _request(client, server)
    server.send_headers(sid, [(b":status", b"200"), (b"content-length", b"3")])
    server.send_data(sid, b"x", end_stream=True)
    server.send_headers(other, [(b":status", b"200")], end_stream=True)
    events = client.receive_data(server.data_to_send())
    bad = [e for e in events if isinstance(e, StreamMalformed)]
    good = [e for e in events if isinstance(e, h2.events.StreamEnded)]
    return (
        len(bad) == 1
        and bad[0].stream_id == sid
        and [e.stream_id for e in good] == [other]
        and (sid, ErrorCodes.PROTOCOL_ERROR) in _resets(client.data_to_send())
    )


def _resets(data: bytes) -> list[tuple[int, int]]:
    """(stream id, error code) of each RST_STREAM frame in ``data``."""
    out = []
    view = memoryview(data)
    while len(view) >= 9:
        frame, length = hyperframe.frame.Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        if isinstance(frame, hyperframe.frame.RstStreamFrame):
            out.append((frame.stream_id, frame.error_code))
        view = view[9 + length :]
    return out


def _check_idle_reset() -> bool:
    client, server = _pair()
    _request(client, server)
    frame = hyperframe.frame.RstStreamFrame(99)
    frame.error_code = 0
    try:
        events = client.receive_data(frame.serialize())
    except h2.exceptions.ProtocolError:
        return True
    return bool(events) and isinstance(events[-1], ConnectionFailed)


_CHECKS: dict[str, Callable[[], bool]] = {
    "goaway": _check_goaway,
    "stream_walk": _check_stream_walk,
    "events_before_error": _check_events_before_error,
    "stream_errors": _check_stream_errors,
    "idle_reset": _check_idle_reset,
}


_STOCK = {n.strip() for n in os.environ.get("HTTPCORE_H2_STOCK", "").split(",") if n.strip()}


def _try(name: str, check: Callable[[], bool]) -> bool:
    if name in _STOCK or "all" in _STOCK:
        return False
    try:
        ok = bool(check())
    except Exception:
        ok = False
    if not ok:
        logger.warning("httpcore: h2 patch %r left out: its check failed on this h2", name)
    return ok


def _install() -> None:
    """Each patch on its own: installed, checked, and removed if its check fails."""
    PATCHES["repr"] = _try("repr", _check_repr)
    if PATCHES["repr"]:
        _install_repr()
    PATCHES["hpack_cache"] = True
    PATCHES["hpack_cache"] = _try("hpack_cache", _check_hpack_cache)
    for name, check in _CHECKS.items():
        if name == "stream_walk":
            walk = property(H2Connection._open_outbound_streams_sometimes)
            setattr(H2Connection, "open_outbound_streams", walk)  # noqa: B010
        else:
            method, impl = _PATCHED_METHODS[name]
            setattr(H2Connection, method, impl)
        PATCHES[name] = _try(name, check)
        if not PATCHES[name]:
            if name == "stream_walk":
                delattr(H2Connection, "open_outbound_streams")
            else:
                delattr(H2Connection, _PATCHED_METHODS[name][0])


_install()
